// Package imapserver serves IMAP4rev1 and IMAP4rev2 (RFC 3501, RFC 9051)
// sessions on the store: a connection loop, a state table, one file per
// command group, IDLE on the store's change notifications. It speaks the
// wire through internal/imap and never touches SQL: every mailbox read or
// change goes through internal/store's Go API.
package imapserver

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/imap"
	"github.com/tern-mail/tern/internal/sessions"
	"github.com/tern-mail/tern/internal/store"
)

// Config configures a Server.
type Config struct {
	Store    *store.Store
	Accounts *account.Service
	// TLS enables STARTTLS on Serve and is required by ServeTLS.
	TLS      *tls.Config
	Logger   *slog.Logger
	Hostname string
	// InsecureAuth allows LOGIN and AUTHENTICATE PLAIN without TLS
	// (tern dev on loopback).
	InsecureAuth bool
	// MaxConnsPerIP bounds concurrent connections from one address (0: 200).
	MaxConnsPerIP int
	// MaxConnsPerUser bounds concurrent authenticated sessions of one
	// account (0: 100).
	MaxConnsPerUser int
	// IdleTimeout closes a connection silent for this long outside IDLE
	// (0: 30 minutes, RFC 9051 §5.4).
	IdleTimeout time.Duration
	// IdleMax bounds one IDLE command (0: 29 minutes); the client then
	// gets a fresh IDLE.
	IdleMax time.Duration
	// Limits bound lines and literals (zero value: imap.DefaultLimits).
	Limits imap.Limits
	// AppendLimit is the largest message APPEND accepts (0: 50 MiB).
	AppendLimit int64
	// AuthFailDelay slows down password guessing (0: 1s; <0: none).
	AuthFailDelay time.Duration
	// MaxCommandsPerSecond throttles one connection (0: 2000): a client
	// above it is slowed down, not refused.
	MaxCommandsPerSecond int
}

// Server is an IMAP server. Create it with New; it can serve several
// listeners at once.
type Server struct {
	cfg  Config
	log  *slog.Logger
	sess *sessions.Set

	mu      sync.Mutex
	perUser map[int64]int
}

// New returns a Server for cfg, filling in defaults.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = 200
	}
	if cfg.MaxConnsPerUser == 0 {
		cfg.MaxConnsPerUser = 100
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.IdleMax == 0 {
		cfg.IdleMax = 29 * time.Minute
	}
	if cfg.Limits.MaxLine == 0 {
		cfg.Limits = imap.DefaultLimits
	}
	if cfg.AppendLimit == 0 {
		cfg.AppendLimit = 50 << 20
	}
	if cfg.MaxCommandsPerSecond == 0 {
		cfg.MaxCommandsPerSecond = 2000
	}
	if cfg.AuthFailDelay == 0 {
		cfg.AuthFailDelay = time.Second
	}
	if cfg.Limits.MaxLiteral < cfg.AppendLimit {
		cfg.Limits.MaxLiteral = cfg.AppendLimit
	}
	if cfg.Limits.MaxCommand < cfg.Limits.MaxLiteral+1<<20 {
		cfg.Limits.MaxCommand = cfg.Limits.MaxLiteral + 1<<20
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("proto", "imap"), perUser: map[int64]int{}}
	s.sess = sessions.New(sessions.Config{
		New: func(c net.Conn, id uint64, implicitTLS bool) sessions.Session {
			return &served{newSession(s, c, id), c, implicitTLS}
		},
		Refuse: func(c net.Conn, implicitTLS bool) {
			c.Write([]byte("* BYE [UNAVAILABLE] Too many connections from your address\r\n"))
		},
		MaxPerIP: cfg.MaxConnsPerIP,
		Logger:   s.log,
	})
	return s
}

// served adapts a session to the sessions package. raw is the accepted
// connection, under any TLS layer the session puts on it.
type served struct {
	*session
	raw         net.Conn
	implicitTLS bool
}

func (ss *served) Serve() { ss.run(ss.implicitTLS) }

// Interrupt makes the session say BYE at its next command boundary, or at
// once when it waits for a command.
func (ss *served) Interrupt() {
	ss.closing.Store(true)
	ss.raw.SetReadDeadline(time.Now())
}

func (ss *served) Close() { ss.raw.Close() }

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("imapserver: server closed")

// Serve accepts plaintext connections on l (port 143; STARTTLS is offered
// when Config.TLS is set).
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS accepts implicit-TLS connections on l (port 993).
func (s *Server) ServeTLS(l net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("imapserver: ServeTLS needs Config.TLS")
	}
	return s.serve(l, true)
}

func (s *Server) serve(l net.Listener, implicitTLS bool) error {
	err := s.sess.Serve(l, implicitTLS)
	if errors.Is(err, sessions.ErrClosed) {
		return ErrServerClosed
	}
	return err
}

// addUser counts an authenticated session; false means over the limit.
func (s *Server) addUser(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perUser[id] >= s.cfg.MaxConnsPerUser {
		return false
	}
	s.perUser[id]++
	return true
}

func (s *Server) dropUser(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perUser[id]--; s.perUser[id] <= 0 {
		delete(s.perUser, id)
	}
}

// Shutdown stops the listeners, tells every session BYE at its next
// command boundary (idle sessions at once), and waits for them or ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.sess.Shutdown(ctx) }

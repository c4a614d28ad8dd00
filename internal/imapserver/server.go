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
	"syscall"
	"time"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/imap"
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
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]bool
	conns     map[*session]bool
	perIP     map[string]int
	perUser   map[int64]int
	nextID    uint64
	closing   bool
	wg        sync.WaitGroup
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
	return &Server{
		cfg: cfg, log: cfg.Logger.With("proto", "imap"),
		listeners: map[net.Listener]bool{}, conns: map[*session]bool{},
		perIP: map[string]int{}, perUser: map[int64]int{},
	}
}

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
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept", "err", err, "retry", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.startConn(c, implicitTLS)
	}
}

func (s *Server) startConn(c net.Conn, implicitTLS bool) {
	ip := remoteIP(c.RemoteAddr())
	s.mu.Lock()
	if s.closing || s.perIP[ip] >= s.cfg.MaxConnsPerIP {
		s.mu.Unlock()
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write([]byte("* BYE [UNAVAILABLE] Too many connections from your address\r\n"))
		c.Close()
		return
	}
	s.perIP[ip]++
	s.nextID++
	id := s.nextID
	sess := newSession(s, c, id)
	s.conns[sess] = true
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, sess)
			if s.perIP[ip]--; s.perIP[ip] <= 0 {
				delete(s.perIP, ip)
			}
			s.mu.Unlock()
		}()
		sess.run(implicitTLS)
	}()
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

func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// Shutdown stops the listeners, tells every session BYE at its next
// command boundary (idle sessions at once), and waits for them or ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.shutdown()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.conn.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

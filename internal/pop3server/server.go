// Package pop3server serves the INBOX of tern accounts over POP3 (RFC 1939)
// with the extensions of RFC 2449 (CAPA, RESP-CODES, AUTH-RESP-CODE,
// PIPELINING, TOP, UIDL, USER, IMPLEMENTATION), STLS (RFC 2595) and SASL
// (RFC 5034, through internal/sasl).
//
// It reads and changes mail only through the store's Go API: a session
// snapshots the INBOX at login, RETR and TOP stream the stored bytes with
// CRLF line ends and byte-stuffing, and QUIT expunges the messages marked
// with DELE through the store, so IMAP sessions see the expunges. A
// dropped connection deletes nothing. It never touches SQL or blob files
// directly.
package pop3server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/sessions"
	"github.com/tern-mail/tern/internal/store"
)

// Config configures a Server. Store and Accounts are required.
type Config struct {
	Store    *store.Store
	Accounts *account.Service
	// TLS enables STLS on Serve and is required by ServeTLS.
	TLS    *tls.Config
	Logger *slog.Logger
	// Hostname appears in the greeting.
	Hostname string
	// InsecureAuth allows USER/PASS and AUTH PLAIN/LOGIN without TLS
	// (tern dev on loopback). RFC 2595 §2.
	InsecureAuth bool
	// MarkSeenOnRetr sets \Seen on messages downloaded with RETR, so IMAP
	// clients of the same account see them as read.
	MarkSeenOnRetr bool
	// IdleTimeout closes a session idle that long (RFC 1939 §3: at least
	// 10 minutes; the default).
	IdleTimeout time.Duration
	// AuthFailDelay is how long a failed login waits before its reply
	// (default 2s): it slows password guessing.
	AuthFailDelay time.Duration
	// MaxErrors closes a session after that many bad commands (default 10).
	MaxErrors int
	// MaxConnsPerIP caps concurrent sessions from one IP (default 64).
	MaxConnsPerIP int
	// Locks is the table of maildrops in use. Servers built one after
	// the other for a reload share one, so that a session still running
	// on the old server keeps its maildrop locked (RFC 2449 IN-USE).
	// Nil: the server has its own.
	Locks *Locks
	// MaxLineLength caps a command line, CRLF included (default 1024;
	// RFC 2449 §4 asks for at least 255). SASL responses may be longer
	// (up to 16 KiB).
	MaxLineLength int
}

// Server is a POP3 server. It is safe for concurrent use; one Server may
// serve several listeners.
type Server struct {
	cfg  Config
	log  *slog.Logger
	sess *sessions.Set

	locks *Locks
	// readAhead is the stored bytes a session reads ahead in one query
	// during a sequential download (see readAhead).
	readAhead int
	// downloads counts the sessions in the TRANSACTION state, which
	// decides whether they read ahead on a second goroutine (see
	// readAhead.prefetch).
	downloads downloads

	sizes    *sizeCache
	listings *listingCache
	// seenBatch is how many \Seen marks wait before one store write:
	// marking every RETR separately would cost a commit per message.
	seenBatch int
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("pop3server: server closed")

// New returns a Server; it does not listen yet.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.AuthFailDelay == 0 {
		cfg.AuthFailDelay = 2 * time.Second
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = 10
	}
	if cfg.MaxConnsPerIP <= 0 {
		cfg.MaxConnsPerIP = 64
	}
	if cfg.MaxLineLength < 255 {
		cfg.MaxLineLength = 1024
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, locks: cfg.Locks,
		sizes: newSizeCache(1 << 18), listings: newListingCache(1 << 20), seenBatch: 500, readAhead: readAheadBytes,
	}
	if s.locks == nil {
		s.locks = NewLocks()
	}
	s.sess = sessions.New(sessions.Config{
		New: func(c net.Conn, id uint64, implicitTLS bool) sessions.Session {
			return &served{newSession(s, c, id), implicitTLS}
		},
		Refuse:   refuse,
		MaxPerIP: cfg.MaxConnsPerIP,
		Logger:   cfg.Logger.With("proto", "pop3"),
	})
	return s
}

// served adapts a session to the sessions package.
type served struct {
	*session
	implicitTLS bool
}

func (ss *served) Serve() {
	defer ss.close()
	ss.run(ss.implicitTLS)
}

func (ss *served) Interrupt() { ss.interrupt() }
func (ss *served) Close()     { ss.conn().Close() }

// refuse answers a connection over the per-address cap (in clear only: a
// TLS client would not understand it).
func refuse(c net.Conn, implicitTLS bool) {
	if !implicitTLS {
		fmt.Fprintf(c, "-ERR [SYS/TEMP] too many connections from your address\r\n")
	}
}

// Serve accepts plaintext connections (port 110), offering STLS when a
// TLS config is set. It returns ErrServerClosed after Shutdown.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS accepts implicit-TLS connections (port 995, RFC 8314).
func (s *Server) ServeTLS(l net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("pop3server: ServeTLS needs Config.TLS")
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

// Locks records the accounts whose maildrop a POP3 session holds (RFC
// 1939 §8: exclusive access in the TRANSACTION state). It is safe for
// concurrent use.
type Locks struct {
	mu    sync.Mutex
	inUse map[int64]bool
}

// NewLocks returns an empty lock table.
func NewLocks() *Locks { return &Locks{inUse: map[int64]bool{}} }

// lock marks an account busy; false if another session holds it (RFC
// 2449 §8.1.2, IN-USE).
func (s *Server) lock(accountID int64) bool {
	l := s.locks
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inUse[accountID] {
		return false
	}
	l.inUse[accountID] = true
	return true
}

func (s *Server) unlock(accountID int64) {
	l := s.locks
	l.mu.Lock()
	delete(l.inUse, accountID)
	l.mu.Unlock()
}

// Shutdown stops accepting, interrupts sessions waiting for a command
// (they end without deleting anything, as a dropped connection would), and
// waits for sessions to finish or ctx to expire, then closes the rest.
func (s *Server) Shutdown(ctx context.Context) error { return s.sess.Shutdown(ctx) }

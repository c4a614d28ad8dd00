// Package sessions runs what tern's in-house line-protocol servers (IMAP,
// POP3) share around their sessions: the accept loop with backoff on
// temporary errors, the cap on connections per client address, session
// ids, a recover per session, and a graceful shutdown. It knows nothing of
// any protocol: the server supplies how to start a session and how to
// refuse a connection.
package sessions

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"
)

// Session is one connection's protocol loop.
type Session interface {
	// Serve runs the session until it ends; it owns the connection.
	Serve()
	// Interrupt asks the session to end at its next command boundary
	// (now, if it is waiting for a command). It must not block.
	Interrupt()
	// Close closes the connection at once (shutdown deadline passed).
	Close()
}

// Config configures a Set.
type Config struct {
	// New makes the session of an accepted connection. id is unique in
	// the Set; implicitTLS tells which Serve call accepted it.
	New func(c net.Conn, id uint64, implicitTLS bool) Session
	// Refuse answers a connection over MaxPerIP before it is closed
	// (a protocol's "too many connections" line); nil closes silently.
	Refuse func(c net.Conn, implicitTLS bool)
	// MaxPerIP caps concurrent sessions from one client address.
	MaxPerIP int
	Logger   *slog.Logger
}

// Set is the sessions of one server over any number of listeners.
type Set struct {
	cfg Config

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[Session]struct{}
	perIP     map[string]int
	nextID    uint64
	closing   bool
	wg        sync.WaitGroup
}

// ErrClosed is returned by Serve after Shutdown.
var ErrClosed = errors.New("sessions: server closed")

// New returns a Set for cfg.
func New(cfg Config) *Set {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Set{cfg: cfg, listeners: map[net.Listener]struct{}{}, sessions: map[Session]struct{}{}, perIP: map[string]int{}}
}

// Serve accepts connections on l until Shutdown (ErrClosed) or l fails
// for good. Temporary failures (a full file table, an aborted
// handshake) are retried with a growing pause.
func (s *Set) Serve(l net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrClosed
	}
	s.listeners[l] = struct{}{}
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
			if s.isClosing() {
				return ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.cfg.Logger.Warn("accept failed, retrying", "err", err, "delay", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.start(c, implicitTLS)
	}
}

func (s *Set) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Set) start(c net.Conn, implicitTLS bool) {
	ip := RemoteIP(c.RemoteAddr())
	s.mu.Lock()
	if s.closing || s.perIP[ip] >= s.cfg.MaxPerIP {
		s.mu.Unlock()
		s.cfg.Logger.Warn("too many connections", "remote", ip)
		if s.cfg.Refuse != nil {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			s.cfg.Refuse(c, implicitTLS)
		}
		c.Close()
		return
	}
	s.perIP[ip]++
	s.nextID++
	sess := s.cfg.New(c, s.nextID, implicitTLS)
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.sessions, sess)
			if s.perIP[ip]--; s.perIP[ip] <= 0 {
				delete(s.perIP, ip)
			}
			s.mu.Unlock()
		}()
		defer func() {
			if r := recover(); r != nil {
				s.cfg.Logger.Error("panic in session", "remote", ip, "panic", r, "stack", string(debug.Stack()))
				sess.Close()
			}
		}()
		sess.Serve()
	}()
}

// Len is the number of sessions running.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Shutdown stops the listeners, interrupts every session, and waits for
// them to end or ctx to expire; then it closes the rest and waits for
// them, returning ctx's error.
func (s *Set) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for sess := range s.sessions {
		sess.Interrupt()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for sess := range s.sessions {
			sess.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// RemoteIP is the client address of a connection's remote end, without
// the port: the key of the per-address cap.
func RemoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

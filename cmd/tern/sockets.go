package main

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// A socket is one listening address. It outlives the protocol servers
// that use it: a reload builds new servers and hands them the sockets
// whose address stayed in the configuration, so no connection is refused
// while the configuration changes. Each server accepts from a handoff
// listener the socket feeds.
type socket struct {
	l   net.Listener
	log *slog.Logger

	mu     sync.Mutex
	target *handoff // where accepted connections go
	done   chan struct{}
}

func openSocket(addr string, log *slog.Logger) (*socket, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &socket{l: l, log: log, done: make(chan struct{})}
	go s.run()
	return s, nil
}

// attach makes a new handoff listener the target of the socket's
// connections; the previous one (if any) gets none from now on.
func (s *socket) attach() *handoff {
	h := &handoff{addr: s.l.Addr(), conns: make(chan net.Conn), closed: make(chan struct{})}
	s.mu.Lock()
	s.target = h
	s.mu.Unlock()
	return h
}

// close stops listening; the handoff listeners still waiting get
// net.ErrClosed once closed themselves.
func (s *socket) close() {
	s.l.Close()
	<-s.done
}

func (s *socket) run() {
	defer close(s.done)
	var backoff time.Duration
	for {
		c, err := s.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A full file table or an aborted connection: retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed, retrying", "addr", s.l.Addr().String(), "err", err, "delay", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.hand(c)
	}
}

// hand gives c to the current target, following the target if a reload
// replaces it meanwhile.
func (s *socket) hand(c net.Conn) {
	for {
		s.mu.Lock()
		h := s.target
		s.mu.Unlock()
		if h == nil {
			c.Close()
			return
		}
		select {
		case h.conns <- c:
			return
		case <-h.closed:
			s.mu.Lock()
			same := s.target == h
			s.mu.Unlock()
			if same {
				c.Close() // shutting down
				return
			}
		}
	}
}

// handoff is the net.Listener one protocol server accepts from.
type handoff struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.closed:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.closed) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }

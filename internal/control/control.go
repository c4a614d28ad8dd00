// Package control lets tern's admin commands tell a running server in the
// same data directory that something changed behind its back: a message
// queued or retried by the CLI, mail imported into an account. It is a
// Unix socket in the data directory speaking one line per request; a
// server that is not running is not an error, since the change is in the
// database either way and the server finds it on its own later.
package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SocketName is the socket's file name in the data directory.
const SocketName = "control.sock"

// Handler acts on requests.
type Handler struct {
	// WakeQueue makes the delivery loop look at the queue now.
	WakeQueue func()
	// AccountChanged wakes the sessions (IMAP IDLE) of an account.
	AccountChanged func(accountID int64)
}

// Server serves the control socket.
type Server struct {
	l   net.Listener
	h   Handler
	log *slog.Logger
}

// Listen creates the socket in dataDir, replacing a stale one.
func Listen(dataDir string, h Handler, log *slog.Logger) (*Server, error) {
	path := filepath.Join(dataDir, SocketName)
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another tern serves %s already", dataDir)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	os.Chmod(path, 0o600)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{l: l, h: h, log: log}
	go s.serve()
	return s, nil
}

// Close stops the server and removes the socket.
func (s *Server) Close() error { return s.l.Close() }

func (s *Server) serve() {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		go s.handle(c)
	}
}

func (s *Server) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(&limited{c, 256}).ReadString('\n')
	if err != nil {
		return
	}
	reply := s.do(strings.Fields(line))
	fmt.Fprintln(c, reply)
}

func (s *Server) do(f []string) string {
	switch {
	case len(f) == 1 && f[0] == "wake-queue":
		if s.h.WakeQueue != nil {
			s.h.WakeQueue()
		}
		return "ok"
	case len(f) == 2 && f[0] == "account-changed":
		id, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return "error bad account id"
		}
		if s.h.AccountChanged != nil {
			s.h.AccountChanged(id)
		}
		return "ok"
	}
	s.log.Debug("control: unknown request", "request", strings.Join(f, " "))
	return "error unknown request"
}

// limited caps what one request may send.
type limited struct {
	c net.Conn
	n int
}

func (l *limited) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("request too long")
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	n, err := l.c.Read(p)
	l.n -= n
	return n, err
}

// Notify sends one request to the server of dataDir. It reports whether a
// server took it; no server is not an error.
func Notify(ctx context.Context, dataDir string, request ...string) (bool, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "unix", filepath.Join(dataDir, SocketName))
	if err != nil {
		return false, nil
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintln(c, strings.Join(request, " ")); err != nil {
		return false, err
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return false, err
	}
	if reply = strings.TrimSpace(reply); reply != "ok" {
		return false, errors.New("control: " + reply)
	}
	return true, nil
}

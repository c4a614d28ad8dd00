package sessions

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineSession echoes lines until "quit" or an interrupt; "panic" panics,
// "stubborn" makes it ignore interrupts.
type lineSession struct {
	c         net.Conn
	mu        sync.Mutex
	stubborn  bool
	interrupt chan struct{}
	once      sync.Once
}

func (l *lineSession) Serve() {
	defer l.c.Close()
	r := bufio.NewReader(l.c)
	lines := make(chan string)
	go func() {
		defer close(lines)
		for {
			s, err := r.ReadString('\n')
			if err != nil {
				return
			}
			lines <- strings.TrimSpace(s)
		}
	}()
	io.WriteString(l.c, "hello\n")
	for {
		select {
		case <-l.interrupt:
			l.mu.Lock()
			stubborn := l.stubborn
			l.mu.Unlock()
			if !stubborn {
				io.WriteString(l.c, "bye\n")
				return
			}
		case s, ok := <-lines:
			if !ok || s == "quit" {
				return
			}
			switch s {
			case "panic":
				panic("asked to")
			case "stubborn":
				l.mu.Lock()
				l.stubborn = true
				l.mu.Unlock()
			}
			io.WriteString(l.c, s+"\n")
		}
	}
}

func (l *lineSession) Interrupt() { l.once.Do(func() { close(l.interrupt) }) }
func (l *lineSession) Close()     { l.c.Close() }

func newTestSet(t *testing.T, maxPerIP int) (*Set, string, chan error) {
	t.Helper()
	set := New(Config{
		New: func(c net.Conn, id uint64, implicitTLS bool) Session {
			return &lineSession{c: c, interrupt: make(chan struct{})}
		},
		Refuse:   func(c net.Conn, implicitTLS bool) { io.WriteString(c, "busy\n") },
		MaxPerIP: maxPerIP,
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- set.Serve(l, false) }()
	return set, l.Addr().String(), done
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	s, err := r.ReadString('\n')
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(s)
}

func waitLen(t *testing.T, set *Set, n int) {
	t.Helper()
	for i := 0; set.Len() != n; i++ {
		if i > 500 {
			t.Fatalf("%d sessions, want %d", set.Len(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPerIPCapAndPanic(t *testing.T) {
	set, addr, _ := newTestSet(t, 2)
	c1, r1 := dial(t, addr)
	_, r2 := dial(t, addr)
	if readLine(t, r1) != "hello" || readLine(t, r2) != "hello" {
		t.Fatal("no greeting")
	}
	_, r3 := dial(t, addr)
	if got := readLine(t, r3); got != "busy" {
		t.Fatalf("third connection from one address: %q, want busy", got)
	}
	// A panicking session is closed and frees its place.
	io.WriteString(c1, "panic\n")
	if got := readLine(t, r1); !strings.HasPrefix(got, "error") {
		t.Fatalf("after panic: %q", got)
	}
	waitLen(t, set, 1)
	_, r4 := dial(t, addr)
	if got := readLine(t, r4); got != "hello" {
		t.Fatalf("after a place freed: %q", got)
	}
}

func TestShutdown(t *testing.T) {
	set, addr, served := newTestSet(t, 10)
	_, r1 := dial(t, addr)
	c2, r2 := dial(t, addr)
	readLine(t, r1)
	readLine(t, r2)
	io.WriteString(c2, "stubborn\n")
	readLine(t, r2)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := set.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown with a stubborn session: %v", err)
	}
	if got := readLine(t, r1); got != "bye" {
		t.Errorf("interrupted session said %q", got)
	}
	if got := readLine(t, r2); !strings.HasPrefix(got, "error") {
		t.Errorf("stubborn session not closed: %q", got)
	}
	if err := <-served; !errors.Is(err, ErrClosed) {
		t.Errorf("Serve returned %v", err)
	}
	if set.Len() != 0 {
		t.Errorf("%d sessions left", set.Len())
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	if err := set.Serve(l, false); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

func TestRemoteIP(t *testing.T) {
	for _, tc := range []struct {
		a    net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5}, "127.0.0.2"},
		{&net.UnixAddr{Name: "/x", Net: "unix"}, "/x"},
	} {
		if got := RemoteIP(tc.a); got != tc.want {
			t.Errorf("RemoteIP(%v) = %q, want %q", tc.a, got, tc.want)
		}
	}
}

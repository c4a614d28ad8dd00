package pop3server

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestReadAhead downloads a maildrop that mixes messages kept in the
// database with one kept in a file, in order, backwards, with gaps, after
// DELE and after another client expunged messages: every RETR is the
// message's bytes in wire form, whichever path served it, and a message
// expunged before it was read is reported as gone.
func TestReadAhead(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	e.srv.readAhead = 2 << 10 // a few small messages per fill
	var bodies []string
	for i := 0; i < 40; i++ {
		body := fmt.Sprintf("Subject: %d\n\n.dot line %d\nbody %d\n", i, i, i)
		switch i {
		case 7:
			// Larger than a message kept inside the database.
			body = "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 5000)
		case 12:
			body = "Subject: no final line end\n\nlast" // gets CRLF
		}
		e.deliver(body)
		bodies = append(bodies, body)
	}
	c := e.dial()
	c.login()
	retr := func(n int) {
		t.Helper()
		c.ok(fmt.Sprintf("RETR %d", n))
		if got, want := c.multi(), crlf(bodies[n-1]); got != want {
			t.Fatalf("RETR %d:\n got %.200q\nwant %.200q", n, got, want)
		}
	}
	for n := 1; n <= 15; n++ {
		retr(n)
	}
	for _, n := range []int{3, 2, 1, 30, 31, 20, 15, 16} {
		retr(n)
	}
	c.ok("DELE 17")
	if r := c.cmd("RETR 17"); !strings.HasPrefix(r, "-ERR") {
		t.Fatalf("RETR of a deleted message: %s", r)
	}
	// Another client removes messages 33..35 before this session reads
	// them. Windows read before the expunge may hold them (a message read
	// while it existed may be sent), so the session first jumps back to 1,
	// which drops what it read ahead; from there every read is fresh and
	// finds them gone.
	uids := e.uids()
	if _, err := e.st.Expunge(context.Background(), e.inbox.ID, uids[32:35]); err != nil {
		t.Fatal(err)
	}
	retr(1)
	for n := 33; n <= 35; n++ {
		if r := c.cmd(fmt.Sprintf("RETR %d", n)); !strings.HasPrefix(r, "-ERR") {
			t.Fatalf("RETR %d after expunge: %s", n, r)
		}
	}
	retr(32)
	for n := 36; n <= 40; n++ {
		retr(n)
	}
	c.ok("QUIT")
}

// TestReadAheadPrefetch downloads a maildrop larger than several windows
// in order, with a jump that abandons a prefetch under way and a session
// that ends while one runs: every message arrives whole and in order, and
// the race detector sees the prefetching goroutine hand its window over.
func TestReadAheadPrefetch(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	e.srv.readAhead = 4 << 10
	var bodies []string
	for i := 0; i < 300; i++ {
		body := fmt.Sprintf("Subject: %d\r\n\r\n%s.end %d\r\n", i, strings.Repeat("line\r\n", i%40), i)
		e.deliver(body)
		bodies = append(bodies, body)
	}
	retr := func(c *client, n int) {
		t.Helper()
		c.ok(fmt.Sprintf("RETR %d", n))
		if got, want := c.multi(), crlf(bodies[n-1]); got != want {
			t.Fatalf("RETR %d:\n got %.200q\nwant %.200q", n, got, want)
		}
	}
	c := e.dial()
	c.login()
	for n := 1; n <= 150; n++ {
		retr(c, n)
	}
	for n := 40; n <= 300; n++ { // a jump back, then to the end
		retr(c, n)
	}
	c.ok("QUIT")
	if e.srv.downloads.prefetched.Load() == 0 {
		t.Fatal("a lone session downloading in order never read ahead on a second goroutine")
	}
	// A session dropped in the middle of a download, most likely with a
	// prefetch under way, leaves the maildrop to the next login.
	c = e.dial()
	c.login()
	for n := 1; n <= 70; n++ {
		retr(c, n)
	}
	c.c.Close()
	c = e.loginAfterDrop()
	retr(c, 71)
	c.ok("QUIT")
}

// TestDownloadsCounted: a session counts among those that share the cores
// from login until it ends, by QUIT or a dropped connection, so that
// prefetching stops only while others download.
func TestDownloadsCounted(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	e.deliver(msg1)
	count := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for e.srv.downloads.n.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d sessions counted, want %d", e.srv.downloads.n.Load(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	c := e.dial()
	c.ok("USER " + testUser)
	count(0)
	c.ok("PASS " + testPass)
	count(1)
	c.ok("QUIT")
	count(0)
	c = e.dial()
	c.login()
	count(1)
	c.c.Close()
	count(0)
}

// TestPrefetchNeedsSpareCores: while more sessions are logged in than
// half the cores, a download in order reads ahead only on its own
// goroutine.
func TestPrefetchNeedsSpareCores(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	for i := 0; i < 100; i++ {
		e.deliver(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i))
	}
	// Stand-ins for the other sessions, counted as logins are.
	others := max(1, runtime.GOMAXPROCS(0)/2)
	e.srv.downloads.n.Add(int32(others))
	defer e.srv.downloads.n.Add(-int32(others))
	c := e.dial()
	c.login()
	for n := 1; n <= 100; n++ {
		c.ok(fmt.Sprintf("RETR %d", n))
		if got, want := c.multi(), crlf(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", n-1, n-1)); got != want {
			t.Fatalf("RETR %d: got %q, want %q", n, got, want)
		}
	}
	c.ok("QUIT")
	if n := e.srv.downloads.prefetched.Load(); n != 0 {
		t.Fatalf("%d windows read ahead on a second goroutine with no core to spare", n)
	}
}

// TestAppendWire pins the wire form of stored line ends and dots.
func TestAppendWire(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "",
		"a":                 "a\r\n",
		"a\nb\n":            "a\r\nb\r\n",
		"a\r\nb\r\n":        "a\r\nb\r\n",
		".\n..\r\n.x":       "..\r\n...\r\n..x\r\n",
		"a\rb\n\r\n":        "a\rb\r\n\r\n",
		"cr at end\r":       "cr at end\r\r\n",
		"\n\n":              "\r\n\r\n",
		"x\r\r\ny":          "x\r\r\ny\r\n",
		"Subject: s\n\n.\n": "Subject: s\r\n\r\n..\r\n",
	} {
		if got := string(appendWire(nil, []byte(in))); got != want {
			t.Errorf("appendWire(%q) = %q, want %q", in, got, want)
		}
	}
}

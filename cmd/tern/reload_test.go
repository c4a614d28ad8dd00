package main

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/config"
)

// reloadWith rewrites the test server's tern.toml through edit and
// reloads it as SIGHUP does.
func reloadWith(t *testing.T, srv *server, data string, edit func(string) string) error {
	t.Helper()
	path := filepath.Join(data, "tern.toml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(edit(string(b))), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return srv.reload(c)
}

func imapLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	s, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("imap read: %v", err)
	}
	return s
}

// A reload moves, adds and removes listeners without dropping the
// sessions that are open, keeps unchanged addresses listening throughout,
// and leaves the running configuration alone when the new one cannot be
// applied.
func TestReloadListeners(t *testing.T) {
	srv, data := testServer(t)
	imapAddr, smtpAddr, popAddr := srv.addr("IMAP"), srv.addr("SMTP"), srv.addr("POP3")
	c, err := net.Dial("tcp", imapAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	imapLine(t, r)
	c.Write([]byte("a LOGIN " + devUser + " " + devPassword + "\r\n"))
	if s := imapLine(t, r); !strings.HasPrefix(s, "a OK") {
		t.Fatalf("login: %q", s)
	}

	// SMTP moves to another loopback address; POP3's plain port goes.
	err = reloadWith(t, srv, data, func(s string) string {
		s = strings.Replace(s, "[smtp]\nlisten = [\"127.0.0.1:0\"]", "[smtp]\nlisten = [\"127.0.0.2:0\"]", 1)
		return strings.Replace(s, "[pop3]\nlisten = [\"127.0.0.1:0\"]", "[pop3]\nlisten = []", 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.addr("IMAP"); got != imapAddr {
		t.Errorf("IMAP moved from %s to %s", imapAddr, got)
	}
	newSMTP := srv.addr("SMTP")
	if !strings.HasPrefix(newSMTP, "127.0.0.2:") || srv.addr("POP3") != "" {
		t.Fatalf("after reload: SMTP %q, POP3 %q", newSMTP, srv.addr("POP3"))
	}
	for _, gone := range []string{smtpAddr, popAddr} {
		if conn, err := net.DialTimeout("tcp", gone, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections", gone)
		}
	}
	msg := "From: a@remote.test\r\nTo: " + devUser + "\r\nSubject: after reload\r\n\r\nhi\r\n"
	if err := sendPlain(newSMTP, "a@remote.test", []string{devUser}, msg); err != nil {
		t.Fatalf("SMTP on the new address: %v", err)
	}
	// The session opened before the reload goes on.
	c.Write([]byte("b STATUS INBOX (MESSAGES)\r\n"))
	if s := imapLine(t, r); !strings.Contains(s, "MESSAGES") {
		t.Fatalf("old session after reload: %q", s)
	}
	if s := imapLine(t, r); !strings.HasPrefix(s, "b OK") {
		t.Fatalf("old session after reload: %q", s)
	}

	// An address that cannot be opened fails the reload as a whole.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	err = reloadWith(t, srv, data, func(s string) string {
		return strings.Replace(s, "[pop3]\nlisten = []", "[pop3]\nlisten = [\""+busy.Addr().String()+"\"]", 1)
	})
	if err == nil {
		t.Fatal("reload onto a busy address succeeded")
	}
	if srv.addr("SMTP") != newSMTP || srv.addr("POP3") != "" {
		t.Errorf("a failed reload changed the listeners: %v", srv.ports)
	}
	if err := sendPlain(newSMTP, "a@remote.test", []string{devUser}, msg); err != nil {
		t.Fatalf("SMTP after a failed reload: %v", err)
	}
}

// smtpSink accepts SMTP on loopback and reports each message's data.
func smtpSink(t *testing.T) (string, <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan string, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				c.Write([]byte("220 sink\r\n"))
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
					case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
						c.Write([]byte("250 sink\r\n"))
					case cmd == "DATA":
						c.Write([]byte("354 go on\r\n"))
						var data strings.Builder
						for {
							l, err := r.ReadString('\n')
							if err != nil || l == ".\r\n" {
								break
							}
							data.WriteString(l)
						}
						got <- data.String()
						c.Write([]byte("250 kept\r\n"))
					case cmd == "QUIT":
						c.Write([]byte("221 bye\r\n"))
						return
					default:
						c.Write([]byte("250 ok\r\n"))
					}
				}
			}()
		}
	}()
	return l.Addr().String(), got
}

// A reload that changes [queue] replaces the running queue: mail queued
// afterwards (and woken through the control socket) leaves through the
// newly configured smarthost.
func TestReloadQueue(t *testing.T) {
	srv, data := testServer(t)
	sink, got := smtpSink(t)
	host, port, _ := net.SplitHostPort(sink)
	before := srv.queue.cur.Load()
	err := reloadWith(t, srv, data, func(s string) string {
		return s + "\n[queue.smarthost]\nhost = \"" + host + "\"\nport = " + port + "\ntls = \"none\"\n"
	})
	if err != nil {
		t.Fatal(err)
	}
	if srv.queue.cur.Load() == before {
		t.Fatal("the queue was not replaced")
	}
	msg := "To: someone@far.test\r\nSubject: via the smarthost\r\n\r\nhello\r\n"
	mustRun(t, msg, "sendmail", "-data", data, "-t", "-f", devUser)
	select {
	case d := <-got:
		if !strings.Contains(d, "Subject: via the smarthost") {
			t.Fatalf("smarthost got %q", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("nothing reached the smarthost")
	}
}

// A POP3 session open across a reload keeps its maildrop locked: a login
// to the new server gets IN-USE until the old session quits.
func TestReloadKeepsPOP3Lock(t *testing.T) {
	srv, data := testServer(t)
	popAddr := srv.addr("POP3")
	login := func() (net.Conn, *bufio.Reader, string) {
		c, err := net.Dial("tcp", popAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(c)
		imapLine(t, r)
		c.Write([]byte("USER " + devUser + "\r\nPASS " + devPassword + "\r\n"))
		imapLine(t, r)
		return c, r, imapLine(t, r)
	}
	c1, r1, got := login()
	if !strings.HasPrefix(got, "+OK") {
		t.Fatalf("first login: %q", got)
	}
	err := reloadWith(t, srv, data, func(s string) string {
		return strings.Replace(s, "[smtp]\nlisten = [\"127.0.0.1:0\"]", "[smtp]\nlisten = [\"127.0.0.2:0\"]", 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	if srv.addr("POP3") != popAddr {
		t.Fatalf("POP3 moved to %s", srv.addr("POP3"))
	}
	if _, _, got := login(); !strings.HasPrefix(got, "-ERR [IN-USE]") {
		t.Fatalf("second login after reload: %q", got)
	}
	c1.Write([]byte("QUIT\r\n"))
	if s := imapLine(t, r1); !strings.HasPrefix(s, "+OK") {
		t.Fatalf("quit: %q", s)
	}
	if _, _, got := login(); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("login after the old session quit: %q", got)
	}
}

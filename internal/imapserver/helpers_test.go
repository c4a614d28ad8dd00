package imapserver

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/store"
)

// testServer is a tern IMAP server on a loopback listener the test holds.
type testServer struct {
	t     *testing.T
	addr  string
	st    *store.Store
	accts *account.Service
	srv   *Server
	acct  store.Account
}

const testPass = "correct horse battery"

func newTestServer(t *testing.T, mod ...func(*Config)) *testServer {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.AddDomain(ctx, "example.org"); err != nil {
		t.Fatal(err)
	}
	accts := account.New(st)
	acct, err := accts.Add(ctx, "alice@example.org", testPass)
	if err != nil {
		t.Fatal(err)
	}
	level := slog.LevelWarn
	if os.Getenv("TERN_IMAP_DEBUG") != "" {
		level = slog.LevelDebug
	}
	cfg := Config{Store: st, Accounts: accts, Hostname: "test.example.org", InsecureAuth: true,
		AuthFailDelay: -1, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))}
	for _, m := range mod {
		m(&cfg)
	}
	srv := New(cfg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &testServer{t: t, addr: l.Addr().String(), st: st, accts: accts, srv: srv, acct: acct}
}

// deliver appends a message to a mailbox through the store, as delivery would.
func (ts *testServer) deliver(mailbox, msg string, flags ...string) uint32 {
	ts.t.Helper()
	ctx := context.Background()
	mb, err := ts.st.MailboxByName(ctx, ts.acct.ID, mailbox)
	if err != nil {
		ts.t.Fatal(err)
	}
	d, err := ts.st.Append(ctx, store.AppendRequest{AccountID: ts.acct.ID, MailboxID: mb.ID,
		Body: strings.NewReader(msg), Flags: flags, InternalDate: time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		ts.t.Fatal(err)
	}
	return d.UID
}

func testMsg(subject, body string) string {
	return "From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: " + subject +
		"\r\nDate: Fri, 01 Mar 2024 10:00:00 +0000\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", "") +
		"@example.net>\r\n\r\n" + body + "\r\n"
}

// client returns a go-imap client, logged in.
func (ts *testServer) client() *imapclient.Client {
	ts.t.Helper()
	return ts.clientWith(nil)
}

func (ts *testServer) clientWith(opts *imapclient.Options) *imapclient.Client {
	ts.t.Helper()
	c, err := imapclient.DialInsecure(ts.addr, opts)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { c.Close() })
	if err := c.Login("alice@example.org", testPass).Wait(); err != nil {
		ts.t.Fatal(err)
	}
	return c
}

// raw is a line-level connection for transcripts.
type raw struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func (ts *testServer) raw() *raw {
	ts.t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { c.Close() })
	r := &raw{t: ts.t, conn: c, br: bufio.NewReader(c)}
	if g := r.line(); !strings.HasPrefix(g, "* OK") {
		ts.t.Fatalf("greeting %q", g)
	}
	return r
}

func (r *raw) send(s string) {
	r.t.Helper()
	r.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.conn.Write([]byte(s + "\r\n")); err != nil {
		r.t.Fatal(err)
	}
}

func (r *raw) line() string {
	r.t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends "tag command" and returns every line up to and including the
// tagged one (literals appear inline).
func (r *raw) cmd(tag, command string) []string {
	r.t.Helper()
	r.send(tag + " " + command)
	return r.until(tag)
}

func (r *raw) until(tag string) []string {
	r.t.Helper()
	var out []string
	for {
		l := r.line()
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			return out
		}
	}
}

// expectOK fails unless the tagged reply is OK.
func (r *raw) expectOK(tag, command string) []string {
	r.t.Helper()
	lines := r.cmd(tag, command)
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, tag+" OK") {
		r.t.Fatalf("%s %s: %s", tag, command, strings.Join(lines, "\n"))
	}
	return lines
}

func (r *raw) login() {
	r.t.Helper()
	r.expectOK("L", fmt.Sprintf("LOGIN alice@example.org %q", testPass))
}

func has(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

package pop3server

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/store"
)

const (
	testUser = "alice@example.org"
	testPass = "correct horse"
)

// env is a store, an account and a running server in a test.
type env struct {
	t      *testing.T
	st     *store.Store
	accts  *account.Service
	acct   store.Account
	inbox  store.Mailbox
	srv    *Server
	addr   string // plaintext listener
	tlsAdr string // implicit TLS listener
	roots  *x509.CertPool
}

type envOpts struct {
	insecure bool
	seen     bool
	maxErr   int
	perIP    int
	idle     time.Duration
}

func newEnv(t *testing.T, o envOpts) *env {
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
	acct, err := accts.Add(ctx, testUser, testPass)
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := st.MailboxByName(ctx, acct.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	cert, roots := testCert(t)
	logLevel := slog.LevelInfo
	if os.Getenv("TERN_DEBUG") != "" {
		logLevel = slog.LevelDebug
	}
	srv := New(Config{
		Store: st, Accounts: accts, Hostname: "mail.example.org",
		TLS:          &tls.Config{Certificates: []tls.Certificate{cert}},
		Logger:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: logLevel})),
		InsecureAuth: o.insecure, MarkSeenOnRetr: o.seen, MaxErrors: o.maxErr,
		AuthFailDelay: 10 * time.Millisecond, MaxConnsPerIP: o.perIP, IdleTimeout: o.idle,
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lt, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); srv.Serve(l) }()
	go func() { defer wg.Done(); srv.ServeTLS(lt) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		wg.Wait()
	})
	return &env{t: t, st: st, accts: accts, acct: acct, inbox: inbox, srv: srv, addr: l.Addr().String(), tlsAdr: lt.Addr().String(), roots: roots}
}

// testWriter sends server logs to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.example.org"},
		DNSNames: []string{"mail.example.org"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// deliver appends a message to the INBOX and returns its UID.
func (e *env) deliver(body string, flags ...string) uint32 {
	e.t.Helper()
	d, err := e.st.Append(context.Background(), store.AppendRequest{
		AccountID: e.acct.ID, MailboxID: e.inbox.ID, Body: strings.NewReader(body), Flags: flags, InternalDate: time.Now(),
	})
	if err == nil {
		err = d.Err
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return d.UID
}

func (e *env) uids() []uint32 {
	e.t.Helper()
	ms, err := e.st.Messages(context.Background(), e.inbox.ID, 1, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	var u []uint32
	for _, m := range ms {
		u = append(u, m.UID)
	}
	return u
}

// client is a minimal POP3 client for tests.
type client struct {
	t  testing.TB
	c  net.Conn
	r  *bufio.Reader
	gr string // greeting
}

func (e *env) dial() *client {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	return newClient(e.t, c)
}

func (e *env) dialTLS() *client {
	e.t.Helper()
	c, err := tls.Dial("tcp", e.tlsAdr, &tls.Config{RootCAs: e.roots, ServerName: "mail.example.org"})
	if err != nil {
		e.t.Fatal(err)
	}
	return newClient(e.t, c)
}

func newClient(t testing.TB, c net.Conn) *client {
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	cl.gr = cl.line()
	if !strings.HasPrefix(cl.gr, "+OK") {
		t.Fatalf("greeting %q", cl.gr)
	}
	return cl
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line without CRLF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command and returns the status line.
func (c *client) cmd(line string) string {
	c.t.Helper()
	if _, err := c.c.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
	return c.line()
}

// ok sends a command and fails the test unless the reply is +OK.
func (c *client) ok(line string) string {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("%s: %s", line, r)
	}
	return r
}

// multi reads a multi-line body, undoing byte-stuffing, and returns it with
// CRLF line ends kept.
func (c *client) multi() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading body: %v", err)
		}
		if !strings.HasSuffix(l, "\r\n") {
			c.t.Fatalf("body line without CRLF: %q", l)
		}
		if l == ".\r\n" {
			return b.String()
		}
		if strings.HasPrefix(l, ".") {
			l = l[1:]
		}
		b.WriteString(l)
	}
}

// login authenticates with USER/PASS.
// loginAfterDrop logs in once the server has noticed that the last
// session's connection was dropped and unlocked the maildrop (until then
// a login gets IN-USE).
func (e *env) loginAfterDrop() *client {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := e.dial()
		c.ok("USER " + testUser)
		r := c.cmd("PASS " + testPass)
		if strings.HasPrefix(r, "+OK") {
			return c
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("still locked: %s", r)
		}
		c.c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *client) login() {
	c.t.Helper()
	c.ok("USER " + testUser)
	c.ok("PASS " + testPass)
}

// closed reports whether the server closed the connection.
func (c *client) closed() bool {
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.r.ReadByte()
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// crlf turns every line end into CRLF, as POP3 sends messages.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\n", "\r\n")
	if s != "" && !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return s
}

// tlsClient upgrades a client after +OK to STLS.
func tlsClient(c *client, e *env) *client {
	c.t.Helper()
	tc := tls.Client(c.c, &tls.Config{RootCAs: e.roots, ServerName: "mail.example.org"})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	return &client{t: c.t, c: tc, r: bufio.NewReader(tc)}
}

package smtpserver

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/smtp"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/account"
	"github.com/tern-mail/tern/internal/store"
)

// env is a store with domain example.org, accounts alice and bob, the
// alias list@ (both) and fwd@ (pointing outside), and a running server.
type env struct {
	t     testing.TB
	st    *store.Store
	accts *account.Service
	srv   *Server
	addr  string // plain listener
	tls   *tls.Config
	queue *fakeQueue
}

const (
	alicePass = "alice-secret-1"
	bobPass   = "bob-secret-2"
)

func newEnv(t testing.TB, mode Mode, tune func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	accts := account.New(st)
	if err := st.AddDomain(ctx, "example.org"); err != nil {
		t.Fatal(err)
	}
	for addr, pw := range map[string]string{"alice@example.org": alicePass, "bob@example.org": bobPass} {
		if _, err := accts.Add(ctx, addr, pw); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AddAlias(ctx, "list@example.org", []string{"alice@example.org", "bob@example.org"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddAlias(ctx, "fwd@example.org", []string{"carol@elsewhere.example"}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, accts: accts, tls: testTLSConfig(t), queue: &fakeQueue{}}
	logLevel := slog.LevelWarn
	if testing.Verbose() {
		logLevel = slog.LevelInfo
	}
	cfg := Config{
		Mode: mode, Store: st, Accounts: accts, Queue: e.queue, Hostname: "mx.example.org", TLS: e.tls,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel})),
		AuthFailDelay: time.Millisecond,
	}
	if tune != nil {
		tune(&cfg)
	}
	e.srv = New(cfg)
	e.addr = e.listen(false)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
	})
	return e
}

// listen starts serving on a new loopback listener held by the test.
func (e *env) listen(implicitTLS bool) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	if implicitTLS {
		go e.srv.ServeTLS(l)
	} else {
		go e.srv.Serve(l)
	}
	return l.Addr().String()
}

// inbox returns the messages' bytes in an account's INBOX.
func (e *env) inbox(address string) []string {
	e.t.Helper()
	ctx := context.Background()
	a, err := e.st.AccountByAddress(ctx, address)
	if err != nil {
		e.t.Fatal(err)
	}
	mb, err := e.st.MailboxByName(ctx, a.ID, "INBOX")
	if err != nil {
		e.t.Fatal(err)
	}
	infos, err := e.st.Messages(ctx, mb.ID, 1, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, m := range infos {
		f, err := e.st.OpenBlob(m.BlobID)
		if err != nil {
			e.t.Fatal(err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

type fakeQueue struct {
	mu   sync.Mutex
	msgs []*QueueMessage
	fail error
}

func (q *fakeQueue) Enqueue(_ context.Context, m *QueueMessage) (int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail != nil {
		return 0, q.fail
	}
	q.msgs = append(q.msgs, m)
	return int64(len(q.msgs)), nil
}

func (q *fakeQueue) all() []*QueueMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]*QueueMessage(nil), q.msgs...)
}

// raw is a hand-driven SMTP client for transcripts.
type raw struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	r := &raw{t: t, c: c, br: bufio.NewReader(c)}
	return r
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (r *raw) reply() string {
	r.t.Helper()
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("reading reply: %v (got %q)", err, line)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 || line[3] != '-' {
			return line
		}
	}
}

// expect reads one reply and checks its prefix ("250", "550 5.1.1").
func (r *raw) expect(prefix string) string {
	r.t.Helper()
	line := r.reply()
	if !strings.HasPrefix(line, prefix) {
		r.t.Fatalf("got reply %q, want %q", line, prefix)
	}
	return line
}

// startTLS upgrades the raw connection after a 220 to STARTTLS.
func (r *raw) startTLS(cfg *tls.Config) {
	r.t.Helper()
	r.send("STARTTLS\r\n")
	r.expect("220")
	tc := tls.Client(r.c, cfg)
	if err := tc.Handshake(); err != nil {
		r.t.Fatal(err)
	}
	r.c = tc
	r.br = bufio.NewReader(tc)
}

// testTLSConfig is a self-signed certificate for mx.example.org.
func testTLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.example.org"},
		DNSNames: []string{"mx.example.org"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}}
}

// sendMail sends one message with net/smtp, over STARTTLS when offered.
func sendMail(t *testing.T, addr, from string, to []string, msg string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(clientTLS()); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, msg); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

func clientTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, ServerName: "mx.example.org"}
}

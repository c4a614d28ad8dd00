package queue

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/foxcpp/go-mockdns"

	"github.com/tern-mail/tern/internal/dkim"
	"github.com/tern-mail/tern/internal/dns"
	"github.com/tern-mail/tern/internal/store"
)

// testCert returns a self-signed certificate for names, usable as its own
// root.
func testCert(t testing.TB, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// received is one message accepted by a test receiver.
type received struct {
	From  string
	Rcpts []string
	Data  []byte
	TLS   bool
	Opts  *smtp.MailOptions
	Rcpt  []*smtp.RcptOptions
}

// receiver is a go-smtp server standing in for a remote MTA.
type receiver struct {
	srv    *smtp.Server
	l      net.Listener
	mu     sync.Mutex
	msgs   []received
	reject func(rcpt string) error // per-recipient verdict
	got    chan struct{}
}

func (r *receiver) messages() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.msgs...)
}

type rsession struct {
	r   *receiver
	c   *smtp.Conn
	cur received
}

func (s *rsession) Reset()        { s.cur = received{} }
func (s *rsession) Logout() error { return nil }
func (s *rsession) Mail(from string, o *smtp.MailOptions) error {
	s.cur = received{From: from, Opts: o}
	return nil
}
func (s *rsession) Rcpt(to string, o *smtp.RcptOptions) error {
	if s.r.reject != nil {
		if err := s.r.reject(to); err != nil {
			return err
		}
	}
	s.cur.Rcpts = append(s.cur.Rcpts, to)
	s.cur.Rcpt = append(s.cur.Rcpt, o)
	return nil
}
func (s *rsession) Data(rd io.Reader) error {
	b, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	s.cur.Data = b
	_, s.cur.TLS = s.c.TLSConnectionState()
	s.r.mu.Lock()
	s.r.msgs = append(s.r.msgs, s.cur)
	s.r.mu.Unlock()
	select {
	case s.r.got <- struct{}{}:
	default:
	}
	return nil
}

// startReceiver listens on addr ("127.0.0.3:0" or a fixed port) with
// STARTTLS when cert is non-nil.
func startReceiver(t testing.TB, addr string, cert *tls.Certificate) *receiver {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{l: l, got: make(chan struct{}, 1)}
	r.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &rsession{r: r, c: c}, nil
	}))
	r.srv.Domain = "mx.b.test"
	r.srv.EnableDSN = true
	r.srv.EnableSMTPUTF8 = true
	r.srv.ErrorLog = log.New(io.Discard, "", 0)
	if cert != nil {
		r.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
		r.srv.EnableREQUIRETLS = true
	}
	go r.srv.Serve(l)
	t.Cleanup(func() { r.srv.Close() })
	return r
}

func (r *receiver) port() int { return r.l.Addr().(*net.TCPAddr).Port }

// env is one sending tern: store, DKIM keys, DNS, queue.
type env struct {
	st    *store.Store
	keys  *dkim.Keys
	dns   *mockdns.Server
	res   *dns.Resolver
	alice store.Account
	q     *Queue
	stop  func()
}

// newEnv builds the sending side on 127.0.0.2 with domain a.test and
// alice@a.test; zones add DNS records (b.test's MX etc.).
func newEnv(t testing.TB, zones map[string]mockdns.Zone, cfg Config) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.AddDomain(ctx, "a.test"); err != nil {
		t.Fatal(err)
	}
	alice, err := st.AddAccount(ctx, "alice@a.test", "x", "")
	if err != nil {
		t.Fatal(err)
	}
	keys := dkim.New(dir)
	keys.RSABits = 1024
	if err := keys.Ensure("a.test"); err != nil {
		t.Fatal(err)
	}
	recs, _ := keys.Records("a.test")
	if zones == nil {
		zones = map[string]mockdns.Zone{}
	}
	for _, r := range recs {
		zones[r.Name+"."] = mockdns.Zone{TXT: []string{r.Value}}
	}
	srv, err := mockdns.NewServerWithLogger(zones, log.New(io.Discard, "", 0), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	res, _ := dns.NewResolver(srv.LocalAddr().String())
	cfg.Store, cfg.Resolver, cfg.DKIM, cfg.Hostname = st, res, keys, "mx.a.test"
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	}
	if cfg.RetryBase == 0 {
		cfg.RetryBase = 50 * time.Millisecond
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 200 * time.Millisecond
	}
	if cfg.DownTTL == 0 {
		cfg.DownTTL = 20 * time.Millisecond
	}
	if os.Getenv("TERN_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e := &env{st: st, keys: keys, dns: srv, res: res, alice: alice, q: New(cfg)}
	return e
}

func (e *env) run(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.q.Run(ctx) }()
	e.stop = func() { cancel(); <-done }
	t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
		}
	})
}

func (e *env) blob(t testing.TB, msg string) store.Blob {
	t.Helper()
	w, err := e.st.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(msg))
	b, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// submit queues msg from alice to rcpts.
func (e *env) submit(t testing.TB, msg string, rcpts ...string) int64 {
	t.Helper()
	m := &Message{AccountID: e.alice.ID, From: "alice@a.test", Blob: e.blob(t, msg)}
	for _, r := range rcpts {
		m.Recipients = append(m.Recipients, Recipient{Address: r})
	}
	id, err := e.q.Enqueue(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	// The store keeps the blob while the entry references it.
	e.st.DiscardBlob(context.Background(), m.Blob.ID)
	return id
}

// inbox returns the messages in alice's INBOX.
func (e *env) inbox(t testing.TB) [][]byte {
	t.Helper()
	ctx := context.Background()
	mb, err := e.st.MailboxByName(ctx, e.alice.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	infos, err := e.st.Messages(ctx, mb.ID, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, in := range infos {
		f, err := e.st.OpenBlob(in.BlobID)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		out = append(out, b)
	}
	return out
}

// waitFor polls cond for up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func (e *env) queueLen(t testing.TB) int {
	n, err := e.st.QueueCount(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// lookupTXT serves DKIM keys to the verifier from the test DNS.
func (e *env) lookupTXT(name string) ([]string, error) {
	txt, err := e.res.LookupTXT(context.Background(), name)
	if err != nil {
		return nil, err
	}
	if len(txt) == 0 {
		return nil, errors.New("none")
	}
	return txt, nil
}

const testMessage = "From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: test\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <t1@a.test>\r\n\r\nHello Bob.\r\n.leading dot\r\n"

func mxZone(port int) map[string]mockdns.Zone {
	_ = port
	return map[string]mockdns.Zone{
		"b.test.":    {MX: []net.MX{{Host: "mx.b.test.", Pref: 10}}},
		"mx.b.test.": {A: []string{"127.0.0.3"}},
	}
}

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }

var _ = strings.Contains

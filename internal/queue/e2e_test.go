package queue_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/foxcpp/go-mockdns"

	"github.com/tern-mail/tern/internal/account"
	terndkim "github.com/tern-mail/tern/internal/dkim"
	"github.com/tern-mail/tern/internal/dns"
	"github.com/tern-mail/tern/internal/dsn"
	"github.com/tern-mail/tern/internal/queue"
	"github.com/tern-mail/tern/internal/smtpserver"
	"github.com/tern-mail/tern/internal/store"
)

// enqueuer adapts the queue to the submission server's Enqueuer.
type enqueuer struct{ q *queue.Queue }

func (a enqueuer) Enqueue(ctx context.Context, m *smtpserver.QueueMessage) (int64, error) {
	qm := &queue.Message{AccountID: m.AccountID, From: m.From, EnvID: m.EnvID, Ret: m.Ret, RequireTLS: m.RequireTLS, Blob: m.Blob}
	for _, r := range m.Recipients {
		qm.Recipients = append(qm.Recipients, queue.Recipient{Address: r.Address, Notify: r.Notify, ORcpt: r.ORcpt})
	}
	return a.q.Enqueue(ctx, qm)
}

func cert(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}, pool
}

// instance is one tern: store, accounts, an SMTP server on ip.
type instance struct {
	st    *store.Store
	accts *account.Service
	srv   *smtpserver.Server
	addr  string
	dir   string
}

func newInstance(t *testing.T, ip, domain, user, pass string, mode smtpserver.Mode, tlsCfg *tls.Config, q smtpserver.Enqueuer) *instance {
	return newInstanceL(t, ip, domain, user, pass, mode, tlsCfg, q, nil)
}

// newInstanceL is newInstance with a listener wrapper (to simulate an
// unavailable server).
func newInstanceL(t *testing.T, ip, domain, user, pass string, mode smtpserver.Mode, tlsCfg *tls.Config, q smtpserver.Enqueuer, wrap func(net.Listener) net.Listener) *instance {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	accts := account.New(st)
	if err := st.AddDomain(ctx, domain); err != nil {
		t.Fatal(err)
	}
	if _, err := accts.Add(ctx, user, pass); err != nil {
		t.Fatal(err)
	}
	srv := smtpserver.New(smtpserver.Config{Mode: mode, Store: st, Accounts: accts, Queue: q, Hostname: "mx." + domain, TLS: tlsCfg, AuthFailDelay: time.Millisecond})
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	sl := l
	if wrap != nil {
		sl = wrap(l)
	}
	go srv.Serve(sl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &instance{st: st, accts: accts, srv: srv, addr: l.Addr().String(), dir: dir}
}

func (in *instance) inbox(t *testing.T, addr string) [][]byte {
	ctx := context.Background()
	a, err := in.st.AccountByAddress(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := in.st.MailboxByName(ctx, a.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	infos, _ := in.st.Messages(ctx, mb.ID, 1, 0)
	var out [][]byte
	for _, m := range infos {
		f, err := in.st.OpenBlob(m.BlobID)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		out = append(out, b)
	}
	return out
}

// sender is the submitting tern at 127.0.0.2 (a.test) with its queue
// running, delivering to b.test's MX at 127.0.0.3:port.
type sender struct {
	*instance
	q    *queue.Queue
	res  *dns.Resolver
	pool *x509.CertPool
}

func newSender(t *testing.T, port int, rootCAs *x509.CertPool) *sender {
	aCert, aPool := cert(t, "mx.a.test")
	qh := &enqueuer{}
	a := newInstance(t, "127.0.0.2", "a.test", "alice@a.test", "alice-pass-1", smtpserver.Submission, &tls.Config{Certificates: []tls.Certificate{aCert}}, qh)
	keys := terndkim.New(a.dir)
	if err := keys.Ensure("a.test"); err != nil {
		t.Fatal(err)
	}
	recs, _ := keys.Records("a.test")
	zones := map[string]mockdns.Zone{
		"b.test.":    {MX: []net.MX{{Host: "mx.b.test.", Pref: 10}}},
		"mx.b.test.": {A: []string{"127.0.0.3"}},
	}
	for _, r := range recs {
		zones[r.Name+"."] = mockdns.Zone{TXT: []string{r.Value}}
	}
	dsrv, err := mockdns.NewServerWithLogger(zones, log.New(io.Discard, "", 0), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dsrv.Close() })
	res, _ := dns.NewResolver(dsrv.LocalAddr().String())
	q := queue.New(queue.Config{Store: a.st, Resolver: res, DKIM: keys, Hostname: "mx.a.test", Port: port,
		TLS: &tls.Config{RootCAs: rootCAs}, RetryBase: 100 * time.Millisecond, RetryMax: 300 * time.Millisecond,
		DownTTL: 50 * time.Millisecond,
		Dialer:  &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}})
	qh.q = q
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &sender{instance: a, q: q, res: res, pool: aPool}
}

// submit sends a message as alice through the submission port with
// STARTTLS and AUTH.
func (s *sender) submit(t *testing.T, to, msg string) {
	c, err := smtp.DialStartTLS(s.addr, &tls.Config{ServerName: "mx.a.test", RootCAs: s.pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "alice@a.test", "alice-pass-1")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("alice@a.test", []string{to}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
}

func portOf(t *testing.T, addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTwoInstances: alice submits on the tern at 127.0.0.2 (STARTTLS +
// AUTH); its queue finds b.test's MX through the test DNS server and
// delivers over TLS to the tern at 127.0.0.3, into bob's INBOX, signed
// with both DKIM keys.
func TestTwoInstances(t *testing.T) {
	bCert, bPool := cert(t, "mx.b.test")
	b := newInstance(t, "127.0.0.3", "b.test", "bob@b.test", "bob-pass-1", smtpserver.Inbound, &tls.Config{Certificates: []tls.Certificate{bCert}}, nil)
	a := newSender(t, portOf(t, b.addr), bPool)
	a.submit(t, "bob@b.test", "From: Alice <alice@a.test>\r\nTo: Bob <bob@b.test>\r\nSubject: across\r\n\r\nHello from a.test.\r\n")
	waitUntil(t, "delivery to bob", func() bool { return len(b.inbox(t, "bob@b.test")) == 1 })
	got := b.inbox(t, "bob@b.test")[0]
	if !bytes.Contains(got, []byte("Hello from a.test.")) {
		t.Fatalf("message:\n%s", got)
	}
	// The receiving tern records TLS in its Received field (RFC 3848).
	if !bytes.Contains(got, []byte("with ESMTPS")) {
		t.Fatalf("no TLS on the hop to b.test:\n%s", got)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(got), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		return a.res.LookupTXT(context.Background(), name)
	}})
	if err != nil || len(vs) != 2 {
		t.Fatalf("dkim: %v, %d signatures\n%s", err, len(vs), got)
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Fatalf("dkim %s: %v", v.Domain, v.Err)
		}
	}
}

// TestTwoInstancesUnknownUserBounces: b.test's tern answers 550 5.1.1 at
// RCPT; alice finds a delivery status notification in her INBOX.
func TestTwoInstancesUnknownUserBounces(t *testing.T) {
	b := newInstance(t, "127.0.0.3", "b.test", "bob@b.test", "bob-pass-1", smtpserver.Inbound, nil, nil)
	a := newSender(t, portOf(t, b.addr), nil)
	a.submit(t, "nobody@b.test", "From: <alice@a.test>\r\nTo: <nobody@b.test>\r\nSubject: lost\r\n\r\nHello?\r\n")
	waitUntil(t, "a DSN in alice's INBOX", func() bool { return len(a.inbox(t, "alice@a.test")) == 1 })
	p, err := dsn.ParseMessage(bytes.NewReader(a.inbox(t, "alice@a.test")[0]))
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Report.Recipients; len(r) != 1 || r[0].FinalRecipient != "nobody@b.test" || r[0].Status != "5.1.1" || r[0].Action != "failed" {
		t.Fatalf("report %+v", p.Report)
	}
	if !bytes.Contains(p.Original, []byte("Subject: lost")) {
		t.Fatalf("original header missing: %q", p.Original)
	}
}

// downListener closes connections while down is set (the server is
// "not running"); then it hands them to the server.
type downListener struct {
	net.Listener
	down atomic.Bool
}

func (l *downListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || !l.down.Load() {
			return c, err
		}
		c.Close()
	}
}

// TestTwoInstancesReceiverDownThenUp: the message waits in the queue
// while b.test's tern is down and arrives once it is up.
func TestTwoInstancesReceiverDownThenUp(t *testing.T) {
	dl := &downListener{}
	dl.down.Store(true)
	b := newInstanceL(t, "127.0.0.3", "b.test", "bob@b.test", "bob-pass-1", smtpserver.Inbound, nil, nil,
		func(l net.Listener) net.Listener { dl.Listener = l; return dl })
	a := newSender(t, portOf(t, b.addr), nil)
	a.submit(t, "bob@b.test", "From: <alice@a.test>\r\nTo: <bob@b.test>\r\nSubject: patience\r\n\r\nEventually.\r\n")
	waitUntil(t, "failed attempts", func() bool {
		l, _ := a.q.List(context.Background(), 0, 0)
		return len(l) == 1 && l[0].Attempts >= 2
	})
	if n := len(b.inbox(t, "bob@b.test")); n != 0 {
		t.Fatalf("delivered while down: %d", n)
	}
	dl.down.Store(false)
	waitUntil(t, "delivery after the receiver came up", func() bool { return len(b.inbox(t, "bob@b.test")) == 1 })
	waitUntil(t, "an empty queue", func() bool { l, _ := a.q.List(context.Background(), 0, 0); return len(l) == 0 })
	if n := len(a.inbox(t, "alice@a.test")); n != 0 {
		t.Fatalf("alice got %d notification(s) for a delivered message", n)
	}
}

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
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/foxcpp/go-mockdns"

	"github.com/tern-mail/tern/internal/account"
	terndkim "github.com/tern-mail/tern/internal/dkim"
	"github.com/tern-mail/tern/internal/dns"
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
	go srv.Serve(l)
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

// TestTwoInstances: alice submits on the tern at 127.0.0.2 (STARTTLS +
// AUTH); its queue finds b.test's MX through the test DNS server and
// delivers over TLS to the tern at 127.0.0.3, into bob's INBOX, signed
// with both DKIM keys.
func TestTwoInstances(t *testing.T) {
	bCert, bPool := cert(t, "mx.b.test")
	b := newInstance(t, "127.0.0.3", "b.test", "bob@b.test", "bob-pass-1", smtpserver.Inbound, &tls.Config{Certificates: []tls.Certificate{bCert}}, nil)
	_, bPort, _ := net.SplitHostPort(b.addr)

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
	defer dsrv.Close()
	res, _ := dns.NewResolver(dsrv.LocalAddr().String())
	port := 0
	for _, c := range bPort {
		port = port*10 + int(c-'0')
	}
	q := queue.New(queue.Config{Store: a.st, Resolver: res, DKIM: keys, Hostname: "mx.a.test", Port: port,
		TLS: &tls.Config{RootCAs: bPool}, RetryBase: 100 * time.Millisecond,
		Dialer: &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}})
	qh.q = q
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	defer func() { cancel(); <-done }()

	c, err := smtp.DialStartTLS(a.addr, &tls.Config{ServerName: "mx.a.test", RootCAs: aPool})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice@a.test", "alice-pass-1")); err != nil {
		t.Fatal(err)
	}
	msg := "From: Alice <alice@a.test>\r\nTo: Bob <bob@b.test>\r\nSubject: across\r\n\r\nHello from a.test.\r\n"
	if err := c.SendMail("alice@a.test", []string{"bob@b.test"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	c.Quit()

	end := time.Now().Add(15 * time.Second)
	for len(b.inbox(t, "bob@b.test")) == 0 {
		if time.Now().After(end) {
			l, _ := q.List(context.Background(), 0, 0)
			t.Fatalf("not delivered; queue: %+v", l)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := b.inbox(t, "bob@b.test")[0]
	if !bytes.Contains(got, []byte("Hello from a.test.")) {
		t.Fatalf("message:\n%s", got)
	}
	// The receiving tern records TLS in its Received field (RFC 3848).
	if !bytes.Contains(got, []byte("with ESMTPS")) {
		t.Fatalf("no TLS on the hop to b.test:\n%s", got)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(got), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		return res.LookupTXT(context.Background(), name)
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

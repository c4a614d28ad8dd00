package queue

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/foxcpp/go-mockdns"

	"github.com/tern-mail/tern/internal/dsn"
	"github.com/tern-mail/tern/internal/mtasts"
)

// RFC 8689 §4.2.1: a REQUIRETLS message goes only to an MX found through
// DNSSEC-validated lookups or listed in an MTA-STS policy (enforce or
// testing), over TLS with a certificate valid for the MX host name, to a
// server offering REQUIRETLS. Otherwise it waits and is finally returned
// with 5.7.10 (5.7.30 when the server lacks the extension), and it is
// never sent in clear.

// rtlsCase is one receiver and DNS setup.
type rtlsCase struct {
	name string
	// dnssec: the b.test answers carry the AD bit.
	dnssec bool
	// policy: the MTA-STS policy of b.test ("" none), e.g.
	// "mode: testing\nmx: mx.b.test".
	policy string
	// receiver TLS: "none", "valid", "untrusted" (self-signed, not in the
	// sender's roots), "wrongname" (trusted, for another host name).
	tls string
	// noExt: the receiver does not offer REQUIRETLS.
	noExt bool

	delivered bool   // the message must arrive
	status    string // else: the DSN status after expiry or refusal
}

func TestRequireTLS(t *testing.T) {
	cases := []rtlsCase{
		{name: "dnssec", dnssec: true, tls: "valid", delivered: true},
		{name: "mta-sts testing lists mx", policy: "mode: testing\nmx: mx.b.test", tls: "valid", delivered: true},
		{name: "mta-sts enforce lists mx", policy: "mode: enforce\nmx: *.b.test", tls: "valid", delivered: true},
		{name: "no dnssec no policy", tls: "valid", status: "5.7.10"},
		{name: "mta-sts none", policy: "mode: none", tls: "valid", status: "5.7.10"},
		{name: "mta-sts testing other mx", policy: "mode: testing\nmx: other.b.test", tls: "valid", status: "5.7.10"},
		{name: "dnssec cleartext", dnssec: true, tls: "none", status: "5.7.10"},
		{name: "dnssec untrusted certificate", dnssec: true, tls: "untrusted", status: "5.7.10"},
		{name: "dnssec certificate for another name", dnssec: true, tls: "wrongname", status: "5.7.10"},
		{name: "dnssec no REQUIRETLS extension", dnssec: true, tls: "valid", noExt: true, status: "5.7.30"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			runRequireTLS(t, c)
		})
	}
}

func runRequireTLS(t *testing.T, c rtlsCase) {
	good, pool := testCert(t, "mx.b.test")
	var cert *tls.Certificate
	switch c.tls {
	case "valid":
		cert = &good
	case "untrusted":
		bad, _ := testCert(t, "mx.b.test")
		cert = &bad
	case "wrongname":
		other, otherPool := testCert(t, "other.test")
		cert, pool = &other, otherPool
	}
	r := startReceiver(t, "127.0.0.3:0", cert)
	r.srv.EnableREQUIRETLS = cert != nil && !c.noExt
	zones := map[string]mockdns.Zone{
		"b.test.":    {AD: c.dnssec, MX: []net.MX{{Host: "mx.b.test.", Pref: 10}}},
		"mx.b.test.": {AD: c.dnssec, A: []string{"127.0.0.3"}},
	}
	cfg := Config{Port: r.port(), TLS: &tls.Config{RootCAs: pool}, MaxLifetime: 1500 * time.Millisecond}
	var policy *httptest.Server
	if c.policy != "" {
		policy = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "version: STSv1\n%s\nmax_age: 86400\n", c.policy)
		}))
		t.Cleanup(policy.Close)
		zones["_mta-sts.b.test."] = mockdns.Zone{TXT: []string{"v=STSv1; id=1"}}
	}
	e := newEnv(t, zones, cfg)
	if policy != nil {
		e.q.cfg.MTASTS = &mtasts.Fetcher{Resolver: e.res, Client: policy.Client(), URL: func(string) string { return policy.URL }}
	}
	e.run(t)
	m := &Message{AccountID: e.alice.ID, From: "alice@a.test", RequireTLS: true, Blob: e.blob(t, testMessage),
		Recipients: []Recipient{{Address: "bob@b.test"}}}
	if _, err := e.q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if c.delivered {
		waitFor(t, 10*time.Second, "delivery", func() bool { return len(r.messages()) == 1 && e.queueLen(t) == 0 })
		if got := r.messages()[0]; !got.TLS || got.Opts == nil || !got.Opts.RequireTLS {
			t.Fatalf("delivered without TLS or without REQUIRETLS: tls=%v opts=%+v", got.TLS, got.Opts)
		}
		return
	}
	end := time.Now().Add(10 * time.Second)
	for len(e.inbox(t)) != 1 || e.queueLen(t) != 0 {
		if time.Now().After(end) {
			qs, _ := e.q.List(context.Background(), 0, 0)
			t.Fatalf("no DSN: inbox %d, queue %+v", len(e.inbox(t)), qs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(r.messages()); n != 0 {
		t.Fatalf("REQUIRETLS message sent (%d) where RFC 8689 forbids it", n)
	}
	p, err := dsn.ParseMessage(bytes.NewReader(e.inbox(t)[0]))
	if err != nil {
		t.Fatal(err)
	}
	rc := p.Report.Recipients
	if len(rc) != 1 || rc[0].Action != dsn.ActionFailed || rc[0].Status != c.status {
		t.Fatalf("report %+v, want status %s", rc, c.status)
	}
}

// TestRequireTLSHeldThenDelivered: a REQUIRETLS message waits (4.7.10,
// not sent) while the receiver's certificate is not valid and goes once
// it is; an idle connection opened for ordinary mail is not reused.
func TestRequireTLSHeldThenDelivered(t *testing.T) {
	good, pool := testCert(t, "mx.b.test")
	bad, _ := testCert(t, "mx.b.test")
	r := startReceiver(t, "127.0.0.3:0", &bad)
	valid := make(chan struct{})
	r.srv.TLSConfig = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		select {
		case <-valid:
			return &good, nil
		default:
			return &bad, nil
		}
	}}
	zones := map[string]mockdns.Zone{
		"b.test.":    {AD: true, MX: []net.MX{{Host: "mx.b.test.", Pref: 10}}},
		"mx.b.test.": {AD: true, A: []string{"127.0.0.3"}},
	}
	e := newEnv(t, zones, Config{Port: r.port(), TLS: &tls.Config{RootCAs: pool}, IdleTimeout: time.Minute})
	e.run(t)
	// Ordinary mail goes over unverified TLS and leaves an idle connection.
	e.submit(t, testMessage, "carol@b.test")
	waitFor(t, 10*time.Second, "ordinary delivery", func() bool { return len(r.messages()) == 1 })
	m := &Message{AccountID: e.alice.ID, From: "alice@a.test", RequireTLS: true, Blob: e.blob(t, testMessage),
		Recipients: []Recipient{{Address: "bob@b.test"}}}
	id, err := e.q.Enqueue(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "held attempts", func() bool {
		qe, err := e.st.QueueGet(context.Background(), id)
		return err == nil && qe.Attempts >= 3 && strings.Contains(qe.LastError, "4.7.10")
	})
	if n := len(r.messages()); n != 1 {
		t.Fatalf("REQUIRETLS message sent without a valid certificate (%d messages)", n)
	}
	close(valid)
	waitFor(t, 10*time.Second, "delivery once TLS is valid", func() bool { return len(r.messages()) == 2 })
	if got := r.messages()[1]; !got.TLS || !got.Opts.RequireTLS {
		t.Fatalf("REQUIRETLS not used: %+v", got.Opts)
	}
}

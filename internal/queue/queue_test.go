package queue

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/foxcpp/go-mockdns"

	"github.com/tern-mail/tern/internal/dsn"
	"github.com/tern-mail/tern/internal/mtasts"
	"github.com/tern-mail/tern/internal/store"
)

func TestDeliverTLSDKIMOneTransaction(t *testing.T) {
	cert, pool := testCert(t, "mx.b.test")
	r := startReceiver(t, "127.0.0.3:0", &cert)
	e := newEnv(t, mxZone(0), Config{Port: r.port(), TLS: &tls.Config{RootCAs: pool}})
	e.run(t)
	e.submit(t, testMessage, "bob@b.test", "carol@B.test")
	waitFor(t, 10*time.Second, "delivery", func() bool { return len(r.messages()) == 1 && e.queueLen(t) == 0 })
	m := r.messages()[0]
	if len(m.Rcpts) != 2 || m.From != "alice@a.test" {
		t.Fatalf("one transaction for both recipients expected: %+v", m.Rcpts)
	}
	if !m.TLS {
		t.Fatal("delivered without TLS")
	}
	if !contains(m.Data, "\r\n.leading dot\r\n") {
		t.Fatalf("dot-stuffing broken:\n%s", m.Data)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(m.Data), &dkim.VerifyOptions{LookupTXT: e.lookupTXT})
	if err != nil || len(vs) != 2 {
		t.Fatalf("dkim: %v, %d signatures", err, len(vs))
	}
	for _, v := range vs {
		if v.Err != nil || v.Domain != "a.test" {
			t.Fatalf("dkim %s: %v", v.Domain, v.Err)
		}
	}
	// DSN parameters passed on (RFC 3461 §5.2.1).
	if m.Rcpt[0].OriginalRecipient != "bob@b.test" {
		t.Fatalf("ORCPT not passed: %+v", m.Rcpt[0])
	}
}

// flakyListener refuses SMTP (closes connections) while down is set.
type flakyListener struct {
	net.Listener
	down atomic.Bool
}

func (l *flakyListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || !l.down.Load() {
			return c, err
		}
		c.Write([]byte("421 4.3.2 down for maintenance\r\n"))
		c.Close()
	}
}

func TestReceiverDownThenUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: l}
	fl.down.Store(true)
	r := &receiver{l: l, got: make(chan struct{}, 1)}
	r.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &rsession{r: r, c: c}, nil }))
	go r.srv.Serve(fl)
	t.Cleanup(func() { r.srv.Close() })

	e := newEnv(t, mxZone(0), Config{Port: r.port()})
	e.run(t)
	id := e.submit(t, testMessage, "bob@b.test")
	waitFor(t, 10*time.Second, "a failed attempt", func() bool {
		qe, err := e.st.QueueGet(context.Background(), id)
		return err == nil && qe.Attempts >= 2 && strings.Contains(qe.LastError, "421")
	})
	if len(r.messages()) != 0 {
		t.Fatal("delivered while down")
	}
	fl.down.Store(false)
	waitFor(t, 10*time.Second, "delivery after the receiver came up", func() bool { return len(r.messages()) == 1 && e.queueLen(t) == 0 })
	time.Sleep(200 * time.Millisecond)
	if n := len(r.messages()); n != 1 {
		t.Fatalf("delivered %d times", n)
	}
	if n := len(e.inbox(t)); n != 0 {
		t.Fatalf("unexpected notification(s) in the sender's INBOX: %d", n)
	}
}

func TestPermanentFailureDSNInSenderInbox(t *testing.T) {
	r := startReceiver(t, "127.0.0.3:0", nil)
	r.reject = func(rcpt string) error {
		if strings.HasPrefix(rcpt, "nobody@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
		}
		return nil
	}
	e := newEnv(t, mxZone(0), Config{Port: r.port()})
	e.run(t)
	m := &Message{AccountID: e.alice.ID, From: "alice@a.test", EnvID: "ENV42", Ret: "HDRS", Blob: e.blob(t, testMessage),
		Recipients: []Recipient{{Address: "bob@b.test"}, {Address: "nobody@b.test", ORcpt: "rfc822;nobody@b.test"}}}
	if _, err := e.q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a DSN in alice's INBOX", func() bool { return len(e.inbox(t)) == 1 && e.queueLen(t) == 0 })
	if len(r.messages()) != 1 || len(r.messages()[0].Rcpts) != 1 {
		t.Fatalf("bob's copy: %+v", r.messages())
	}
	p, err := dsn.ParseMessage(bytes.NewReader(e.inbox(t)[0]))
	if err != nil {
		t.Fatal(err)
	}
	rc := p.Report.Recipients
	if len(rc) != 1 || rc[0].FinalRecipient != "nobody@b.test" || rc[0].Status != "5.1.1" || rc[0].Action != dsn.ActionFailed || rc[0].RemoteMTA != "mx.b.test" {
		t.Fatalf("report %+v", p.Report)
	}
	if p.Report.EnvID != "ENV42" || rc[0].OriginalRecipient != "rfc822;nobody@b.test" {
		t.Fatalf("ENVID/ORCPT not respected: %+v", p.Report)
	}
	if !contains(p.Original, "Subject: test") || contains(p.Original, "Hello Bob") {
		t.Fatalf("RET=HDRS: original part %q", p.Original)
	}
}

func TestNullMXFailsAtOnce(t *testing.T) {
	zones := map[string]mockdns.Zone{"null.test.": {MX: []net.MX{{Host: ".", Pref: 0}}}}
	e := newEnv(t, zones, Config{Port: 1})
	e.run(t)
	m := &Message{AccountID: e.alice.ID, From: "alice@a.test", Blob: e.blob(t, testMessage),
		Recipients: []Recipient{{Address: "x@null.test"}, {Address: "quiet@null.test", Notify: []string{"NEVER"}}}}
	id, _ := e.q.Enqueue(context.Background(), m)
	waitFor(t, 10*time.Second, "a DSN", func() bool { return len(e.inbox(t)) == 1 && e.queueLen(t) == 0 })
	p, err := dsn.ParseMessage(bytes.NewReader(e.inbox(t)[0]))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Report.Recipients) != 1 || p.Report.Recipients[0].Status != "5.1.10" {
		t.Fatalf("null MX report (NOTIFY=NEVER must be left out): %+v", p.Report.Recipients)
	}
	_ = id
}

func TestNoBounceToNullSenderOrLoops(t *testing.T) {
	zones := map[string]mockdns.Zone{"null.test.": {MX: []net.MX{{Host: ".", Pref: 0}}}}
	e := newEnv(t, zones, Config{Port: 1})
	e.run(t)
	// A notification (null sender) that fails must vanish silently.
	m := &Message{From: "", Blob: e.blob(t, testMessage), Recipients: []Recipient{{Address: "x@null.test"}}}
	e.q.Enqueue(context.Background(), m)
	// A message from a local sender that does not exist: the DSN to it
	// fails locally (5.1.1) and is not bounced again.
	m2 := &Message{From: "ghost@a.test", Blob: e.blob(t, testMessage), Recipients: []Recipient{{Address: "y@null.test"}}}
	e.q.Enqueue(context.Background(), m2)
	waitFor(t, 10*time.Second, "an empty queue", func() bool { return e.queueLen(t) == 0 })
	time.Sleep(300 * time.Millisecond)
	if n := e.queueLen(t); n != 0 {
		t.Fatalf("queue grew again: %d", n)
	}
	if n := len(e.inbox(t)); n != 0 {
		t.Fatalf("alice got %d messages", n)
	}
}

func TestMTASTSEnforceHoldsUntilValidTLS(t *testing.T) {
	good, pool := testCert(t, "mx.b.test")
	bad, _ := testCert(t, "mx.b.test") // not trusted by the sender
	var valid atomic.Bool
	r := startReceiver(t, "127.0.0.3:0", &good)
	r.srv.TLSConfig = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if valid.Load() {
			return &good, nil
		}
		return &bad, nil
	}}
	policy := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "version: STSv1\nmode: enforce\nmx: mx.b.test\nmax_age: 86400\n")
	}))
	defer policy.Close()
	zones := mxZone(0)
	zones["_mta-sts.b.test."] = mockdns.Zone{TXT: []string{"v=STSv1; id=1"}}
	e := newEnv(t, zones, Config{Port: r.port(), TLS: &tls.Config{RootCAs: pool}})
	e.q.cfg.MTASTS = &mtasts.Fetcher{Resolver: e.res, Client: policy.Client(), URL: func(string) string { return policy.URL }}
	e.run(t)
	id := e.submit(t, testMessage, "bob@b.test")
	waitFor(t, 10*time.Second, "held attempts", func() bool {
		qe, err := e.st.QueueGet(context.Background(), id)
		return err == nil && qe.Attempts >= 3
	})
	if n := len(r.messages()); n != 0 {
		t.Fatalf("sent %d message(s) despite invalid TLS under MTA-STS enforce", n)
	}
	valid.Store(true)
	waitFor(t, 10*time.Second, "delivery once TLS is valid", func() bool { return len(r.messages()) == 1 })
	if !r.messages()[0].TLS {
		t.Fatal("not TLS")
	}
}

func TestMTASTSNoMatchingMX(t *testing.T) {
	r := startReceiver(t, "127.0.0.3:0", nil)
	policy := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "version: STSv1\nmode: enforce\nmx: other.b.test\nmax_age: 86400\n")
	}))
	defer policy.Close()
	zones := mxZone(0)
	zones["_mta-sts.b.test."] = mockdns.Zone{TXT: []string{"v=STSv1; id=1"}}
	e := newEnv(t, zones, Config{Port: r.port()})
	e.q.cfg.MTASTS = &mtasts.Fetcher{Resolver: e.res, Client: policy.Client(), URL: func(string) string { return policy.URL }}
	e.run(t)
	id := e.submit(t, testMessage, "bob@b.test")
	waitFor(t, 10*time.Second, "held attempts", func() bool {
		qe, err := e.st.QueueGet(context.Background(), id)
		return err == nil && qe.Attempts >= 2 && strings.Contains(qe.LastError, "4.7.5")
	})
	if len(r.messages()) != 0 {
		t.Fatal("sent to an MX outside the policy")
	}
}

func TestDelayWarningThenExpiry(t *testing.T) {
	zones := map[string]mockdns.Zone{
		"down.test.":    {MX: []net.MX{{Host: "mx.down.test.", Pref: 10}}},
		"mx.down.test.": {A: []string{"127.0.0.9"}},
	}
	e := newEnv(t, zones, Config{Port: 9, DelayWarning: 100 * time.Millisecond, MaxLifetime: 1500 * time.Millisecond})
	e.run(t)
	e.submit(t, testMessage, "x@down.test")
	waitFor(t, 10*time.Second, "delay warning and failure", func() bool { return len(e.inbox(t)) == 2 && e.queueLen(t) == 0 })
	var actions []string
	for _, b := range e.inbox(t) {
		p, err := dsn.ParseMessage(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		actions = append(actions, p.Report.Recipients[0].Action+" "+p.Report.Recipients[0].Status)
	}
	if actions[0] != "delayed 4.4.1" || actions[1] != "failed 5.4.7" {
		t.Fatalf("notifications: %v", actions)
	}
}

func TestAdminListShowRetryDrop(t *testing.T) {
	e := newEnv(t, nil, Config{})
	ctx := context.Background()
	id1 := e.submit(t, testMessage, "x@far.test")
	id2 := e.submit(t, testMessage, "y@far.test")
	l, err := e.q.List(ctx, 0, 0)
	if err != nil || len(l) != 2 {
		t.Fatalf("list %d %v", len(l), err)
	}
	qe, hdr, err := e.q.Show(ctx, id1)
	if err != nil || qe.Recipients[0].Address != "x@far.test" || !contains(hdr, "Subject: test") || contains(hdr, "Hello") {
		t.Fatalf("show %+v %q %v", qe, hdr, err)
	}
	if err := e.q.Retry(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if n, err := e.q.RetryAll(ctx); err != nil || n != 2 {
		t.Fatalf("retry all %d %v", n, err)
	}
	if err := e.q.Drop(ctx, id1); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Retry(ctx, id1); err == nil {
		t.Fatal("retry of a dropped entry")
	}
	if l, _ := e.q.List(ctx, 0, 0); len(l) != 1 || l[0].ID != id2 {
		t.Fatalf("after drop: %+v", l)
	}
	var buf bytes.Buffer
	l, _ = e.q.List(ctx, 0, 0)
	FormatList(&buf, l, time.Now())
	qe, hdr, _ = e.q.Show(ctx, id2)
	FormatShow(&buf, qe, hdr)
	for _, want := range []string{"alice@a.test -> y@far.test", "rcpt:       y@far.test [pending]", "Subject: test"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("admin output lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestRestart: entries queued by one process are delivered exactly once
// by the next.
func TestSurvivesRestart(t *testing.T) {
	r := startReceiver(t, "127.0.0.3:0", nil)
	e := newEnv(t, mxZone(0), Config{Port: r.port()})
	for i := 0; i < 20; i++ {
		e.submit(t, testMessage, fmt.Sprintf("u%d@b.test", i))
	}
	dir := e.st.Dir()
	e.st.Close()
	st, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := e.q.cfg
	cfg.Store = st
	e.st, e.q = st, New(cfg)
	e.run(t)
	waitFor(t, 10*time.Second, "20 deliveries", func() bool { return len(r.messages()) == 20 && e.queueLen(t) == 0 })
	time.Sleep(200 * time.Millisecond)
	if n := len(r.messages()); n != 20 {
		t.Fatalf("%d deliveries", n)
	}
}

func TestIPv6AndSecondMX(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback")
	}
	r := &receiver{l: l, got: make(chan struct{}, 1)}
	r.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &rsession{r: r, c: c}, nil }))
	go r.srv.Serve(l)
	t.Cleanup(func() { r.srv.Close() })
	zones := map[string]mockdns.Zone{
		// The preferred MX refuses connections; the second is IPv6 only.
		"v6.test.":     {MX: []net.MX{{Host: "mx1.v6.test.", Pref: 5}, {Host: "mx2.v6.test.", Pref: 10}}},
		"mx1.v6.test.": {A: []string{"127.0.0.9"}},
		"mx2.v6.test.": {AAAA: []string{"::1"}},
	}
	e := newEnv(t, zones, Config{Port: r.port()})
	e.run(t)
	e.submit(t, testMessage, "bob@v6.test")
	waitFor(t, 10*time.Second, "delivery over IPv6", func() bool { return len(r.messages()) == 1 && e.queueLen(t) == 0 })
}

// smarthost session requiring AUTH PLAIN.
type authSession struct {
	rsession
	user, pass string
	authed     bool
}

func (s *authSession) AuthMechanisms() []string { return []string{"PLAIN"} }
func (s *authSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, u, p string) error {
		if u != s.user || p != s.pass {
			return errors.New("bad credentials")
		}
		s.authed = true
		return nil
	}), nil
}
func (s *authSession) Mail(from string, o *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	return s.rsession.Mail(from, o)
}

func TestSmarthostWithAuth(t *testing.T) {
	cert, pool := testCert(t, "relay.test")
	r := startReceiver(t, "127.0.0.3:0", &cert)
	r.srv.Backend = smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &authSession{rsession: rsession{r: r, c: c}, user: "u", pass: "p"}, nil
	})
	// No DNS for the destination: everything goes to the smarthost.
	zones := map[string]mockdns.Zone{"relay.test.": {A: []string{"127.0.0.3"}}}
	e := newEnv(t, zones, Config{TLS: &tls.Config{RootCAs: pool},
		Smarthost: &Smarthost{Host: "relay.test", Port: r.port(), TLS: TLSStartTLS, Username: "u", Password: "p"}})
	e.run(t)
	e.submit(t, testMessage, "someone@nowhere.example")
	waitFor(t, 10*time.Second, "relay through the smarthost", func() bool { return len(r.messages()) == 1 && e.queueLen(t) == 0 })
	if !r.messages()[0].TLS {
		t.Fatal("credentials sent without TLS")
	}
}

func TestPerDestinationLimitAndReuse(t *testing.T) {
	r := startReceiver(t, "127.0.0.3:0", nil)
	var active, peak, sessions atomic.Int32
	r.srv.Backend = smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		n := active.Add(1)
		sessions.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		return &countingSession{rsession: rsession{r: r, c: c}, active: &active}, nil
	})
	e := newEnv(t, mxZone(0), Config{Port: r.port(), PerDestination: 2, Workers: 16})
	for i := 0; i < 40; i++ {
		e.submit(t, testMessage, fmt.Sprintf("u%d@b.test", i))
	}
	e.run(t)
	waitFor(t, 20*time.Second, "40 deliveries", func() bool { return len(r.messages()) == 40 && e.queueLen(t) == 0 })
	time.Sleep(200 * time.Millisecond)
	seen := map[string]bool{}
	for _, m := range r.messages() {
		if seen[m.Rcpts[0]] {
			t.Fatalf("%s delivered twice", m.Rcpts[0])
		}
		seen[m.Rcpts[0]] = true
	}
	if p := peak.Load(); p > 2 {
		t.Fatalf("%d concurrent connections to one destination (limit 2)", p)
	}
	if s := sessions.Load(); s > 10 {
		t.Fatalf("%d connections for 40 messages: connections not reused", s)
	}
}

type countingSession struct {
	rsession
	active *atomic.Int32
}

func (s *countingSession) Logout() error { s.active.Add(-1); return nil }

func TestBackoffGrowsWithJitter(t *testing.T) {
	q := New(Config{RetryBase: time.Minute, RetryMax: time.Hour})
	prev := time.Duration(0)
	for n := 1; n <= 8; n++ {
		d := q.backoff(n)
		want := min(time.Minute<<(n-1), time.Hour)
		if d < want*8/10 || d > want*12/10 {
			t.Fatalf("attempt %d: %v not within 20%% of %v", n, d, want)
		}
		if n <= 6 && d <= prev*8/10 {
			t.Fatalf("attempt %d: %v does not grow from %v", n, d, prev)
		}
		prev = d
	}
}

// TestGracefulStop: a delivery stuck on a silent server is interrupted
// after the grace period, and the message stays queued.
func TestGracefulStop(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("220 mx.b.test ESMTP\r\n")) // then silence
			defer c.Close()
		}
	}()
	e := newEnv(t, mxZone(0), Config{Port: l.Addr().(*net.TCPAddr).Port, StopGrace: 200 * time.Millisecond})
	id := e.submit(t, testMessage, "bob@b.test")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.q.Run(ctx) }()
	time.Sleep(300 * time.Millisecond) // the delivery is now waiting on EHLO
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("stop took %v", d)
	}
	if _, err := e.st.QueueGet(context.Background(), id); err != nil {
		t.Fatalf("message lost on stop: %v", err)
	}
}

// TestTLSRequiredNo: "TLS-Required: No" (RFC 8689 §5) lets a message
// through despite an MTA-STS enforce policy the receiver cannot meet.
func TestTLSRequiredNo(t *testing.T) {
	r := startReceiver(t, "127.0.0.3:0", nil)
	policy := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "version: STSv1\nmode: enforce\nmx: mx.b.test\nmax_age: 86400\n")
	}))
	defer policy.Close()
	zones := mxZone(0)
	zones["_mta-sts.b.test."] = mockdns.Zone{TXT: []string{"v=STSv1; id=1"}}
	e := newEnv(t, zones, Config{Port: r.port()})
	e.q.cfg.MTASTS = &mtasts.Fetcher{Resolver: e.res, Client: policy.Client(), URL: func(string) string { return policy.URL }}
	e.run(t)
	e.submit(t, "TLS-Required: No\r\n"+testMessage, "bob@b.test")
	waitFor(t, 10*time.Second, "delivery", func() bool { return len(r.messages()) == 1 })
}

// TestDotStuffer: pieces in memory and a reader split anywhere give the
// same dot-stuffed CRLF message (RFC 5321 §4.5.2).
func TestDotStuffer(t *testing.T) {
	msg := "Sig: x\r\n.a\nb\r\n..c\r\nlone\rcr\r\n.\r\nlast"
	want := "Sig: x\r\n..a\r\nb\r\n...c\r\nlone\rcr\r\n..\r\nlast\r\n.\r\n"
	var mem bytes.Buffer
	w := bufio.NewWriter(&mem)
	d := &dotStuffer{w: w}
	d.write([]byte(msg[:8]))
	d.write([]byte(msg[8:]))
	d.end()
	w.Flush()
	if mem.String() != want {
		t.Fatalf("in memory:\n%q\nwant\n%q", mem.String(), want)
	}
	for n := 1; n <= len(msg); n++ {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		d := &dotStuffer{w: w}
		if err := d.copy(&chunkReader{r: strings.NewReader(msg), n: n}); err != nil {
			t.Fatal(err)
		}
		d.end()
		w.Flush()
		if out.String() != want {
			t.Fatalf("reader split %d:\n%q\nwant\n%q", n, out.String(), want)
		}
	}
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

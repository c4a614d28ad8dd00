package imapserver

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/xdg-go/scram"
)

func testTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test.example.org"},
		DNSNames: []string{"test.example.org"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func rawOn(t *testing.T, c net.Conn) *raw {
	t.Cleanup(func() { c.Close() })
	return &raw{t: t, conn: c, br: bufio.NewReader(c)}
}

func TestLoginDisabledWithoutTLS(t *testing.T) {
	cfg := testTLSConfig(t)
	ts := newTestServer(t, func(c *Config) { c.InsecureAuth = false; c.TLS = cfg })
	r := ts.raw()
	lines := r.expectOK("a", "CAPABILITY")
	if !has(lines, "LOGINDISABLED") || !has(lines, "STARTTLS") || has(lines, "AUTH=PLAIN") {
		t.Fatalf("capabilities: %q", lines)
	}
	if l := r.cmd("b", `LOGIN alice@example.org "`+testPass+`"`); !strings.HasPrefix(l[0], "b NO [PRIVACYREQUIRED]") {
		t.Fatalf("LOGIN without TLS: %q", l)
	}
	// STARTTLS through the go-imap client, then LOGIN works.
	c, err := imapclient.DialStartTLS(ts.addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice@example.org", testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	if !c.Caps().Has("IDLE") {
		t.Errorf("caps after login: %v", c.Caps())
	}
}

func TestImplicitTLSAndScram(t *testing.T) {
	cfg := testTLSConfig(t)
	ts := newTestServer(t, func(c *Config) { c.InsecureAuth = false; c.TLS = cfg })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ts.srv.ServeTLS(l)
	for _, plus := range []bool{false, true} {
		tc, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		r := rawOn(t, tc)
		if g := r.line(); !strings.Contains(g, "AUTH=SCRAM-SHA-256-PLUS") {
			t.Fatalf("greeting %q", g)
		}
		client, _ := scram.SHA256.NewClient("alice@example.org", testPass, "")
		conv := client.NewConversation()
		mech := "SCRAM-SHA-256"
		if plus {
			st := tc.ConnectionState()
			cb, err := scram.NewTLSExporterBinding(&st)
			if err != nil {
				t.Fatal(err)
			}
			conv = client.NewConversationWithChannelBinding(cb)
			mech += "-PLUS"
		}
		first, _ := conv.Step("")
		r.send("a AUTHENTICATE " + mech + " " + base64.StdEncoding.EncodeToString([]byte(first)))
		for {
			l := r.line()
			if strings.HasPrefix(l, "a ") {
				if !strings.HasPrefix(l, "a OK") {
					t.Fatalf("%s: %s", mech, l)
				}
				break
			}
			if !strings.HasPrefix(l, "+ ") {
				t.Fatalf("%s: unexpected %q", mech, l)
			}
			chal, _ := base64.StdEncoding.DecodeString(l[2:])
			resp, err := conv.Step(string(chal))
			if err != nil && !conv.Done() {
				t.Fatalf("%s step: %v", mech, err)
			}
			r.send(base64.StdEncoding.EncodeToString([]byte(resp)))
		}
		if !conv.Valid() {
			t.Errorf("%s: server signature not verified", mech)
		}
	}
}

func TestConnectionLimits(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.MaxConnsPerIP = 2; c.MaxConnsPerUser = 1 })
	a := ts.raw()
	b := ts.raw()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if l, _ := bufio.NewReader(c).ReadString('\n'); !strings.HasPrefix(l, "* BYE") {
		t.Errorf("third connection got %q", l)
	}
	a.login()
	if l := b.cmd("x", `LOGIN alice@example.org "`+testPass+`"`); !strings.HasPrefix(l[0], "x NO [LIMIT]") {
		t.Errorf("second session of one user: %q", l)
	}
}

func TestIdleTimeoutAndShutdown(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
	r := ts.raw()
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Errorf("after idle timeout got %q", l)
	}
	ts2 := newTestServer(t)
	r2 := ts2.raw()
	r2.login()
	r2.expectOK("s", "SELECT INBOX")
	r2.send("i IDLE")
	if l := r2.line(); l != "+ idling" {
		t.Fatalf("IDLE: %q", l)
	}
	go ts2.srv.Shutdown(t.Context())
	if l := r2.line(); !strings.HasPrefix(l, "* BYE") {
		t.Errorf("on shutdown got %q", l)
	}
}

func TestCommandRateLimit(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.MaxCommandsPerSecond = 20 })
	r := ts.raw()
	start := time.Now()
	for i := 0; i < 45; i++ {
		r.expectOK("n", "NOOP")
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("45 commands at 20/s took %v", d)
	}
}

func TestIdleMax(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.IdleMax = 300 * time.Millisecond })
	r := ts.raw()
	r.login()
	r.send("i IDLE")
	if l := r.line(); l != "+ idling" {
		t.Fatalf("IDLE: %q", l)
	}
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Errorf("after IdleMax got %q", l)
	}
}

// TestAuthenticateCornerCases: RFC 9051 §6.2.2 and RFC 4959. A "*" line or
// bad base64 ends the exchange with a tagged BAD, "=" is an empty initial
// response (not an absent one), a wrong SCRAM proof is NO
// [AUTHENTICATIONFAILED], and responses too long are refused without
// leaving bytes behind that would be read as commands.
func TestAuthenticateCornerCases(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw()
	// exchange sends lines and returns the first line that is no
	// continuation request, after checking every "+" came where expected.
	exchange := func(lines ...string) string {
		t.Helper()
		for i, l := range lines {
			r.send(l)
			if i < len(lines)-1 {
				if got := r.line(); !strings.HasPrefix(got, "+") {
					t.Fatalf("after %.40q: %q, want a continuation", l, got)
				}
			}
		}
		return r.line()
	}
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		{[]string{"a AUTHENTICATE PLAIN", "*"}, "a BAD "},
		{[]string{"b AUTHENTICATE PLAIN", "not base64!"}, "b BAD "},
		{[]string{"c AUTHENTICATE PLAIN", "AGFsaWNl="}, "c BAD "}, // bad padding
		{[]string{"d AUTHENTICATE PLAIN AGFsaWNl!"}, "d BAD "},
		{[]string{"e AUTHENTICATE PLAIN abc"}, "e BAD "},
		// An empty PLAIN message is malformed; before the fix the server
		// took "=" for no response, sent "+" and read the next command as
		// the SASL answer.
		{[]string{"f AUTHENTICATE PLAIN ="}, "f BAD "},
		{[]string{"g AUTHENTICATE SCRAM-SHA-256 ="}, "g BAD "},
		// "=" is for the initial response only (RFC 4959 §3).
		{[]string{"h AUTHENTICATE PLAIN", "="}, "h BAD "},
		{[]string{"i AUTHENTICATE PLAIN", ""}, "i BAD "},
		// Decodes to more than any mechanism reads in one step.
		{[]string{"j AUTHENTICATE PLAIN " + strings.Repeat("QUFB", 1500)}, "j BAD "},
		{[]string{"k AUTHENTICATE PLAIN", strings.Repeat("QUFB", 5000)}, "k BAD "},
		// Over the pre-login line limit: refused before any parsing, but
		// still answered by its tag.
		{[]string{"l AUTHENTICATE PLAIN " + strings.Repeat("QUFB", 3000)}, "l BAD "},
		{[]string{"m AUTHENTICATE NTLM"}, "m NO "},
	} {
		if got := exchange(tc.lines...); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%.40q: %q, want %s...", tc.lines, got, tc.want)
		}
		// The session is in step: the next command is answered as one.
		if got := r.cmd("n", "NOOP"); len(got) != 1 || got[0] != "n OK NOOP completed" {
			t.Fatalf("after %.40q: NOOP answered %q", tc.lines, got)
		}
	}

	// SCRAM-SHA-256 with a proof from the wrong password.
	client, _ := scram.SHA256.NewClient("alice@example.org", "wrong horse battery", "")
	conv := client.NewConversation()
	first, _ := conv.Step("")
	r.send("s AUTHENTICATE SCRAM-SHA-256 " + base64.StdEncoding.EncodeToString([]byte(first)))
	l := r.line()
	if !strings.HasPrefix(l, "+ ") {
		t.Fatalf("SCRAM server-first: %q", l)
	}
	chal, _ := base64.StdEncoding.DecodeString(l[2:])
	final, err := conv.Step(string(chal))
	if err != nil {
		t.Fatal(err)
	}
	r.send(base64.StdEncoding.EncodeToString([]byte(final)))
	if l := r.line(); !strings.HasPrefix(l, "s NO [AUTHENTICATIONFAILED]") {
		t.Errorf("SCRAM wrong proof: %q", l)
	}

	// After all that, a good AUTHENTICATE still logs in.
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice@example.org\x00" + testPass))
	if l := exchange("t AUTHENTICATE PLAIN", plain); !strings.HasPrefix(l, "t OK [CAPABILITY ") {
		t.Errorf("AUTHENTICATE PLAIN after failures: %q", l)
	}
}

// TestStartTLSDropsPipelined: RFC 9051 §6.2.1 (and RFC 3207's
// CVE-2011-0411 lesson): a command sent after STARTTLS but before the
// handshake must not run, inside TLS or out.
func TestStartTLSDropsPipelined(t *testing.T) {
	cfg := testTLSConfig(t)
	ts := newTestServer(t, func(c *Config) { c.TLS = cfg })
	r := ts.raw()
	r.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.conn.Write([]byte("a STARTTLS\r\nb LOGIN alice@example.org \"" + testPass + "\"\r\n")); err != nil {
		t.Fatal(err)
	}
	if l := r.line(); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("STARTTLS: %q", l)
	}
	tc := tls.Client(r.conn, &tls.Config{InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tr := &raw{t: t, conn: tc, br: bufio.NewReader(tc)}
	// Still not authenticated: the injected LOGIN was dropped.
	if l := tr.cmd("c", "SELECT INBOX"); len(l) != 1 || !strings.HasPrefix(l[0], "c BAD") {
		t.Fatalf("after STARTTLS: %q", l)
	}
}

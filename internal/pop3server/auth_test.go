package pop3server

import (
	"crypto/tls"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// scramLogin runs AUTH mech with an xdg-go/scram client conversation.
func scramLogin(t *testing.T, c *client, mech string, conv *scram.ClientConversation) string {
	t.Helper()
	first, err := conv.Step("")
	if err != nil {
		t.Fatal(err)
	}
	r := c.cmd("AUTH " + mech + " " + b64(first))
	for strings.HasPrefix(r, "+ ") {
		ch, err := base64.StdEncoding.DecodeString(r[2:])
		if err != nil {
			t.Fatal(err)
		}
		resp, err := conv.Step(string(ch))
		if err != nil {
			t.Fatalf("client step: %v", err)
		}
		r = c.cmd(b64(resp))
	}
	return r
}

func TestAuthSASL(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.deliver(msg1)
	cl, _ := scram.SHA256.NewClient(testUser, testPass, "")

	// SCRAM-SHA-256 works without TLS: the password never crosses.
	c := e.dial()
	if r := scramLogin(t, c, "SCRAM-SHA-256", cl.NewConversation()); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("SCRAM: %s", r)
	}
	c.ok("STAT")
	c.ok("QUIT")
	c.closed()

	// Wrong password.
	bad, _ := scram.SHA256.NewClient(testUser, "nope", "")
	c = e.dial()
	if r := scramLogin(t, c, "SCRAM-SHA-256", bad.NewConversation()); !strings.HasPrefix(r, "-ERR [AUTH]") {
		t.Fatalf("bad SCRAM: %s", r)
	}

	// SCRAM-SHA-256-PLUS on implicit TLS, tls-exporter (TLS 1.3).
	c = e.dialTLS()
	cs := c.c.(*tls.Conn).ConnectionState()
	cb, err := scram.NewTLSExporterBinding(&cs)
	if err != nil {
		t.Fatal(err)
	}
	if r := scramLogin(t, c, "SCRAM-SHA-256-PLUS", cl.NewConversationWithChannelBinding(cb)); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("SCRAM-PLUS: %s", r)
	}
	c.ok("QUIT")
	c.closed()

	// tls-server-end-point.
	c = e.dialTLS()
	cs = c.c.(*tls.Conn).ConnectionState()
	cb, err = scram.NewTLSServerEndpointBinding(&cs)
	if err != nil {
		t.Fatal(err)
	}
	if r := scramLogin(t, c, "SCRAM-SHA-256-PLUS", cl.NewConversationWithChannelBinding(cb)); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("SCRAM-PLUS server-end-point: %s", r)
	}
	c.ok("QUIT")
	c.closed()

	// PLAIN with an initial response, and without (empty challenge).
	c = e.dialTLS()
	if r := c.cmd("AUTH PLAIN " + b64("\x00"+testUser+"\x00"+testPass)); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("PLAIN: %s", r)
	}
	c.ok("QUIT")
	c.closed()
	c = e.dialTLS()
	if r := c.cmd("AUTH PLAIN"); r != "+ " {
		t.Fatalf("PLAIN without IR: %q", r)
	}
	if r := c.cmd(b64("\x00" + testUser + "\x00" + testPass)); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("PLAIN: %s", r)
	}
	c.ok("QUIT")
	c.closed()

	// LOGIN, cancel, bad base64, mechanism list.
	c = e.dialTLS()
	if r := c.cmd("AUTH LOGIN"); r != "+ "+b64("Username:") {
		t.Fatalf("LOGIN: %q", r)
	}
	if r := c.cmd("*"); r != "-ERR AUTH canceled" {
		t.Fatalf("cancel: %q", r)
	}
	if r := c.cmd("AUTH PLAIN !!!"); !strings.HasPrefix(r, "-ERR") {
		t.Fatalf("bad base64: %q", r)
	}
	if r := c.cmd("AUTH CRAM-MD5"); !strings.HasPrefix(r, "-ERR") {
		t.Fatalf("unknown mech: %q", r)
	}
	c.ok("AUTH")
	if m := c.multi(); m != "SCRAM-SHA-256-PLUS\r\nSCRAM-SHA-256\r\nPLAIN\r\nLOGIN\r\n" {
		t.Fatalf("AUTH list: %q", m)
	}
	c.cmd("AUTH LOGIN " + b64(testUser))
	if r := c.cmd(b64(testPass)); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("LOGIN: %s", r)
	}
}

package smtpserver

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	gosasl "github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/xdg-go/scram"

	"github.com/tern-mail/tern/internal/store"
)

func plainIR(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func TestSubmissionSTARTTLSRequired(t *testing.T) {
	e := newEnv(t, Submission, nil)
	r := dialRaw(t, e.addr)
	r.expect("220")
	r.send("EHLO c\r\n")
	if l := r.expect("250"); strings.Contains(l, "AUTH") {
		t.Fatal("AUTH offered before TLS")
	}
	r.send("AUTH PLAIN " + plainIR("alice@example.org", alicePass) + "\r\n")
	r.expect("523 5.7.10")
	r.send("MAIL FROM:<alice@example.org>\r\n")
	r.expect("530 5.7.0")
	r.startTLS(clientTLS())
	r.send("EHLO c\r\n")
	r.expect("250")
	r.send("AUTH PLAIN " + plainIR("alice@example.org", "wrong") + "\r\n")
	r.expect("535 5.7.8")
	r.send("AUTH PLAIN " + plainIR("alice@example.org", alicePass) + "\r\n")
	r.expect("235")
	r.send("MAIL FROM:<bob@example.org>\r\n")
	r.expect("550 5.7.1")
	r.send("MAIL FROM:<>\r\n")
	r.expect("550 5.7.1")
	r.send("MAIL FROM:<alice+news@example.org>\r\n")
	r.expect("250")
}

const submitMsg = "From: Alice <alice@example.org>\r\nTo: bob@example.org, x@remote.example\r\nBcc: secret@remote.example\r\n\tcontinued\r\nSubject: test\r\n\r\nbody\r\n"

func TestSubmissionDelivery(t *testing.T) {
	e := newEnv(t, Submission, nil)
	c, err := gosmtp.DialStartTLS(e.addr, clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(gosasl.NewLoginClient("alice@example.org", alicePass)); err != nil {
		t.Fatal(err)
	}
	rcpts := []string{"bob@example.org", "x@remote.example", "secret@remote.example"}
	if err := c.SendMail("alice@example.org", rcpts, strings.NewReader(submitMsg)); err != nil {
		t.Fatal(err)
	}
	// The From header must be the account's too.
	bad := strings.Replace(submitMsg, "alice@example.org>", "bob@example.org>", 1)
	err = c.SendMail("alice@example.org", rcpts, strings.NewReader(bad))
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (gosmtp.EnhancedCode{5, 7, 1}) {
		t.Fatalf("foreign From accepted: %v", err)
	}
	m := e.inbox("bob@example.org")
	if len(m) != 1 {
		t.Fatalf("bob has %d messages", len(m))
	}
	got := m[0]
	for _, want := range []string{"Received: by mx.example.org with ", "SA id ", "\r\nMessage-ID: <", "\r\nDate: ", "Subject: test\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("message lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "127.0.0.1") || strings.Contains(got, "from c") || strings.Contains(got, "localhost") || strings.Contains(got, "Bcc") || strings.Contains(got, "secret") {
		t.Errorf("submission leaked client IP, EHLO name or Bcc:\n%s", got)
	}
	q := e.queue.all()
	if len(q) != 1 || len(q[0].Recipients) != 2 || q[0].From != "alice@example.org" || q[0].AccountID == 0 {
		t.Fatalf("queue: %+v", q)
	}
}

func TestSubmissionImplicitTLSAndLimits(t *testing.T) {
	e := newEnv(t, Submission, func(c *Config) {
		c.DefaultLimits = Limits{RecipientsPerMessage: 2, MessagesPerDay: 1}
	})
	addr := e.listen(true)
	c, err := gosmtp.DialTLS(addr, clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(gosasl.NewPlainClient("", "alice@example.org", alicePass)); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"bob@example.org", "x@remote.example"} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	var se *gosmtp.SMTPError
	if err := c.Rcpt("y@remote.example", nil); !errors.As(err, &se) || se.Code != 452 {
		t.Fatalf("third recipient: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("From: alice@example.org\r\n\r\nhi\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.org", nil); !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (gosmtp.EnhancedCode{4, 7, 1}) {
		t.Fatalf("second message of the day: %v", err)
	}
	// A new server on the same store (a restart, a reload) remembers.
	e.srv = New(e.srv.cfg)
	c2, err := gosmtp.DialTLS(e.listen(true), clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Auth(gosasl.NewPlainClient("", "alice@example.org", alicePass)); err != nil {
		t.Fatal(err)
	}
	if err := c2.Mail("alice@example.org", nil); !errors.As(err, &se) || se.Code != 451 {
		t.Fatalf("after a restart: %v", err)
	}
}

// scramClient adapts xdg-go/scram's client to go-sasl's Client.
type scramClient struct {
	conv *scram.ClientConversation
}

func (s *scramClient) Start() (string, []byte, error) {
	first, err := s.conv.Step("")
	return "SCRAM-SHA-256", []byte(first), err
}

func (s *scramClient) Next(challenge []byte) ([]byte, error) {
	resp, err := s.conv.Step(string(challenge))
	return []byte(resp), err
}

func TestSubmissionSCRAM(t *testing.T) {
	e := newEnv(t, Submission, nil)
	c, err := gosmtp.DialStartTLS(e.addr, clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "SCRAM-SHA-256") {
		t.Fatalf("AUTH mechanisms %q", mechs)
	}
	cl, err := scram.SHA256.NewClient("alice@example.org", alicePass, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(&scramClient{conv: cl.NewConversation()}); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("alice@example.org", []string{"bob@example.org"}, strings.NewReader("From: alice@example.org\r\n\r\nscram\r\n")); err != nil {
		t.Fatal(err)
	}
}

func TestHeaderFix(t *testing.T) {
	hdr := []byte("From: a@x\r\nBcc: b@y,\r\n c@z\r\nDate: today\r\n\r\n")
	out, info := fixHeader(hdr, headerFix{MessageID: "<id@h>", Date: "now"})
	if string(out) != "From: a@x\r\nDate: today\r\nMessage-ID: <id@h>\r\n\r\n" || info.Removed != 1 || len(info.From) != 1 || info.From[0] != "a@x" {
		t.Fatalf("got %q %+v", out, info)
	}
	out, info = fixHeader([]byte("Subject: s\n"), headerFix{DefaultFrom: "e@x", MessageID: "<i@h>", Date: "d"})
	if string(out) != "Subject: s\nFrom: <e@x>\r\nMessage-ID: <i@h>\r\nDate: d\r\n" || info.From[0] != "e@x" {
		t.Fatalf("got %q", out)
	}
	if _, info := fixHeader([]byte("From: ???\r\n\r\n"), headerFix{}); !info.BadFrom {
		t.Fatal("bad From not flagged")
	}
}

// FuzzFixHeader checks that header fixing never panics and always keeps
// the fields other than Bcc byte for byte.
func FuzzFixHeader(f *testing.F) {
	f.Add([]byte("From: a@x\r\nBcc: b\r\n\r\n"))
	f.Add([]byte("Subject: x\n y\nFrom: \"q\" <a@b>\n\n"))
	f.Fuzz(func(t *testing.T, hdr []byte) {
		out, _ := fixHeader(hdr, headerFix{MessageID: "<i@h>", Date: "d"})
		if len(out) < len(hdr)/2 && !strings.Contains(strings.ToLower(string(hdr)), "bcc") {
			t.Fatalf("lost bytes: %q -> %q", hdr, out)
		}
	})
}

// An account's own limits replace the server's, up or down, and a
// send-as grant lets it use an address that is neither its own nor an
// alias of it.
func TestSubmissionAccountLimitsAndSendAs(t *testing.T) {
	e := newEnv(t, Submission, func(c *Config) {
		c.DefaultLimits = Limits{RecipientsPerMessage: 2, MessagesPerDay: 100}
		c.LimitsFor = func(a store.Account) Limits {
			return Limits{RecipientsPerMessage: a.MaxRecipients, MessagesPerDay: a.MaxPerDay}
		}
	})
	ctx := context.Background()
	if err := e.st.SetSendLimits(ctx, "alice@example.org", 4, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetSendLimits(ctx, "bob@example.org", 1, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.st.AddSendAs(ctx, "alice@example.org", "news@example.org"); err != nil {
		t.Fatal(err)
	}
	dial := func(user, pass string) *gosmtp.Client {
		c, err := gosmtp.DialTLS(e.listen(true), clientTLS())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Auth(gosasl.NewPlainClient("", user, pass)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	var se *gosmtp.SMTPError
	rcpts := []string{"a@remote.example", "b@remote.example", "c@remote.example", "d@remote.example", "e@remote.example"}

	// Alice may have four recipients, above the server's two.
	alice := dial("alice@example.org", alicePass)
	if err := alice.Mail("news@example.org", nil); err != nil {
		t.Fatalf("send-as envelope refused: %v", err)
	}
	for i, r := range rcpts {
		err := alice.Rcpt(r, nil)
		if i < 4 && err != nil {
			t.Fatalf("recipient %d: %v", i+1, err)
		}
		if i == 4 && (!errors.As(err, &se) || se.Code != 452) {
			t.Fatalf("fifth recipient: %v", err)
		}
	}
	w, err := alice.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("From: Newsletter <news@example.org>\r\nSubject: n\r\n\r\nhi\r\n"))
	if err := w.Close(); err != nil {
		t.Fatalf("send-as message refused: %v", err)
	}
	if q := e.queue.all(); len(q) != 1 || q[0].From != "news@example.org" || len(q[0].Recipients) != 4 {
		t.Fatalf("queue %+v", q)
	}

	// Bob has one recipient and no grant for news@.
	bob := dial("bob@example.org", bobPass)
	if err := bob.Mail("news@example.org", nil); !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("bob sending as news@: %v", err)
	}
	if err := bob.Mail("bob@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := bob.Rcpt(rcpts[0], nil); err != nil {
		t.Fatal(err)
	}
	if err := bob.Rcpt(rcpts[1], nil); !errors.As(err, &se) || se.Code != 452 {
		t.Fatalf("bob's second recipient: %v", err)
	}
}

package smtpserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

const testMsg = "From: someone@remote.example\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nHello.\r\n..dot line\r\n"

func TestInboundDelivery(t *testing.T) {
	e := newEnv(t, Inbound, nil)
	sendMail(t, e.addr, "someone@remote.example", []string{"alice@example.org", "list@example.org", "bob+tag@example.org"}, testMsg)
	a, b := e.inbox("alice@example.org"), e.inbox("bob@example.org")
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("alice has %d, bob %d messages; want 1 each (one copy per account)", len(a), len(b))
	}
	if a[0] != b[0] {
		t.Fatal("recipients got different bytes")
	}
	m := a[0]
	if !strings.HasPrefix(m, "Return-Path: <someone@remote.example>\r\nReceived: from localhost ([127.0.0.1])\r\n\tby mx.example.org with UTF8SMTPS id ") ||
		!strings.Contains(m, "\r\n\t(TLS 1.3 ") {
		t.Fatalf("trace fields wrong:\n%s", m)
	}
	if !strings.HasSuffix(m, "\r\n"+testMsg) {
		t.Fatalf("body not preserved (dot-stuffing):\n%q", m)
	}
}

func TestInboundTranscripts(t *testing.T) {
	e := newEnv(t, Inbound, func(c *Config) { c.MaxRecipients = 3; c.MaxMessageBytes = 1000 })
	r := dialRaw(t, e.addr)
	r.expect("220 mx.example.org ESMTP")
	r.send("EHLO client.example\r\n")
	ehlo := ""
	for {
		line, _ := r.br.ReadString('\n')
		ehlo += line
		if line[3] == ' ' {
			break
		}
	}
	for _, ext := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "STARTTLS", "SMTPUTF8", "DSN", "SIZE 1000"} {
		if !strings.Contains(ehlo, ext) {
			t.Errorf("EHLO lacks %s:\n%s", ext, ehlo)
		}
	}
	if strings.Contains(ehlo, "AUTH") {
		t.Errorf("inbound port offers AUTH:\n%s", ehlo)
	}
	r.send("MAIL FROM:<s@remote.example> SIZE=5000\r\n")
	r.expect("552 5.3.4")
	r.send("MAIL FROM:<s@remote.example> RET=HDRS ENVID=abc+2Bd\r\n")
	r.expect("250")
	r.send("RCPT TO:<nobody@example.org>\r\n")
	r.expect("550 5.1.1")
	r.send("RCPT TO:<x@elsewhere.example>\r\n")
	r.expect("554 5.7.1")
	r.send("RCPT TO:<bad address@example.org>\r\n")
	r.expect("501")
	r.send("RCPT TO:<alice@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@example.org\r\n")
	r.expect("250")
	r.send("RCPT TO:<bob@example.org>\r\nRCPT TO:<list@example.org>\r\nRCPT TO:<bob+x@example.org>\r\n")
	r.expect("250")
	r.expect("250")
	r.expect("452 4.5.3")
	r.send("DATA\r\n")
	r.expect("354")
	r.send(strings.Repeat("x", 70) + "\r\n")
	for i := 0; i < 20; i++ {
		r.send(strings.Repeat("y", 70) + "\r\n")
	}
	r.send(".\r\n")
	r.expect("552 5.3.4")
	// The session goes on after a refused message.
	r.send("RSET\r\nNOOP\r\n")
	r.expect("250")
	r.expect("250")
	r.send("QUIT\r\n")
	r.expect("221")
	if n := len(e.inbox("alice@example.org")); n != 0 {
		t.Fatalf("oversized message stored (%d)", n)
	}
}

func TestPipeliningAndBDAT(t *testing.T) {
	e := newEnv(t, Inbound, nil)
	r := dialRaw(t, e.addr)
	r.expect("220")
	// RFC 2920: the whole envelope in one write; replies in order.
	r.send("EHLO c.example\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\nDATA\r\n")
	r.expect("250")
	r.expect("250")
	r.expect("250")
	r.expect("550 5.1.1")
	r.expect("354")
	r.send("Subject: one\r\n\r\nbody\r\n.\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<bob@example.org>\r\n")
	r.expect("250 2.0.0")
	r.expect("250")
	r.expect("250")
	// RFC 3030 CHUNKING: binary-safe chunks, no dot-stuffing.
	chunk1 := "Subject: two\r\n\r\n.line with dot\r\n"
	chunk2 := "end\r\n"
	r.send(fmt.Sprintf("BDAT %d\r\n%sBDAT %d LAST\r\n%s", len(chunk1), chunk1, len(chunk2), chunk2))
	r.expect("250")
	r.expect("250")
	r.send("QUIT\r\n")
	r.expect("221")
	if m := e.inbox("alice@example.org"); len(m) != 1 || !strings.HasSuffix(m[0], "Subject: one\r\n\r\nbody\r\n") {
		t.Fatalf("alice: %q", m)
	}
	if m := e.inbox("bob@example.org"); len(m) != 1 || !strings.HasSuffix(m[0], "for <bob@example.org>; "+m[0][strings.Index(m[0], "; ")+2:strings.Index(m[0], "Subject")]+chunk1+chunk2) {
		t.Fatalf("bob: %q", m)
	}
}

func TestQuotaAndForward(t *testing.T) {
	e := newEnv(t, Inbound, nil)
	if err := e.st.SetQuota(context.Background(), "bob@example.org", 10); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, e.addr)
	r.expect("220")
	r.send("EHLO c\r\nMAIL FROM:<s@remote.example> SIZE=100\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<fwd@example.org> NOTIFY=NEVER\r\nDATA\r\n")
	r.expect("250")
	r.expect("250")
	r.expect("452 4.2.2")
	r.expect("250")
	r.expect("354")
	r.send("Subject: x\r\n\r\nhi\r\n.\r\n")
	r.expect("250")
	q := e.queue.all()
	if len(q) != 1 || len(q[0].Recipients) != 1 || q[0].Recipients[0].Address != "carol@elsewhere.example" ||
		q[0].Recipients[0].Notify[0] != "NEVER" || q[0].From != "s@remote.example" || q[0].Blob.ID == "" ||
		q[0].Recipients[0].ORcpt != "rfc822;fwd@example.org" {
		t.Fatalf("queue got %+v", q)
	}
}

func TestErrorLimitsAndGarbage(t *testing.T) {
	e := newEnv(t, Inbound, func(c *Config) { c.MaxErrors = 3 })
	r := dialRaw(t, e.addr)
	r.expect("220")
	r.send("EHLO c\r\nMAIL FROM:<s@remote.example>\r\n")
	r.expect("250")
	r.expect("250")
	for i := 0; i < 3; i++ {
		r.send("RCPT TO:<nobody@example.org>\r\n")
		r.expect("550 5.1.1")
	}
	r.send("RCPT TO:<nobody@example.org>\r\n")
	r.expect("421 4.7.0")
	if _, err := r.br.ReadByte(); err == nil {
		t.Fatal("connection still open after 421")
	}

	// Unknown commands: go-smtp closes after a few.
	r = dialRaw(t, e.addr)
	r.expect("220")
	for i := 0; i < 3; i++ {
		r.send("XYZZ\r\n")
		r.expect("500")
	}
	r.send("XYZZ\r\n")
	r.expect("500")
	r.expect("500 5.5.1 Too many errors")

	// Line too long.
	r = dialRaw(t, e.addr)
	r.expect("220")
	r.send("NOOP " + strings.Repeat("a", 200<<10) + "\r\n")
	r.expect("500 5.4.0")
}

func TestConnectionsPerIP(t *testing.T) {
	e := newEnv(t, Inbound, func(c *Config) { c.MaxConnsPerIP = 2 })
	r1, r2 := dialRaw(t, e.addr), dialRaw(t, e.addr)
	r1.expect("220")
	r2.expect("220")
	r3 := dialRaw(t, e.addr)
	r3.expect("421 4.7.0")
	r1.send("QUIT\r\n")
	r1.expect("221")
	deadline := time.Now().Add(5 * time.Second)
	for {
		r4 := dialRaw(t, e.addr)
		if l := r4.reply(); strings.HasPrefix(l, "220") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slot not released after QUIT")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIdleTimeoutAndSlowClient(t *testing.T) {
	e := newEnv(t, Inbound, func(c *Config) { c.ReadTimeout = 200 * time.Millisecond; c.MaxConnDuration = 2 * time.Second })
	r := dialRaw(t, e.addr)
	r.expect("220")
	start := time.Now()
	r.expect("421 4.4.2")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("idle timeout took %v", d)
	}
	// A slow client cannot block another one.
	slow := dialRaw(t, e.addr)
	slow.expect("220")
	slow.send("EHLO c\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: slow")
	sendMail(t, e.addr, "s@remote.example", []string{"bob@example.org"}, testMsg)
}

func TestShutdownGraceful(t *testing.T) {
	e := newEnv(t, Inbound, nil)
	idle := dialRaw(t, e.addr)
	idle.expect("220")
	busy := dialRaw(t, e.addr)
	busy.expect("220")
	busy.send("EHLO c\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
	for _, p := range []string{"250", "250", "250", "354"} {
		busy.expect(p)
	}
	busy.send("Subject: in flight\r\n\r\n")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	idle.expect("421")
	time.Sleep(50 * time.Millisecond)
	busy.send("still here\r\n.\r\n")
	busy.expect("250")
	busy.expect("421")
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := len(e.inbox("alice@example.org")); n != 1 {
		t.Fatalf("in-flight message lost: %d", n)
	}
	if c, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepting after Shutdown")
	}
}

// TestConcurrentSessions checks that many sessions deliver at once (the
// store group-commits them) and that every 250 means stored.
func TestConcurrentSessions(t *testing.T) {
	e := newEnv(t, Inbound, nil)
	const sessions, each = 16, 10
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := 0; i < sessions; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := gosmtp.Dial(e.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for j := 0; j < each; j++ {
				if err := c.SendMail("s@remote.example", []string{"alice@example.org"}, strings.NewReader(testMsg)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(e.inbox("alice@example.org")); n != sessions*each {
		t.Fatalf("stored %d, want %d", n, sessions*each)
	}
}

func TestSMTPUTF8(t *testing.T) {
	e := newEnv(t, Inbound, nil)
	if err := e.st.AddAlias(context.Background(), "élan@example.org", []string{"alice@example.org"}); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, e.addr)
	r.expect("220")
	r.send("EHLO c\r\nMAIL FROM:<δοκιμή@παράδειγμα.example>\r\n")
	r.expect("250")
	r.expect("553 5.6.7")
	r.send("MAIL FROM:<δοκιμή@παράδειγμα.example> SMTPUTF8 BODY=8BITMIME\r\nRCPT TO:<élan@example.org>\r\nDATA\r\n")
	r.expect("250")
	r.expect("250")
	r.expect("354")
	r.send("Subject: ünïcödé\r\n\r\nçà\r\n.\r\n")
	r.expect("250")
	m := e.inbox("alice@example.org")
	if len(m) != 1 || !strings.HasPrefix(m[0], "Return-Path: <δοκιμή@παράδειγμα.example>\r\n") || !strings.Contains(m[0], "with UTF8SMTP") {
		t.Fatalf("got %q", m)
	}
}

// TestSuccessDSN checks RFC 3461 NOTIFY=SUCCESS at final delivery: a
// "delivered" report from the null sender goes to the queue.
func TestSuccessDSN(t *testing.T) {
	e := newEnv(t, Inbound, nil)
	r := dialRaw(t, e.addr)
	r.expect("220")
	r.send("EHLO c\r\nMAIL FROM:<s@remote.example> RET=HDRS ENVID=env42\r\n" +
		"RCPT TO:<alice@example.org> NOTIFY=SUCCESS ORCPT=rfc822;alice@example.org\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
	for _, p := range []string{"250", "250", "250", "250", "354"} {
		r.expect(p)
	}
	r.send("Subject: please confirm\r\n\r\nbody text\r\n.\r\n")
	r.expect("250")
	q := e.queue.all()
	if len(q) != 1 || q[0].From != "" || q[0].Recipients[0].Address != "s@remote.example" {
		t.Fatalf("queue: %+v", q)
	}
	f, err := e.st.OpenBlob(q[0].Blob.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	for _, want := range []string{"Action: delivered", "Final-Recipient: rfc822; alice@example.org", "Original-Envelope-Id: env42", "Subject: please confirm"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(string(b), "bob@example.org") || strings.Contains(string(b), "body text") {
		t.Errorf("report mentions bob or quotes the body with RET=HDRS:\n%s", b)
	}
}

// TestSlowDataWithinTimeouts checks that a DATA trickling in slower than
// ReadTimeout in total, but never idle that long, is accepted, and that a
// client going quiet mid-DATA is cut off.
func TestSlowDataWithinTimeouts(t *testing.T) {
	e := newEnv(t, Inbound, func(c *Config) { c.ReadTimeout = 300 * time.Millisecond })
	r := dialRaw(t, e.addr)
	r.expect("220")
	r.send("EHLO c\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
	for _, p := range []string{"250", "250", "250", "354"} {
		r.expect(p)
	}
	r.send("Subject: slow\r\n\r\n")
	for i := 0; i < 8; i++ {
		time.Sleep(100 * time.Millisecond)
		r.send("line\r\n")
	}
	r.send(".\r\n")
	r.expect("250")

	q := dialRaw(t, e.addr)
	q.expect("220")
	q.send("EHLO c\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
	for _, p := range []string{"250", "250", "250", "354"} {
		q.expect(p)
	}
	q.send("Subject: stalls\r\n")
	start := time.Now()
	if _, err := io.ReadAll(q.br); err != nil {
		t.Logf("read: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stalled DATA held for %v", d)
	}
	if n := len(e.inbox("alice@example.org")); n != 1 {
		t.Fatalf("alice has %d messages, want 1", n)
	}
}

package main

import (
	"bytes"
	"context"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/config"
	"github.com/tern-mail/tern/internal/store"
)

// runCmd runs a tern command line in-process.
func runCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}
	code = run(context.Background(), e, args)
	return code, out.String(), errb.String()
}

func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	code, out, errs := runCmd(t, stdin, args...)
	if code != 0 {
		t.Fatalf("tern %s: exit %d: %s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func TestInitAndAdmin(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	out := mustRun(t, "", "init", "-data", data, "-domain", "example.org", "-listen", "127.0.0.1")
	for _, want := range []string{"MX", "v=spf1", "_domainkey.example.org", "_dmarc.example.org", "_mta-sts.example.org"} {
		if !strings.Contains(out, want) {
			t.Errorf("init output lacks %s:\n%s", want, out)
		}
	}
	cfg, err := config.Load(filepath.Join(data, "tern.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hostname != "mail.example.org" || cfg.SMTP.Listen[0] != "127.0.0.1:25" || cfg.IMAP.ListenTLS[0] != "127.0.0.1:993" {
		t.Errorf("config %+v", cfg)
	}
	for _, f := range []string{"tls/cert.pem", "tls/key.pem", "tern.db"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Error(err)
		}
	}
	if code, _, errs := runCmd(t, "", "init", "-data", data, "-domain", "example.org"); code != 1 || !strings.Contains(errs, "exists") {
		t.Errorf("second init: %d %s", code, errs)
	}

	mustRun(t, "secret-password\n", "user", "add", "-data", data, "alice@example.org")
	mustRun(t, "secret-password\n", "user", "add", "bob@example.org", "-data", data)
	if code, _, errs := runCmd(t, "short\n", "user", "add", "-data", data, "carol@example.org"); code != 1 || !strings.Contains(errs, "too short") {
		t.Errorf("short password: %d %q", code, errs)
	}
	if code, _, errs := runCmd(t, "secret-password\n", "user", "add", "-data", data, "x@unknown.test"); code != 1 || strings.Count(errs, "\n") != 1 {
		t.Errorf("unknown domain: %d %q", code, errs)
	}
	mustRun(t, "", "user", "quota", "-data", data, "alice@example.org", "1G")
	if out := mustRun(t, "", "user", "list", "-data", data); !strings.Contains(out, "alice@example.org\tused 0\tquota 1073741824") || !strings.Contains(out, "bob@") {
		t.Errorf("user list:\n%s", out)
	}
	mustRun(t, "", "user", "limits", "-data", data, "bob@example.org", "10", "200")
	if out := mustRun(t, "", "user", "list", "-data", data); !strings.Contains(out, "bob@example.org\tused 0\tquota unlimited\tlimits 10 rcpts 200/day") {
		t.Errorf("user list with limits:\n%s", out)
	}
	mustRun(t, "", "sendas", "add", "-data", data, "bob@example.org", "@example.org")
	if out := mustRun(t, "", "sendas", "list", "-data", data, "bob@example.org"); out != "@example.org\n" {
		t.Errorf("sendas list: %q", out)
	}
	mustRun(t, "", "sendas", "del", "-data", data, "bob@example.org", "@example.org")
	if code, _, _ := runCmd(t, "", "sendas", "add", "-data", data, "nobody@example.org", "x@example.org"); code != 1 {
		t.Errorf("sendas for a missing account: exit %d", code)
	}
	mustRun(t, "new-password-1\n", "user", "passwd", "-data", data, "bob@example.org")
	mustRun(t, "", "domain", "add", "-data", data, "other.test")
	if out := mustRun(t, "", "domain", "list", "-data", data); out != "example.org\nother.test\n" {
		t.Errorf("domain list %q", out)
	}
	mustRun(t, "", "alias", "add", "-data", data, "team@example.org", "alice@example.org", "bob@example.org")
	mustRun(t, "", "alias", "add", "-data", data, "@other.test", "alice@example.org")
	if out := mustRun(t, "", "alias", "list", "-data", data); !strings.Contains(out, "team@example.org\talice@example.org bob@example.org") {
		t.Errorf("alias list %q", out)
	}
	mustRun(t, "", "alias", "del", "-data", data, "team@example.org")
	mustRun(t, "", "user", "del", "-data", data, "bob@example.org")
	if code, _, _ := runCmd(t, "", "user", "del", "-data", data, "bob@example.org"); code != 1 {
		t.Error("deleting a missing user succeeded")
	}
	if out := mustRun(t, "", "dns", "-data", data, "other.test"); !strings.Contains(out, "_domainkey.other.test") {
		t.Errorf("dns for added domain:\n%s", out)
	}
	if out := mustRun(t, "", "dkim", "rotate", "-data", data, "example.org"); !strings.Contains(out, "new selectors") {
		t.Errorf("rotate: %s", out)
	}
}

func TestUsageErrors(t *testing.T) {
	if code, _, errs := runCmd(t, "", "frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Errorf("unknown command: %d %s", code, errs)
	}
	if code, _, errs := runCmd(t, "", "init", "-data", t.TempDir()); code != 2 || !strings.Contains(errs, "usage:") {
		t.Errorf("init without domain: %d %s", code, errs)
	}
	if code, _, _ := runCmd(t, "", "user", "-h"); code != 0 {
		t.Errorf("-h exit %d", code)
	}
	if code, _, errs := runCmd(t, "", "user", "list", "-data", t.TempDir()); code != 1 || !strings.Contains(errs, "tern init") {
		t.Errorf("missing config: %d %s", code, errs)
	}
	if code, _, _ := runCmd(t, "", "-h"); code != 0 {
		t.Errorf("tern -h exit %d", code)
	}
}

// testServer starts a full server on loopback with ephemeral ports.
func testServer(t *testing.T) (*server, string) {
	t.Helper()
	data := t.TempDir()
	cfgText := strings.NewReplacer(":2525", ":0", ":2587", ":0", ":2465", ":0", ":2143", ":0", ":2993", ":0", ":2110", ":0", ":2995", ":0", ":8080", ":0").Replace(devConfig)
	ctx := context.Background()
	if _, err := initDataDir(ctx, data, devDomain, cfgText); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(data, "tern.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dev = true
	if err := ensureDemo(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	srv, err := start(ctx, cfg, &logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.stop(); err != nil {
			t.Error(err)
		}
	})
	return srv, data
}

// addr finds the address a server listens on for a label such as "SMTP".
func (s *server) addr(label string) string {
	for _, p := range s.ports {
		if strings.HasPrefix(p, label+" ") && !strings.Contains(p, "(TLS)") {
			return p[strings.LastIndexByte(p, ' ')+1:]
		}
	}
	return ""
}

func TestServeDeliversAndAdminWhileRunning(t *testing.T) {
	srv, data := testServer(t)
	// An account added by the CLI while the server runs can receive mail
	// at once.
	mustRun(t, "another-password\n", "user", "add", "-data", data, "late@example.test")
	msg := "From: demo@example.test\r\nTo: late@example.test\r\nSubject: hi\r\n\r\nhello\r\n"
	if err := sendPlain(srv.addr("SMTP"), "someone@remote.test", []string{"late@example.test"}, msg); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + srv.addr("HTTP") + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	ctx := context.Background()
	st, err := store.Open(ctx, data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	acct, err := st.AccountByAddress(ctx, "late@example.test")
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := st.MailboxByName(ctx, acct.ID, "INBOX")
	deadline := time.Now().Add(5 * time.Second)
	for {
		msgs, _ := st.Messages(ctx, inbox.ID, 1, 0)
		if len(msgs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("message not delivered")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sendPlain sends one message without STARTTLS (the test server's
// certificate is self-signed).
func sendPlain(addr, from string, to []string, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func TestQueueCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	mustRun(t, "", "init", "-data", data, "-domain", "example.org")
	if out := mustRun(t, "", "queue", "list", "-data", data); out != "" {
		t.Errorf("empty queue lists %q", out)
	}
	msg := "To: someone@remote.test\r\nSubject: cron\r\n\r\nbody\r\n"
	mustRun(t, msg, "sendmail", "-data", data, "-t", "-i", "-f", "cron@example.org")
	out := mustRun(t, "", "queue", "list", "-data", data)
	if !strings.Contains(out, "cron@example.org") || !strings.Contains(out, "someone@remote.test") {
		t.Fatalf("queue list after sendmail:\n%s", out)
	}
	id := strings.Fields(out)[0]
	if out := mustRun(t, "", "queue", "show", "-data", data, id); !strings.Contains(out, "Subject: cron") {
		t.Errorf("queue show:\n%s", out)
	}
	mustRun(t, "", "queue", "retry", "-data", data, id)
	mustRun(t, "", "queue", "all", "-data", data)
	mustRun(t, "", "queue", "drop", "-data", data, id)
	if out := mustRun(t, "", "queue", "list", "-data", data); out != "" {
		t.Errorf("queue after drop: %q", out)
	}
	if code, _, _ := runCmd(t, "", "queue", "drop", "-data", data, "nope"); code != 2 {
		t.Error("bad id accepted")
	}
}

// A message queued by `tern sendmail` while the server runs is delivered
// at once: the CLI wakes the server's queue through the control socket.
func TestSendmailWakesRunningServer(t *testing.T) {
	_, data := testServer(t)
	msg := "To: demo@example.test\r\nSubject: from cron\r\n\r\nhello\r\n"
	mustRun(t, msg, "sendmail", "-data", data, "-t", "-f", "cron@example.test")
	ctx := context.Background()
	st, err := store.Open(ctx, data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	acct, _ := st.AccountByAddress(ctx, devUser)
	inbox, _ := st.MailboxByName(ctx, acct.ID, "INBOX")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if msgs, _ := st.Messages(ctx, inbox.ID, 1, 0); len(msgs) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("message from sendmail not delivered within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package smtpserver

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/testutil"
)

// TestInteropPython sends through python3's smtplib: inbound with
// STARTTLS, then submission with AUTH LOGIN/PLAIN.
func TestInteropPython(t *testing.T) {
	py := testutil.NeedProgram(t, "python3")
	e := newEnv(t, Inbound|Submission, func(c *Config) { c.InsecureAuth = false })
	host, port, _ := strings.Cut(e.addr, ":")
	script := `
import smtplib, ssl, sys
host, port, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl._create_unverified_context()
s = smtplib.SMTP(host, port, timeout=20)
s.starttls(context=ctx)
s.sendmail("py@remote.example", ["alice@example.org"], b"Subject: from python\r\n\r\nhello inbound\r\n")
try:
    s.sendmail("py@remote.example", ["x@elsewhere.example"], b"Subject: relay\r\n\r\nno\r\n")
    sys.exit("relay accepted")
except smtplib.SMTPRecipientsRefused as e:
    code = e.recipients["x@elsewhere.example"][0]
    assert code == 554, code
s.login("alice@example.org", pw)
s.sendmail("alice@example.org", ["bob@example.org"], b"From: alice@example.org\r\nSubject: from python\r\n\r\nhello submission\r\n")
s.quit()
`
	out, err := exec.Command(py, "-c", script, host, port, alicePass).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	if a := e.inbox("alice@example.org"); len(a) != 1 || !strings.Contains(a[0], "hello inbound") {
		t.Fatalf("alice: %q", a)
	}
	if b := e.inbox("bob@example.org"); len(b) != 1 || !strings.Contains(b[0], "hello submission") || !strings.Contains(b[0], "Message-ID: ") {
		t.Fatalf("bob: %q", b)
	}
}

// TestInteropSwaks sends with swaks over STARTTLS, with and without AUTH.
func TestInteropSwaks(t *testing.T) {
	swaks := testutil.NeedProgram(t, "swaks")
	e := newEnv(t, Inbound|Submission, nil)
	run := func(args ...string) string {
		args = append([]string{"--server", e.addr, "--tls", "--timeout", "20", "--hide-all", "--ehlo", "swaks.example"}, args...)
		out, err := exec.Command(swaks, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("swaks %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("--from", "sw@remote.example", "--to", "alice@example.org", "--body", "swaks inbound")
	run("--from", "alice@example.org", "--to", "bob@example.org", "--auth", "PLAIN", "--auth-user", "alice@example.org",
		"--auth-password", alicePass, "--header", "From: alice@example.org", "--body", "swaks submission")
	if a := e.inbox("alice@example.org"); len(a) != 1 || !strings.Contains(a[0], "swaks inbound") || !strings.Contains(a[0], "from swaks.example") {
		t.Fatalf("alice: %q", a)
	}
	if b := e.inbox("bob@example.org"); len(b) != 1 || !strings.Contains(b[0], "swaks submission") {
		t.Fatalf("bob: %q", b)
	}
	// Implicit TLS (port 465 style) with AUTH LOGIN.
	tlsAddr := e.listen(true)
	out, err := exec.Command(swaks, "--server", tlsAddr, "--tlsc", "--timeout", "20", "--hide-all",
		"--from", "alice@example.org", "--to", "bob@example.org", "--auth", "LOGIN", "--auth-user", "alice@example.org",
		"--auth-password", alicePass, "--header", "From: alice@example.org", "--body", "swaks implicit tls").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks --tlsc: %v\n%s", err, out)
	}
	if b := e.inbox("bob@example.org"); len(b) != 2 || !strings.Contains(b[1], "swaks implicit tls") || !strings.Contains(b[1], "ESMTPSA") {
		t.Fatalf("bob after --tlsc: %q", b)
	}
}

// TestInteropMsmtp submits with msmtp, the sendmail replacement many
// desktop and server setups use, over STARTTLS and over implicit TLS,
// reading the recipients from the header (-t).
func TestInteropMsmtp(t *testing.T) {
	msmtp := testutil.NeedProgram(t, "msmtp")
	e := newEnv(t, Submission, nil)
	for i, mode := range []struct {
		addr     string
		starttls string
	}{{e.addr, "on"}, {e.listen(true), "off"}} {
		host, port, _ := strings.Cut(mode.addr, ":")
		cmd := exec.Command(msmtp, "--host="+host, "--port="+port, "--tls=on", "--tls-starttls="+mode.starttls,
			"--tls-certcheck=off", "--auth=on", "--user=alice@example.org", "--passwordeval=echo "+alicePass,
			"--from=alice@example.org", "-t")
		cmd.Stdin = strings.NewReader(fmt.Sprintf("From: alice@example.org\nTo: bob@example.org\nBcc: alice@example.org\nSubject: msmtp %d\n\nsent by msmtp\n", i))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("msmtp (starttls %s): %v\n%s", mode.starttls, err, out)
		}
		b := e.inbox("bob@example.org")
		if len(b) != i+1 || !strings.Contains(b[i], fmt.Sprintf("Subject: msmtp %d", i)) || strings.Contains(b[i], "Bcc") {
			t.Fatalf("bob after msmtp %d: %q", i, b)
		}
		if a := e.inbox("alice@example.org"); len(a) != i+1 {
			t.Fatalf("Bcc copy to alice: %d messages", len(a))
		}
	}
}

// TestCorpusRoundTrip delivers every corpus message over SMTP and reads
// it back from the store: identical apart from the trace fields in front.
func TestCorpusRoundTrip(t *testing.T) {
	files := testutil.CorpusFiles(t)
	if testing.Short() {
		files = files[:300]
	}
	e := newEnv(t, Inbound, nil)
	want := map[[32]byte]int{}
	var mu sync.Mutex
	const workers = 8
	jobs := make(chan string)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := dialRaw(t, e.addr)
			r.expect("220")
			r.send("EHLO corpus.example\r\n")
			r.expect("250")
			for f := range jobs {
				b, err := os.ReadFile(f)
				if err != nil {
					errs <- err
					return
				}
				wire := toCRLF(b)
				mu.Lock()
				want[sha256.Sum256(wire)]++
				mu.Unlock()
				// Our own client: go-smtp's and net/smtp's DotWriter
				// turn "\r\r\n" into "\r\r\r\n"; the test owns the wire.
				r.c.SetDeadline(time.Now().Add(time.Minute))
				r.send("MAIL FROM:<corpus@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
				for _, p := range []string{"250", "250", "354"} {
					if l := r.reply(); !strings.HasPrefix(l, p) {
						errs <- fmt.Errorf("%s: got %q, want %s", f, l, p)
						return
					}
				}
				r.send(string(dotStuff(wire)) + ".\r\n")
				if l := r.reply(); !strings.HasPrefix(l, "250") {
					errs <- fmt.Errorf("%s: DATA got %q", f, l)
					return
				}
			}
		}()
	}
	for _, f := range files {
		jobs <- f
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := e.inbox("alice@example.org")
	if len(got) != len(files) {
		t.Fatalf("stored %d of %d messages", len(got), len(files))
	}
	for i, m := range got {
		body := stripTrace(t, m)
		sum := sha256.Sum256([]byte(body))
		if want[sum] == 0 {
			t.Fatalf("message %d differs from every original:\n%.500s", i, body)
		}
		want[sum]--
	}
}

// dotStuff doubles a leading dot on every line (RFC 5321 §4.5.2).
func dotStuff(b []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(b, []byte("\r\n")) {
		if len(line) > 0 && line[0] == '.' {
			out.WriteByte('.')
		}
		out.Write(line)
	}
	return out.Bytes()
}

// toCRLF is what an SMTP client puts on the wire for a file: CRLF line
// endings and a final line break.
func toCRLF(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	b = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		b = append(b, "\r\n"...)
	}
	return b
}

// stripTrace removes the Return-Path and Received fields tern added.
func stripTrace(t *testing.T, m string) string {
	t.Helper()
	if !strings.HasPrefix(m, "Return-Path: ") {
		t.Fatalf("no Return-Path: %.200q", m)
	}
	m = m[strings.Index(m, "\r\n")+2:]
	if !strings.HasPrefix(m, "Received: ") {
		t.Fatalf("no Received: %.200q", m)
	}
	for {
		i := strings.Index(m, "\r\n")
		m = m[i+2:]
		if !strings.HasPrefix(m, "\t") {
			return m
		}
	}
}

package pop3server

import (
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tern-mail/tern/internal/testutil"
)

// Interop tests run real POP3 clients against the server; they skip when
// the program is missing (fail with TERN_INTEROP=1).

func (e *env) writeCA(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "ca.pem")
	cert := e.srv.cfg.TLS.Certificates[0].Certificate[0]
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func hostPort(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

const poplibScript = `
import os, poplib, ssl, sys
host, port, out, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
p = poplib.POP3(host, port, timeout=30)
caps = p.capa()
assert 'STLS' in caps and 'UIDL' in caps and 'TOP' in caps, caps
ctx = ssl.create_default_context(cafile=ca)
p.stls(context=ctx)
p.user(os.environ['POP_USER'])
p.pass_(os.environ['POP_PASS'])
count, size = p.stat()
resp, uidls, _ = p.uidl()
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    with open(os.path.join(out, '%d.eml' % i), 'wb') as f:
        f.write(b''.join(l + b'\r\n' for l in lines))
resp, top, _ = p.top(1, 0)
with open(os.path.join(out, 'top1.eml'), 'wb') as f:
    f.write(b''.join(l + b'\r\n' for l in top))
p.dele(1)
p.quit()
print(count, size, len(uidls))
`

func TestInteropPoplib(t *testing.T) {
	py := testutil.NeedProgram(t, "python3")
	e := newEnv(t, envOpts{})
	msgs := []string{msg1, msg2, msg3}
	for _, m := range msgs {
		e.deliver(m)
	}
	out := t.TempDir()
	host, port := hostPort(t, e.addr)
	cmd := exec.Command(py, "-c", poplibScript, host, port, out, e.writeCA(t))
	cmd.Env = append(os.Environ(), "POP_USER="+testUser, "POP_PASS="+testPass)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("poplib: %v\n%s", err, b)
	}
	if !strings.HasPrefix(string(b), "3 ") {
		t.Errorf("poplib output %q", b)
	}
	for i, m := range msgs {
		got, _ := os.ReadFile(filepath.Join(out, fmt.Sprintf("%d.eml", i+1)))
		if string(got) != crlf(m) {
			t.Errorf("message %d: %q want %q", i+1, got, crlf(m))
		}
	}
	if top, _ := os.ReadFile(filepath.Join(out, "top1.eml")); !strings.HasSuffix(string(top), "Subject: one\r\n\r\n") {
		t.Errorf("TOP: %q", top)
	}
	if got := e.uids(); len(got) != 2 {
		t.Errorf("after DELE+QUIT: %v", got)
	}
}

// fetchmailRun runs fetchmail once against the server with an MDA that
// stores each message as a file in out.
func fetchmailRun(t *testing.T, fm string, e *env, out, idfile string, keep bool) string {
	t.Helper()
	host, port := hostPort(t, e.addr)
	rc := filepath.Join(t.TempDir(), "fetchmailrc")
	mode := "nokeep"
	if keep {
		mode = "keep"
	}
	conf := fmt.Sprintf(`set no syslog
poll %s service %s protocol pop3 uidl auth password
  user "%s" there with password "%s" is "nobody" here
  sslproto '' %s
  mda "/bin/sh -c 'cat > %s/msg.$(date +%%s%%N)'"
`, host, port, testUser, testPass, mode, out)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(fm, "-f", rc, "-i", idfile, "--nodetach", "-v")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	b, err := cmd.CombinedOutput()
	// Exit 1 means "no mail", which the keep-mode second run expects.
	if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) {
		t.Fatalf("fetchmail: %v\n%s", err, b)
	}
	return string(b)
}

func readDir(t *testing.T, dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		out = append(out, string(b))
	}
	sort.Strings(out)
	return out
}

func TestInteropFetchmail(t *testing.T) {
	fm := testutil.NeedProgram(t, "fetchmail")
	e := newEnv(t, envOpts{insecure: true})
	for _, m := range []string{msg1, msg2, msg3} {
		e.deliver(m)
	}
	idfile := filepath.Join(t.TempDir(), "fetchids")
	// Keep mode: everything is fetched, nothing deleted; a second run
	// fetches nothing new (UIDL bookkeeping).
	out := t.TempDir()
	log := fetchmailRun(t, fm, e, out, idfile, true)
	if got := readDir(t, out); len(got) != 3 {
		t.Fatalf("keep: fetched %d messages\n%s", len(got), log)
	}
	if got := e.uids(); len(got) != 3 {
		t.Fatalf("keep mode deleted messages: %v", got)
	}
	out2 := t.TempDir()
	log = fetchmailRun(t, fm, e, out2, idfile, true)
	if got := readDir(t, out2); len(got) != 0 {
		t.Fatalf("second keep run fetched %d\n%s", len(got), log)
	}
	// Delete mode: fetched and removed from the server.
	out3 := t.TempDir()
	log = fetchmailRun(t, fm, e, out3, filepath.Join(t.TempDir(), "ids"), false)
	got := readDir(t, out3)
	if len(got) != 3 {
		t.Fatalf("delete: fetched %d\n%s", len(got), log)
	}
	if u := e.uids(); len(u) != 0 {
		t.Fatalf("delete mode left %v\n%s", u, log)
	}
	joined := strings.Join(got, "\n")
	for _, want := range []string{"Subject: one", ".starts with a dot", "after lone dot"} {
		if !strings.Contains(joined, want) {
			t.Errorf("fetched mail lacks %q", want)
		}
	}
}

func TestInteropGetmail(t *testing.T) {
	gm := testutil.NeedProgram(t, "getmail")
	e := newEnv(t, envOpts{insecure: true})
	for _, m := range []string{msg1, msg2, msg3} {
		e.deliver(m)
	}
	host, port := hostPort(t, e.addr)
	dir := t.TempDir()
	md := filepath.Join(dir, "out")
	os.Mkdir(md, 0o700)
	// An MDA script rather than getmail's Maildir writer, which refuses
	// to run as root (CI containers).
	script := filepath.Join(dir, "deliver.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec cat > \""+md+"/$(date +%s%N).eml\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	rc := fmt.Sprintf(`[retriever]
type = SimplePOP3Retriever
server = %s
port = %s
username = %s
password = %s

[destination]
type = MDA_external
path = %s
allow_root_commands = true

[options]
read_all = false
delete = %%s
verbose = 1
`, host, port, testUser, testPass, script)
	run := func(del bool) string {
		if err := os.WriteFile(filepath.Join(dir, "getmailrc"), []byte(fmt.Sprintf(rc, map[bool]string{true: "true", false: "false"}[del])), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := exec.Command(gm, "--getmaildir", dir, "--rcfile", "getmailrc").CombinedOutput()
		if err != nil {
			t.Fatalf("getmail: %v\n%s", err, b)
		}
		return string(b)
	}
	log := run(false)
	if got := readDir(t, md); len(got) != 3 {
		t.Fatalf("getmail fetched %d\n%s", len(got), log)
	}
	// A second run remembers the UIDLs and fetches nothing.
	log = run(false)
	if got := readDir(t, md); len(got) != 3 {
		t.Fatalf("second run: %d messages\n%s", len(got), log)
	}
	if u := e.uids(); len(u) != 3 {
		t.Fatalf("keep mode deleted: %v", u)
	}
	e.deliver("Subject: four\n\nnew one\n")
	run(true)
	got := readDir(t, md)
	if len(got) != 4 {
		t.Fatalf("after new mail: %d messages", len(got))
	}
	if u := e.uids(); len(u) != 0 {
		t.Fatalf("delete mode left %v", u)
	}
	for _, m := range got {
		if strings.Contains(m, "Subject: one") && !strings.Contains(m, "\n.starts with a dot\n") {
			t.Errorf("byte-stuffing not undone: %q", m)
		}
	}
}

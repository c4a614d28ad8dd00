package queue

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/foxcpp/go-mockdns"

	"github.com/tern-mail/tern/internal/testutil"
)

// startPostfix runs a private Postfix instance on ip:port that accepts
// mail for b.test into the Maildir returned, with STARTTLS.
func startPostfix(t *testing.T, ip string, port int) (maildir string) {
	t.Helper()
	postfix := testutil.NeedProgram(t, "postfix")
	if os.Geteuid() != 0 {
		testutil.Missing(t, "root (Postfix's master must start as root)")
	}
	dir, err := os.MkdirTemp("", "tern-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	conf := filepath.Join(dir, "conf")
	for _, d := range []string{conf, filepath.Join(dir, "spool"), filepath.Join(dir, "data"), filepath.Join(dir, "vmail")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"data", "vmail"} {
		if out, err := exec.Command("chown", "postfix:postfix", filepath.Join(dir, d)).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	cert, _ := testCert(t, "mx.b.test")
	keyDER, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})...)
	if err := os.WriteFile(filepath.Join(conf, "chain.pem"), chain, 0o600); err != nil {
		t.Fatal(err)
	}
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.b.test
mydestination =
inet_interfaces = all
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
smtp_dns_support_level = disabled
maillog_file_prefixes = /tmp, /var
maillog_file = %[1]s/maillog
alias_maps =
alias_database =
virtual_mailbox_domains = b.test
virtual_mailbox_base = %[1]s/vmail
virtual_mailbox_maps = static:bob/
virtual_uid_maps = static:%[2]s
virtual_gid_maps = static:%[3]s
smtpd_tls_security_level = may
smtpd_tls_chain_files = %[1]s/conf/chain.pem
smtpd_relay_restrictions = reject_unauth_destination
smtpd_tls_received_header = yes
biff = no
`, dir, uidOf(t, "postfix"), gidOf(t, "postfix"))
	masterCF := fmt.Sprintf("%s:%d inet n - n - - smtpd\n", ip, port) + `pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
tlsmgr unix - - n 1000? 1 tlsmgr
virtual unix - n n - - virtual
postlog unix-dgram n - n - 1 postlogd
`
	os.WriteFile(filepath.Join(conf, "main.cf"), []byte(mainCF), 0o644)
	os.WriteFile(filepath.Join(conf, "master.cf"), []byte(masterCF), 0o644)
	if out, err := exec.Command(postfix, "-c", conf, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		t.Fatalf("postfix start: %v %s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		exec.Command(postfix, "-c", conf, "stop").Run()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
			t.Logf("postfix log:\n%s", log)
		}
	})
	return filepath.Join(dir, "vmail", "bob")
}

func uidOf(t *testing.T, user string) string {
	out, err := exec.Command("id", "-u", user).Output()
	if err != nil {
		testutil.Missing(t, "user "+user)
	}
	return strings.TrimSpace(string(out))
}

func gidOf(t *testing.T, user string) string {
	out, err := exec.Command("id", "-g", user).Output()
	if err != nil {
		testutil.Missing(t, "user "+user)
	}
	return strings.TrimSpace(string(out))
}

// TestInteropPostfixReceives: Postfix accepts tern's mail over STARTTLS,
// and Debian's python3-dkim verifies both of tern's signatures on the
// message as Postfix stored it.
func TestInteropPostfixReceives(t *testing.T) {
	dkimverify := testutil.NeedProgram(t, "dkimverify")
	// A port for Postfix: Postfix must bind it itself, so take one from
	// a listener on another address of the same loopback net.
	l, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	maildir := startPostfix(t, "127.0.0.4", port)
	zones := map[string]mockdns.Zone{
		"b.test.":    {MX: []net.MX{{Host: "mx.b.test.", Pref: 10}}},
		"mx.b.test.": {A: []string{"127.0.0.4"}},
	}
	e := newEnv(t, zones, Config{Port: port})
	e.run(t)
	waitPostfix(t, fmt.Sprintf("127.0.0.4:%d", port))
	e.submit(t, testMessage, "bob@b.test")
	var file string
	waitFor(t, 30*time.Second, "the message in Postfix's Maildir", func() bool {
		m, _ := filepath.Glob(filepath.Join(maildir, "new", "*"))
		if len(m) > 0 {
			file = m[0]
		}
		return len(m) > 0
	})
	// Postfix may deliver to its Maildir before tern has recorded the 250
	// (both run at once on a busy machine).
	waitFor(t, 10*time.Second, "an empty queue", func() bool { return e.queueLen(t) == 0 })
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "(using TLS") {
		t.Fatalf("Postfix did not record TLS:\n%s", got)
	}
	verifyWithPython(t, dkimverify, e, got)
}

func waitPostfix(t *testing.T, addr string) {
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("postfix not listening on %s", addr)
}

// verifyWithPython checks every DKIM-Signature with dkimpy, serving the
// keys from the test DNS zone instead of the network.
func verifyWithPython(t *testing.T, dkimverify string, e *env, msg []byte) {
	t.Helper()
	sels, _ := e.keys.Selectors("a.test")
	script := "import sys, dkim\nrecs = {}\n"
	for _, s := range sels {
		name := s.Name + "._domainkey.a.test"
		txt, err := e.res.LookupTXT(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		script += fmt.Sprintf("recs[b'%s.'] = b'%s'\n", name, strings.Join(txt, ""))
	}
	script += `def dnsfunc(name, timeout=5):
    return recs.get(name, b'')
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
n = len([l for l in msg.split(b'\n') if l.lower().startswith(b'dkim-signature:')])
ok = [d.verify(idx=i, dnsfunc=dnsfunc) for i in range(n)]
print(n, ok)
sys.exit(0 if n == 2 and all(ok) else 1)
`
	py := filepath.Join(t.TempDir(), "verify.py")
	os.WriteFile(py, []byte(script), 0o600)
	interp := "python3"
	if b, err := os.ReadFile(dkimverify); err == nil && strings.HasPrefix(string(b), "#!") {
		interp = strings.Fields(strings.SplitN(string(b[2:]), "\n", 2)[0])[0]
	}
	cmd := exec.Command(interp, py)
	cmd.Stdin = strings.NewReader(string(msg))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3-dkim: %v\n%s\n%s", err, out, msg)
	}
}

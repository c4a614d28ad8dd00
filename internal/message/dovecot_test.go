package message

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/testutil"
)

// dovecotKnownDiffs are corpus messages where tern and Dovecot 2.3 differ
// on purpose: tern reports the Content-Transfer-Encoding of a message
// without Content-Type (Dovecot says 7bit), reads "TEXT/PLAIN
// charset=US-ASCII" without its ';' (Dovecot gives up), and keeps an
// unquoted file name with a space whole.
var dovecotKnownDiffs = map[string]bool{
	"easy-ham-2/01317.7fc86413a091430c3104b041a6525131.txt": true,
	"spam-2/00016.4fb07c8dff1a5a2b4889dc5024c55023.txt":     true,
	"spam-2/00056.64a6ee24c0b7bf8bdba8340f0a3aafda.txt":     true,
	"spam-2/00068.2999b3d00828ac3fbd6a7cd27a6c6321.txt":     true,
	"spam-2/00148.a645e3b8823445737c97057e59ea0d0c.txt":     true,
	"spam-2/00204.4cf15f97b8ea08bfafab7d5091b8fbe7.txt":     true,
	"spam-2/01359.deafa1d42658c6624c6809a446b7f369.txt":     true,
}

// TestDovecotBodystructure compares BODYSTRUCTURE as tern would send it
// (imapfmt_test.go) with what Dovecot computes for the same bytes, on a
// sample of the corpus: sizes, line counts, defaults, nesting. It starts a
// private Dovecot (no listeners, sockets in a temporary directory) and
// asks it with doveadm fetch. Set TERN_DOVECOT_ALL=1 for the whole corpus.
func TestDovecotBodystructure(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	dovecot := testutil.NeedProgram(t, "dovecot")
	doveadm := testutil.NeedProgram(t, "doveadm")
	files := testutil.CorpusFiles(t)
	step := 25
	if os.Getenv("TERN_DOVECOT_ALL") == "1" {
		step = 1
	}
	dir := testutil.CorpusDir(t)
	var sample []string
	for i := 0; i < len(files); i += step {
		if rel, _ := filepath.Rel(dir, files[i]); !dovecotKnownDiffs[rel] {
			sample = append(sample, files[i])
		}
	}

	conf, cleanup := startDovecot(t, dovecot, sample)
	defer cleanup()
	out, err := exec.Command(doveadm, "-c", conf, "fetch", "-u", "test",
		"guid imap.bodystructure", "mailbox", "INBOX", "all").CombinedOutput()
	if err != nil {
		t.Fatalf("doveadm fetch: %v\n%s", err, out)
	}
	re := regexp.MustCompile(`(?m)^guid: (\d+)\.x\nimap.bodystructure: (.*)$`)
	matches := re.FindAllStringSubmatch(string(out), -1)
	if len(matches) != len(sample) {
		t.Fatalf("doveadm returned %d messages, want %d:\n%.2000s", len(matches), len(sample), out)
	}
	compared := 0
	for _, m := range matches {
		i, _ := strconv.Atoi(m[1])
		want := m[2]
		if strings.Contains(want, "{") {
			continue // a literal: 8-bit or special characters, not compared
		}
		raw, err := os.ReadFile(sample[i])
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		got := imapBody(p.Structure, true)
		if !strings.EqualFold(got, want) {
			t.Errorf("%s:\n tern    %s\n dovecot %s", sample[i], got, want)
		}
		compared++
	}
	t.Logf("%d of %d messages compared with Dovecot", compared, len(sample))
}

// startDovecot runs a Dovecot master with no protocols whose only user,
// "test", has a Maildir holding files; it returns the config path.
func startDovecot(t *testing.T, dovecot string, files []string) (string, func()) {
	t.Helper()
	base, err := os.MkdirTemp("", "tern-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	uid, gid, login := os.Getuid(), os.Getgid(), ""
	if u, err := user.Current(); err == nil {
		login = u.Username
	}
	if uid == 0 {
		// Dovecot refuses uid 0 for mail; use nobody's ids.
		uid, gid = 65534, 65534
	}
	md := filepath.Join(base, "mail", "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(md, "cur", fmt.Sprintf("%d.x:2,", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(base, "dovecot.conf")
	text := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/log
protocols = none
ssl = no
default_internal_user = %[2]s
default_login_user = %[2]s
mail_location = maildir:%[1]s/mail/Maildir
passdb {
  driver = static
  args = password=unused
}
userdb {
  driver = static
  args = uid=%[3]d gid=%[4]d home=%[1]s/mail
}
`, base, login, uid, gid)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		_ = os.Chmod(base, 0o755)
		_ = filepath.Walk(filepath.Join(base, "mail"), func(p string, _ os.FileInfo, _ error) error {
			return os.Chown(p, uid, gid)
		})
	}
	cmd := exec.Command(dovecot, "-F", "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the auth socket doveadm needs.
	sock := filepath.Join(base, "run", "auth-userdb")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(base, "log"))
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			t.Fatalf("dovecot did not start:\n%s", log)
		}
	}
	return conf, func() {
		// SIGTERM lets the master stop its auth, log and config children.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = os.RemoveAll(base)
	}
}

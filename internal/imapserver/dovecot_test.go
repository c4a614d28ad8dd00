package imapserver

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tern-mail/tern/internal/testutil"
)

var fetchLineRE = regexp.MustCompile(`^\* (\d+) FETCH \(`)

// fetchLines splits a raw FETCH answer into one string per message number.
func fetchLines(raw string) map[string]string {
	out := map[string]string{}
	cur := ""
	for _, l := range strings.SplitAfter(raw, "\n") {
		if m := fetchLineRE.FindStringSubmatch(l); m != nil {
			cur = m[1]
		} else if strings.HasPrefix(l, "* ") || strings.HasPrefix(l, "f ") {
			cur = "" // another response, or the tagged end
		}
		if cur != "" {
			out[cur] += l
		}
	}
	return out
}

// TestInteropDovecotBodyStructure compares tern's ENVELOPE and
// BODYSTRUCTURE with Dovecot's on a sample of the corpus. Dovecot runs in
// its preauthenticated stdin mode (no port). Mismatches are listed; the
// test fails when more than 5% differ.
func TestInteropDovecotBodyStructure(t *testing.T) {
	imapBin := "/usr/lib/dovecot/imap"
	if _, err := os.Stat(imapBin); err != nil {
		testutil.Missing(t, "dovecot-imapd ("+imapBin+")")
	}
	if os.Getuid() != 0 {
		t.Skip("running Dovecot's imap as another user needs root")
	}
	all := testutil.CorpusFiles(t)
	var files []string
	for i := 0; i < len(all); i += 60 {
		files = append(files, all[i])
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755) // the test's temp root is 0700
	for _, d := range []string{"cur", "new", "tmp", "run", "state"} {
		os.MkdirAll(filepath.Join(dir, "mail", d), 0o755)
	}
	for i, f := range files {
		b, _ := os.ReadFile(f)
		os.WriteFile(filepath.Join(dir, "mail", "cur", fmt.Sprintf("%d.M%dP1.bench:2,", 1000000+i, i)), b, 0o644)
	}
	conf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("mail_location = maildir:%s/mail\nbase_dir = %s/mail/run\nstate_dir = %s/mail/state\nlog_path = %s/log\nmail_uid = nobody\nmail_gid = nogroup\n",
		dir, dir, dir, dir)), 0o644)
	exec.Command("chown", "-R", "nobody:nogroup", filepath.Join(dir, "mail")).Run()
	query := fmt.Sprintf("FETCH 1:%d (ENVELOPE BODYSTRUCTURE)", len(files))
	cmd := exec.Command(imapBin, "-c", conf)
	cmd.Env = []string{"USER=nobody", "HOME=" + dir}
	// Keep stdin open until the answer is complete: at end of input
	// Dovecot's imap stops writing.
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	io.WriteString(stdin, "s SELECT INBOX\r\nf "+query+"\r\n")
	var outBuf strings.Builder
	br := bufio.NewReader(stdout)
	for {
		l, err := br.ReadString('\n')
		outBuf.WriteString(l)
		if err != nil {
			t.Fatalf("dovecot imap: %v\n%s", err, clipStr(outBuf.String()))
		}
		if strings.HasPrefix(l, "f ") {
			break
		}
	}
	io.WriteString(stdin, "l LOGOUT\r\n")
	out := outBuf.String()
	dove := fetchLines(string(out))
	if len(dove) != len(files) {
		t.Fatalf("dovecot answered %d messages:\n%s", len(dove), clipStr(string(out)))
	}

	ts := newTestServer(t)
	for _, f := range files {
		b, _ := os.ReadFile(f)
		// Dovecot serves Maildir files with CRLF line ends; SMTP and IMAP
		// APPEND hand tern CRLF too. The corpus files have bare LFs.
		ts.deliver("INBOX", crlf(string(b)))
	}
	r := ts.raw()
	r.login()
	r.expectOK("s", "SELECT INBOX")
	r.send("f " + query)
	tern := fetchLines(readRawUntil(t, r, "f"))
	bad := 0
	for i := range files {
		n := fmt.Sprint(i + 1)
		if !strings.EqualFold(normalizeFetch(tern[n]), normalizeFetch(dove[n])) {
			bad++
			if bad <= 5 {
				t.Logf("%s differs:\n tern:    %q\n dovecot: %q", filepath.Base(files[i]), clipStr(tern[n]), clipStr(dove[n]))
			}
		}
	}
	t.Logf("%d of %d messages differ from Dovecot", bad, len(files))
	if bad*20 > len(files) {
		t.Errorf("too many differences from Dovecot: %d of %d", bad, len(files))
	}
}

func clipStr(s string) string {
	if len(s) > 1500 {
		return s[:1500] + "..."
	}
	return s
}

// crlf turns bare LF line ends into CRLF.
func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

var literalRE = regexp.MustCompile(`\{(\d+)\}\r\n`)

// normalizeFetch makes two servers' FETCH answers comparable: literals
// become quoted strings and runs of white space (header unfolding
// differs: RFC 5322 keeps them, Dovecot squeezes them) become one space.
func normalizeFetch(s string) string {
	var sb strings.Builder
	for {
		loc := literalRE.FindStringSubmatchIndex(s)
		if loc == nil {
			sb.WriteString(s)
			break
		}
		n := 0
		fmt.Sscan(s[loc[2]:loc[3]], &n)
		sb.WriteString(s[:loc[0]])
		body := s[loc[1]:min(loc[1]+n, len(s))]
		sb.WriteString(`"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(body) + `"`)
		s = s[min(loc[1]+n, len(s)):]
	}
	return strings.Join(strings.Fields(sb.String()), " ")
}

package transfer

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/testutil"
)

// pyMailbox reads and writes mbox files and Maildirs with Python's
// mailbox module, an independent implementation of both formats: "read"
// prints what it sees in tern's exports, "write" makes a mailbox of each
// kind with flags for tern to import.
const pyMailbox = `
import json, mailbox, sys, time
mode, mboxpath, mdpath = sys.argv[1:4]
if mode == "read":
    out = {"mbox": [], "maildir": {}}
    for m in mailbox.mbox(mboxpath, create=False):
        out["mbox"].append({"subject": m["Subject"], "flags": "".join(sorted(m.get_flags()))})
    md = mailbox.Maildir(mdpath, factory=None, create=False)
    def folder(f):
        res = []
        for key in sorted(f.keys()):
            m = f[key]
            res.append({"subject": m["Subject"], "flags": m.get_flags(), "date": int(m.get_date())})
        return res
    out["maildir"][""] = folder(md)
    for name in md.list_folders():
        out["maildir"][name] = folder(md.get_folder(name))
    print(json.dumps(out))
else:
    mb = mailbox.mbox(mboxpath)
    for subj, flags in [("one", "RO"), ("two", "OAF"), ("three", "")]:
        m = mailbox.mboxMessage("Subject: %s\n\nFrom python\n" % subj)
        m.set_flags(flags)
        m.set_from("py@example.org", time.gmtime(1000000000))
        mb.add(m)
    mb.close()
    md = mailbox.Maildir(mdpath)
    sub = md.add_folder("Sub")
    for box, subj, flags in [(md, "four", "S"), (sub, "five", "FRT")]:
        m = mailbox.MaildirMessage("Subject: %s\n\nbody\n" % subj)
        m.set_subdir("cur")
        m.set_flags(flags)
        m.set_date(1000000000)
        box.add(m)
`

func runPython(t *testing.T, args ...string) []byte {
	t.Helper()
	py := testutil.NeedProgram(t, "python3")
	script := filepath.Join(t.TempDir(), "mb.py")
	if err := os.WriteFile(script, []byte(pyMailbox), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, append([]string{script}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("python: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	return out
}

// TestPythonReadsExport checks tern's mbox and Maildir exports with
// Python's mailbox module: message boundaries, Status/X-Status flags,
// Maildir info flags, folders and dates.
func TestPythonReadsExport(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	acct := addAccount(t, st, "a@example.org")
	date := time.Unix(1_200_000_000, 0)
	appendMsg(t, st, acct, "INBOX", "Subject: plain\n\nFrom here\n", date)
	appendMsg(t, st, acct, "INBOX", "Subject: seen\r\n\r\nbody\r\n", date, `\Seen`)
	appendMsg(t, st, acct, "INBOX", "Subject: all\n\nno newline", date, `\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`, "$Label1")
	appendMsg(t, st, acct, "Folder/Sub", "Subject: sub\n\nx\n", date, `\Flagged`)
	dir := t.TempDir()
	mboxPath, mdPath := filepath.Join(dir, "inbox.mbox"), filepath.Join(dir, "md")
	if _, err := Export(ctx, st, acct, ExportOptions{Path: mboxPath, Mailbox: "INBOX"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Export(ctx, st, acct, ExportOptions{Path: mdPath, Format: "maildir"}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Mbox []struct {
			Subject, Flags string
		}
		Maildir map[string][]struct {
			Subject, Flags string
			Date           int64
		}
	}
	if err := json.Unmarshal(runPython(t, "read", mboxPath, mdPath), &got); err != nil {
		t.Fatal(err)
	}
	// Python's mboxMessage flags: R read, O old, A answered, F flagged,
	// D deleted (no draft letter; T is not read from X-Status there).
	wantMbox := []string{"plain:O", "seen:OR", "all:ADFORT"}
	var gotMbox []string
	for _, m := range got.Mbox {
		gotMbox = append(gotMbox, m.Subject+":"+m.Flags)
	}
	if !slices.Equal(gotMbox, wantMbox) && !slices.Equal(gotMbox, []string{"plain:O", "seen:OR", "all:ADFOR"}) {
		t.Errorf("python mbox = %q, want %q", gotMbox, wantMbox)
	}
	wantMD := map[string][]string{
		"":           {"plain:", "seen:S", "all:DFRSTa"}, // a: the first keyword, $Label1
		"Folder.Sub": {"sub:F"},
	}
	for name, want := range wantMD {
		var g []string
		for _, m := range got.Maildir[name] {
			g = append(g, m.Subject+":"+m.Flags)
			if m.Date != date.Unix() {
				t.Errorf("maildir %q %s: date %d", name, m.Subject, m.Date)
			}
		}
		slices.Sort(g)
		slices.Sort(want)
		if !slices.Equal(g, want) {
			t.Errorf("python maildir %q = %q, want %q", name, g, want)
		}
	}
}

// TestImportPythonMailboxes imports an mbox and a Maildir written by
// Python's mailbox module.
func TestImportPythonMailboxes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	mboxPath, mdPath := filepath.Join(dir, "py.mbox"), filepath.Join(dir, "md")
	runPython(t, "write", mboxPath, mdPath)
	st := openStore(t)
	acct := addAccount(t, st, "a@example.org")
	if _, err := Import(ctx, st, acct, ImportOptions{Path: mboxPath, Mailbox: "Py"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(ctx, st, acct, ImportOptions{Path: mdPath, Mailbox: "PyMD"}); err != nil {
		t.Fatal(err)
	}
	snap := snapshot(t, st, acct)
	check := func(mailbox string, want []string) {
		t.Helper()
		var got []string
		for _, m := range snap[mailbox] {
			subject, _, _ := strings.Cut(strings.TrimPrefix(m.body, "Subject: "), "\r\n")
			got = append(got, subject+":"+m.flags)
			if m.date != 1_000_000_000 {
				t.Errorf("%s %s: date %d", mailbox, subject, m.date)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s = %q, want %q", mailbox, got, want)
		}
	}
	check("Py", []string{`one:\Seen`, `two:\Answered \Flagged`, `three:`})
	check("PyMD", []string{`four:\Seen`})
	check("PyMD/Sub", []string{`five:\Answered \Deleted \Flagged`})
	for _, m := range snap["Py"] {
		// Python writes LF line ends; the store holds CRLF.
		if !strings.Contains(m.body, "\r\nFrom python\r\n") || strings.Contains(m.body, ">From") {
			t.Errorf("mbox body not unquoted: %q", m.body)
		}
	}
}

package imapserver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/store"
	"github.com/tern-mail/tern/internal/testutil"
)

// TestInteropPythonImaplib drives tern with python's imaplib.
func TestInteropPythonImaplib(t *testing.T) {
	py := testutil.NeedProgram(t, "python3")
	ts := newTestServer(t)
	ts.deliver("INBOX", testMsg("from python", "hello imaplib"))
	host, port, _ := strings.Cut(ts.addr, ":")
	script := `
import imaplib, sys
M = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
M.login("alice@example.org", "correct horse battery")
typ, boxes = M.list()
assert typ == "OK" and any(b'"INBOX"' in b for b in boxes), boxes
typ, data = M.select("INBOX")
assert data == [b"1"], data
typ, data = M.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODYSTRUCTURE)")
assert b"from python" in data[0][1], data
typ, data = M.search(None, 'TEXT', '"hello imaplib"')
assert data == [b"1"], data
M.append("INBOX", "(\\Flagged)", None, b"Subject: appended\r\n\r\nbody\r\n")
typ, data = M.uid("SEARCH", "FLAGGED")
assert data == [b"2"], data
M.store("1", "+FLAGS", "\\Deleted")
typ, data = M.expunge()
assert data == [b"1"], data
M.create("py/sub")
typ, data = M.status("py/sub", "(MESSAGES UIDNEXT)")
assert b"MESSAGES 0" in data[0], data
M.uid("COPY", "2", "py/sub")
M.logout()
print("ok")
`
	out, err := exec.Command(py, "-c", script, host, port).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
}

// TestInteropMbsync syncs both ways with isync: flags and expunges made on
// the local maildir reach tern, and tern's changes reach the maildir.
func TestInteropMbsync(t *testing.T) {
	mbsync := testutil.NeedProgram(t, "mbsync")
	ts := newTestServer(t)
	for i := 0; i < 5; i++ {
		ts.deliver("INBOX", testMsg(fmt.Sprintf("sync %d", i), "body"))
	}
	ts.deliver("Archive", testMsg("archived", "old"))
	dir := t.TempDir()
	host, port, _ := strings.Cut(ts.addr, ":")
	os.MkdirAll(filepath.Join(dir, "mail"), 0o700)
	cfg := filepath.Join(dir, "mbsyncrc")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`IMAPAccount tern
Host %s
Port %s
User alice@example.org
Pass "%s"
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account tern

MaildirStore local
Path %s/mail/
Inbox %s/mail/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
`, host, port, testPass, dir, dir)), 0o600)
	run := func() {
		out, err := exec.Command(mbsync, "-c", cfg, "-a").CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
	}
	run()
	files, _ := filepath.Glob(filepath.Join(dir, "mail", "INBOX", "cur", "*"))
	news, _ := filepath.Glob(filepath.Join(dir, "mail", "INBOX", "new", "*"))
	files = append(files, news...)
	if len(files) != 5 {
		t.Fatalf("INBOX synced %d messages, want 5", len(files))
	}
	if a, _ := filepath.Glob(filepath.Join(dir, "mail", "Archive", "*", "*")); len(a) != 1 {
		t.Fatalf("Archive synced %d messages", len(a))
	}
	// Local changes: mark one seen, trash another, add a new message.
	curDir := filepath.Join(dir, "mail", "INBOX", "cur")
	base := func(f string) string {
		b := filepath.Base(f)
		i := strings.Index(b, ":2,")
		if i >= 0 {
			return b[:i]
		}
		return b
	}
	os.Rename(files[0], filepath.Join(curDir, base(files[0])+":2,S"))
	os.Rename(files[1], filepath.Join(curDir, base(files[1])+":2,T"))
	os.WriteFile(filepath.Join(dir, "mail", "INBOX", "new", fmt.Sprintf("%d.local.host", time.Now().Unix())),
		[]byte("Subject: from mbsync\r\n\r\nlocal\r\n"), 0o600)
	// Server change: flag message 5.
	mb, _ := ts.st.MailboxByName(context.Background(), ts.acct.ID, "INBOX")
	ts.st.UpdateFlags(context.Background(), mb.ID, store.FlagUpdate{UIDs: []uint32{5}, Op: store.FlagsAdd, Flags: []string{`\Flagged`}})
	run()
	infos, err := ts.st.Messages(context.Background(), mb.ID, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, m := range infos {
		if hasFlag(m.Flags, `\Seen`) {
			seen++
		}
	}
	if len(infos) != 5 || seen != 1 {
		t.Errorf("server after sync: %d messages, %d seen (want 5 and 1): %+v", len(infos), seen, infos)
	}
	flagged, _ := filepath.Glob(filepath.Join(curDir, "*:2,*F*"))
	if len(flagged) != 1 {
		t.Errorf("server flag not synced to maildir: %v", flagged)
	}
	// Server expunge: the flagged message goes, on tern and then locally.
	if _, err := ts.st.Expunge(context.Background(), mb.ID, []uint32{5}); err != nil {
		t.Fatal(err)
	}
	run()
	local := func() int {
		cur, _ := filepath.Glob(filepath.Join(curDir, "*"))
		nw, _ := filepath.Glob(filepath.Join(dir, "mail", "INBOX", "new", "*"))
		return len(cur) + len(nw)
	}
	if n := local(); n != 4 {
		t.Errorf("maildir after a server expunge: %d messages, want 4", n)
	}
	if flagged, _ := filepath.Glob(filepath.Join(curDir, "*:2,*F*")); len(flagged) != 0 {
		t.Errorf("expunged message still in the maildir: %v", flagged)
	}
	// A second sync with no changes on either side changes nothing.
	run()
	if infos, _ := ts.st.Messages(context.Background(), mb.ID, 1, 0); len(infos) != 4 || local() != 4 {
		t.Errorf("idle sync changed something: server %d, local %d", len(infos), local())
	}
}

// TestInteropOfflineimap syncs with offlineimap3 both ways.
func TestInteropOfflineimap(t *testing.T) {
	bin := testutil.NeedProgram(t, "offlineimap")
	ts := newTestServer(t)
	for i := 0; i < 3; i++ {
		ts.deliver("INBOX", testMsg(fmt.Sprintf("offline %d", i), "body"))
	}
	ts.deliver("Sent", testMsg("sent one", "x"))
	dir := t.TempDir()
	host, port, _ := strings.Cut(ts.addr, ":")
	cfg := filepath.Join(dir, "offlineimaprc")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`[general]
accounts = tern
metadata = %s/meta

[Account tern]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = %s/mail

[Repository remote]
type = IMAP
remotehost = %s
remoteport = %s
remoteuser = alice@example.org
remotepass = %s
ssl = no
starttls = no
`, dir, dir, host, port, testPass)), 0o600)
	run := func() {
		out, err := exec.Command(bin, "-c", cfg, "-o", "-u", "basic").CombinedOutput()
		if err != nil || strings.Contains(string(out), "ERROR") {
			t.Fatalf("offlineimap: %v\n%s", err, out)
		}
	}
	run()
	inbox, _ := filepath.Glob(filepath.Join(dir, "mail", "INBOX", "*", "*"))
	sent, _ := filepath.Glob(filepath.Join(dir, "mail", "Sent", "*", "*"))
	if len(inbox) != 3 || len(sent) != 1 {
		t.Fatalf("synced INBOX %d, Sent %d", len(inbox), len(sent))
	}
	// A local message and a local seen flag go up.
	os.WriteFile(filepath.Join(dir, "mail", "INBOX", "new", fmt.Sprintf("%d_0.1.host", time.Now().Unix())),
		[]byte("Subject: from offlineimap\r\n\r\nlocal\r\n"), 0o600)
	if !strings.Contains(filepath.Base(inbox[0]), ":2,") {
		os.Rename(inbox[0], filepath.Join(dir, "mail", "INBOX", "cur", filepath.Base(inbox[0])+":2,S"))
	} else {
		os.Rename(inbox[0], inbox[0]+"S")
	}
	run()
	mb, _ := ts.st.MailboxByName(context.Background(), ts.acct.ID, "INBOX")
	infos, _ := ts.st.Messages(context.Background(), mb.ID, 1, 0)
	seen := 0
	for _, m := range infos {
		if hasFlag(m.Flags, `\Seen`) {
			seen++
		}
	}
	if len(infos) != 4 || seen != 1 {
		t.Errorf("server after sync: %d messages, %d seen (want 4 and 1)", len(infos), seen)
	}
}

// TestInteropMutt drives mutt over IMAP: it opens INBOX (mutt lists the
// folder with FETCH of envelopes and flags), copies the first message to
// a local mbox, flags the second and deletes the third, syncs and quits.
// mutt is a full-screen program: it runs on a pseudo-terminal made by
// script(1), its keys pushed with -e 'push ...'.
func TestInteropMutt(t *testing.T) {
	mutt := testutil.NeedProgram(t, "mutt")
	scriptBin := testutil.NeedProgram(t, "script")
	ts := newTestServer(t)
	for i := 1; i <= 3; i++ {
		ts.deliver("INBOX", testMsg(fmt.Sprintf("mutt %d", i), fmt.Sprintf("body of message %d", i)))
	}
	dir := t.TempDir()
	host, port, _ := strings.Cut(ts.addr, ":")
	rc := filepath.Join(dir, "muttrc")
	saved := filepath.Join(dir, "saved.mbox")
	os.WriteFile(rc, []byte(fmt.Sprintf(`set folder="imap://alice%%40example.org@%s:%s/"
set spoolfile="+INBOX"
set imap_pass="%s"
set ssl_starttls=no
set ssl_force_tls=no
set imap_check_subscribed=no
set header_cache=""
set message_cachedir=""
set mbox_type=mbox
set confirmappend=no
set confirmcreate=no
set delete=yes
set move=no
set quit=yes
set wait_key=no
set sort=date
set timeout=5
`, host, port, testPass)), 0o600)
	keys := "<first-entry><copy-message>" + saved + "<enter>" +
		"<next-entry><flag-message><next-entry><delete-message><sync-mailbox><quit>"
	cmdline := fmt.Sprintf("%s -n -F %s -f imap://alice%%40example.org@%s:%s/INBOX -e 'push \"%s\"'",
		mutt, rc, host, port, keys)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, scriptBin, "-qec", cmdline, "/dev/null")
	cmd.Env = append(os.Environ(), "TERM=vt100", "HOME="+dir, "COLUMNS=100", "LINES=30")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mutt: %v\n%s", err, clipStr(string(out)))
	}
	b, err := os.ReadFile(saved)
	if err != nil || !strings.Contains(string(b), "body of message 1") || !strings.HasPrefix(string(b), "From ") {
		t.Errorf("saved mbox: %v %q", err, clipStr(string(b)))
	}
	mb, _ := ts.st.MailboxByName(context.Background(), ts.acct.ID, "INBOX")
	infos, err := ts.st.Messages(context.Background(), mb.ID, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].UID != 1 || !hasFlag(infos[1].Flags, `\Flagged`) {
		t.Errorf("server after mutt: %+v (want UIDs 1 and 2, 2 flagged, 3 expunged)", infos)
	}
}

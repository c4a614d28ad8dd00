package transfer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/mbox"
	"github.com/tern-mail/tern/internal/store"
	"github.com/tern-mail/tern/internal/testutil"
)

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.AddDomain(context.Background(), "example.org"); err != nil {
		t.Fatal(err)
	}
	return st
}

func addAccount(t testing.TB, st *store.Store, addr string) store.Account {
	t.Helper()
	a, err := st.AddAccount(context.Background(), addr, "hash", "")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// msgRec is what must survive an export and import.
type msgRec struct {
	body  string
	flags string
	date  int64
}

// snapshot reads every mailbox of an account: name -> messages in UID
// order.
func snapshot(t testing.TB, st *store.Store, acct store.Account) map[string][]msgRec {
	t.Helper()
	ctx := context.Background()
	mbs, err := st.Mailboxes(ctx, acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]msgRec{}
	for _, mb := range mbs {
		msgs, err := st.Messages(ctx, mb.ID, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		recs := []msgRec{}
		for _, m := range msgs {
			f, err := st.OpenBlob(m.BlobID)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, msgRec{string(b), strings.Join(store.NormalizeFlags(m.Flags), " "), m.InternalDate.Unix()})
		}
		out[mb.Name] = recs
	}
	return out
}

func compare(t testing.TB, got, want map[string][]msgRec) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("mailbox %q missing", name)
			continue
		}
		if len(g) != len(w) {
			t.Errorf("mailbox %q: %d messages, want %d", name, len(g), len(w))
			continue
		}
		for i := range w {
			if g[i] != w[i] {
				t.Errorf("mailbox %q message %d:\n got %.200q %q %d\nwant %.200q %q %d", name, i,
					g[i].body, g[i].flags, g[i].date, w[i].body, w[i].flags, w[i].date)
			}
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("extra mailbox %q", name)
		}
	}
}

func appendMsg(t testing.TB, st *store.Store, acct store.Account, mailbox, body string, date time.Time, flags ...string) {
	t.Helper()
	ctx := context.Background()
	mb, err := st.MailboxByName(ctx, acct.ID, mailbox)
	if errors.Is(err, store.ErrNotFound) {
		mb, err = st.CreateMailbox(ctx, acct.ID, mailbox, "")
	}
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Append(ctx, store.AppendRequest{AccountID: acct.ID, MailboxID: mb.ID, Body: strings.NewReader(body), Flags: flags, InternalDate: date})
	if err != nil {
		t.Fatal(err)
	}
}

// crlf is s as the store holds it: bare LFs made CRLF.
func crlf(s string) string {
	b, _ := appendCRLF(nil, []byte(s), false)
	return string(b)
}

// tricky are messages that exercise the mbox format's corners; the
// store holds them with CRLF line ends (crlf).
var tricky = []string{
	"From: a@example.org\r\nSubject: crlf\r\n\r\nFrom the start\r\n>From quoted\r\n",
	"From: a@example.org\nSubject: lf, no final newline\n\nlast line",
	"Return-Path: <bounce@example.org>\nStatus: RO\nX-Status: F\nSubject: own status fields\n\nbody\n",
	"X-Tern-Flags: \\Seen\nStatus: RO\nSubject: looks like our block\n\n>>From x\n",
	"From x@y Thu Aug 22 12:36:23 2002\nSubject: starts with a From_ line\n\n\n\n",
	"Subject: ends in CR\r\n\r\nbody\r",
	"\r\n\r\nno header at all\r\n",
}

func fill(t testing.TB, st *store.Store, acct store.Account) {
	base := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	flagSets := [][]string{nil, {`\Seen`}, {`\Seen`, `\Answered`, "$Label1"}, {`\Flagged`, `\Deleted`, `\Draft`, "Junk"}}
	boxes := []string{"INBOX", "Sent", "Folder/Sub", "Entwürfe.mbox", "a.b:c"}
	for i, body := range tricky {
		for j, mb := range boxes {
			appendMsg(t, st, acct, mb, crlf(fmt.Sprintf("X-N: %d\n", j)+body), base.Add(time.Duration(i*j)*time.Hour), flagSets[(i+j)%len(flagSets)]...)
		}
		appendMsg(t, st, acct, "INBOX", crlf(body), base.Add(time.Duration(i)*time.Minute), flagSets[i%len(flagSets)]...)
	}
	for _, name := range []string{"Empty", "Folder"} {
		if _, err := st.CreateMailbox(context.Background(), acct.ID, name, ""); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	src := addAccount(t, st, "src@example.org")
	fill(t, st, src)
	want := snapshot(t, st, src)
	for _, format := range []string{"mbox", "maildir"} {
		t.Run(format, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "export")
			var calls int
			var lastDone, lastTotal int64
			es, err := Export(ctx, st, src, ExportOptions{Path: dir, Format: format,
				Progress: func(d, tot int64) { calls++; lastDone, lastTotal = d, tot }})
			if err != nil {
				t.Fatal(err)
			}
			if es.Messages != int64(len(tricky)*6) || es.Mailboxes != len(want) || calls == 0 || lastDone != lastTotal || lastDone != es.Bytes {
				t.Errorf("export stats %+v, progress %d %d/%d", es, calls, lastDone, lastTotal)
			}
			dst := addAccount(t, st, "dst-"+format+"@example.org")
			is, err := Import(ctx, st, dst, ImportOptions{Path: dir,
				Progress: func(d, tot int64) { lastDone, lastTotal = d, tot }})
			if err != nil {
				t.Fatal(err)
			}
			if is.Messages != es.Messages || is.Bytes != es.Bytes || is.Duplicates != 0 || lastDone != lastTotal {
				t.Errorf("import stats %+v, export %+v, progress %d/%d", is, es, lastDone, lastTotal)
			}
			compare(t, snapshot(t, st, dst), want)
			// Again: nothing new.
			is, err = Import(ctx, st, dst, ImportOptions{Path: dir})
			if err != nil || is.Messages != 0 || is.Duplicates != es.Messages || is.Mailboxes != 0 {
				t.Errorf("re-import: %+v %v", is, err)
			}
			compare(t, snapshot(t, st, dst), want)
		})
	}
}

func TestOneMailbox(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	src := addAccount(t, st, "src@example.org")
	fill(t, st, src)
	want := snapshot(t, st, src)["Folder/Sub"]
	for _, format := range []string{"mbox", "maildir"} {
		path := filepath.Join(t.TempDir(), "one")
		if _, err := Export(ctx, st, src, ExportOptions{Path: path, Format: format, Mailbox: "Folder/Sub"}); err != nil {
			t.Fatal(err)
		}
		if _, err := Export(ctx, st, src, ExportOptions{Path: path, Format: "mbox", Mailbox: "Folder/Sub"}); err == nil && format == "mbox" {
			t.Error("export overwrote a file")
		}
		if _, err := Import(ctx, st, src, ImportOptions{Path: path, Mailbox: "Restored/" + format}); err != nil {
			t.Fatal(err)
		}
		got := snapshot(t, st, src)
		compare(t, map[string][]msgRec{"x": got["Restored/"+format]}, map[string][]msgRec{"x": want})
		if _, ok := got["Restored"]; !ok {
			t.Error("parent mailbox not created")
		}
	}
}

// TestForeignMbox imports an mbox as mutt writes it: flags in Status:
// and X-Status:, which stay in the message.
func TestForeignMbox(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	acct := addAccount(t, st, "a@example.org")
	one := "Subject: one\nStatus: RO\nX-Status: AF\nX-Keywords: $Work, Later\n\nbody\n"
	two := "Subject: two\nDate: Tue, 1 Mar 2022 10:00:00 +0100\n\nFrom here\n"
	data := "From a@b Thu Aug 22 12:36:23 2002\n" + one + "\nFrom b@c bogus date\n" +
		strings.Replace(two, "\nFrom", "\n>From", 1) + "\n"
	path := filepath.Join(t.TempDir(), "mutt")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(ctx, st, acct, ImportOptions{Path: path, Mailbox: "Old"}); err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, st, acct)["Old"]
	want := []msgRec{
		{crlf(one), `$Work Later \Answered \Flagged \Seen`, time.Date(2002, 8, 22, 12, 36, 23, 0, time.UTC).Unix()},
		{crlf(two), ``, time.Date(2022, 3, 1, 9, 0, 0, 0, time.UTC).Unix()},
	}
	compare(t, map[string][]msgRec{"x": got}, map[string][]msgRec{"x": want})
}

func TestNames(t *testing.T) {
	for _, name := range []string{"INBOX", "Folder/Sub", ".hidden", "A.mbox", "x%y:z", "Entwürfe"} {
		f := mboxFile(name)
		if got := mailboxOfFile(f); got != name {
			t.Errorf("%q -> %q -> %q", name, f, got)
		}
	}
	if mboxFile("A.mbox/b") != "A%2Embox/b.mbox" {
		t.Errorf("A.mbox/b -> %q", mboxFile("A.mbox/b"))
	}
}

// TestCorpus exports and imports the spam-assassin corpus, spread over
// mailboxes with varied flags, and checks every byte.
func TestCorpus(t *testing.T) {
	files := testutil.CorpusFiles(t)
	if testing.Short() {
		files = files[:500]
	}
	ctx := context.Background()
	st := openStore(t)
	src := addAccount(t, st, "src@example.org")
	flagSets := [][]string{nil, {`\Seen`}, {`\Seen`, `\Answered`}, {`\Flagged`, "$Junk"}}
	seen := map[[32]byte]bool{}
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if h := sha256.Sum256(b); seen[h] {
			continue // byte-identical copies are kept once per mailbox
		} else {
			seen[h] = true
		}
		mb := filepath.Base(filepath.Dir(f))
		appendMsg(t, st, src, mb, crlf(string(b)), time.Unix(1_000_000_000+int64(i)*3600, 0), flagSets[i%len(flagSets)]...)
	}
	want := snapshot(t, st, src)
	for _, format := range []string{"mbox", "maildir"} {
		dir := filepath.Join(t.TempDir(), format)
		if _, err := Export(ctx, st, src, ExportOptions{Path: dir, Format: format}); err != nil {
			t.Fatal(err)
		}
		dst := addAccount(t, st, "dst-"+format+"@example.org")
		if _, err := Import(ctx, st, dst, ImportOptions{Path: dir}); err != nil {
			t.Fatal(err)
		}
		compare(t, snapshot(t, st, dst), want)
	}
}

// TestLargeMessage imports a message bigger than the pipeline's buffers
// (it streams into its blob) between small ones, keeping the order.
func TestLargeMessage(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	acct := addAccount(t, st, "a@example.org")
	big := "Subject: big\r\n\r\n" + strings.Repeat("From line to quote\r\n"+strings.Repeat("x", 1000)+"\r\n", 3000)
	want := []string{"Subject: a\n\na\n", big, "Subject: b\n\nb\n"}
	path := filepath.Join(t.TempDir(), "big.mbox")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := mbox.NewWriter(f)
	for _, m := range want {
		if _, err := w.WriteMessage("", time.Unix(1e9, 0), strings.NewReader(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s, err := Import(ctx, st, acct, ImportOptions{Path: path})
	if err != nil || s.Messages != 3 {
		t.Fatalf("import: %+v %v", s, err)
	}
	got := snapshot(t, st, acct)["INBOX"]
	if len(got) != 3 {
		t.Fatalf("%d messages", len(got))
	}
	for i := range want {
		if got[i].body != crlf(want[i]) {
			t.Errorf("message %d differs (%d bytes, want %d)", i, len(got[i].body), len(want[i]))
		}
	}
}

// TestImportErrors: quota, cancellation and a missing path stop the
// import with the cause.
func TestImportErrors(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	src := addAccount(t, st, "src@example.org")
	fill(t, st, src)
	dir := filepath.Join(t.TempDir(), "export")
	if _, err := Export(ctx, st, src, ExportOptions{Path: dir}); err != nil {
		t.Fatal(err)
	}
	dst := addAccount(t, st, "dst@example.org")
	if err := st.SetQuota(ctx, dst.Address, 1000); err != nil {
		t.Fatal(err)
	}
	s, err := Import(ctx, st, dst, ImportOptions{Path: dir})
	if !errors.Is(err, store.ErrOverQuota) {
		t.Errorf("over quota: %+v %v", s, err)
	}
	if _, err := Import(ctx, st, dst, ImportOptions{Path: dir, IgnoreQuota: true}); err != nil {
		t.Errorf("IgnoreQuota: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	other := addAccount(t, st, "other@example.org")
	if _, err := Import(cctx, st, other, ImportOptions{Path: dir}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
	if _, err := Import(ctx, st, other, ImportOptions{Path: filepath.Join(dir, "missing")}); err == nil {
		t.Error("missing path accepted")
	}
	if _, err := Export(ctx, st, src, ExportOptions{Path: dir, Format: "pst"}); err == nil {
		t.Error("unknown format accepted")
	}
}

// TestThunderbirdProfile imports a directory laid out as Thunderbird
// keeps local folders: mbox files without suffix, .msf indexes, .sbd
// directories for subfolders.
func TestThunderbirdProfile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	files := map[string]string{
		"Inbox":             "From - Mon Jan  6 01:02:03 2020\nSubject: in\n\nx\n\n",
		"Inbox.msf":         "// <!-- <mdb:mork:z v=\"1.4\"/> -->",
		"Archives":          "",
		"Archives.sbd/2020": "From - Mon Jan  6 01:02:03 2020\nSubject: old\n\ny\n\n",
		".hidden":           "From - x\n\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st := openStore(t)
	acct := addAccount(t, st, "a@example.org")
	s, err := Import(ctx, st, acct, ImportOptions{Path: dir})
	if err != nil || s.Messages != 2 {
		t.Fatalf("import: %+v %v", s, err)
	}
	snap := snapshot(t, st, acct)
	if len(snap["INBOX"]) != 1 || len(snap["Archives/2020"]) != 1 || snap["Archives/2020"][0].date != time.Date(2020, 1, 6, 1, 2, 3, 0, time.UTC).Unix() {
		t.Errorf("got %v", snap)
	}
}

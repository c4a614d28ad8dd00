package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/message"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// checkIntegrity runs SQLite's integrity check on s.
func checkIntegrity(t *testing.T, s *Store) {
	t.Helper()
	if res, err := s.IntegrityCheck(context.Background()); err != nil || res != "ok" {
		t.Errorf("integrity: %q %v", res, err)
	}
}

func mustAccount(t *testing.T, s *Store, addr string) Account {
	t.Helper()
	ctx := context.Background()
	_, d, _ := SplitAddress(addr)
	if err := s.AddDomain(ctx, d); err != nil && !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	a, err := s.AddAccount(ctx, addr, "hash", "")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func msg(subject string) string {
	return "From: a@example.org\r\nTo: b@example.org\r\nSubject: " + subject + "\r\n\r\nHello " + subject + "\r\n"
}

func appendMsg(t *testing.T, s *Store, acct Account, mailbox, body string, flags ...string) Delivered {
	t.Helper()
	mb, err := s.MailboxByName(context.Background(), acct.ID, mailbox)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Append(context.Background(), AppendRequest{AccountID: acct.ID, MailboxID: mb.ID, Body: strings.NewReader(body), Flags: flags})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAccountsAndMailboxes(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "Alice@Example.org")
	if a.Address != "Alice@example.org" {
		t.Errorf("address %q", a.Address)
	}
	if _, err := s.AddAccount(ctx, "alice@example.org", "h", ""); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate account: %v", err)
	}
	if _, err := s.AddAccount(ctx, "bob@elsewhere.test", "h", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("account in unknown domain: %v", err)
	}
	got, err := s.AccountByAddress(ctx, "ALICE@example.org")
	if err != nil || got.ID != a.ID {
		t.Fatalf("lookup: %v %v", got, err)
	}
	mbs, err := s.Mailboxes(ctx, a.ID)
	if err != nil || len(mbs) != len(DefaultMailboxes) {
		t.Fatalf("mailboxes %v %v", mbs, err)
	}
	for _, mb := range mbs {
		if !mb.Subscribed || mb.UIDNext != 1 || mb.UIDValidity == 0 {
			t.Errorf("mailbox %+v", mb)
		}
	}
	if _, err := s.CreateMailbox(ctx, a.ID, "Work/Projects", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMailbox(ctx, a.ID, "work/projects", ""); err != nil {
		t.Fatal("names are case-sensitive apart from INBOX:", err)
	}
	if _, err := s.CreateMailbox(ctx, a.ID, "inbox", ""); !errors.Is(err, ErrExists) {
		t.Errorf("inbox: %v", err)
	}
	old, _ := s.MailboxByName(ctx, a.ID, "Work/Projects")
	if _, err := s.CreateMailbox(ctx, a.ID, "Work", ""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Work", "Work/Projects", "Job"} {
		if err := s.SetSubscribed(ctx, a.ID, name, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RenameMailbox(ctx, a.ID, "Work", "Job"); err != nil {
		t.Fatal(err)
	}
	moved, err := s.MailboxByName(ctx, a.ID, "Job/Projects")
	if err != nil || moved.ID != old.ID || moved.UIDValidity != old.UIDValidity {
		t.Fatalf("child did not follow: %+v %v", moved, err)
	}
	if subs, _ := s.Subscriptions(ctx, a.ID); !slices.Contains(subs, "Job/Projects") || slices.Contains(subs, "Work/Projects") || slices.Contains(subs, "Work") {
		t.Errorf("subscription did not follow the rename: %q", subs)
	}
	if err := s.DeleteMailbox(ctx, a.ID, "INBOX"); !errors.Is(err, ErrInvalid) {
		t.Errorf("delete INBOX: %v", err)
	}
	for _, bad := range []string{"", "a//b", "a/", "x\x01", "a*"} {
		if _, err := s.CreateMailbox(ctx, a.ID, bad, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateMailbox(%q): %v", bad, err)
		}
	}
}

func TestRenameInbox(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	appendMsg(t, s, a, "INBOX", msg("one"))
	inbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	if err := s.RenameMailbox(ctx, a.ID, "INBOX", "Old"); err != nil {
		t.Fatal(err)
	}
	old, _ := s.MailboxByName(ctx, a.ID, "Old")
	newInbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	if old.ID != inbox.ID || newInbox.ID == inbox.ID || newInbox.UIDValidity == inbox.UIDValidity {
		t.Fatalf("old %+v new %+v", old, newInbox)
	}
	if msgs, _ := s.Messages(ctx, old.ID, 1, 0); len(msgs) != 1 {
		t.Errorf("messages did not move: %v", msgs)
	}
	if subs, _ := s.Subscriptions(ctx, a.ID); !slices.Contains(subs, "INBOX") || !slices.Contains(subs, "Old") {
		t.Errorf("subscriptions after renaming INBOX: %q", subs)
	}
}

func TestResolve(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "alice@example.org")
	b := mustAccount(t, s, "bob@example.org")
	mustAccount(t, s, "carol@other.test")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddAlias(ctx, "team@example.org", []string{"alice@example.org", "bob@example.org", "x@remote.test"}))
	must(s.AddAlias(ctx, "all@example.org", []string{"team@example.org", "alice@example.org"}))
	must(s.AddAlias(ctx, "loop1@example.org", []string{"loop2@example.org"}))
	must(s.AddAlias(ctx, "loop2@example.org", []string{"loop1@example.org"}))
	must(s.AddAlias(ctx, "@other.test", []string{"carol@other.test"}))
	cases := []struct {
		addr string
		want []int64
		err  error
	}{
		{"alice@example.org", []int64{a.ID}, nil},
		{"ALICE@EXAMPLE.ORG", []int64{a.ID}, nil},
		{"alice+news@example.org", []int64{a.ID}, nil},
		{"team@example.org", []int64{a.ID, b.ID}, nil},
		{"all@example.org", []int64{a.ID, b.ID}, nil},
		{"nobody@example.org", nil, ErrNotFound},
		{"anything@other.test", []int64{3}, nil},
		{"loop1@example.org", nil, ErrInvalid},
	}
	for _, c := range cases {
		got, err := s.ResolveRecipient(ctx, c.addr)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: err %v, want %v", c.addr, err, c.err)
			}
			continue
		}
		var ids []int64
		for _, g := range got {
			ids = append(ids, g.ID)
		}
		if err != nil || fmt.Sprint(ids) != fmt.Sprint(c.want) {
			t.Errorf("%s: %v %v, want %v", c.addr, ids, err, c.want)
		}
	}
	r, err := s.Resolve(ctx, "team@example.org")
	if err != nil || len(r.Remote) != 1 || r.Remote[0] != "x@remote.test" {
		t.Errorf("remote targets %v %v", r, err)
	}
	if ok, _ := s.Owns(ctx, a, "team@example.org"); !ok {
		t.Error("alice should own team@")
	}
	if ok, _ := s.Owns(ctx, a, "bob@example.org"); ok {
		t.Error("alice must not own bob@")
	}

	// Send-as grants: one address, or a whole domain.
	if err := s.AddSendAs(ctx, a.Address, "News@Example.org"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddSendAs(ctx, a.Address, "@other.test"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"nodomain", "@", "@x@y"} {
		if err := s.AddSendAs(ctx, a.Address, bad); err == nil {
			t.Errorf("send-as %q accepted", bad)
		}
	}
	for addr, want := range map[string]bool{"news@example.org": true, "NEWS@EXAMPLE.ORG": true, "x@other.test": true, "x@example.org": false, "news@sub.other.test": false} {
		if ok, err := s.Owns(ctx, a, addr); ok != want || err != nil {
			t.Errorf("owns %s: %v %v, want %v", addr, ok, err, want)
		}
	}
	if got, _ := s.SendAs(ctx, a.ID); fmt.Sprint(got) != "[@other.test News@Example.org]" {
		t.Errorf("send-as list %v", got)
	}
	if err := s.DeleteSendAs(ctx, a.Address, "@other.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Owns(ctx, a, "x@other.test"); ok {
		t.Error("withdrawn send-as still owned")
	}
	if err := s.DeleteSendAs(ctx, a.Address, "@other.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}

	// Per-account limits come back with the account.
	if err := s.SetSendLimits(ctx, a.Address, 5, 50); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.AccountByID(ctx, a.ID); got.MaxRecipients != 5 || got.MaxPerDay != 50 {
		t.Errorf("limits %+v", got)
	}
}

func TestDeliverSharesBlob(t *testing.T) {
	for _, size := range []struct {
		name string
		pad  int
	}{{"inline", 0}, {"file", inlineMax}} {
		t.Run(size.name, func(t *testing.T) { testDeliverSharesBlob(t, size.pad) })
	}
}

func testDeliverSharesBlob(t *testing.T, pad int) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	b := mustAccount(t, s, "b@example.org")
	body := msg("shared") + strings.Repeat("x", pad)
	blob, p := parsedBlob(t, s, body)
	res, err := s.Deliver(ctx, &Delivery{Blob: blob, Parsed: p, Targets: []Target{{AccountID: a.ID}, {AccountID: b.ID, Mailbox: "Nope"}}})
	if err != nil || res[0].Err != nil || res[1].Err != nil || res[0].UID != 1 || res[1].UID != 1 {
		t.Fatalf("deliver %+v %v", res, err)
	}
	if _, inline := s.pending.get(blob.ID); inline {
		t.Error("inline blob still pending after its commit")
	}
	// Missing mailbox falls back to INBOX.
	if mb, _ := s.MailboxByID(ctx, res[1].MailboxID); mb.Name != "INBOX" {
		t.Errorf("fallback went to %s", mb.Name)
	}
	got, err := s.Parsed(ctx, res[0].MailboxID, 1)
	if err != nil || got.Envelope.Subject != "shared" {
		t.Fatalf("parsed %+v %v", got, err)
	}
	readBack := func() error {
		b, err := s.readBlob(blob.ID)
		if err == nil && string(b) != body {
			t.Fatalf("read back %d bytes, want %d", len(b), len(body))
		}
		return err
	}
	_, statErr := os.Stat(s.blobPath(blob.ID))
	if (pad == 0) != errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("pad %d: file exists: %v", pad, statErr)
	}
	if _, err := s.Expunge(ctx, res[0].MailboxID, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	if err := readBack(); err != nil {
		t.Fatal("blob removed while still referenced:", err)
	}
	if _, err := s.Expunge(ctx, res[1].MailboxID, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	if err := readBack(); err == nil {
		t.Fatal("blob not removed with its last reference")
	}
	if _, err := os.Stat(s.blobPath(blob.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("file left behind")
	}
}

func TestFlagsExpungeChanges(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	for i := 0; i < 5; i++ {
		appendMsg(t, s, a, "INBOX", msg(fmt.Sprint(i)), `\seen`, "$Label")
	}
	mb, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	if mb.UIDNext != 6 {
		t.Fatalf("uidnext %d", mb.UIDNext)
	}
	msgs, _ := s.Messages(ctx, mb.ID, 1, 0)
	if len(msgs) != 5 || fmt.Sprint(msgs[0].Flags) != `[$Label \Seen]` {
		t.Fatalf("messages %+v", msgs)
	}
	base := mb.HighestModSeq
	upd, failed, err := s.UpdateFlags(ctx, mb.ID, FlagUpdate{UIDs: []uint32{2, 3}, Op: FlagsAdd, Flags: []string{`\Deleted`}})
	if err != nil || len(upd) != 2 || len(failed) != 0 || upd[0].ModSeq != upd[1].ModSeq || upd[0].ModSeq <= base {
		t.Fatalf("update %+v %v %v", upd, failed, err)
	}
	// UNCHANGEDSINCE below the new modseq fails for 2 and 3.
	_, failed, err = s.UpdateFlags(ctx, mb.ID, FlagUpdate{UIDs: []uint32{1, 2, 3}, Op: FlagsRemove, Flags: []string{`\Seen`}, UnchangedSince: base})
	if err != nil || fmt.Sprint(failed) != "[2 3]" {
		t.Fatalf("unchangedsince: %v %v", failed, err)
	}
	c, _ := s.MailboxCounts(ctx, mb.ID)
	if c.Messages != 5 || c.Unseen != 1 || c.Deleted != 2 || c.FirstUnseenUID != 1 {
		t.Errorf("counts %+v", c)
	}
	mb, _ = s.MailboxByName(ctx, mb.AccountID, "INBOX")
	since := mb.HighestModSeq
	removed, err := s.Expunge(ctx, mb.ID, nil)
	if err != nil || fmt.Sprint(removed) != "[2 3]" {
		t.Fatalf("expunge %v %v", removed, err)
	}
	changed, vanished, err := s.ChangesSince(ctx, mb.ID, since)
	if err != nil || len(changed) != 0 || fmt.Sprint(vanished) != "[2 3]" {
		t.Fatalf("changes %v %v %v", changed, vanished, err)
	}
	acct, _ := s.AccountByID(ctx, a.ID)
	var want int64
	for _, m := range []int{0, 3, 4} {
		want += int64(len(msg(fmt.Sprint(m))))
	}
	if acct.UsedBytes != want {
		t.Errorf("used %d want %d", acct.UsedBytes, want)
	}
}

func TestCopyMoveQuota(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	for i := 0; i < 3; i++ {
		appendMsg(t, s, a, "INBOX", msg(fmt.Sprint(i)), `\Flagged`)
	}
	inbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	arch, _ := s.MailboxByName(ctx, a.ID, "Archive")
	uv, pairs, err := s.Copy(ctx, inbox.ID, arch.ID, []uint32{1, 3, 99})
	if err != nil || uv != arch.UIDValidity || fmt.Sprint(pairs) != "[{1 1} {3 2}]" {
		t.Fatalf("copy %d %v %v", uv, pairs, err)
	}
	_, pairs, err = s.Move(ctx, inbox.ID, arch.ID, []uint32{2})
	if err != nil || fmt.Sprint(pairs) != "[{2 3}]" {
		t.Fatalf("move %v %v", pairs, err)
	}
	if m, _ := s.Messages(ctx, inbox.ID, 1, 0); len(m) != 2 {
		t.Errorf("inbox after move: %v", m)
	}
	if m, _ := s.Messages(ctx, arch.ID, 1, 0); len(m) != 3 || fmt.Sprint(m[2].Flags) != `[\Flagged]` {
		t.Errorf("archive after move: %v", m)
	}
	acct, _ := s.AccountByID(ctx, a.ID)
	if err := s.SetQuota(ctx, a.Address, acct.UsedBytes+10); err != nil {
		t.Fatal(err)
	}
	_, err = s.Append(ctx, AppendRequest{AccountID: a.ID, MailboxID: inbox.ID, Body: strings.NewReader(msg("too big for quota"))})
	if !errors.Is(err, ErrOverQuota) {
		t.Fatalf("append over quota: %v", err)
	}
	if _, _, err := s.Copy(ctx, inbox.ID, arch.ID, []uint32{1}); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("copy over quota: %v", err)
	}
	if _, _, err := s.Move(ctx, arch.ID, inbox.ID, []uint32{1}); err != nil {
		t.Fatalf("move within quota: %v", err)
	}
}

func TestSkipDuplicate(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	inbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	req := func() AppendRequest {
		return AppendRequest{AccountID: a.ID, MailboxID: inbox.ID, Body: strings.NewReader(msg("dup")), SkipDuplicate: true}
	}
	if _, err := s.Append(ctx, req()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, req()); !errors.Is(err, ErrExists) {
		t.Fatalf("second import: %v", err)
	}
	if n, _ := s.SweepBlobs(ctx, 0); n != 0 {
		t.Errorf("the duplicate's blob was left behind: swept %d", n)
	}
}

func TestGroupCommitConcurrent(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	inbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	w := s.Watch(a.ID)
	defer w.Close()
	var wg sync.WaitGroup
	const n = 200
	uids := make(chan uint32, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d, err := s.Append(ctx, AppendRequest{AccountID: a.ID, MailboxID: inbox.ID, Body: strings.NewReader(msg(fmt.Sprint(i)))})
			if err != nil {
				t.Error(err)
			}
			uids <- d.UID
		}(i)
	}
	wg.Wait()
	close(uids)
	seen := map[uint32]bool{}
	for u := range uids {
		if seen[u] {
			t.Fatalf("uid %d twice", u)
		}
		seen[u] = true
	}
	select {
	case <-w.C:
	case <-time.After(time.Second):
		t.Error("watcher not woken")
	}
	if c, _ := s.MailboxCounts(ctx, inbox.ID); c.Messages != n {
		t.Errorf("%d messages", c.Messages)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.wdb.Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(context.Background(), dir, Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("opened a newer database: %v", err)
	}
}

func TestSweepBlobs(t *testing.T) {
	s := openTest(t)
	w, _ := s.NewBlob()
	w.Write([]byte(strings.Repeat("orphan", inlineMax)))
	b, _ := w.Commit()
	if n, _ := s.SweepBlobs(context.Background(), time.Hour); n != 0 {
		t.Error("swept a young blob")
	}
	if n, _ := s.SweepBlobs(context.Background(), 0); n != 1 {
		t.Error("orphan not swept")
	}
	if _, err := os.Stat(filepath.Join(s.blobDir, b.ID[:2], b.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Error("orphan file still there")
	}
}

func TestInlineBlobLifecycle(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	w, _ := s.NewBlob()
	w.Write([]byte("small"))
	b, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.readBlob(b.ID); err != nil || string(got) != "small" {
		t.Fatalf("pending blob: %q %v", got, err)
	}
	s.DiscardBlob(ctx, b.ID)
	if _, err := s.readBlob(b.ID); err == nil {
		t.Fatal("discarded inline blob still readable")
	}
	// A blob that grows past the limit while written spills to a file.
	w, _ = s.NewBlob()
	for i := 0; i < 3; i++ {
		w.Write([]byte(strings.Repeat("y", inlineMax/2)))
	}
	b, err = w.Commit()
	if err != nil || b.Size != 3*inlineMax/2 {
		t.Fatal(b, err)
	}
	if _, err := os.Stat(s.blobPath(b.ID)); err != nil {
		t.Fatal("large blob not in a file:", err)
	}
	if got, _ := s.readBlob(b.ID); len(got) != 3*inlineMax/2 {
		t.Fatalf("read %d", len(got))
	}
}

// A database written before the parsed structure moved out of the message
// rows keeps its messages' structure through the migration.
func TestMigrateMetaOut(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db := databaseAt(t, dir, 4)
	_, err := db.Exec(`INSERT INTO domains(name) VALUES('example.org');
		INSERT INTO accounts(address, domain_id, password_hash, created) VALUES('a@example.org', 1, 'h', 0);
		INSERT INTO mailboxes(account_id, name, uidvalidity) VALUES(1, 'INBOX', 1);
		INSERT INTO messages(mailbox_id, uid, modseq, internal_date, size, blob_id, digest, meta)
			VALUES(1, 1, 2, 0, 10, '00000000000000000000000000000000', 'd', '{"env":{"subject":"kept"}}');`)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	s2, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	p, err := s2.Parsed(ctx, 1, 1)
	if err != nil || p.Envelope.Subject != "kept" {
		t.Fatalf("after migration: %+v %v", p, err)
	}
}

// The connection settings Open asks for are in force.
func TestConnectionPragmas(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	for _, tc := range []struct {
		db     *sql.DB
		pragma string
		want   int64
	}{
		{s.bulk, "mmap_size", 1 << 30},
		{s.db, "mmap_size", 0},
		{s.bulk, "temp_store", 2},
		{s.db, "temp_store", 2},
		{s.wdb, "temp_store", 2},
		{s.wdb, "synchronous", 1},
		{s.db, "synchronous", 2},
	} {
		var got int64
		if err := tc.db.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil || got != tc.want {
			t.Errorf("PRAGMA %s = %d (%v), want %d", tc.pragma, got, err, tc.want)
		}
	}
}

// MULTIAPPEND's store side: a quota crossed by the last message takes
// back the ones before it, UIDs and usage included.
func TestAppendAllIsAllOrNothing(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	inbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	reqs := func(bodies ...string) []AppendRequest {
		var out []AppendRequest
		for _, b := range bodies {
			out = append(out, AppendRequest{AccountID: a.ID, MailboxID: inbox.ID, Body: strings.NewReader(msg(b))})
		}
		return out
	}
	before, _ := s.AccountByID(ctx, a.ID)
	small, big := msg("one"), msg(strings.Repeat("x", 2000))
	if err := s.SetQuota(ctx, a.Address, before.UsedBytes+int64(len(small))+100); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAll(ctx, reqs("one", strings.Repeat("x", 2000))); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("over quota: %v (sizes %d, %d)", err, len(small), len(big))
	}
	if m, _ := s.Messages(ctx, inbox.ID, 1, 0); len(m) != 0 {
		t.Fatalf("a refused MULTIAPPEND left %d messages", len(m))
	}
	if after, _ := s.AccountByID(ctx, a.ID); after.UsedBytes != before.UsedBytes {
		t.Fatalf("usage %d after a refused MULTIAPPEND, was %d", after.UsedBytes, before.UsedBytes)
	}
	if err := s.SetQuota(ctx, a.Address, 0); err != nil {
		t.Fatal(err)
	}
	done, err := s.AppendAll(ctx, reqs("first", "second", "third"))
	if err != nil || len(done) != 3 {
		t.Fatalf("append all: %v %v", done, err)
	}
	for i, d := range done {
		if d.UID != uint32(i+1) || d.UIDValidity != inbox.UIDValidity {
			t.Errorf("message %d: %+v (UIDs are not taken back by a refused write)", i, d)
		}
	}
}

// A write that releases a message file and then fails must leave the
// file: its rollback brings the reference back. Alone in its batch it
// rolls back the transaction; sharing one, its savepoint.
func TestFailedWriteKeepsReleasedFile(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprint("shared=", shared), func(t *testing.T) {
			s := openTest(t)
			ctx := context.Background()
			a := mustAccount(t, s, "a@example.org")
			d := appendMsg(t, s, a, "INBOX", msg("big")+strings.Repeat("x", inlineMax))
			infos, err := s.Messages(ctx, d.MailboxID, 1, 0)
			if err != nil || len(infos) != 1 {
				t.Fatalf("messages %v %v", infos, err)
			}
			blobID := infos[0].BlobID
			oops := errors.New("oops")
			release := func(_ context.Context, tx *wtx) error {
				if err := s.refBlob(tx, Blob{ID: blobID}, -1); err != nil {
					return err
				}
				return oops
			}
			var other chan error
			if shared {
				// Hold the writer so that both writes queue up and
				// share the next batch.
				unhold := holdWriter(s)
				other = make(chan error, 1)
				go func() {
					other <- s.updateLazy(ctx, func(ctx context.Context, tx *wtx) error {
						_, err := s.txExec(ctx, tx, "UPDATE accounts SET modseq = modseq + 1 WHERE id = ?", a.ID)
						return err
					})
				}()
				failed := make(chan error, 1)
				go func() { failed <- s.update(ctx, release) }()
				waitQueued(s, 2)
				unhold()
				err = <-failed
			} else {
				err = s.update(ctx, release)
			}
			if !errors.Is(err, oops) {
				t.Fatalf("failed write: %v", err)
			}
			if other != nil {
				if err := <-other; err != nil {
					t.Fatalf("write sharing the batch: %v", err)
				}
			}
			if _, err := os.Stat(s.blobPath(blobID)); err != nil {
				t.Fatal("file of a still referenced message removed:", err)
			}
			if _, err := s.readBlob(blobID); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A write whose context ends while one of its statements runs fails
// alone: the others in its batch still land.
func TestCancelledWriteLeavesItsBatch(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	inbox, err := s.MailboxByName(ctx, a.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	release := holdWriter(s)
	appended := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, AppendRequest{AccountID: a.ID, MailboxID: inbox.ID, Body: strings.NewReader(msg("innocent"))})
		appended <- err
	}()
	waitQueued(s, 1)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slow := make(chan error, 1)
	go func() {
		slow <- s.update(cctx, func(ctx context.Context, tx *wtx) error {
			// The caller gives up once the write has started, while
			// this statement runs.
			time.AfterFunc(5*time.Millisecond, cancel)
			_, err := tx.ExecContext(ctx, `UPDATE accounts SET modseq = modseq + (WITH RECURSIVE c(x) AS
				(SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 400000) SELECT count(*) FROM c) - 400000 WHERE id = ?`, a.ID)
			return err
		})
	}()
	waitQueued(s, 2)
	release()
	if err := <-appended; err != nil {
		t.Fatalf("append sharing the batch with a cancelled write: %v", err)
	}
	<-slow
}

// A message delivered from a blob that another write of the same batch
// released (a queue entry dropped while it was delivered) keeps its
// file.
func TestDeliverRevivesReleasedFile(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	blob, p := parsedBlob(t, s, msg("queued")+strings.Repeat("x", inlineMax))
	id, err := s.QueueAdd(ctx, &QueueEntry{From: "x@example.org", Blob: blob, Recipients: []QueueRecipient{{Address: "a@example.org"}}})
	if err != nil {
		t.Fatal(err)
	}
	release := holdWriter(s)
	dropped := make(chan error, 1)
	go func() { dropped <- s.QueueDrop(ctx, id) }()
	waitQueued(s, 1)
	delivered := make(chan error, 1)
	var res []Delivered
	go func() {
		var err error
		res, err = s.Deliver(ctx, &Delivery{Blob: blob, Parsed: p, Targets: []Target{{AccountID: a.ID}}})
		delivered <- err
	}()
	waitQueued(s, 2)
	release()
	if err := <-dropped; err != nil {
		t.Fatal(err)
	}
	if err := <-delivered; err != nil || res[0].Err != nil {
		t.Fatalf("deliver: %v %+v", err, res)
	}
	if _, err := s.readBlob(blob.ID); err != nil {
		t.Fatalf("acknowledged delivery lost its bytes: %v", err)
	}
	// Once released for good, the bytes cannot be delivered again: the
	// delivery fails instead of storing a message without them.
	if _, err := s.Expunge(ctx, res[0].MailboxID, []uint32{res[0].UID}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, &Delivery{Blob: blob, Parsed: p, Targets: []Target{{AccountID: a.ID}}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delivery of released bytes: %v", err)
	}
}

// holdWriter keeps the writer busy until release is called, so that the
// writes queued meanwhile share its next batch (see waitQueued).
func holdWriter(s *Store) (release func()) {
	hold, held := make(chan struct{}), make(chan struct{})
	go s.update(context.Background(), func(context.Context, *wtx) error { close(held); <-hold; return nil })
	<-held
	return func() { close(hold) }
}

// waitQueued waits until n writes wait for the writer.
func waitQueued(s *Store, n int) {
	for len(s.reqs) < n {
		time.Sleep(time.Millisecond)
	}
}

// parsedBlob stores body as a blob, ready for a Delivery.
func parsedBlob(t *testing.T, s *Store, body string) (Blob, *message.Parsed) {
	t.Helper()
	blob := queueTestBlob(t, s, body)
	p, err := s.parseBlob(blob.ID)
	if err != nil {
		t.Fatal(err)
	}
	return blob, p
}

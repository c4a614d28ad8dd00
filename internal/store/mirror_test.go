package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The mirror behind Messages and MessageFlags answers what the table
// says, through every kind of change: deliveries, flag changes,
// expunges, copies and moves in and out, and a mailbox deleted and made
// again (possibly under the same ID).
func TestMirrorFollowsChanges(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	if _, err := s.CreateMailbox(ctx, a.ID, "Other", ""); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	byName := func(name string) Mailbox {
		mb, err := s.MailboxByName(ctx, a.ID, name)
		if err != nil {
			t.Fatal(err)
		}
		return mb
	}
	direct := func(id int64) []MessageInfo {
		infos, err := s.queryInfos(ctx, nil, "SELECT "+infoCols+" FROM messages WHERE mailbox_id = ? ORDER BY uid", id)
		if err != nil {
			t.Fatal(err)
		}
		return infos
	}
	same := func(step int, name string) {
		t.Helper()
		mb := byName(name)
		want := direct(mb.ID)
		got, err := s.Messages(ctx, mb.ID, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		flags, err := s.MessageFlags(ctx, mb.ID, 1, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || len(flags) != len(want) {
			t.Fatalf("step %d %s: %d mirrored, %d flag rows, %d in the table", step, name, len(got), len(flags), len(want))
		}
		for i := range want {
			w, g, f := want[i], got[i], flags[i]
			if g.UID != w.UID || g.ModSeq != w.ModSeq || !slices.Equal(g.Flags, w.Flags) || !g.InternalDate.Equal(w.InternalDate) ||
				g.Size != w.Size || g.BlobID != w.BlobID || f.UID != w.UID || f.ModSeq != w.ModSeq || !slices.Equal(f.Flags, w.Flags) {
				t.Fatalf("step %d %s: row %d mirrored %+v / %+v, table %+v", step, name, i, g, f, w)
			}
		}
		// The sequence-number view and [UNSEEN n] of SELECT.
		seq, err := s.MessageUIDs(ctx, mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		firstUnseen, err := s.FirstUnseenUID(ctx, mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		var wantUnseen uint32
		for i := range want {
			if seq == nil || i >= len(seq) || seq[i] != want[i].UID {
				t.Fatalf("step %d %s: MessageUIDs %v, table row %d is UID %d", step, name, seq, i, want[i].UID)
			}
			if wantUnseen == 0 && !hasFlag(want[i].Flags, `\Seen`) {
				wantUnseen = want[i].UID
			}
		}
		if len(seq) != len(want) || firstUnseen != wantUnseen {
			t.Fatalf("step %d %s: %d UIDs listed for %d, first unseen %d, want %d", step, name, len(seq), len(want), firstUnseen, wantUnseen)
		}
		// A range in the middle.
		if len(want) > 2 {
			lo, hi := want[1].UID, want[len(want)-2].UID
			part, err := s.Messages(ctx, mb.ID, lo, hi)
			if err != nil || len(part) != len(want)-2 || part[0].UID != lo {
				t.Fatalf("step %d %s: range %d:%d gave %d rows (%v)", step, name, lo, hi, len(part), err)
			}
		}
	}
	uids := func(name string) []uint32 {
		var out []uint32
		for _, m := range direct(byName(name).ID) {
			out = append(out, m.UID)
		}
		return out
	}
	pick := func(name string) []uint32 {
		all := uids(name)
		var out []uint32
		for _, u := range all {
			if rnd.IntN(3) == 0 {
				out = append(out, u)
			}
		}
		return out
	}
	names := []string{"INBOX", "Other"}
	for step := range 300 {
		name := names[rnd.IntN(2)]
		mb := byName(name)
		switch op := rnd.IntN(10); {
		case op < 3:
			appendMsg(t, s, a, name, msg(fmt.Sprint("m", step)), []string{`\Seen`, `\Flagged`, "$Work"}[rnd.IntN(3)])
		case op < 6:
			if u := pick(name); len(u) > 0 {
				fop := []FlagOp{FlagsAdd, FlagsRemove, FlagsReplace}[rnd.IntN(3)]
				if _, _, err := s.UpdateFlags(ctx, mb.ID, FlagUpdate{UIDs: u, Op: fop, Flags: []string{[]string{`\Seen`, `\Deleted`, "$Junk"}[rnd.IntN(3)]}}); err != nil {
					t.Fatal(err)
				}
			}
		case op < 7:
			if _, err := s.Expunge(ctx, mb.ID, pick(name)); err != nil {
				t.Fatal(err)
			}
		case op < 8:
			if _, err := s.Expunge(ctx, mb.ID, nil); err != nil {
				t.Fatal(err)
			}
		case op < 9:
			other := byName(names[1-slices.Index(names, name)])
			move := s.Copy
			if rnd.IntN(2) == 0 {
				move = s.Move
			}
			if u := pick(name); len(u) > 0 {
				if _, _, err := move(ctx, mb.ID, other.ID, u); err != nil {
					t.Fatal(err)
				}
			}
		default:
			if name == "Other" && rnd.IntN(4) == 0 {
				if err := s.DeleteMailbox(ctx, a.ID, "Other"); err != nil {
					t.Fatal(err)
				}
				if _, err := s.CreateMailbox(ctx, a.ID, "Other", ""); err != nil {
					t.Fatal(err)
				}
			}
		}
		same(step, names[0])
		same(step, names[1])
	}
}

// A mailbox deleted and made again at once gets a new UIDVALIDITY, even
// when the old one was the largest in use.
func TestUIDValidityNotReused(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	seen := map[uint32]bool{}
	for range 5 {
		mb, err := s.CreateMailbox(ctx, a.ID, "Box", "")
		if err != nil {
			t.Fatal(err)
		}
		if seen[mb.UIDValidity] {
			t.Fatalf("UIDVALIDITY %d given out twice", mb.UIDValidity)
		}
		seen[mb.UIDValidity] = true
		if err := s.DeleteMailbox(ctx, a.ID, "Box"); err != nil {
			t.Fatal(err)
		}
	}
}

// A change made by another process (the CLI, another Store on the same
// files) reaches the mirror at once when that process says so
// (NotifyAccount), and within mirrorTrust when nothing does.
func TestMirrorSeesOtherProcess(t *testing.T) {
	ctx := context.Background()
	s, other := openTwoProcesses(t)
	a := mustAccount(t, s, "a@example.org")
	if _, err := s.CreateMailbox(ctx, a.ID, "Other", ""); err != nil {
		t.Fatal(err)
	}
	inbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	count := func() int {
		t.Helper()
		infos, err := s.Messages(ctx, inbox.ID, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(infos)
	}
	appendMsg(t, s, a, "INBOX", msg("one"))
	if n := count(); n != 1 {
		t.Fatalf("%d messages", n)
	}
	appendMsg(t, other, a, "INBOX", msg("two"))
	s.NotifyAccount(a.ID)
	if n := count(); n != 2 {
		t.Fatalf("after a notified change elsewhere: %d messages", n)
	}
	appendMsg(t, s, a, "INBOX", msg("three"))
	count()
	appendMsg(t, other, a, "INBOX", msg("four"))
	time.Sleep(mirrorTrust)
	if n := count(); n != 4 {
		t.Fatalf("a second after an unannounced change elsewhere: %d messages", n)
	}

	// This process's writer notices the other's commit (data_version)
	// at its next batch, and the mirror believes no published label.
	appendMsg(t, s, a, "INBOX", msg("five"))
	if n := count(); n != 5 { // labelled with what this writer published
		t.Fatalf("%d messages", n)
	}
	appendMsg(t, other, a, "INBOX", msg("six"))
	time.Sleep(150 * time.Millisecond) // the writer looks at most every 100 ms
	appendMsg(t, s, a, "Other", msg("seven"))
	if n := count(); n != 6 {
		t.Fatalf("after this writer's next batch: %d messages", n)
	}
}

// A mailbox ID that comes back for another mailbox (its account deleted,
// or the mailbox deleted and made again) never shows the old messages,
// even once the new mailbox's HIGHESTMODSEQ is back at the old label.
func TestMirrorIDReuse(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	table := func(id int64) int {
		infos, err := s.queryInfos(ctx, nil, "SELECT "+infoCols+" FROM messages WHERE mailbox_id = ?", id)
		if err != nil {
			t.Fatal(err)
		}
		return len(infos)
	}
	check := func(what string, id int64) {
		t.Helper()
		got, err := s.Messages(ctx, id, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		flags, err := s.MessageFlags(ctx, id, 1, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n := table(id); len(got) != n || len(flags) != n {
			t.Fatalf("%s: mirror %d/%d rows, table %d", what, len(got), len(flags), n)
		}
	}

	a := mustAccount(t, s, "a@example.org")
	appendMsg(t, s, a, "INBOX", msg("old one"))
	appendMsg(t, s, a, "INBOX", msg("old two"))
	old, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	check("before", old.ID)
	if err := s.DeleteAccount(ctx, "a@example.org"); err != nil {
		t.Fatal(err)
	}
	b := mustAccount(t, s, "b@example.org")
	inbox, _ := s.MailboxByName(ctx, b.ID, "INBOX")
	if inbox.ID != old.ID {
		t.Logf("the ID did not come back (%d, %d)", old.ID, inbox.ID)
	}
	check("new account, no writes", inbox.ID)
	for inbox.HighestModSeq < old.HighestModSeq {
		d := appendMsg(t, s, b, "INBOX", msg("new"))
		if _, err := s.Expunge(ctx, inbox.ID, []uint32{d.UID}); err != nil {
			t.Fatal(err)
		}
		inbox, _ = s.MailboxByName(ctx, b.ID, "INBOX")
	}
	check("new account at the old label", inbox.ID)

	if _, err := s.CreateMailbox(ctx, b.ID, "Foo", ""); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, s, b, "Foo", msg("old one"))
	appendMsg(t, s, b, "Foo", msg("old two"))
	foo, _ := s.MailboxByName(ctx, b.ID, "Foo")
	check("Foo", foo.ID)
	if err := s.DeleteMailbox(ctx, b.ID, "Foo"); err != nil {
		t.Fatal(err)
	}
	again, err := s.CreateMailbox(ctx, b.ID, "Foo", "")
	if err != nil {
		t.Fatal(err)
	}
	check("Foo made again", again.ID)
	for again.HighestModSeq < foo.HighestModSeq {
		d := appendMsg(t, s, b, "Foo", msg("new"))
		if _, err := s.Expunge(ctx, again.ID, []uint32{d.UID}); err != nil {
			t.Fatal(err)
		}
		again, _ = s.MailboxByName(ctx, b.ID, "Foo")
	}
	check("Foo made again, at the old label", again.ID)
}

// openTwoProcesses opens two Stores on one data directory, as tern and
// its CLI (or a second tern) would: each has its own writer, caches and
// mirrors, and sees the other's commits only through the database.
func openTwoProcesses(t *testing.T) (s, other *Store) {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []**Store{&s, &other} {
		st, err := Open(context.Background(), dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		*p = st
	}
	return s, other
}

package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

// inboxWith returns a store with one account whose INBOX holds n
// messages, and their UIDs.
func inboxWith(t *testing.T, n int) (*Store, Account, Mailbox, []uint32) {
	t.Helper()
	s := openTest(t)
	a := mustAccount(t, s, "a@example.org")
	inbox, err := s.MailboxByName(context.Background(), a.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var uids []uint32
	for i := range n {
		uids = append(uids, appendMsg(t, s, a, "INBOX", msg(fmt.Sprint("m", i))).UID)
	}
	return s, a, inbox, uids
}

func tombstones(t *testing.T, s *Store, mailboxID int64) int {
	t.Helper()
	var n int
	if err := s.db.QueryRowContext(context.Background(), "SELECT count(*) FROM tombstones WHERE mailbox_id = ?", mailboxID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Pruned tombstones: changes since a modseq above the floor stay exact;
// below it every missing UID reports as vanished, and never one that
// exists. The mirror, labelled below the floor, reads the mailbox again.
func TestPruneTombstones(t *testing.T) {
	s, a, inbox, uids := inboxWith(t, 40)
	ctx := context.Background()
	start, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	if _, err := s.Messages(ctx, inbox.ID, 1, 0); err != nil { // the mirror, labelled now
		t.Fatal(err)
	}
	var gone []uint32
	for i := 0; i < 30; i++ { // one expunge (and modseq) each
		if _, err := s.Expunge(ctx, inbox.ID, uids[i:i+1]); err != nil {
			t.Fatal(err)
		}
		gone = append(gone, uids[i])
	}
	mid, _ := s.MailboxByName(ctx, a.ID, "INBOX") // after all 30
	n, err := s.PruneTombstones(ctx, 10)
	if err != nil || n != 20 {
		t.Fatalf("pruned %d (%v), want 20", n, err)
	}
	if left := tombstones(t, s, inbox.ID); left != 10 {
		t.Fatalf("%d tombstones left", left)
	}
	if n, _ := s.PruneTombstones(ctx, 10); n != 0 {
		t.Fatalf("pruned %d more", n)
	}

	// Since the start (below the floor): all 30, from the fallback.
	flagChanges := func(ctx context.Context, id int64, since uint64) ([]MessageInfo, []uint32, error) {
		ch, van, highest, err := s.FlagChangesSince(ctx, id, since)
		if err == nil && highest != mid.HighestModSeq {
			t.Fatalf("FlagChangesSince: HIGHESTMODSEQ %d, want %d", highest, mid.HighestModSeq)
		}
		return ch, van, err
	}
	for _, f := range []func(context.Context, int64, uint64) ([]MessageInfo, []uint32, error){s.ChangesSince, flagChanges} {
		_, van, err := f(ctx, inbox.ID, start.HighestModSeq)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(van, gone) {
			t.Fatalf("vanished since the start: %v, want %v", van, gone)
		}
		// Above the floor: exactly the last expunges.
		_, van, err = f(ctx, inbox.ID, mid.HighestModSeq-3)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(van, gone[27:]) {
			t.Fatalf("vanished since the end: %v, want %v", van, gone[27:])
		}
	}
	infos, err := s.Messages(ctx, inbox.ID, 1, 0)
	if err != nil || len(infos) != 10 || infos[0].UID != uids[30] {
		t.Fatalf("mirror after pruning: %d rows (%v)", len(infos), err)
	}
}

// The mirror's delta read finds tombstones pruned above its label and
// starts over instead of keeping messages that went.
func TestMirrorAfterPrune(t *testing.T) {
	s, _, inbox, uids := inboxWith(t, 5)
	ctx := context.Background()
	if got, _ := s.Messages(ctx, inbox.ID, 1, 0); len(got) != 5 {
		t.Fatalf("%d messages", len(got))
	}
	for _, u := range uids[:3] {
		if _, err := s.Expunge(ctx, inbox.ID, []uint32{u}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PruneTombstones(ctx, 0); err != nil {
		t.Fatal(err)
	}
	got, err := s.Messages(ctx, inbox.ID, 1, 0)
	if err != nil || len(got) != 2 || got[0].UID != uids[3] {
		t.Fatalf("after expunges and pruning: %v %v", got, err)
	}
}

// One expunge of many messages shares a modseq: pruning keeps it whole
// rather than dropping the tombstones it should keep.
func TestPruneKeepsOneExpungeWhole(t *testing.T) {
	s, _, inbox, uids := inboxWith(t, 8)
	ctx := context.Background()
	if _, err := s.Expunge(ctx, inbox.ID, uids[:2]); err != nil { // older, 2 tombstones
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, inbox.ID, uids[2:]); err != nil { // one modseq, 6 tombstones
		t.Fatal(err)
	}
	n, err := s.PruneTombstones(ctx, 3)
	if err != nil || n != 2 {
		t.Fatalf("pruned %d (%v), want the 2 older", n, err)
	}
	if left := tombstones(t, s, inbox.ID); left != 6 {
		t.Fatalf("%d tombstones left, want 6", left)
	}
}

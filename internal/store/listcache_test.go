package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// MailboxList follows every change to an account's mailboxes and
// subscriptions made through the store, including the mailbox ID and
// account ID reuse of DELETE and CREATE, and a write that fails changes
// nothing in it.
func TestMailboxListFollowsChanges(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	check := func(step string, acct int64) {
		t.Helper()
		boxes, subs, err := s.MailboxList(ctx, acct)
		if err != nil {
			t.Fatal(err)
		}
		want, err := s.Mailboxes(ctx, acct)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			want[i].UIDNext, want[i].HighestModSeq = 0, 0
		}
		wantSubs, err := s.Subscriptions(ctx, acct)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(boxes, want) || !slices.Equal(subs, wantSubs) {
			t.Fatalf("%s: listed %+v %q, stored %+v %q", step, boxes, subs, want, wantSubs)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check("new account", a.ID)
	_, err := s.CreateMailbox(ctx, a.ID, "Work", "")
	must(err)
	check("create", a.ID)
	_, err = s.CreateMailbox(ctx, a.ID, "Work/2026", `\Archive`)
	must(err)
	check("create child", a.ID)
	must(s.SetSubscribed(ctx, a.ID, "Work", true))
	check("subscribe", a.ID)
	must(s.RenameMailbox(ctx, a.ID, "Work", "Job"))
	check("rename with child", a.ID)
	must(s.RenameMailbox(ctx, a.ID, "INBOX", "Old"))
	check("rename INBOX", a.ID)
	if _, err := s.CreateMailbox(ctx, a.ID, "Job", ""); !errors.Is(err, ErrExists) {
		t.Fatalf("create over an existing mailbox: %v", err)
	}
	check("failed create", a.ID)
	must(s.DeleteMailbox(ctx, a.ID, "Job/2026"))
	_, err = s.CreateMailbox(ctx, a.ID, "Again", "")
	must(err)
	check("delete and create", a.ID)
	must(s.SetSubscribed(ctx, a.ID, "Job", false))
	check("unsubscribe", a.ID)
	// Delivery changes no name: the list is served without a read.
	gen := s.lists.gen.Load()
	appendMsg(t, s, a, "INBOX", "Subject: x\r\n\r\nx\r\n")
	if s.lists.gen.Load() != gen {
		t.Fatal("a delivery invalidated the mailbox list")
	}
	// An account that takes a deleted one's ID lists its own mailboxes.
	b := mustAccount(t, s, "b@example.org")
	check("second account", b.ID)
	must(s.DeleteAccount(ctx, "b@example.org"))
	c := mustAccount(t, s, "c@example.org")
	if c.ID == b.ID {
		check("account ID reused", c.ID)
	}
}

// A mailbox created by another process shows in MailboxList at once when
// that process says so, and within mirrorTrust when nothing does.
func TestMailboxListSeesOtherProcess(t *testing.T) {
	ctx := context.Background()
	s, other := openTwoProcesses(t)
	a := mustAccount(t, s, "a@example.org")
	has := func(name string) bool {
		t.Helper()
		boxes, _, err := s.MailboxList(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(boxes, func(m Mailbox) bool { return m.Name == name })
	}
	if has("Elsewhere") {
		t.Fatal("listed before it exists")
	}
	if _, err := other.CreateMailbox(ctx, a.ID, "Elsewhere", ""); err != nil {
		t.Fatal(err)
	}
	s.NotifyAccount(a.ID)
	if !has("Elsewhere") {
		t.Fatal("not listed after NotifyAccount")
	}
	if _, err := other.CreateMailbox(ctx, a.ID, "Quiet", ""); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(mirrorTrust + time.Second)
	for !has("Quiet") {
		if time.Now().After(deadline) {
			t.Fatal("a mailbox created by another process never listed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

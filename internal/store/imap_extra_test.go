package store

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/tern-mail/tern/internal/message"
)

func TestMessageFlagsAndParsedSome(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "flags@example.org")
	appendMsg(t, s, a, "INBOX", msg("one"), `\Seen`)
	appendMsg(t, s, a, "INBOX", msg("two"), `\Seen`, `\Flagged`)
	appendMsg(t, s, a, "INBOX", msg("needle"))
	appendMsg(t, s, a, "INBOX", msg("four"), `\Seen`)
	mb, err := s.MailboxByName(ctx, a.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	full, err := s.Messages(ctx, mb.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.MessageFlags(ctx, mb.ID, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(full) {
		t.Fatalf("MessageFlags: %d rows, Messages: %d", len(got), len(full))
	}
	for i := range got {
		f := full[i]
		if got[i].UID != f.UID || got[i].ModSeq != f.ModSeq || !reflect.DeepEqual(got[i].Flags, f.Flags) {
			t.Errorf("row %d: %+v, want uid %d modseq %d flags %v", i, got[i], f.UID, f.ModSeq, f.Flags)
		}
	}
	// Equal flag lists are shared, and appending to one cannot reach another.
	if &got[0].Flags[0] != &got[3].Flags[0] {
		t.Error("equal flag lists not interned")
	}
	if cap(got[0].Flags) != len(got[0].Flags) {
		t.Error("interned flag list has spare capacity")
	}
	some, err := s.MessageFlags(ctx, mb.ID, 2, 3, got[:0])
	if err != nil || len(some) != 2 || some[0].UID != 2 || some[1].UID != 3 {
		t.Fatalf("MessageFlags 2:3 = %+v, %v", some, err)
	}

	uids := []uint32{1, 2, 3, 4}
	want := map[uint32]*message.Parsed{}
	for _, u := range uids {
		p, err := s.Parsed(ctx, mb.ID, u)
		if err != nil {
			t.Fatal(err)
		}
		want[u] = p
	}
	env, err := s.ParsedSome(ctx, mb.ID, uids, ParsedOptions{EnvelopeOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range uids {
		if env[u] == nil || !reflect.DeepEqual(env[u].Envelope, want[u].Envelope) {
			t.Errorf("uid %d: envelope-only %+v, want envelope %+v", u, env[u], want[u].Envelope)
		}
	}
	all, err := s.ParsedSome(ctx, mb.ID, uids, ParsedOptions{})
	if err != nil || !reflect.DeepEqual(all, want) {
		t.Errorf("ParsedSome without options differs from Parsed: %v", err)
	}
	hits, err := s.ParsedSome(ctx, mb.ID, uids, ParsedOptions{EnvelopeOnly: true, MayMatch: func(raw []byte) bool {
		return bytes.Contains(raw, []byte("needle"))
	}})
	if err != nil || len(hits) != 1 || hits[3] == nil || !strings.Contains(hits[3].Envelope.Subject, "needle") {
		t.Errorf("MayMatch: %+v, %v", hits, err)
	}
}

func queryPlan(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.db.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "; ")
}

// TestIMAPQueryPlans: listings read a stretch of the messages table, in
// order, and the update check reads the modseq indexes, never the whole
// mailbox.
func TestIMAPQueryPlans(t *testing.T) {
	s := openTest(t)
	for name, q := range map[string]string{"flags": messageFlagsQuery, "POP3 bodies": inlineMessagesQuery, "mirror": mirrorFullQuery} {
		p := queryPlan(t, s, q, 1, 1, 10)
		if !strings.Contains(p, "SEARCH m USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)") && !strings.Contains(p, "SEARCH messages USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)") || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("%s plan %q: want a range of the table without a sort", name, p)
		}
	}
	p := queryPlan(t, s, flagChangesQuery, 1, 10)
	if !strings.Contains(p, "messages_modseq (mailbox_id=? AND modseq>?)") || !strings.Contains(p, "tombstones_modseq (mailbox_id=? AND modseq>?)") {
		t.Errorf("changes plan %q: want both modseq indexes", p)
	}
}

func TestFlagChangesSince(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "changes@example.org")
	for i := 0; i < 5; i++ {
		appendMsg(t, s, a, "INBOX", msg("m"))
	}
	mb, err := s.MailboxByName(ctx, a.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	check := func(since uint64) {
		t.Helper()
		wc, wv, err := s.ChangesSince(ctx, mb.ID, since)
		if err != nil {
			t.Fatal(err)
		}
		gc, gv, _, err := s.FlagChangesSince(ctx, mb.ID, since)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gv, wv) || len(gc) != len(wc) {
			t.Fatalf("since %d: changed %+v vanished %v, want %+v %v", since, gc, gv, wc, wv)
		}
		for i := range gc {
			if gc[i].UID != wc[i].UID || gc[i].ModSeq != wc[i].ModSeq || !reflect.DeepEqual(gc[i].Flags, wc[i].Flags) {
				t.Errorf("since %d row %d: %+v, want %+v", since, i, gc[i], wc[i])
			}
		}
	}
	mb, _ = s.MailboxByName(ctx, a.ID, "INBOX")
	base := mb.HighestModSeq
	if _, _, err := s.UpdateFlags(ctx, mb.ID, FlagUpdate{UIDs: []uint32{2, 4}, Op: FlagsAdd, Flags: []string{`\Deleted`}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.UpdateFlags(ctx, mb.ID, FlagUpdate{UIDs: []uint32{3}, Op: FlagsAdd, Flags: []string{`\Seen`}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, mb.ID, nil); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, s, a, "INBOX", msg("new"))
	for since := uint64(0); since <= base+5; since++ {
		check(since)
	}
}

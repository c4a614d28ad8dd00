package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/tern-mail/tern/internal/message"
)

func TestParsedCache(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	inbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	var uids []uint32
	for i := 0; i < 5; i++ {
		uids = append(uids, appendMsg(t, s, a, "INBOX", msg(fmt.Sprint("m", i))).UID)
	}
	env, err := s.ParsedSome(ctx, inbox.ID, uids, ParsedOptions{EnvelopeOnly: true})
	if err != nil || len(env) != 5 {
		t.Fatalf("%d %v", len(env), err)
	}
	if env[uids[2]].Envelope.Subject != "m2" || env[uids[2]].Structure != nil {
		t.Errorf("envelope only: %+v", env[uids[2]])
	}
	// A full structure is not served from an envelope-only entry.
	full, err := s.ParsedSome(ctx, inbox.ID, uids, ParsedOptions{})
	if err != nil || len(full) != 5 || full[uids[2]].Structure == nil || full[uids[2]].Envelope.Subject != "m2" {
		t.Fatalf("full: %d %v %+v", len(full), err, full[uids[2]])
	}
	// The second read of each comes from the cache: the same structures.
	again, _ := s.ParsedSome(ctx, inbox.ID, uids, ParsedOptions{})
	env2, _ := s.ParsedSome(ctx, inbox.ID, uids, ParsedOptions{EnvelopeOnly: true})
	for _, uid := range uids {
		if again[uid] != full[uid] || env2[uid] != full[uid] {
			t.Errorf("UID %d read again, not from the cache", uid)
		}
	}
	// An expunged message is absent although its structure is cached.
	if _, err := s.Expunge(ctx, inbox.ID, []uint32{uids[1]}); err != nil {
		t.Fatal(err)
	}
	after, _ := s.ParsedSome(ctx, inbox.ID, uids, ParsedOptions{})
	if _, ok := after[uids[1]]; ok || len(after) != 4 {
		t.Errorf("after expunge: %d entries, expunged one present: %v", len(after), ok)
	}
	// A copy in another mailbox shares the entry (it shares the blob).
	other, err := s.CreateMailbox(ctx, a.ID, "Other", "")
	if err != nil {
		t.Fatal(err)
	}
	_, pairs, err := s.Copy(ctx, inbox.ID, other.ID, []uint32{uids[3]})
	if err != nil || len(pairs) != 1 {
		t.Fatalf("copy: %v %v", pairs, err)
	}
	got, _ := s.ParsedSome(ctx, other.ID, []uint32{pairs[0].Dst}, ParsedOptions{})
	if got[pairs[0].Dst] != full[uids[3]] {
		t.Errorf("the copy: %+v", got[pairs[0].Dst])
	}
	// A search's filter sees the stored bytes: never served from the cache.
	seen := 0
	filtered, _ := s.ParsedSome(ctx, inbox.ID, uids, ParsedOptions{MayMatch: func([]byte) bool { seen++; return true }})
	if seen != 4 || len(filtered) != 4 {
		t.Errorf("filter saw %d messages, %d returned", seen, len(filtered))
	}
}

func TestParsedCacheBound(t *testing.T) {
	c := parsedCache{max: 100 * (1000 + 64 + 8)}
	for i := 0; i < 1000; i++ {
		c.put(fmt.Sprintf("blob%04d", i), &message.Parsed{}, true, 1000)
		if c.bytes > c.max {
			t.Fatalf("%d bytes over the bound %d", c.bytes, c.max)
		}
	}
	if len(c.byID) != 100 || c.ll.Len() != 100 {
		t.Errorf("%d entries, %d in the list", len(c.byID), c.ll.Len())
	}
	if c.get("blob0999", true) == nil || c.get("blob0000", true) != nil {
		t.Error("the newest entry went or the oldest stayed")
	}
	// The oldest, once used, outlives the next oldest.
	c.get("blob0900", true)
	c.put("blob1000", &message.Parsed{}, true, 1000)
	if c.get("blob0900", true) == nil || c.get("blob0901", true) != nil {
		t.Error("not the least recently used went")
	}
	// A whole structure counts twice its stored size (the decoded form
	// takes about that): one replaces two envelopes.
	c.put("whole", &message.Parsed{}, false, 1000)
	if len(c.byID) != 99 || c.get("blob0902", true) != nil {
		t.Errorf("%d entries after a whole structure, want 99", len(c.byID))
	}
	c.put("huge", &message.Parsed{}, true, c.max)
	if c.get("huge", true) != nil {
		t.Error("an entry of a sixteenth of the bound or more was kept")
	}
}

package imapserver

import (
	"bufio"
	"strings"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/imap"
)

// tm is a message of a threading case: its Message-ID, References (ids
// without brackets, "" for none), subject and minutes after a base date.
type tm struct {
	id, refs, subject string
	min               int
}

func threadItems(msgs []tm) []sortItem {
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	items := make([]sortItem, len(msgs))
	for i, m := range msgs {
		it := sortItem{seq: uint32(i + 1), uid: uint32(100 + i), date: base.Add(time.Duration(m.min) * time.Minute)}
		it.subject, it.replyFwd = baseSubjectRF(m.subject)
		if m.id != "" {
			it.messageID, _, _ = nextMsgID("<" + m.id + ">")
		}
		for _, r := range strings.Fields(m.refs) {
			it.refs = append(it.refs, r)
		}
		items[i] = it
	}
	return items
}

func renderThreads(roots []*thread) string {
	var sb strings.Builder
	bw := bufio.NewWriter(&sb)
	writeThreads(imap.NewWriter(bw), roots, false)
	bw.Flush()
	return sb.String()
}

// TestThreadReferencesCases checks RFC 5256 §3 REFERENCES on hand-made
// mailboxes, one rule of the algorithm each.
func TestThreadReferencesCases(t *testing.T) {
	cases := []struct {
		name string
		msgs []tm
		want string
	}{
		{"chain and a loner", []tm{
			{"a@x", "", "plan", 0}, {"d@x", "", "other", 30}, {"b@x", "a@x", "Re: plan", 60}, {"c@x", "a@x b@x", "Re: plan", 90},
		}, "(1 3 4)(2)"},
		{"siblings by sent date, not sequence", []tm{
			{"a@x", "", "plan", 0}, {"b@x", "a@x", "Re: plan", 50}, {"c@x", "a@x", "Re: plan", 10},
		}, "(1 (3)(2))"},
		// Step 1.A: a dummy for a missing id; step 3 keeps a dummy at the
		// top with several children.
		{"dummy parent with two children", []tm{
			{"b@x", "a@x", "Re: lost", 0}, {"c@x", "a@x", "Re: lost", 10},
		}, "((1)(2))"},
		// Step 3: a top-level dummy with one child is replaced by it.
		{"dummy parent with one child", []tm{
			{"b@x", "a@x", "Re: lost", 0}, {"z@x", "", "unrelated", 5},
		}, "(1)(2)"},
		// Step 3: a dummy below the top level is replaced by its children.
		{"nested dummies", []tm{
			{"c@x", "a@x b@x", "one", 0}, {"d@x", "a@x", "two", 10},
		}, "((1)(2))"},
		{"dummy in the middle", []tm{
			{"a@x", "", "top", 0}, {"c@x", "a@x b@x", "Re: top", 10}, {"e@x", "a@x b@x", "Re: top", 20},
		}, "(1 (2)(3))"},
		// Step 1: no loops. a says its parent is b, b says its parent
		// is a: the second link is not made.
		{"two-message loop", []tm{
			{"a@x", "b@x", "x", 10}, {"b@x", "a@x", "y", 0},
		}, "(2 1)"},
		// A message that lists itself: the links follow the letter of
		// steps 1.A and 1.B (as Dovecot does): "b a" makes b the parent
		// of a; a last reference to itself leaves a message without
		// parent.
		{"self reference", []tm{
			{"a@x", "a@x", "x", 0}, {"b@x", "b@x a@x", "y", 10}, {"c@x", "a@x c@x", "z", 20},
		}, "(2 1)(3)"},
		{"three-message loop", []tm{
			{"a@x", "c@x", "p", 0}, {"b@x", "a@x", "q", 10}, {"c@x", "b@x", "r", 20},
		}, "(3 1 2)"},
		// Step 1.A keeps an existing parent (References may be
		// truncated); step 1.B replaces it with the message's own last
		// reference.
		{"existing parent kept in 1.A", []tm{
			{"a@x", "", "s1", 0}, {"b@x", "", "s2", 1}, {"c@x", "a@x", "s3", 2}, {"d@x", "b@x c@x", "s4", 3},
		}, "(1 3 4)(2)"},
		{"own last reference wins in 1.B", []tm{
			{"x@x", "p@x c@x", "s1", 0}, {"b@x", "", "s2", 1}, {"c@x", "b@x", "s3", 2},
		}, "(2 3 1)"},
		// Missing and duplicate Message-IDs get unique ids: the first
		// message keeps the id.
		{"missing ids", []tm{
			{"", "", "s1", 0}, {"", "", "s2", 1}, {"c@x", "", "s3", 2},
		}, "(1)(2)(3)"},
		{"duplicate id", []tm{
			{"a@x", "", "s1", 0}, {"a@x", "", "s2", 1}, {"c@x", "a@x", "s3", 2},
		}, "(1 3)(2)"},
		{"invalid ids", []tm{
			{"nohost", "", "s1", 0}, {"b@x", "nohost", "s2", 1},
		}, "(1)(2)"},
		// Step 5: roots with one base subject are gathered.
		{"reply without references joins its subject", []tm{
			{"a@x", "", "plan", 0}, {"b@x", "", "Re: plan", 10},
		}, "(1 2)"},
		{"two originals under a dummy", []tm{
			{"a@x", "", "plan", 0}, {"b@x", "", "plan", 10}, {"c@x", "", "Re: plan", 20},
		}, "((1)(2)(3))"},
		{"the original is preferred over a reply", []tm{
			{"a@x", "", "Re: plan", 0}, {"b@x", "", "plan", 10},
		}, "(2 1)"},
		{"dummy thread takes messages of its subject", []tm{
			{"b@x", "a@x", "Re: lost", 0}, {"c@x", "a@x", "Re: lost", 10}, {"d@x", "", "lost", 5}, {"e@x", "", "Fwd: lost", 20},
		}, "((1)(3)(2)(4))"},
		{"two dummies merge", []tm{
			{"b@x", "a@x", "Re: lost", 0}, {"c@x", "a@x", "Re: lost", 10}, {"e@x", "d@x", "Re: lost", 5}, {"f@x", "d@x", "Re: lost", 15},
		}, "((1)(3)(2)(4))"},
		{"empty subjects stay apart", []tm{
			{"a@x", "", "", 0}, {"b@x", "", "Re:", 10},
		}, "(1)(2)"},
		// Step 4/6: threads by the date of their root; a dummy by its
		// first child.
		{"threads by date", []tm{
			{"a@x", "", "late", 100}, {"b@x", "q@x", "early", 30}, {"c@x", "q@x", "early", 20}, {"d@x", "", "middle", 50},
		}, "((3)(2))(4)(1)"},
	}
	for _, c := range cases {
		got := renderThreads(references(threadItems(c.msgs)))
		if got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
}

func TestThreadOrderedSubjectCases(t *testing.T) {
	msgs := []tm{
		{"a@x", "", "zebra", 30}, {"b@x", "", "apple", 40}, {"c@x", "", "Re: zebra", 10},
		{"d@x", "", "[list] Re: zebra", 20}, {"e@x", "", "apple", 35}, {"f@x", "", "kiwi", 50},
	}
	// RFC 5256 §3 ORDEREDSUBJECT: by base subject then sent date; the
	// first of a subject is the parent of the others; threads by the
	// date of their first message.
	got := renderThreads(orderedSubject(threadItems(msgs)))
	if want := "(3 (4)(1))(5 2)(6)"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestBaseSubject(t *testing.T) {
	cases := []struct {
		in   string
		want string
		rf   bool
	}{
		{"hello", "HELLO", false},
		{"Re: hello", "HELLO", true},
		{"RE:   Re:hello ", "HELLO", true},
		{"Fwd: hello (fwd)", "HELLO", true},
		{"hello (fwd) (FWD)  ", "HELLO", true},
		{"Fw: hello", "HELLO", true},
		{"Re[2]: hello", "HELLO", true},
		{"Re : hello", "HELLO", true},
		{"[list] Re: hello", "HELLO", true},
		{"[list] [tag] hello", "HELLO", false},
		{"[only a blob]", "[ONLY A BLOB]", false},
		{"[list] [last]", "[LAST]", false},
		{"[Fwd: Re: hello]", "HELLO", true},
		{"[fwd: hello] (fwd)", "HELLO", true},
		{"Review: hello", "REVIEW: HELLO", false},
		{"Re: [fwd: [list] Re: hello]", "HELLO", true},
		{"hello\t\r\n   world", "HELLO WORLD", false},
		{"=?utf-8?q?Re=3A_caf=C3=A9?=", "CAFÉ", true},
		{"", "", false},
		{"Re:", "", true},
		{"[a[b] hello", "[A[B] HELLO", false},
	}
	for _, c := range cases {
		got, rf := baseSubjectRF(c.in)
		if got != c.want || rf != c.rf {
			t.Errorf("%q: got %q %v, want %q %v", c.in, got, rf, c.want, c.rf)
		}
	}
}

func TestMsgIDs(t *testing.T) {
	cases := []struct {
		in   string
		want string
	}{
		{"<a@b>", "a@b"},
		{"  <a@b> <c@d>\r\n\t<e@f>", "a@b c@d e@f"},
		{"<no-at> <x@y>", "x@y"},
		{"<a (comment) @ b>", "a@b"},
		{"junk <unclosed <a@b>", "a@b"},
		{"<@b> <a@> <a@b", ""},
		{"Your message of ... <a@b.c>", "a@b.c"},
		{`<"q"@b>`, `"q"@b`},
	}
	for _, c := range cases {
		if got := strings.Join(msgIDs(c.in), " "); got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzThreadReferences(f *testing.F) {
	f.Add("a@x b@x", "b@x a@x", "c@x a@x b@x", "Re: x")
	f.Add("a@x", "a@x", "", "[fwd: x]")
	f.Fuzz(func(t *testing.T, r1, r2, r3, subj string) {
		ids := []string{"a@x", "b@x", "c@x", "b@x"}
		var msgs []tm
		for i, r := range []string{r1, r2, r3, r1 + " " + r3} {
			msgs = append(msgs, tm{id: ids[i], refs: r, subject: subj, min: i % 2})
		}
		roots := references(threadItems(msgs))
		// Every message appears exactly once; no dummy without
		// children.
		seen := map[uint32]int{}
		var walk func(ts []*thread, depth int)
		walk = func(ts []*thread, depth int) {
			if depth > 10 {
				t.Fatal("too deep: a loop?")
			}
			for _, n := range ts {
				if n.item == nil && len(n.children) < 2 {
					t.Fatalf("dummy with %d children", len(n.children))
				}
				if n.item != nil {
					seen[n.item.seq]++
				}
				walk(n.children, depth+1)
			}
		}
		walk(roots, 0)
		for i := 1; i <= len(msgs); i++ {
			if seen[uint32(i)] != 1 {
				t.Fatalf("message %d appears %d times: %s", i, seen[uint32(i)], renderThreads(roots))
			}
		}
	})
}

func TestParseSentDate(t *testing.T) {
	cases := []struct {
		in   string
		want string // RFC 3339 in UTC, "" for invalid
	}{
		{"Fri, 6 Sep 2002 08:44:38 EDT", "2002-09-06T12:44:38Z"},
		{"Tue, 1 Mar 2022 10:00:00 +0100 (CET)", "2022-03-01T09:00:00Z"},
		{"27 Jun 01 3:36:25 AM", "2001-06-27T03:36:25Z"},
		{"Mon, 28 Jul 1980 14:01:35", "1980-07-28T14:01:35Z"},
		{"Wed, 30 Jul 1980 18.25.49 -0000", "1980-07-30T18:25:49Z"},
		{"1 Jan 99 00:00 +0000", "1999-01-01T00:00:00Z"},
		{"Thu, 13 Feb 1969 23:32 -0330", "1969-02-14T03:02:00Z"},
		{"Sat, 27 Jul 2002 18:53:31 +-0500", "2002-07-27T18:53:31Z"},
		{"(comment) Mon , 2 Sep 2002 1:02:03 PST", "2002-09-02T09:02:03Z"},
		{"Mon,2 Sep 2002 (x) 01 : 02 : 03 PST", "2002-09-02T09:02:03Z"},
		{"Sat, 02 Feb 0102 11:39:51 +0200", ""},
		{"Sat, 02 Feb 102 11:39:51 +0200", ""},
		{"Sat, 02 Foo 2002 11:39:51 +0200", ""},
		{"2002-02-02 11:39:51", ""},
		{"", ""},
	}
	for _, c := range cases {
		got, ok := parseSentDate(c.in)
		s := ""
		if ok {
			s = got.UTC().Format(time.RFC3339)
		}
		if s != c.want {
			t.Errorf("%q: got %q, want %q", c.in, s, c.want)
		}
	}
}

func FuzzParseSentDate(f *testing.F) {
	f.Add("Fri, 6 Sep 2002 08:44:38 EDT")
	f.Add("27 Jun 01 3:36:25 AM (x(y)\\)")
	f.Fuzz(func(t *testing.T, s string) {
		parseSentDate(s)
		baseSubjectRF(s)
		msgIDs(s)
	})
}

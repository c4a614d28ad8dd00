package imapserver

import (
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

const nestedMsg = "From: a@example.net\r\nSubject: nested\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n" +
	"--XX\r\nContent-Type: text/plain\r\n\r\npart one\r\n" +
	"--XX\r\nContent-Type: message/rfc822\r\n\r\n" +
	"From: c@example.net\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=\"YY\"\r\n\r\n" +
	"--YY\r\nContent-Type: text/plain\r\n\r\ninner plain\r\n" +
	"--YY\r\nContent-Type: text/html\r\n\r\n<b>inner</b>\r\n--YY--\r\n\r\n" +
	"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--XX--\r\n"

// TestFetchSections checks BODY[section] byte for byte on a nested message.
func TestFetchSections(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver("INBOX", nestedMsg)
	c := ts.client()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	inner := nestedMsg[strings.Index(nestedMsg, "From: c@"):strings.Index(nestedMsg, "\r\n--XX\r\nContent-Type: application")]
	want := map[string]string{
		"":         nestedMsg,
		"HEADER":   nestedMsg[:strings.Index(nestedMsg, "\r\n\r\n")+4],
		"TEXT":     nestedMsg[strings.Index(nestedMsg, "\r\n\r\n")+4:],
		"1":        "part one",
		"1.MIME":   "Content-Type: text/plain\r\n\r\n",
		"2":        inner,
		"2.HEADER": inner[:strings.Index(inner, "\r\n\r\n")+4],
		"2.TEXT":   inner[strings.Index(inner, "\r\n\r\n")+4:],
		"2.1":      "inner plain",
		"2.2":      "<b>inner</b>",
		"2.2.MIME": "Content-Type: text/html\r\n\r\n",
		"3":        "AAECAw==",
	}
	for sec, exp := range want {
		item := parseSection(sec)
		msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{item}}).Collect()
		if err != nil {
			t.Fatalf("BODY[%s]: %v", sec, err)
		}
		got := string(msgs[0].FindBodySection(item))
		if got != exp {
			t.Errorf("BODY[%s] = %q, want %q", sec, got, exp)
		}
	}
	// Partial, HEADER.FIELDS and BINARY.
	part := &imap.FetchItemBodySection{Partial: &imap.SectionPartial{Offset: 6, Size: 7}, Peek: true}
	fields := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"subject"}, Peek: true}
	bin := &imap.FetchItemBinarySection{Part: []int{3}, Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{
		BodySection: []*imap.FetchItemBodySection{part, fields}, BinarySection: []*imap.FetchItemBinarySection{bin},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{3}}},
		BodyStructure:     &imap.FetchItemBodyStructure{Extended: true}, Envelope: true,
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	if got := string(m.FindBodySection(part)); got != nestedMsg[6:13] {
		t.Errorf("partial %q", got)
	}
	if got := string(m.FindBodySection(fields)); got != "Subject: nested\r\n\r\n" {
		t.Errorf("HEADER.FIELDS %q", got)
	}
	if got := m.FindBinarySection(bin); string(got) != "\x00\x01\x02\x03" {
		t.Errorf("BINARY[3] %q", got)
	}
	if got, _ := m.FindBinarySectionSize([]int{3}); got != 4 {
		t.Errorf("BINARY.SIZE[3] %d", got)
	}
	mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || mp.Subtype != "mixed" || len(mp.Children) != 3 {
		t.Fatalf("bodystructure %#v", m.BodyStructure)
	}
	rfc := mp.Children[1].(*imap.BodyStructureSinglePart)
	if rfc.MessageRFC822 == nil || rfc.MessageRFC822.Envelope.Subject != "inner" {
		t.Errorf("message/rfc822 part %#v", rfc)
	}
	if m.Envelope.Subject != "nested" || m.Envelope.From[0].Host != "example.net" {
		t.Errorf("envelope %#v", m.Envelope)
	}
	// A non-PEEK fetch sets \Seen.
	msgs, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Part: []int{1}}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatal(err)
	}
	msgs, _ = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
	if len(msgs[0].Flags) != 1 || msgs[0].Flags[0] != imap.FlagSeen {
		t.Errorf("flags after BODY[1]: %v", msgs[0].Flags)
	}
}

func parseSection(s string) *imap.FetchItemBodySection {
	item := &imap.FetchItemBodySection{Peek: true}
	for _, p := range strings.Split(s, ".") {
		switch p {
		case "":
		case "HEADER", "TEXT", "MIME":
			item.Specifier = imap.PartSpecifier(p)
		default:
			n := 0
			for _, c := range p {
				n = n*10 + int(c-'0')
			}
			item.Part = append(item.Part, n)
		}
	}
	return item
}

// TestFetchHeaderFieldsExact checks HEADER.FIELDS and HEADER.FIELDS.NOT,
// at the top and inside a message/rfc822 part, to the byte: continuation
// lines stay with their field, repeated fields all appear, a field name
// is matched whole and without case, and the blank line ends the result
// (RFC 9051 §6.4.5).
func TestFetchHeaderFieldsExact(t *testing.T) {
	const folded = "Subject: a\r\nX-Long: one\r\n two\r\n\tthree\r\nsubject: again\r\nFrom: x@y\r\n" +
		"X-Subject: no\r\nTo : z@y\r\n\r\nbody\r\n"
	ts := newTestServer(t)
	ts.deliver("INBOX", nestedMsg)
	ts.deliver("INBOX", folded)
	ts.deliver("INBOX", "Subject: no body\r\nFrom: q@r\r\n")
	r := ts.raw()
	r.login()
	r.expectOK("s", "SELECT INBOX")
	for _, tc := range []struct{ fetch, label, want string }{
		{"1 BODY.PEEK[HEADER.FIELDS.NOT (Subject content-type)]", "BODY[HEADER.FIELDS.NOT (Subject content-type)]",
			"From: a@example.net\r\nMIME-Version: 1.0\r\n\r\n"},
		{"1 BODY.PEEK[HEADER.FIELDS.NOT (from subject mime-version content-type)]",
			"BODY[HEADER.FIELDS.NOT (from subject mime-version content-type)]", "\r\n"},
		{"1 BODY.PEEK[2.HEADER.FIELDS (subject FROM)]", "BODY[2.HEADER.FIELDS (subject FROM)]",
			"From: c@example.net\r\nSubject: inner\r\n\r\n"},
		{"1 BODY.PEEK[2.HEADER.FIELDS (X-None)]", "BODY[2.HEADER.FIELDS (X-None)]", "\r\n"},
		{"1 BODY.PEEK[2.HEADER.FIELDS.NOT (subject)]", "BODY[2.HEADER.FIELDS.NOT (subject)]",
			"From: c@example.net\r\nContent-Type: multipart/alternative; boundary=\"YY\"\r\n\r\n"},
		{"1 BODY.PEEK[HEADER.FIELDS (subject)]<3.10>", "BODY[HEADER.FIELDS (subject)]<3>", "ject: nest"},
		{"2 BODY.PEEK[HEADER.FIELDS (subject x-long to)]", "BODY[HEADER.FIELDS (subject x-long to)]",
			"Subject: a\r\nX-Long: one\r\n two\r\n\tthree\r\nsubject: again\r\nTo : z@y\r\n\r\n"},
		{"2 BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT X-LONG)]", "BODY[HEADER.FIELDS.NOT (SUBJECT X-LONG)]",
			"From: x@y\r\nX-Subject: no\r\nTo : z@y\r\n\r\n"},
		{"3 BODY.PEEK[HEADER.FIELDS.NOT (from)]", "BODY[HEADER.FIELDS.NOT (from)]", "Subject: no body\r\n\r\n"},
	} {
		got, label := fetchLiteral(t, r, tc.fetch)
		if label != tc.label || got != tc.want {
			t.Errorf("FETCH %s: %s %q, want %s %q", tc.fetch, label, got, tc.label, tc.want)
		}
	}
	// PEEK left every message unseen.
	if lines := r.expectOK("f", "SEARCH SEEN"); lines[0] != "* SEARCH" {
		t.Errorf("after BODY.PEEK: %q", lines)
	}
}

// fetchLiteral runs "FETCH <args>" for one item answered with a literal,
// and returns the literal's exact bytes and the item's label.
func fetchLiteral(t *testing.T, r *raw, args string) (string, string) {
	t.Helper()
	r.send("x FETCH " + args)
	l := r.line()
	open := strings.LastIndexByte(l, '{')
	_, item, _ := strings.Cut(l, " FETCH (")
	if open < 0 || !strings.HasSuffix(l, "}") || item == "" {
		r.until("x")
		t.Errorf("FETCH %s: %q", args, l)
		return "", ""
	}
	n, err := strconv.Atoi(l[open+1 : len(l)-1])
	if err != nil {
		t.Fatalf("FETCH %s: %q", args, l)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r.br, buf); err != nil {
		t.Fatal(err)
	}
	if rest := r.until("x"); rest[0] != ")" || !strings.HasPrefix(rest[len(rest)-1], "x OK") {
		t.Errorf("FETCH %s: after the literal %q", args, rest)
	}
	return string(buf), strings.TrimSpace(item[:strings.LastIndexByte(item, '{')])
}

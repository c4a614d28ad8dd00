package imapserver

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/store"
)

// searchFixture is the mailbox TestSearchCriteria searches. A placeholder
// message takes UID 1 and is expunged, so message n has UID n+1 and a
// search that confused the two would show it.
var searchFixture = []struct {
	header, body string
	date         time.Time // internal date
	flags        []string
}{
	{"From: Ann Example <ann@example.com>\r\nTo: alice@example.org\r\nCc: Carol <carol@example.net>\r\n" +
		"Subject: Lunch plans\r\nDate: Thu, 01 Feb 2024 09:00:00 +0000\r\nMessage-ID: <m1@example.com>\r\n",
		"Shall we eat at noon?\r\n", time.Date(2024, 2, 1, 12, 0, 0, 0, time.UTC), []string{`\Seen`, `\Answered`}},
	{"From: Bob <bob@example.net>\r\nTo: dave@example.com\r\nBcc: eve@example.org\r\nSubject: Quarterly report\r\n" +
		"Date: Thu, 15 Feb 2024 09:00:00 +0000\r\nX-Report: q1\r\nMessage-ID: <m2@example.net>\r\n",
		strings.Repeat("figures ", 200) + "\r\n", time.Date(2024, 2, 15, 12, 0, 0, 0, time.UTC), []string{`\Flagged`, "$Work"}},
	{"From: Carol <carol@example.net>\r\nTo: alice@example.org\r\nSubject: Re: Lunch plans\r\n" +
		"Date: Fri, 01 Mar 2024 09:00:00 +0000\r\nIn-Reply-To: <m1@example.com>\r\nMessage-ID: <m3@example.net>\r\n",
		"Noon works.\r\n", time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC), []string{`\Seen`, `\Deleted`}},
	{"From: Dave <dave@example.com>\r\nTo: alice@example.org\r\nSubject: Draft idea\r\n" +
		"Date: Sun, 10 Mar 2024 09:00:00 +0000\r\nMessage-ID: <m4@example.com>\r\n",
		"A zebra crossing.\r\n", time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC), []string{`\Draft`, "$Work"}},
	// Sent late on 20 March in its own zone, 21 March in UTC: SENTON
	// ignores the zone (RFC 9051 §6.4.4).
	{"From: Bob <bob@example.net>\r\nTo: alice@example.org, Carol <carol@example.net>\r\nSubject: Invoice\r\n" +
		"Date: Wed, 20 Mar 2024 23:30:00 -0500\r\nMessage-ID: <m5@example.net>\r\n",
		"Please pay.\r\n", time.Date(2024, 3, 20, 12, 0, 0, 0, time.UTC), nil},
}

// TestSearchCriteria runs every RFC 9051 §6.4.4 search key, sequence sets,
// RFC 5182 "$" and RFC 7162 MODSEQ over a socket against known answers.
func TestSearchCriteria(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	mb, err := ts.st.MailboxByName(ctx, ts.acct.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	ts.deliver("INBOX", testMsg("placeholder", "x"))
	if _, err := ts.st.Expunge(ctx, mb.ID, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	for _, m := range searchFixture {
		_, err := ts.st.Append(ctx, store.AppendRequest{AccountID: ts.acct.ID, MailboxID: mb.ID,
			Body: strings.NewReader(m.header + "\r\n" + m.body), Flags: m.flags, InternalDate: m.date})
		if err != nil {
			t.Fatal(err)
		}
	}
	size1 := strconv.Itoa(len(searchFixture[0].header) + 2 + len(searchFixture[0].body))
	r := ts.raw()
	r.login()
	r.expectOK("s", "SELECT INBOX")
	// "$" below is the result saved here: the $Work messages, 2 and 4.
	if lines := r.expectOK("v", "SEARCH RETURN (SAVE) KEYWORD $Work"); len(lines) != 1 {
		t.Fatalf("SAVE alone answered %q", lines)
	}
	for _, tc := range []struct{ cmd, want string }{
		{"SEARCH ALL", "1 2 3 4 5"},
		{"SEARCH ANSWERED", "1"},
		{"SEARCH UNANSWERED", "2 3 4 5"},
		{"SEARCH BCC eve", "2"},
		{"SEARCH BCC carol", ""},
		{"SEARCH BEFORE 1-Mar-2024", "1 2"},
		{"SEARCH ON 1-Mar-2024", "3"},
		{"SEARCH SINCE 1-Mar-2024", "3 4 5"},
		{"SEARCH SINCE 21-Mar-2024", ""},
		// BODY skips the header, TEXT does not.
		{"SEARCH BODY noon", "1 3"},
		{"SEARCH BODY lunch", ""},
		{"SEARCH TEXT lunch", "1 3"},
		{`SEARCH TEXT "zebra crossing"`, "4"},
		{"SEARCH CC carol", "1"},
		{"SEARCH TO carol", "5"},
		{"SEARCH TO alice", "1 3 4 5"},
		{"SEARCH DELETED", "3"},
		{"SEARCH UNDELETED", "1 2 4 5"},
		{"SEARCH DRAFT", "4"},
		{"SEARCH UNDRAFT", "1 2 3 5"},
		{"SEARCH FLAGGED", "2"},
		{"SEARCH UNFLAGGED", "1 3 4 5"},
		{"SEARCH FROM bob", "2 5"},
		{"SEARCH FROM Carol", "3"},
		{"SEARCH FROM example.com", "1 4"},
		{"SEARCH HEADER X-Report q1", "2"},
		{`SEARCH HEADER X-Report ""`, "2"},
		{`SEARCH HEADER In-Reply-To "<m1@"`, "3"},
		{"SEARCH KEYWORD $work", "2 4"},
		{"SEARCH UNKEYWORD $Work", "1 3 5"},
		{"SEARCH LARGER 1000", "2"},
		{"SEARCH SMALLER 1000", "1 3 4 5"},
		// tern keeps no \Recent (RFC 9051 removed it): nothing is new.
		{"SEARCH NEW", ""},
		{"SEARCH OLD", "1 2 3 4 5"},
		{"SEARCH RECENT", ""},
		{"SEARCH NOT SEEN", "2 4 5"},
		{"SEARCH OR FROM ann TO dave", "1 2"},
		{"SEARCH SEEN", "1 3"},
		{"SEARCH UNSEEN", "2 4 5"},
		{"SEARCH SENTBEFORE 1-Mar-2024", "1 2"},
		{"SEARCH SENTON 20-Mar-2024", "5"},
		{"SEARCH SENTON 21-Mar-2024", ""},
		{"SEARCH SENTSINCE 10-Mar-2024", "4 5"},
		{"SEARCH SUBJECT lunch", "1 3"},
		{`SEARCH SUBJECT "re:"`, "3"},
		{"SEARCH UID 3:5", "2 3 4"},
		{"SEARCH UID 5:*", "4 5"},
		{"UID SEARCH UID 3:5", "3 4 5"},
		{"UID SEARCH FROM bob", "3 6"},
		{"SEARCH 2,4", "2 4"},
		{"SEARCH 4:*", "4 5"},
		{"SEARCH *:4", "4 5"},
		{"SEARCH 1,3:4", "1 3 4"},
		{"SEARCH *", "5"},
		{"SEARCH 9", ""},
		{"SEARCH $", "2 4"},
		{"SEARCH NOT $", "1 3 5"},
		{"SEARCH $ SEEN", ""},
		{"UID SEARCH $", "3 5"},
		{"SEARCH (SEEN DELETED)", "3"},
		{"SEARCH (OR SEEN FLAGGED) (NOT DELETED)", "1 2"},
		{"SEARCH OR (FROM bob SMALLER 1000) DRAFT", "4 5"},
		{"SEARCH NOT (FROM bob)", "1 3 4"},
		{"SEARCH ((UNSEEN) (OR 1:2 5))", "2 5"},
		{"SEARCH FROM bob UNSEEN SINCE 1-Mar-2024", "5"},
		// LARGER and SMALLER are strict (RFC 9051 §6.4.4).
		{"SEARCH LARGER " + size1 + " 1", ""},
		{"SEARCH SMALLER " + size1 + " 1", ""},
		{"SEARCH NOT LARGER " + size1 + " NOT SMALLER " + size1, "1"},
	} {
		if got := searchResult(t, r, tc.cmd); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.cmd, got, tc.want)
		}
	}

	// RFC 7162 §3.1.5: MODSEQ finds what changed at or after a modseq,
	// and the reply names the highest modseq among the matches.
	r.expectOK("m", "STORE 5 +FLAGS (\\Seen)")
	lines := r.expectOK("n", "FETCH 5 (MODSEQ)")
	var ms string
	for _, l := range lines {
		if i := strings.Index(l, "MODSEQ ("); i >= 0 {
			ms = l[i+len("MODSEQ (") : strings.IndexByte(l[i:], ')')+i]
		}
	}
	if ms == "" {
		t.Fatalf("FETCH MODSEQ: %q", lines)
	}
	for _, tc := range []struct{ cmd, want string }{
		{"SEARCH MODSEQ " + ms, "5 (MODSEQ " + ms + ")"},
		{"SEARCH MODSEQ 1", "1 2 3 4 5 (MODSEQ " + ms + ")"},
		{"SEARCH MODSEQ 1 UNSEEN", "2 4"},
		{"SEARCH MODSEQ " + ms + "1", ""},
	} {
		got := searchResult(t, r, tc.cmd)
		if tc.cmd == "SEARCH MODSEQ 1 UNSEEN" {
			got, _, _ = strings.Cut(got, " (")
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.cmd, got, tc.want)
		}
	}
}

// searchResult runs a SEARCH and returns what follows "* SEARCH".
func searchResult(t *testing.T, r *raw, cmd string) string {
	t.Helper()
	lines := r.cmd("t", cmd)
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "t OK") {
		t.Errorf("%s: %q", cmd, lines)
		return "error"
	}
	var res []string
	for _, l := range lines[:len(lines)-1] {
		if l == "* SEARCH" || strings.HasPrefix(l, "* SEARCH ") {
			res = append(res, strings.TrimSpace(strings.TrimPrefix(l, "* SEARCH")))
		} else {
			t.Errorf("%s: unexpected %q", cmd, l)
		}
	}
	if len(res) != 1 {
		t.Errorf("%s: %d SEARCH responses", cmd, len(res))
		return "error"
	}
	return res[0]
}

// TestSearchSentDates: SENTBEFORE, SENTON and SENTSINCE take the date a
// Date: field shows, whatever its zone (RFC 9051 §6.4.4), and read the
// field as leniently as SORT does: obsolete years and zones, comments, a
// "Z" zone. A field that is no date matches none of them.
func TestSearchSentDates(t *testing.T) {
	ts := newTestServer(t)
	for _, d := range []string{
		"1 Mar 24 23:30 EST",
		"Fri, 1 (Friday) Mar 2024 10:00:00 +0000",
		"Fri, 01 Mar 2024 00:10:00 Z",
		"Fri, 1 Mar 2024 23:59:60 -1100",
		"Fri, 1 Mar 2024 00:30:00 +1400",
		"yesterday",
	} {
		ts.deliver("INBOX", "Subject: dated\r\nDate: "+d+"\r\n\r\nx\r\n")
	}
	r := ts.raw()
	r.login()
	r.expectOK("s", "SELECT INBOX")
	for _, tc := range []struct{ cmd, want string }{
		{"SEARCH SENTON 1-Mar-2024", "1 2 3 4 5"},
		{"SEARCH SENTBEFORE 2-Mar-2024", "1 2 3 4 5"},
		{"SEARCH SENTSINCE 2-Mar-2024", ""},
		{"SEARCH SENTBEFORE 1-Mar-2024", ""},
		{"SEARCH SENTSINCE 1-Jan-1990", "1 2 3 4 5"},
		{"SEARCH NOT SENTON 1-Mar-2024", "6"},
	} {
		if got := searchResult(t, r, tc.cmd); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.cmd, got, tc.want)
		}
	}
}

// TestSearchDecodedText: BODY and TEXT find words that base64, quoted-
// printable or a legacy charset hide in the stored bytes, in a single
// part, in a multipart and in an attached message.
func TestSearchDecodedText(t *testing.T) {
	ts := newTestServer(t)
	b64 := base64.StdEncoding.EncodeToString([]byte("Grüße aus Köln, the zebra said.\r\n"))
	ts.deliver("INBOX", "Subject: one\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"+b64+"\r\n")
	ts.deliver("INBOX", "Subject: two\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"+
		"Caf=E9 cr=E8me with a very long line that is broken by a soft line br=\r\neak here.\r\n")
	ts.deliver("INBOX", "Subject: three\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain part\r\n"+
		"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
		base64.StdEncoding.EncodeToString([]byte("<p>hidden giraffe</p>"))+"\r\n--b--\r\n")
	ts.deliver("INBOX", "Subject: four\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
		base64.StdEncoding.EncodeToString([]byte("zebra giraffe"))+"\r\n")
	r := ts.raw()
	r.login()
	r.expectOK("e", "ENABLE UTF8=ACCEPT")
	r.expectOK("s", "SELECT INBOX")
	for _, tc := range []struct{ cmd, want string }{
		{"SEARCH BODY zebra", "1"},
		{`SEARCH BODY "KÖLN"`, "1"},
		{`SEARCH TEXT "grüße"`, "1"},
		{`SEARCH CHARSET UTF-8 BODY "café"`, "2"},
		{`SEARCH BODY "soft line break here"`, "2"},
		{"SEARCH BODY giraffe", "3"},
		{"SEARCH TEXT giraffe", "3"},
		{`SEARCH BODY "plain part"`, "3"},
		// Attachments are not text: their bytes are searched as stored.
		{"SEARCH NOT BODY giraffe", "1 2 4"},
	} {
		if got := searchResult(t, r, tc.cmd); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.cmd, got, tc.want)
		}
	}
}

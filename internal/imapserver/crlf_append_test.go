package imapserver

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tern-mail/tern/internal/imap"
)

func TestCRLFLines(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a\nb\n", "a\r\nb\r\n"},
		{"\n\n", "\r\n\r\n"},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"mixed\r\nbare\nlone\rend", "mixed\r\nbare\r\nlone\rend"},
		{"", ""},
	}
	for _, c := range cases {
		if got := string(crlfLines([]byte(c.in))); got != c.want {
			t.Errorf("crlfLines(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	bin := &imap.AppendMessage{Data: []byte("Subject: b\n\n\x00\n"), Binary: true}
	if got := string(appendBody(bin)); got != string(bin.Data) {
		t.Errorf("literal8 changed: %q", got)
	}
	if got := string(appendBody(&imap.AppendMessage{Data: []byte("S: x\n\ny\n")})); got != "S: x\r\n\r\ny\r\n" {
		t.Errorf("appendBody: %q", got)
	}
}

// TestAppendBareLF appends a message with bare LF line ends: it must be
// stored, counted (RFC822.SIZE) and sent (BODY[]) with CRLF (RFC 9051
// §2.3.4).
func TestAppendBareLF(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw()
	r.login()
	msg := "From: a@example.org\nSubject: sloppy\n\nline one\nline two\n"
	want := crlf(msg)
	r.send(fmt.Sprintf("a APPEND INBOX {%d+}\r\n%s", len(msg), msg))
	if l := r.until("a"); !strings.HasPrefix(l[len(l)-1], "a OK") {
		t.Fatalf("APPEND: %q", l)
	}
	r.expectOK("s", "SELECT INBOX")
	r.send("f FETCH 1 (RFC822.SIZE BODY.PEEK[])")
	got := readRawUntil(t, r, "f")
	wantFetch := fmt.Sprintf("* 1 FETCH (RFC822.SIZE %d BODY[] {%d}\r\n%s)\r\n", len(want), len(want), want)
	if !strings.HasPrefix(got, wantFetch) {
		t.Errorf("FETCH after a bare-LF APPEND:\n got %q\nwant %q", got, wantFetch)
	}
}

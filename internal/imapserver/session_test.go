package imapserver

import (
	"strings"
	"testing"
)

func TestRawSmoke(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver("INBOX", testMsg("hello", "first body"))
	ts.deliver("INBOX", testMsg("second", "second body"), `\Seen`)
	r := ts.raw()
	r.expectOK("a", "CAPABILITY")
	r.login()
	lines := r.expectOK("b", "SELECT INBOX")
	if !has(lines, "* 2 EXISTS") {
		t.Fatalf("select: %q", lines)
	}
	lines = r.expectOK("c", "FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (Subject)])")
	t.Log(strings.Join(lines, "\n"))
	lines = r.expectOK("d", "UID SEARCH UNSEEN")
	if !has(lines, "* SEARCH 1") {
		t.Fatalf("search: %q", lines)
	}
	r.expectOK("e", "STORE 1 +FLAGS (\\Deleted)")
	lines = r.expectOK("f", "EXPUNGE")
	if !has(lines, "* 1 EXPUNGE") {
		t.Fatalf("expunge: %q", lines)
	}
	r.expectOK("g", "LIST \"\" *")
	r.expectOK("h", "LOGOUT")
}

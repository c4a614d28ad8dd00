package imapserver

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestQuotaRefusals: APPEND and COPY that would cross the account's
// quota end NO [OVERQUOTA] (RFC 9208 §4.3) and leave the mailboxes and
// the usage as they were; MOVE, which frees what it takes, still works.
func TestQuotaRefusals(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	ts.deliver("INBOX", testMsg("one", "first"))
	ts.deliver("INBOX", testMsg("two", "second"))
	used := func() int64 {
		t.Helper()
		a, err := ts.st.AccountByID(ctx, ts.acct.ID)
		if err != nil {
			t.Fatal(err)
		}
		return a.UsedBytes
	}
	before := used()
	msg := "Subject: x\r\n\r\n" + strings.Repeat("y", 34) + "\r\n" // 50 bytes
	// Room for one more 50-byte message, not two, and not a copy of both.
	if err := ts.st.SetQuota(ctx, "alice@example.org", before+70); err != nil {
		t.Fatal(err)
	}
	r := ts.raw()
	r.login()
	r.expectOK("c", "CREATE Filed")
	status := func(mailbox, want string) {
		t.Helper()
		lines := r.expectOK("s", "STATUS "+mailbox+" (MESSAGES UIDNEXT)")
		if !has(lines, `* STATUS "`+mailbox+`" (`+want+")") {
			t.Errorf("STATUS %s: %q, want %s", mailbox, lines, want)
		}
	}
	refused := func(what string, lines []string) {
		t.Helper()
		if last := lines[len(lines)-1]; !strings.Contains(last, " NO [OVERQUOTA]") {
			t.Errorf("%s over quota: %q", what, lines)
		}
		if u := used(); u != before {
			t.Errorf("%s refused, but usage went from %d to %d", what, before, u)
		}
	}

	big := "Subject: x\r\n\r\n" + strings.Repeat("z", 200) + "\r\n"
	refused("APPEND", r.cmd("a1", fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(big), big)))
	status("INBOX", "MESSAGES 2 UIDNEXT 3")

	// RFC 3502 §6.3.11: MULTIAPPEND stores all or nothing.
	// Refused before the first message is written: no UID is used up.
	refused("MULTIAPPEND", r.cmd("a2", fmt.Sprintf("APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s", len(msg), msg, len(msg), msg)))
	status("INBOX", "MESSAGES 2 UIDNEXT 3")

	r.expectOK("b", "SELECT INBOX")
	refused("COPY", r.cmd("a3", "COPY 1:2 Filed"))
	refused("UID COPY", r.cmd("a4", "UID COPY 1:* Filed"))
	status("Filed", "MESSAGES 0 UIDNEXT 1")
	if lines := r.cmd("a5", "FETCH 1:* (UID)"); len(lines) != 3 {
		t.Errorf("INBOX after refused COPY: %q", lines)
	}

	// One 50-byte message fits.
	r.expectOK("a6", fmt.Sprintf("APPEND Filed {%d+}\r\n%s", len(msg), msg))
	before = used()

	// MOVE frees the source: it passes even when the account is full,
	// so that a user over quota can still file mail into Trash.
	if err := ts.st.SetQuota(ctx, "alice@example.org", before-1); err != nil {
		t.Fatal(err)
	}
	refused("COPY when full", r.cmd("a7", "COPY 1 Filed"))
	lines := r.expectOK("a8", "MOVE 1:2 Filed")
	if !has(lines, "* OK [COPYUID ") {
		t.Errorf("MOVE: %q", lines)
	}
	if u := used(); u != before {
		t.Errorf("MOVE changed usage from %d to %d", before, u)
	}
	status("Filed", "MESSAGES 3 UIDNEXT 4")
}

package pop3server

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tern-mail/tern/internal/store"
)

const (
	msg1 = "From: a@example.net\nTo: alice@example.org\nSubject: one\n\nline 1\n.starts with a dot\n..two dots\nlast\n"
	msg2 = "From: b@example.net\r\nSubject: two\r\n\r\nbody\r\n.\r\nafter lone dot\r\n"
	msg3 = "Subject: three, no final newline\n\nx\ny"
)

func TestSession(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	u1 := e.deliver(msg1)
	e.deliver(msg2)
	e.deliver(msg3)
	c := e.dial()
	c.ok("USER " + testUser)
	if r := c.ok("PASS " + testPass); !strings.Contains(r, "3 messages") {
		t.Errorf("PASS: %s", r)
	}
	sizes := []int{len(crlf(msg1)), len(crlf(msg2)), len(crlf(msg3))}
	// The last message lacks a final line end; it is announced with its
	// stored bytes plus the CRs of bare LFs (the CRLF added on the wire is
	// not counted).
	sizes[2] -= 2
	total := sizes[0] + sizes[1] + sizes[2]
	if r := c.ok("STAT"); r != fmt.Sprintf("+OK 3 %d", total) {
		t.Errorf("STAT: %s", r)
	}
	c.ok("LIST")
	if got, want := c.multi(), fmt.Sprintf("1 %d\r\n2 %d\r\n3 %d\r\n", sizes[0], sizes[1], sizes[2]); got != want {
		t.Errorf("LIST: %q want %q", got, want)
	}
	if r := c.ok("LIST 2"); r != fmt.Sprintf("+OK 2 %d", sizes[1]) {
		t.Errorf("LIST 2: %s", r)
	}
	c.ok("UIDL")
	uidl := c.multi()
	want1 := fmt.Sprintf("1 %d.%d", e.inbox.UIDValidity, u1)
	if !strings.HasPrefix(uidl, want1+"\r\n") || strings.Count(uidl, "\r\n") != 3 {
		t.Errorf("UIDL: %q", uidl)
	}
	if r := c.ok("UIDL 1"); r != "+OK "+want1 {
		t.Errorf("UIDL 1: %s", r)
	}
	for i, m := range []string{msg1, msg2, msg3} {
		c.ok(fmt.Sprintf("RETR %d", i+1))
		if got := c.multi(); got != crlf(m) {
			t.Errorf("RETR %d: %q want %q", i+1, got, crlf(m))
		}
	}
	c.ok("TOP 1 0")
	if got := c.multi(); got != "From: a@example.net\r\nTo: alice@example.org\r\nSubject: one\r\n\r\n" {
		t.Errorf("TOP 1 0: %q", got)
	}
	c.ok("TOP 1 2")
	if got := c.multi(); !strings.HasSuffix(got, "\r\n\r\nline 1\r\n.starts with a dot\r\n") {
		t.Errorf("TOP 1 2: %q", got)
	}
	c.ok("TOP 3 99")
	if got := c.multi(); got != crlf(msg3) {
		t.Errorf("TOP 3 99: %q", got)
	}
	c.ok("DELE 2")
	if r := c.cmd("RETR 2"); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("RETR of deleted: %s", r)
	}
	if r := c.cmd("DELE 2"); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("DELE twice: %s", r)
	}
	if r := c.ok("STAT"); r != fmt.Sprintf("+OK 2 %d", total-sizes[1]) {
		t.Errorf("STAT after DELE: %s", r)
	}
	c.ok("RSET")
	c.ok("STAT")
	c.ok("DELE 1")
	c.ok("DELE 3")
	c.ok("NOOP")
	for _, bad := range []string{"RETR 4", "RETR 0", "RETR x", "TOP 1", "TOP 1 -1", "USER x", "XYZZY", "LIST 1 2"} {
		if r := c.cmd(bad); !strings.HasPrefix(r, "-ERR ") {
			t.Errorf("%s: %s", bad, r)
		}
	}
	before := e.inbox.HighestModSeq
	mb, _ := e.st.MailboxByName(context.Background(), e.acct.ID, "INBOX")
	before = mb.HighestModSeq
	if r := c.ok("QUIT"); !strings.Contains(r, "2 messages deleted") {
		t.Errorf("QUIT: %s", r)
	}
	if !c.closed() {
		t.Error("connection not closed after QUIT")
	}
	if got := e.uids(); len(got) != 1 {
		t.Fatalf("after QUIT: uids %v", got)
	}
	// IMAP sees the expunges: tombstones since the modseq before QUIT.
	_, vanished, err := e.st.ChangesSince(context.Background(), e.inbox.ID, before)
	if err != nil || len(vanished) != 2 || !slices.Contains(vanished, u1) {
		t.Errorf("vanished %v %v", vanished, err)
	}
}

func TestDroppedConnectionDeletesNothing(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	e.deliver(msg1)
	e.deliver(msg2)
	c := e.dial()
	c.login()
	c.ok("DELE 1")
	c.ok("DELE 2")
	c.c.Close()
	c2 := e.loginAfterDrop()
	if s := c2.ok("STAT"); !strings.HasPrefix(s, "+OK 2 ") {
		t.Fatalf("STAT after drop: %s", s)
	}
	if got := e.uids(); len(got) != 2 {
		t.Fatalf("uids %v", got)
	}
}

func TestInUseAndSnapshot(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	e.deliver(msg1)
	c := e.dial()
	c.login()
	c2 := e.dial()
	c2.ok("USER " + testUser)
	if r := c2.cmd("PASS " + testPass); !strings.HasPrefix(r, "-ERR [IN-USE]") {
		t.Fatalf("second session: %s", r)
	}
	e.deliver(msg2) // arrives during the session: not visible until next login
	if r := c.ok("STAT"); !strings.HasPrefix(r, "+OK 1 ") {
		t.Fatalf("STAT: %s", r)
	}
	c.ok("QUIT")
	c.closed()
	c3 := e.dial()
	c3.login()
	if r := c3.ok("STAT"); !strings.HasPrefix(r, "+OK 2 ") {
		t.Fatalf("STAT at next login: %s", r)
	}
}

func TestCapaAndTLS(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.deliver(msg1)
	c := e.dial()
	c.ok("CAPA")
	capa := c.multi()
	if strings.Contains(capa, "USER\r\n") || !strings.Contains(capa, "STLS\r\n") || !strings.Contains(capa, "SASL SCRAM-SHA-256\r\n") {
		t.Errorf("CAPA before TLS: %q", capa)
	}
	for _, l := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION tern"} {
		if !strings.Contains(capa, l+"\r\n") {
			t.Errorf("CAPA lacks %s", l)
		}
	}
	if r := c.cmd("USER " + testUser); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("USER without TLS: %s", r)
	}
	if r := c.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+testUser+"\x00"+testPass))); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("AUTH PLAIN without TLS: %s", r)
	}
	if r := c.cmd("STAT"); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("STAT before login: %s", r)
	}
	c.ok("STLS")
	tc := tlsClient(c, e)
	tc.ok("CAPA")
	capa = tc.multi()
	if !strings.Contains(capa, "USER\r\n") || strings.Contains(capa, "STLS") || !strings.Contains(capa, "SASL SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN LOGIN\r\n") {
		t.Errorf("CAPA after TLS: %q", capa)
	}
	tc.login()
	tc.ok("CAPA")
	if capa = tc.multi(); strings.Contains(capa, "SASL") || strings.Contains(capa, "USER") {
		t.Errorf("CAPA after login: %q", capa)
	}
	tc.ok("QUIT")

	// STLS with a pipelined command behind it is refused.
	c = e.dial()
	c.c.Write([]byte("STLS\r\nUSER " + testUser + "\r\n"))
	time.Sleep(50 * time.Millisecond)
	if r := c.line(); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("pipelined STLS: %s", r)
	}
}

func TestLimits(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true, maxErr: 3})
	c := e.dial()
	if r := c.cmd(strings.Repeat("A", 5000)); r != "-ERR line too long" {
		t.Errorf("long line: %s", r)
	}
	c.cmd("FOO")
	if r := c.cmd("BAR"); !strings.Contains(r, "too many errors") || !c.closed() {
		t.Errorf("third error: %s", r)
	}
	// Failed logins: delayed, [AUTH], closed after three.
	c = e.dial()
	for i := 0; i < 3; i++ {
		c.ok("USER " + testUser)
		start := time.Now()
		r := c.cmd("PASS wrong")
		if !strings.HasPrefix(r, "-ERR [AUTH]") || time.Since(start) < 10*time.Millisecond {
			t.Errorf("failed PASS: %s after %v", r, time.Since(start))
		}
	}
	if !c.closed() {
		t.Error("not closed after three failed logins")
	}
	// NUL bytes are refused.
	c = e.dial()
	if r := c.cmd("USER a\x00b"); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("NUL: %s", r)
	}
}

func TestConnectionCapsAndIdle(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true, perIP: 2, idle: 300 * time.Millisecond})
	c1, c2 := e.dial(), e.dial()
	c3, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c3.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 200)
	n, _ := c3.Read(b)
	if !strings.HasPrefix(string(b[:n]), "-ERR [SYS/TEMP] too many connections") {
		t.Errorf("third connection: %q", b[:n])
	}
	// RFC 1939 §3 autologout; the idle session ends without deleting.
	start := time.Now()
	if r := c1.line(); !strings.HasPrefix(r, "-ERR autologout") || time.Since(start) > 3*time.Second {
		t.Errorf("idle: %q after %v", r, time.Since(start))
	}
	if r := c2.line(); !strings.HasPrefix(r, "-ERR autologout") {
		t.Errorf("idle: %q", r)
	}
}

func TestPipelining(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	for i := 0; i < 20; i++ {
		e.deliver(fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))
	}
	c := e.dial()
	var b strings.Builder
	b.WriteString("USER " + testUser + "\r\nPASS " + testPass + "\r\n")
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&b, "RETR %d\r\n", i)
	}
	b.WriteString("QUIT\r\n")
	c.c.Write([]byte(b.String()))
	c.line()
	c.line()
	for i := 0; i < 20; i++ {
		if r := c.line(); !strings.HasPrefix(r, "+OK") {
			t.Fatalf("RETR %d: %s", i+1, r)
		}
		if got := c.multi(); !strings.Contains(got, fmt.Sprintf("body %d\r\n", i)) {
			t.Fatalf("RETR %d: %q", i+1, got)
		}
	}
	if r := c.line(); !strings.HasPrefix(r, "+OK") {
		t.Fatal(r)
	}
}

// TestSeenAndFlags: RETR marks \Seen (configurable); flags set by IMAP
// survive a POP3 session that deleted nothing.
func TestSeenAndFlags(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true, seen: true})
	u1 := e.deliver(msg1, `\Flagged`, "$Label1")
	u2 := e.deliver(msg2)
	u3 := e.deliver(msg3, `\Answered`)
	ctx := context.Background()
	if _, _, err := e.st.UpdateFlags(ctx, e.inbox.ID, store.FlagUpdate{UIDs: []uint32{u2}, Op: store.FlagsAdd, Flags: []string{"Work"}}); err != nil {
		t.Fatal(err)
	}
	c := e.dial()
	c.login()
	c.ok("RETR 1")
	c.multi()
	c.ok("TOP 2 1")
	c.multi()
	c.ok("QUIT")
	c.closed()
	ms, err := e.st.Messages(ctx, e.inbox.ID, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32][]string{u1: {`$Label1`, `\Flagged`, `\Seen`}, u2: {"Work"}, u3: {`\Answered`}}
	for _, m := range ms {
		got := slices.Clone(m.Flags)
		slices.Sort(got)
		if !slices.Equal(got, want[m.UID]) {
			t.Errorf("uid %d flags %v want %v", m.UID, got, want[m.UID])
		}
	}
}

// TestSeenBatches: \Seen marks written in background batches while the
// download goes on all land.
func TestSeenBatches(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true, seen: true})
	e.srv.seenBatch = 3
	for i := 0; i < 20; i++ {
		e.deliver(fmt.Sprintf("Subject: %d\n\nbody\n", i))
	}
	c := e.dial()
	c.login()
	for i := 1; i <= 17; i++ {
		c.ok(fmt.Sprintf("RETR %d", i))
		c.multi()
	}
	c.c.Close() // dropped: still marks what was downloaded
	deadline := time.Now().Add(5 * time.Second)
	for {
		ms, err := e.st.Messages(context.Background(), e.inbox.ID, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, m := range ms {
			if slices.Contains(m.Flags, `\Seen`) {
				seen++
			}
		}
		if seen == 17 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages seen, want 17", seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true})
	e.deliver(msg1)
	c := e.dial()
	c.login()
	c.ok("DELE 1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if r := c.line(); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
		t.Errorf("on shutdown: %s", r)
	}
	if got := e.uids(); len(got) != 1 {
		t.Errorf("shutdown deleted: %v", got)
	}
}

// A login reuses the previous listing only while the INBOX is unchanged:
// a delivery, an expunge or a \Seen change made between two logins shows
// at the second.
func TestListingCache(t *testing.T) {
	e := newEnv(t, envOpts{insecure: true, seen: true})
	e.deliver(msg1)
	uid2 := e.deliver(msg2)
	e.deliver(msg3)
	// session logs in, checks STAT, retrieves the messages numbered retr
	// and quits.
	session := func(want string, retr ...int) {
		t.Helper()
		c := e.dial()
		c.login()
		if r := c.ok("STAT"); !strings.HasPrefix(r, want) {
			t.Fatalf("STAT: %s, want %s", r, want)
		}
		for _, n := range retr {
			c.ok(fmt.Sprint("RETR ", n))
			c.multi()
		}
		c.ok("QUIT")
		c.closed()
	}
	cached := func() []store.DropEntry {
		mb, err := e.st.MailboxByName(context.Background(), e.acct.ID, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		l, _ := e.srv.listings.get(mb)
		return l
	}
	session("+OK 3 ")
	first := cached()
	if len(first) != 3 {
		t.Fatalf("cached listing: %v", first)
	}
	session("+OK 3 ")
	if again := cached(); &again[0] != &first[0] {
		t.Fatal("an unchanged INBOX was listed again")
	}

	if _, err := e.st.Expunge(context.Background(), e.inbox.ID, []uint32{uid2}); err != nil {
		t.Fatal(err)
	}
	if cached() != nil {
		t.Fatal("the cached listing outlived an expunge")
	}
	session("+OK 2 ")
	e.deliver(msg2)
	session("+OK 3 ")

	// \Seen set or cleared elsewhere ends the cached listing; cleared,
	// the next RETR marks it again.
	uids := e.uids()
	for _, op := range []store.FlagOp{store.FlagsAdd, store.FlagsRemove} {
		session("+OK 3 ")
		if _, _, err := e.st.UpdateFlags(context.Background(), e.inbox.ID, store.FlagUpdate{UIDs: uids[:1], Op: op, Flags: []string{`\Seen`}}); err != nil {
			t.Fatal(err)
		}
		if l := cached(); l != nil {
			t.Fatal("the cached listing outlived a flag change")
		}
	}
	session("+OK 3 ", 1)
	infos, err := e.st.Messages(context.Background(), e.inbox.ID, uids[0], uids[0])
	if err != nil || len(infos) != 1 || !slices.Contains(infos[0].Flags, `\Seen`) {
		t.Fatalf("after RETR: %v %v", infos, err)
	}
}

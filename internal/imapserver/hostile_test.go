package imapserver

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestHostileCommands sends truncated and mutated commands to a selected
// session: every one must get an answer (BAD, NO or OK) and the session
// must keep serving.
func TestHostileCommands(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver("INBOX", nestedMsg)
	ts.deliver("INBOX", testMsg("plain", "text"))
	base := []string{
		`a FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.10> BINARY[3] BODYSTRUCTURE ENVELOPE)`,
		`a UID SEARCH RETURN (MIN COUNT) OR (FROM "x" SUBJECT y) NOT HEADER X-A b SINCE 1-Jan-2020 1:*`,
		`a STORE 1:2 +FLAGS.SILENT (\Seen $Junk)`,
		`a UID STORE 1 (UNCHANGEDSINCE 5) -FLAGS (\Flagged)`,
		`a LIST (SUBSCRIBED) "" ("INBOX" "%") RETURN (CHILDREN STATUS (MESSAGES SIZE))`,
		`a STATUS INBOX (MESSAGES UIDNEXT UNSEEN HIGHESTMODSEQ)`,
		`a SORT (REVERSE DATE) UTF-8 ALL`,
		`a THREAD REFERENCES UTF-8 ALL`,
		`a COPY 1:* Archive`,
		`a CREATE "x/y" (USE (\Sent))`,
		`a SELECT INBOX (QRESYNC (1 2 1:5 (1:2 1:2)))`,
		`a ENABLE QRESYNC UTF8=ACCEPT`,
		`a GETQUOTAROOT INBOX`,
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	const alphabet = "()[]<>{}\"\\*%$:,. 0123456789AZaz\x00\x7f\xc3"

	var cases []string
	for _, b := range base {
		cases = append(cases, b)
		for i := 1; i < len(b); i += 3 {
			cases = append(cases, b[:i])
		}
		for k := 0; k < 40; k++ {
			m := []byte(b)
			for j := 0; j < 1+rnd.IntN(4); j++ {
				m[rnd.IntN(len(m))] = alphabet[rnd.IntN(len(alphabet))]
			}
			cases = append(cases, string(m))
		}
	}
	r := ts.raw()
	r.login()
	r.expectOK("s", "SELECT INBOX")
	sent := 0
	for _, c := range cases {
		up := strings.ToUpper(c)
		if strings.ContainsAny(c, "\r\n") || strings.HasSuffix(c, "}") ||
			strings.Contains(up, "IDLE") || strings.Contains(up, "LOGOUT") || strings.Contains(up, "AUTHENTICATE") ||
			strings.Contains(up, "COMPRESS") || strings.Contains(up, "STARTTLS") {
			continue
		}
		r.send(c)
		r.send("zz NOOP")
		lines := r.until("zz")
		if !strings.HasPrefix(lines[len(lines)-1], "zz OK") {
			t.Fatalf("after %q: %q", c, lines)
		}
		sent++
	}
	t.Logf("%d hostile commands answered", sent)
	r.expectOK("sel", "SELECT INBOX") // a mangled SELECT may have left the mailbox (RFC 9051 §6.3.2)
	r.expectOK("end", "FETCH 1 (FLAGS)")
}

func TestMatchPattern(t *testing.T) {
	cases := []struct {
		pat, name string
		want      bool
	}{
		{"*", "a/b/c", true},
		{"%", "a/b", false},
		{"%", "INBOX", true},
		{"a/%", "a/b", true},
		{"a/%", "a/b/c", false},
		{"a/*", "a/b/c", true},
		{"a%c", "abbbc", true},
		{"a%c", "ab/bc", false},
		{"a*c", "ab/bc", true},
		{"%%%b", "aab", true},
		{"*%", "x/y", true},
		{"%*", "x/y", true},
		{"", "", true},
		{"", "a", false},
		{"abc", "abc", true},
		{"abc", "abcd", false},
		{"a*", "", false},
		{"*", "", true},
		{"%/%", "a/b", true},
		{"%/%", "a", false},
	}
	for _, c := range cases {
		if got := matchPattern(c.pat, c.name); got != c.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", c.pat, c.name, got, c.want)
		}
	}
}

// TestListHostilePatterns: wildcard-heavy patterns that make a
// backtracking matcher exponential must be answered at once.
func TestListHostilePatterns(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw()
	r.login()
	for _, name := range []string{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a"} {
		r.expectOK("c", `CREATE "`+name+`"`)
	}
	start := time.Now()
	pats := []string{
		strings.Repeat("%", 40) + "b",
		strings.Repeat("*a", 60) + "b",
		strings.Repeat("%a", 60) + "b",
		strings.Repeat("*/", 30) + "b",
		strings.Repeat("a*", 200) + "b",
	}
	for _, p := range pats {
		lines := r.expectOK("l", `LIST "" "`+p+`"`)
		if len(lines) != 1 {
			t.Errorf("LIST %q matched %q", p, lines)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("hostile LIST patterns took %v", d)
	}
	lines := r.cmd("l", `LIST "" "`+strings.Repeat("*", maxPatternBytes+1)+`"`)
	if !strings.HasPrefix(lines[len(lines)-1], "l NO [LIMIT]") {
		t.Fatalf("over-long pattern: %q", lines)
	}
	r.expectOK("n", "NOOP")
}

// TestPreAuthLimits: before login a client may announce only small
// literals and lines; after login APPEND-sized literals are accepted.
func TestPreAuthLimits(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw()
	lines := r.cmd("a", "LOGIN {1000000}")
	if !strings.HasPrefix(lines[len(lines)-1], "a NO [TOOBIG]") {
		t.Fatalf("big sync literal before login: %q", lines)
	}
	r.send("b ID (\"name\" \"" + strings.Repeat("x", 9<<10) + "\")")
	if l := r.line(); !strings.HasPrefix(l, "b BAD") {
		t.Fatalf("long line before login: %q", l)
	}
	r.login()
	big := strings.Repeat("y", 200<<10)
	msg := "Subject: big\r\n\r\n" + big
	r.send(fmt.Sprintf("c APPEND INBOX {%d}", len(msg)))
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND continuation: %q", l)
	}
	r.send(msg)
	if l := r.until("c"); !strings.HasPrefix(l[len(l)-1], "c OK") {
		t.Fatalf("APPEND after login: %q", l)
	}

	r2 := ts.raw()
	r2.send("x LOGIN {1000000+}")
	if l := r2.line(); !strings.HasPrefix(l, "* BYE [TOOBIG]") {
		t.Fatalf("big non-sync literal before login: %q", l)
	}
}

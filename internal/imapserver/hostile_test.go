package imapserver

import (
	"math/rand/v2"
	"strings"
	"testing"
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

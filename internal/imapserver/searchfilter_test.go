package imapserver

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tern-mail/tern/internal/imap"
	"github.com/tern-mail/tern/internal/message"
)

// TestSearchPrefilter: envelope searches that skip decoding by looking at
// the stored bytes first find exactly what a full decode finds, including
// matches hidden by encoded words, Unicode case folding and JSON escapes.
func TestSearchPrefilter(t *testing.T) {
	ts := newTestServer(t)
	msg := func(from, subject string) string {
		return "From: " + from + "\r\nTo: alice@example.org\r\nSubject: " + subject +
			"\r\nDate: Fri, 01 Mar 2024 10:00:00 +0000\r\n\r\nbody\r\n"
	}
	ts.deliver("INBOX", msg("Bob <bob@example.net>", "plain haystack"))               // 1
	ts.deliver("INBOX", msg("Bob <bob@example.net>", "a Needle here"))                // 2
	ts.deliver("INBOX", msg("Bob <bob@example.net>", "=?utf-8?q?N=65edle?= encoded")) // 3
	ts.deliver("INBOX", msg("Bob <bob@example.net>", "\u212Aelvin scale"))            // 4
	ts.deliver("INBOX", msg(`"Needle Person" <np@needle.example>`, "other"))          // 5
	ts.deliver("INBOX", msg("Bob <bob@example.net>", "Q&A about the needle"))         // 6
	ts.deliver("INBOX", msg("=?utf-8?q?Hidden_Needle?= <h@example.net>", "nothing"))  // 7
	ts.deliver("INBOX", msg("Bob <bob@example.net>", "Caf\u00e9 needle"), `\Seen`)    // 8
	ts.deliver("INBOX", msg("Bob <bob@example.net>", "nee dle split"))                // 9
	r := ts.raw()
	r.login()
	r.expectOK("s", "SELECT INBOX")
	for _, c := range []struct{ key, want string }{
		{`SUBJECT needle`, "2 3 6 8"},
		{`SUBJECT NEEDLE`, "2 3 6 8"},
		{`HEADER Subject "needle"`, "2 3 6 8"},
		{`FROM needle`, "5 7"},
		{`FROM person`, "5"},
		{`FROM "needle.example"`, "5"},
		{`HEADER From "Person"`, "5"},
		{`SUBJECT kelvin`, "4"},
		{`OR SUBJECT needle FROM needle`, "2 3 5 6 7 8"},
		{`NOT SUBJECT needle`, "1 4 5 7 9"},
		{`SUBJECT needle UNSEEN`, "2 3 6"},
		{`SUBJECT needle SUBJECT about`, "6"},
		{`OR SUBJECT needle SEEN`, "2 3 6 8"},
		{`SUBJECT "nee dle"`, "9"},
		{`SUBJECT "a&b"`, ""},
		{`SUBJECT "Q&A"`, "6"},
		{`SUBJECT ""`, "1 2 3 4 5 6 7 8 9"},
		{`SUBJECT absent`, ""},
	} {
		lines := r.expectOK("q", "SEARCH "+c.key)
		got := ""
		for _, l := range lines {
			if strings.HasPrefix(l, "* SEARCH") {
				got = strings.TrimSpace(strings.TrimPrefix(l, "* SEARCH"))
			}
		}
		if got != c.want {
			t.Errorf("SEARCH %s = %q, want %q", c.key, got, c.want)
		}
	}
}

func TestRawMayContain(t *testing.T) {
	for _, c := range []struct {
		raw, needle string
		want        bool
	}{
		{`{"env":{"subject":"Hello World"}}`, "world", true},
		{`{"env":{"subject":"Hello World"}}`, "moon", false},
		{`{"env":{"subject":"=?utf-8?b?TW9vbg==?="}}`, "moon", true},
		{`{"env":{"subject":"\u0026 more","messageId":"\u003cx@y\u003e"}}`, "moon", false},
		{`{"env":{"subject":"\u0026 moon"}}`, "moon", true},
		{"{\"env\":{\"subject\":\"caf\u00e9\"}}", "moon", false},
		{"{\"env\":{\"subject\":\"\u212aelvin\"}}", "moon", true},
		{"{\"env\":{\"subject\":\"\u0130\"}}", "moon", true},
		{`{"env":{"subject":"\u212Aelvin"}}`, "moon", true},
		{`{"env":{"subject":"\u006doon"}}`, "moon", true},
		{`{"env":{"subject":"a\/b"}}`, "moon", true},
		{`{"env":{"subject":"\\u006doon"}}`, "moon", false},
		{`{"env":{"subject":"\"\\\n\t"}}`, "moon", false},
		{`{"env":{"subject":"MOO"}}`, "moon", false},
		{`{"env":{"subject":"xMOON"}}`, "moon", true},
	} {
		if got := rawMayContain([]byte(c.raw), c.needle); got != c.want {
			t.Errorf("rawMayContain(%s, %q) = %v", c.raw, c.needle, got)
		}
	}
}

// FuzzSearchPrefilter: whenever a full decode matches an envelope
// criterion, the byte test lets the message through.
func FuzzSearchPrefilter(f *testing.F) {
	f.Add("Re: the needle", "Needle Person", "needle")
	f.Add("=?utf-8?q?N=65edle?=", "x", "Needle")
	f.Add("\u212aelvin", "\u0130stanbul", "ki")
	f.Add("a <b> & \"c\"", "d\\e", "b")
	f.Add("caf\xe9 \xff", "tab\there", "here")
	f.Fuzz(func(t *testing.T, subject, name, needle string) {
		p := &message.Parsed{Envelope: message.Envelope{Subject: subject, MessageID: "<id@x>",
			From: []message.Address{{Name: name, Mailbox: "mb", Host: "example.net"}}}}
		raw, err := json.Marshal(p)
		if err != nil {
			t.Skip()
		}
		var back message.Parsed
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		sr := &searcher{s: &session{sel: &selected{}}}
		c := &candidate{parsed: &back}
		for _, k := range []*imap.SearchKey{
			{Op: "SUBJECT", Value: needle}, {Op: "FROM", Value: needle},
			{Op: "HEADER", Field: "Subject", Value: needle}, {Op: "HEADER", Field: "From", Value: needle},
		} {
			if sr.match(k, c) && !mayMatch(k, raw) {
				t.Errorf("%s %q matches %s but the byte test rules it out", k.Op, needle, raw)
			}
		}
	})
}

func TestContainsFoldASCII(t *testing.T) {
	hay := []string{"", "a", "Needle", "xxNEEDLExx", "neEdl", "nnnneedle", "NNNNeedle", "n e e d l e", "NeedlNeedle", "éneedle"}
	for _, h := range hay {
		for _, n := range []string{"needle", "n", "e", "dle", "nn", "xx", "é"[:1]} {
			want := strings.Contains(strings.ToLower(h), n)
			if n[0] >= 0x80 {
				want = strings.Contains(h, n)
			}
			if got := containsFoldASCII([]byte(h), n); got != want {
				t.Errorf("containsFoldASCII(%q, %q) = %v", h, n, got)
			}
		}
	}
}

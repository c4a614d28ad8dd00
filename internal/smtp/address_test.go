package smtp

import (
	"strings"
	"testing"
	"time"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		in        string
		utf8, nul bool
		want      Address
		rest      string
		code      int
	}{
		{in: "<a@example.org>", want: Address{"a", "example.org"}},
		{in: "<a.b+tag@Example.ORG> SIZE=10 BODY=8BITMIME", want: Address{"a.b+tag", "Example.ORG"}, rest: "SIZE=10 BODY=8BITMIME"},
		{in: "<>", nul: true},
		{in: "<> SIZE=1", nul: true, rest: "SIZE=1"},
		{in: "<>", code: 501},
		{in: `<"john doe"@example.org>`, want: Address{"john doe", "example.org"}},
		{in: `<"a\"b>c"@example.org>`, want: Address{`a"b>c`, "example.org"}},
		{in: "<@relay.example,@r2.example:u@example.org>", want: Address{"u", "example.org"}},
		{in: "<Postmaster>", want: Address{Local: "Postmaster"}},
		{in: "<user>", code: 501},
		{in: "<u@[192.0.2.1]>", want: Address{"u", "[192.0.2.1]"}},
		{in: "<u@[IPv6:2001:db8::1]>", want: Address{"u", "[IPv6:2001:db8::1]"}},
		{in: "<u@[300.1.1.1]>", code: 501},
		{in: "<u@-bad.example>", code: 501},
		{in: "<u@exa mple.org>", code: 501},
		{in: "<.u@example.org>", code: 501},
		{in: "<u..v@example.org>", code: 501},
		{in: "u@example.org", code: 501},
		{in: "<u@example.org", code: 501},
		{in: "<u@example.org>x", code: 501},
		{in: "<δοκιμή@παράδειγμα.δοκιμή>", utf8: true, want: Address{"δοκιμή", "παράδειγμα.δοκιμή"}},
		{in: "<δοκιμή@παράδειγμα.δοκιμή>", code: 553},
		{in: "<" + strings.Repeat("a", 65) + "@example.org>", code: 501},
		{in: "<a@" + strings.Repeat("b", 64) + ".org>", code: 501},
	}
	for _, tt := range tests {
		got, rest, err := ParsePath(tt.in, tt.utf8, tt.nul)
		if tt.code != 0 {
			r, ok := err.(*Reply)
			if !ok || r.Code != tt.code {
				t.Errorf("ParsePath(%q) = %v, %v; want reply %d", tt.in, got, err, tt.code)
			}
			continue
		}
		if err != nil || got != tt.want || rest != tt.rest {
			t.Errorf("ParsePath(%q) = %#v, %q, %v; want %#v, %q", tt.in, got, rest, err, tt.want, tt.rest)
		}
	}
}

func TestAddressString(t *testing.T) {
	for _, tt := range []struct {
		a    Address
		want string
	}{
		{Address{"a", "x.org"}, "a@x.org"},
		{Address{"john doe", "x.org"}, `"john doe"@x.org`},
		{Address{`a"b`, "x.org"}, `"a\"b"@x.org`},
		{Address{}, ""},
	} {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.a, got, tt.want)
		}
	}
	if got := (Address{"Ab", "EXAMPLE.org"}).Canonical(); got != "Ab@example.org" {
		t.Errorf("Canonical = %q", got)
	}
}

func TestReplyLine(t *testing.T) {
	code, more, enh, text, err := ParseReplyLine("550 5.1.1 unknown local user\r\n")
	if err != nil || code != 550 || more || enh != (EnhancedCode{5, 1, 1}) || text != "unknown local user" {
		t.Fatalf("got %d %v %v %q %v", code, more, enh, text, err)
	}
	code, more, enh, text, err = ParseReplyLine("250-PIPELINING")
	if err != nil || code != 250 || !more || enh != (EnhancedCode{}) || text != "PIPELINING" {
		t.Fatalf("got %d %v %v %q %v", code, more, enh, text, err)
	}
	if _, _, _, _, err := ParseReplyLine("2x0 hi"); err == nil {
		t.Fatal("want error")
	}
	r := ErrUnknownUser().WithDetail("no such account")
	if r.Error() != "550 5.1.1 unknown local user (no such account)" || r.Temporary() || !r.Permanent() {
		t.Fatalf("reply %q", r.Error())
	}
	if !ErrMailboxFull().Temporary() {
		t.Fatal("mailbox full must be temporary")
	}
}

func TestReceived(t *testing.T) {
	when := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	got := Received(ReceivedInfo{Helo: "client (evil)\r\nX-Bad: 1", IP: "192.0.2.7", By: "mx.example.org",
		With: Protocol(true, true, false, false), ID: "abc", For: "a@example.org", TLS: "TLS1.3 TLS_AES_128_GCM_SHA256", Time: when})
	want := "Received: from client__evil___X-Bad:_1 ([192.0.2.7])\r\n" +
		"\tby mx.example.org with ESMTPS id abc\r\n\t(TLS1.3 TLS_AES_128_GCM_SHA256)\r\n" +
		"\tfor <a@example.org>; Sun, 22 Nov 2026 10:00:00 +0000\r\n"
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	sub := Received(ReceivedInfo{By: "mx", With: Protocol(true, true, true, true), Time: when})
	if sub != "Received: by mx with UTF8SMTPSA; Sun, 22 Nov 2026 10:00:00 +0000\r\n" {
		t.Fatalf("submission header %q", sub)
	}
	if got := ReturnPath(Address{"a\r\nb", "x.org"}); got != "Return-Path: <\"ab\"@x.org>\r\n" && got != "Return-Path: <ab@x.org>\r\n" {
		t.Fatalf("ReturnPath = %q", got)
	}
}

// FuzzParsePath checks that any input either fails with a Reply or yields
// an address whose formatted form parses back to the same address.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"<a@b.c>", "<>", `<"x y"@b.c> SIZE=1`, "<@a,@b:c@d>", "<u@[IPv6:::1]>", "<δ@δ.δ>", "<Postmaster>"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, utf8 bool) {
		a, _, err := ParsePath(s, utf8, true)
		if err != nil {
			if _, ok := err.(*Reply); !ok {
				t.Fatalf("error is %T, want *Reply", err)
			}
			return
		}
		if a.IsNull() {
			return
		}
		b, rest, err := ParsePath("<"+a.String()+">", utf8, false)
		if err != nil || b != a || rest != "" {
			t.Fatalf("round trip of %q: %#v -> %q -> %#v, %v", s, a, a.String(), b, err)
		}
	})
}

// FuzzParseReplyLine checks that reply parsing never panics and that
// accepted codes are in range.
func FuzzParseReplyLine(f *testing.F) {
	for _, s := range []string{"250 ok", "550 5.1.1 x", "250-8BITMIME", "4", "999 9.9.9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		code, _, _, _, err := ParseReplyLine(s)
		if err == nil && (code < 200 || code > 599) {
			t.Fatalf("code %d accepted", code)
		}
	})
}

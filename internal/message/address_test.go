package message

import (
	"fmt"
	"strings"
	"testing"
)

func fmtAddrs(as []Address) string {
	var b []string
	for _, a := range as {
		switch {
		case a.GroupStart:
			b = append(b, "group("+a.Mailbox)
		case a.GroupEnd:
			b = append(b, ")")
		default:
			s := a.Mailbox + "@" + a.Host
			if a.Adl != "" {
				s = a.Adl + ":" + s
			}
			if a.Name != "" {
				s = fmt.Sprintf("%q <%s>", a.Name, s)
			}
			b = append(b, s)
		}
	}
	return strings.Join(b, " ")
}

func TestParseAddressList(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a@b", "a@b"},
		{`"Joe Q. Public" <john.q.public@example.com>`, `"Joe Q. Public" <john.q.public@example.com>`},
		{"Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>",
			`"Mary Smith" <mary@x.test> jdoe@example.org "Who?" <one@y.test>`},
		{`<boss@nil.test>, "Giant; \"Big\" Box" <sysservices@example.net>`,
			`boss@nil.test "Giant; \"Big\" Box" <sysservices@example.net>`},
		{"A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;",
			`group(A Group "Ed Jones" <c@a.test> joe@where.test "John" <jdoe@one.test> )`},
		{"Undisclosed recipients:;", "group(Undisclosed recipients )"},
		{"undisclosed-recipients:", "group(undisclosed-recipients )"},
		{"Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", `"Pete" <pete@silly.test>`},
		{"a@b (Real Name)", `"Real Name" <a@b>`},
		{"<@r1,@r2:g@h>", "@r1,@r2:g@h"},
		{"=?utf-8?q?J=C3=B6?= <j@k>", `"=?utf-8?q?J=C3=B6?=" <j@k>`},
		{"foo", "foo@MISSING_DOMAIN"},
		{"<>", "MISSING_MAILBOX@MISSING_DOMAIN"},
		{"<Undisclosed-Recipient:;@example.net>", "Undisclosed-Recipient:;@example.net"},
		{`"" Angles " Puglisi" <angles@x.test>`, `"Angles Puglisi" <angles@x.test>`},
		{"spamassassin.taint.org <y@z>", `"spamassassin.taint.org" <y@z>`},
		{"Mr. Smith <s@x>", `"Mr. Smith" <s@x>`},
		{"a@b c@d", "a@b c@d"},
		{"<a@b, c@d", "a@b c@d"},
		{"\"unterminated <a@b>", `unterminated <a@b>@MISSING_DOMAIN`},
		{"jdoe@[192.0.2.1]", "jdoe@[192.0.2.1]"},
		{",,, ;;; >>>", ""},
		{`a@b, "x"@c.test: <d@e>`, "a@b x@c.test d@e"},
	}
	for _, tt := range tests {
		if got := fmtAddrs(ParseAddressList(tt.in)); got != tt.want {
			t.Errorf("ParseAddressList(%q)\n got %s\nwant %s", tt.in, got, tt.want)
		}
	}
}

func TestEnvelope(t *testing.T) {
	raw := "Date: Mon, 7 Feb 1994 21:52:25\r\n -0800 (PST)\r\n" +
		"Subject: =?utf-8?q?caf=C3=A9?=  here \r\n" +
		"From: Fred Foobar <foobar@Blurdybloop.example>\r\n" +
		"To: mooch@owatagu.siam.edu.example, Group: a@b;\r\n" +
		"Cc: \r\nBcc: x@y\r\nReply-To: r@s\r\n" +
		"In-Reply-To: <a@b>\r\nMessage-ID: <B27397-0100000@Blurdybloop.example>\r\n" +
		"Subject: second subject ignored\r\nBcc: second@bcc\r\n\r\nbody\r\n"
	m := mustParse(t, []byte(raw))
	e := m.Envelope
	if e.Date != "Mon, 7 Feb 1994 21:52:25 -0800 (PST)" || e.Subject != "=?utf-8?q?caf=C3=A9?=  here" ||
		e.InReplyTo != "<a@b>" || e.MessageID != "<B27397-0100000@Blurdybloop.example>" {
		t.Errorf("fields: %+v", e)
	}
	for _, c := range []struct {
		name string
		got  []Address
		want string
	}{
		{"from", e.From, `"Fred Foobar" <foobar@Blurdybloop.example>`},
		{"sender", e.Sender, `"Fred Foobar" <foobar@Blurdybloop.example>`},
		{"reply-to", e.ReplyTo, "r@s"},
		{"to", e.To, "mooch@owatagu.siam.edu.example group(Group a@b )"},
		{"cc", e.Cc, ""},
		{"bcc", e.Bcc, "x@y second@bcc"},
	} {
		if s := fmtAddrs(c.got); s != c.want {
			t.Errorf("%s: %s, want %s", c.name, s, c.want)
		}
	}
}

func TestDecodeHeaderValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"=?utf-8?q?caf=C3=A9?=", "café"},
		{"=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=", "ab"},
		{"=?ISO-8859-1?Q?a?= b", "a b"},
		{"x =?UTF-8?B?w6k=?= y", "x é y"},
		{"=?utf-8?b?4oKs?==?utf-8?b?4oKs?=", "€€"},
		{"=?utf-8?b?4g==?= =?utf-8?b?gqw=?=", "€"},
		{"=?utf-8*en?q?hi?=", "hi"},
		{"=?x-bogus?q?na=EFve?=", "naïve"},
		{"=?utf-8?q?broken", "=?utf-8?q?broken"},
		{"=?utf-8?x?abc?=", "=?utf-8?x?abc?="},
		{"raw \xe9t\xe9", "raw été"},
		{"=?iso-2022-jp?B?GyRCJUYlOSVIGyhC?=", "テスト"},
		{"=?utf-8?q?with spaces inside?=", "with spaces inside"},
	}
	for _, tt := range tests {
		if got := DecodeHeaderValue(tt.in); got != tt.want {
			t.Errorf("DecodeHeaderValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAddressCaps(t *testing.T) {
	if n := len(ParseAddressList(strings.Repeat("a@b,", 50000))); n > maxAddresses {
		t.Errorf("%d addresses kept", n)
	}
	// Many embedded messages full of addresses share one budget.
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=b\n\n")
	for range 20 {
		b.WriteString("--b\nContent-Type: message/rfc822\n\nTo: " + strings.Repeat("a@b,", 2000) + "\n\nx\n")
	}
	b.WriteString("--b--\n")
	m := mustParse(t, []byte(b.String()))
	total := 0
	for _, p := range m.Structure.Parts {
		total += len(p.Envelope.To)
	}
	if total > maxAddresses || total < maxAddresses/2 {
		t.Errorf("%d addresses kept in all", total)
	}
}

package smtp

import (
	"strings"
	"time"
)

// ReceivedInfo is what a Received trace field records (RFC 5321 §4.4).
type ReceivedInfo struct {
	// Helo is the client's EHLO/HELO argument.
	Helo string
	// IP is the client's address; empty on submission to keep the
	// sender's network private (the header then has no "from" IP).
	IP string
	// By is this server's host name.
	By string
	// With is the protocol (see Protocol).
	With string
	// ID identifies the message in this server's logs.
	ID string
	// For is the single envelope recipient, "" when there are several
	// (RFC 5321 §4.4 warns against listing them all).
	For string
	// TLS describes the TLS session, e.g. "TLS1.3 TLS_AES_128_GCM_SHA256";
	// empty without TLS.
	TLS  string
	Time time.Time
}

// Protocol names the "with" clause: RFC 3848 (ESMTPS, ESMTPA, ESMTPSA)
// and RFC 6531 §3.7.3 (UTF8SMTP...). ehlo false means plain HELO: "SMTP".
func Protocol(ehlo, tls, auth, utf8 bool) string {
	if !ehlo {
		return "SMTP"
	}
	p := "ESMTP"
	if utf8 {
		p = "UTF8SMTP"
	}
	if tls {
		p += "S"
	}
	if auth {
		p += "A"
	}
	return p
}

// Received formats a complete "Received:" header field ending in CRLF,
// folded at clause boundaries:
//
//	Received: from helo ([192.0.2.1])
//		by mx.example.org with ESMTPS id ABC
//		(TLS1.3 TLS_AES_128_GCM_SHA256)
//		for <a@example.org>; Mon, 02 Jan 2006 15:04:05 +0000
func Received(r ReceivedInfo) string {
	var b strings.Builder
	b.WriteString("Received:")
	if r.Helo != "" || r.IP != "" {
		b.WriteString(" from ")
		helo := sanitizeToken(r.Helo)
		if helo == "" {
			helo = "unknown"
		}
		b.WriteString(helo)
		if r.IP != "" {
			// RFC 5321 §4.4 TCP-info: the address literal in a comment
			// (no reverse DNS name: tern does not look it up).
			b.WriteString(" ([" + sanitizeToken(r.IP) + "])")
		}
		b.WriteString("\r\n\t")
	} else {
		b.WriteString(" ")
	}
	b.WriteString("by " + sanitizeToken(r.By))
	if r.With != "" {
		b.WriteString(" with " + r.With)
	}
	if r.ID != "" {
		b.WriteString(" id " + sanitizeToken(r.ID))
	}
	if r.TLS != "" {
		b.WriteString("\r\n\t(" + sanitizeComment(r.TLS) + ")")
	}
	if r.For != "" {
		b.WriteString("\r\n\tfor <" + sanitizeComment(r.For) + ">")
	}
	b.WriteString("; ")
	b.WriteString(r.Time.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return b.String()
}

// sanitizeToken keeps a client-supplied word from breaking the header:
// printable ASCII without white space, parentheses or backslash.
func sanitizeToken(s string) string {
	if len(s) > 255 {
		s = s[:255]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == '\\' || c == ';' {
			b.WriteByte('_')
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// sanitizeComment allows spaces but still no control bytes or parentheses.
func sanitizeComment(s string) string {
	var b strings.Builder
	for _, w := range strings.Fields(s) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(sanitizeToken(w))
	}
	return b.String()
}

// ReturnPath formats the Return-Path header field that the final delivery
// adds (RFC 5321 §4.4): "Return-Path: <addr>" or "<>" for bounces.
func ReturnPath(from Address) string {
	// RFC 6532 allows UTF-8 here once the message went SMTPUTF8; only
	// control bytes, which could break the header, are dropped.
	addr := strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, from.String())
	return "Return-Path: <" + addr + ">\r\n"
}

package smtp

import (
	"net/netip"
	"strings"
	"unicode/utf8"
)

// RFC 5321 §4.5.3.1.1 and §4.5.3.1.2: size limits of the parts of a path.
const (
	MaxLocalPart = 64
	MaxDomain    = 255
	MaxPath      = 256
)

// Address is a mailbox as SMTP carries it in a path: a local part and a
// domain (or an address literal in brackets). The zero Address is the null
// reverse-path "<>".
type Address struct {
	// Local is the local part, unquoted: `"a b"@x` has Local `a b`.
	Local string
	// Domain is the domain as written, or an address literal with its
	// brackets ("[192.0.2.1]"). Empty only for the null path and for the
	// special recipient "postmaster" (RFC 5321 §4.1.1.3).
	Domain string
}

// IsNull reports whether a is the null reverse-path <>.
func (a Address) IsNull() bool { return a.Local == "" && a.Domain == "" }

// String formats a as it goes inside angle brackets, quoting the local
// part when it is not a dot-string (RFC 5321 §4.1.2).
func (a Address) String() string {
	if a.IsNull() {
		return ""
	}
	local := a.Local
	if !isDotString(local) {
		local = quoteLocal(local)
	}
	if a.Domain == "" {
		return local
	}
	return local + "@" + a.Domain
}

// Canonical is the form used to look an address up: the local part as
// written (RFC 5321 §2.4: local parts are case-sensitive to the wire; the
// store folds case itself) and the domain in lower case.
func (a Address) Canonical() string {
	if a.IsNull() {
		return ""
	}
	return Address{Local: a.Local, Domain: strings.ToLower(a.Domain)}.String()
}

// IsASCII reports whether the address needs no SMTPUTF8.
func (a Address) IsASCII() bool { return isASCII(a.Local) && isASCII(a.Domain) }

// ParseMailbox parses an RFC 5321 Mailbox ("local@domain", no brackets).
// With allowUTF8 (the client gave the SMTPUTF8 parameter, RFC 6531 §3.3)
// the local part and domain may hold UTF-8; otherwise they must be ASCII.
func ParseMailbox(s string, allowUTF8 bool) (Address, error) {
	if len(s) > MaxPath {
		return Address{}, errSyntax("path too long")
	}
	if !utf8.ValidString(s) {
		return Address{}, errSyntax("invalid UTF-8")
	}
	if !allowUTF8 && !isASCII(s) {
		// RFC 6531 §3.2: non-ASCII addresses need the SMTPUTF8 parameter.
		return Address{}, &Reply{Code: 553, Enhanced: EnhancedCode{5, 6, 7}, Text: "non-ASCII address without SMTPUTF8"}
	}
	local, rest, err := parseLocal(s)
	if err != nil {
		return Address{}, err
	}
	if rest == "" && strings.EqualFold(local, "postmaster") {
		// RFC 5321 §4.1.1.3: "<Postmaster>" without a domain is valid.
		return Address{Local: local}, nil
	}
	if !strings.HasPrefix(rest, "@") {
		return Address{}, errSyntax("missing @domain")
	}
	domain := rest[1:]
	if err := checkDomainOrLiteral(domain); err != nil {
		return Address{}, err
	}
	return Address{Local: local, Domain: domain}, nil
}

// ParsePath parses "<mailbox>" with an optional obsolete source route
// ("<@a,@b:user@c>", RFC 5321 §4.1.2 A-d-l, which is ignored as §C
// allows). It returns the address and what follows the closing bracket
// (the ESMTP parameters). With allowNull, "<>" is accepted (reverse-path).
func ParsePath(s string, allowUTF8, allowNull bool) (Address, string, error) {
	if !strings.HasPrefix(s, "<") {
		return Address{}, "", errSyntax("path must be in angle brackets")
	}
	end := pathEnd(s)
	if end < 0 {
		return Address{}, "", errSyntax("missing closing bracket")
	}
	inner, rest := s[1:end], s[end+1:]
	if rest != "" && rest[0] != ' ' {
		return Address{}, "", errSyntax("garbage after path")
	}
	if inner == "" {
		if !allowNull {
			return Address{}, "", errSyntax("empty path")
		}
		return Address{}, strings.TrimLeft(rest, " "), nil
	}
	if inner[0] == '@' {
		i := strings.IndexByte(inner, ':')
		if i < 0 {
			return Address{}, "", errSyntax("bad source route")
		}
		for _, hop := range strings.Split(inner[1:i], ",") {
			if err := checkDomain(strings.TrimPrefix(hop, "@")); err != nil {
				return Address{}, "", err
			}
		}
		inner = inner[i+1:]
	}
	a, err := ParseMailbox(inner, allowUTF8)
	if err != nil {
		return Address{}, "", err
	}
	return a, strings.TrimLeft(rest, " "), nil
}

// pathEnd finds the '>' closing a path, skipping quoted strings.
func pathEnd(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '>':
			return i
		}
	}
	return -1
}

// parseLocal reads a Dot-string or Quoted-string local part.
func parseLocal(s string) (local, rest string, err error) {
	if strings.HasPrefix(s, `"`) {
		return parseQuoted(s)
	}
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		i = len(s)
	}
	local = s[:i]
	if !isDotString(local) {
		return "", "", errSyntax("bad local part")
	}
	if len(local) > MaxLocalPart {
		return "", "", errSyntax("local part too long")
	}
	return local, s[i:], nil
}

// parseQuoted reads RFC 5321 Quoted-string: qtextSMTP and quoted-pairSMTP,
// plus UTF8-non-ascii under RFC 6531 §3.3.
func parseQuoted(s string) (string, string, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			if b.Len() > MaxLocalPart {
				return "", "", errSyntax("local part too long")
			}
			return b.String(), s[i+1:], nil
		case c == '\\':
			if i+1 >= len(s) || s[i+1] < 32 || s[i+1] > 126 {
				return "", "", errSyntax("bad quoted pair")
			}
			i++
			b.WriteByte(s[i])
		case c == 32 || c == 33 || (c >= 35 && c <= 126) || c >= 0x80:
			b.WriteByte(c)
		default:
			return "", "", errSyntax("bad character in quoted string")
		}
	}
	return "", "", errSyntax("unterminated quoted string")
}

// isDotString checks Atom *("." Atom) with RFC 5322 atext (plus UTF-8).
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAtext(s[i]) && s[i] != '.' {
			return false
		}
	}
	return true
}

func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= 0x80:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func quoteLocal(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

func checkDomainOrLiteral(d string) error {
	if strings.HasPrefix(d, "[") {
		if !strings.HasSuffix(d, "]") {
			return errSyntax("bad address literal")
		}
		return checkLiteral(d[1 : len(d)-1])
	}
	return checkDomain(d)
}

// checkLiteral accepts the IPv4 and IPv6 forms of RFC 5321 §4.1.3.
func checkLiteral(lit string) error {
	if v6, ok := strings.CutPrefix(lit, "IPv6:"); ok {
		if ip, err := netip.ParseAddr(v6); err == nil && ip.Is6() {
			return nil
		}
		return errSyntax("bad IPv6 address literal")
	}
	if ip, err := netip.ParseAddr(lit); err == nil && ip.Is4() {
		return nil
	}
	return errSyntax("bad address literal")
}

// checkDomain checks sub-domain *("." sub-domain), where a sub-domain is an
// LDH label or (RFC 6531 §3.3) a U-label; labels are 1 to 63 octets.
func checkDomain(d string) error {
	if d == "" || len(d) > MaxDomain {
		return errSyntax("bad domain length")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return errSyntax("bad domain label")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c >= 0x80
			if !ok {
				return errSyntax("bad character in domain")
			}
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func errSyntax(detail string) *Reply {
	return &Reply{Code: 501, Enhanced: EnhancedCode{5, 1, 3}, Text: "bad address syntax: " + detail}
}

package message

import (
	"slices"
	"strings"
)

// Stand-ins for the parts of an address that are missing, as Dovecot
// sends them: an IMAP address with a NIL host would read as a group marker
// (RFC 9051 §7.5.2), so a mailbox is never left without one.
const (
	missingMailbox = "MISSING_MAILBOX"
	missingDomain  = "MISSING_DOMAIN"
)

// maxAddresses caps the addresses one Parse keeps over all envelopes: an
// address costs about 25 times the bytes of a minimal "a@b," in memory.
const maxAddresses = 10000

// buildEnvelope makes the RFC 9051 §7.5.2 envelope from a header. As the
// RFC asks, an absent or empty Sender or Reply-To is set to From. budget
// is the number of addresses still allowed; it is lowered by those kept.
func buildEnvelope(h *header, budget *int) Envelope {
	list := func(i int) []Address {
		as := parseAddressList(h.get(i), *budget)
		*budget -= len(as)
		return as
	}
	e := Envelope{
		Date:      h.get(hDate),
		Subject:   h.get(hSubject),
		From:      list(hFrom),
		Sender:    list(hSender),
		ReplyTo:   list(hReplyTo),
		To:        list(hTo),
		Cc:        list(hCc),
		Bcc:       list(hBcc),
		InReplyTo: h.get(hInReplyTo),
		MessageID: h.get(hMessageID),
	}
	if len(e.Sender) == 0 {
		e.Sender = slices.Clone(e.From)
	}
	if len(e.ReplyTo) == 0 {
		e.ReplyTo = slices.Clone(e.From)
	}
	return e
}

// ParseAddressList parses an address list (RFC 5322 §3.4) leniently, with
// groups, route addresses (RFC 5322 §4.4 obs-route), quoted names and
// comments. Names are left as written (encoded words not decoded, quotes
// removed); a comment stands in for a missing name. It never fails: what
// cannot be parsed is salvaged as well as it can be. At most 10,000
// addresses are returned.
func ParseAddressList(s string) []Address {
	return parseAddressList(s, maxAddresses)
}

func parseAddressList(s string, limit int) []Address {
	if strings.TrimSpace(s) == "" || limit <= 0 {
		return nil
	}
	a := addrScanner{s: s}
	var out []Address
	inGroup := false
	for guard := 0; a.i < len(a.s) && guard < len(s)+1 && len(out) < limit-1; guard++ {
		a.skipCFWS()
		if a.i >= len(a.s) {
			break
		}
		switch a.s[a.i] {
		case ',':
			a.i++
			continue
		case ';':
			a.i++
			if inGroup {
				out = append(out, Address{GroupEnd: true})
				inGroup = false
			}
			continue
		}
		start := a.i
		addr, group, ok := a.mailboxOrGroup()
		if group && addr.Name == "" {
			// a stray ':' with no group name before it: junk, not a
			// group, whose start marker would read as an end marker
			continue
		}
		if group {
			if inGroup {
				out = append(out, Address{GroupEnd: true})
			}
			out = append(out, Address{Mailbox: addr.Name, GroupStart: true})
			inGroup = true
			continue
		}
		if ok {
			out = append(out, addr)
		}
		if a.i == start {
			a.i++ // a byte nothing could use: skip it
		}
	}
	if inGroup {
		out = append(out, Address{GroupEnd: true})
	}
	return out
}

// addrScanner walks an address list.
type addrScanner struct {
	s       string
	i       int
	comment string // the last comment skipped
}

// mailboxOrGroup reads one mailbox, or the "name:" opening a group (then
// group is true and Name holds the group name).
func (a *addrScanner) mailboxOrGroup() (addr Address, group, ok bool) {
	a.comment = ""
	var words []string
	glueAt := -1
	for a.i < len(a.s) {
		a.skipCFWS()
		if a.i >= len(a.s) {
			break
		}
		switch c := a.s[a.i]; c {
		case ':':
			a.i++
			return Address{Name: strings.Join(words, " ")}, true, true
		case '<':
			a.i++
			a.comment = ""
			addr = a.angleAddr()
			addr.Name = strings.Join(words, " ")
			if addr.Name == "" {
				addr.Name = a.trailingComment()
			}
			return addr, false, true
		case '@':
			a.i++
			local := strings.Join(words, "")
			a.comment = ""
			addr = Address{Mailbox: local, Host: a.domain()}
			addr.Name = a.trailingComment()
			fillMissing(&addr)
			return addr, false, true
		case ',', ';', '>':
			if c == '>' {
				a.i++
				continue
			}
			return a.bare(words)
		case '.':
			a.i++
			words = appendDot(words)
			glueAt = a.i
		case '"':
			if w := strings.TrimSpace(a.quoted()); w != "" {
				words = append(words, w)
			}
		default:
			at := a.i
			w := a.atom()
			if at == glueAt && len(words) > 0 {
				words[len(words)-1] += w // "a.b" stays one word
			} else {
				words = append(words, w)
			}
		}
	}
	return a.bare(words)
}

// bare is a mailbox written without '@': the words are its local part.
func (a *addrScanner) bare(words []string) (Address, bool, bool) {
	if len(words) == 0 {
		return Address{}, false, false
	}
	addr := Address{Mailbox: strings.Join(words, " "), Name: a.comment}
	fillMissing(&addr)
	return addr, false, true
}

// appendDot attaches a '.' to the previous word, as in "a.b" local parts
// and the obsolete dotted phrases of RFC 5322 §4.1.
func appendDot(words []string) []string {
	if len(words) == 0 {
		return append(words, ".")
	}
	words[len(words)-1] += "."
	return words
}

// trailingComment reads CFWS after an address and returns the last
// comment since the caller cleared it, if any ("a@b (Name)").
func (a *addrScanner) trailingComment() string {
	a.skipCFWS()
	return strings.TrimSpace(a.comment)
}

// angleAddr reads the inside of "<[@route:]local@domain>" after the '<'.
// Everything up to the '>' (or, when it is missing, up to the next ',')
// is the address, split at its last '@', so that junk inside the brackets
// ("<Undisclosed-Recipient:;@example.org>") is salvaged, not lost.
func (a *addrScanner) angleAddr() Address {
	var addr Address
	end := a.closingAngle()
	inner := a.s[a.i:end]
	a.i = end
	if a.i < len(a.s) && a.s[a.i] == '>' {
		a.i++
	}
	inner = strings.TrimSpace(stripComments(inner))
	if strings.HasPrefix(inner, "@") {
		if c := strings.IndexByte(inner, ':'); c >= 0 {
			addr.Adl = strings.Join(strings.Fields(inner[:c]), "")
			inner = strings.TrimSpace(inner[c+1:])
		}
	}
	local, host := inner, ""
	if at := lastAtOutsideQuotes(inner); at >= 0 {
		local, host = inner[:at], inner[at+1:]
	}
	addr.Mailbox = unquoteLocal(strings.TrimSpace(local))
	addr.Host = strings.Join(strings.Fields(host), "")
	fillMissing(&addr)
	return addr
}

// closingAngle finds the '>' closing an angle address that starts at a.i,
// skipping quoted strings; without one, the next ',' or the end.
func (a *addrScanner) closingAngle() int {
	quoted := false
	for i := a.i; i < len(a.s); i++ {
		switch c := a.s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '>' && !quoted:
			return i
		}
	}
	if j := strings.IndexByte(a.s[a.i:], ','); j >= 0 {
		return a.i + j
	}
	return len(a.s)
}

func lastAtOutsideQuotes(s string) int {
	at, quoted := -1, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case '@':
			if !quoted {
				at = i
			}
		}
	}
	return at
}

// unquoteLocal removes the quotes of a quoted local part and the white
// space around dots of an obsolete one (RFC 5322 §4.4).
func unquoteLocal(s string) string {
	if !strings.Contains(s, `"`) {
		return strings.Join(strings.Fields(s), "")
	}
	var b strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == '"':
			quoted = !quoted
		case (c == ' ' || c == '\t') && !quoted:
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// domain reads a domain (dot-atoms or a domain literal) after '@'.
func (a *addrScanner) domain() string {
	var b strings.Builder
	for a.i < len(a.s) {
		a.skipCFWS()
		if a.i >= len(a.s) {
			break
		}
		c := a.s[a.i]
		switch {
		case c == '[':
			end := strings.IndexByte(a.s[a.i:], ']')
			if end < 0 {
				end = len(a.s) - a.i - 1
			}
			b.WriteString(a.s[a.i : a.i+end+1])
			a.i += end + 1
		case c == '.':
			b.WriteByte('.')
			a.i++
		case isAtext(c):
			if b.Len() > 0 && !strings.HasSuffix(b.String(), ".") {
				return b.String() // "a@b c@d": the next address starts
			}
			b.WriteString(a.atom())
		default:
			return b.String()
		}
	}
	return b.String()
}

// atom reads a run of atext (RFC 5322 §3.2.3), leniently including 8-bit
// bytes; a lone special is returned as its own word.
func (a *addrScanner) atom() string {
	start := a.i
	for a.i < len(a.s) && isAtext(a.s[a.i]) {
		a.i++
	}
	if a.i == start {
		a.i++
	}
	return a.s[start:a.i]
}

// quoted reads a quoted string and returns its content, unescaped.
func (a *addrScanner) quoted() string {
	a.i++ // opening quote
	var b strings.Builder
	for a.i < len(a.s) {
		c := a.s[a.i]
		a.i++
		switch c {
		case '"':
			return b.String()
		case '\\':
			if a.i < len(a.s) {
				b.WriteByte(a.s[a.i])
				a.i++
			}
		case '\r', '\n':
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// skipCFWS skips white space and comments, remembering the last comment.
func (a *addrScanner) skipCFWS() {
	for a.i < len(a.s) {
		switch a.s[a.i] {
		case ' ', '\t', '\r', '\n':
			a.i++
		case '(':
			a.comment = a.readComment()
		default:
			return
		}
	}
}

// readComment reads a (possibly nested) comment and returns its text.
func (a *addrScanner) readComment() string {
	depth := 0
	var b strings.Builder
	for a.i < len(a.s) {
		c := a.s[a.i]
		a.i++
		switch c {
		case '(':
			if depth > 0 {
				b.WriteByte(c)
			}
			depth++
		case ')':
			depth--
			if depth == 0 {
				return b.String()
			}
			b.WriteByte(c)
		case '\\':
			if a.i < len(a.s) {
				b.WriteByte(a.s[a.i])
				a.i++
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isAtext(c byte) bool {
	switch c {
	case '(', ')', '<', '>', '[', ']', ':', ';', '@', '\\', ',', '.', '"', ' ', '\t', '\r', '\n':
		return false
	}
	return c > ' ' && c != 127
}

func fillMissing(a *Address) {
	if a.Mailbox == "" {
		a.Mailbox = missingMailbox
	}
	if a.Host == "" {
		a.Host = missingDomain
	}
}

package store

import (
	"unicode/utf16"
	"unicode/utf8"

	"github.com/tern-mail/tern/internal/message"
)

// decodeEnvelope reads the envelope of a stored structure (JSON written by
// encoding/json from message.Parsed, whose first member is "env") and
// stops there: a FETCH ENVELOPE or an envelope search never scans the
// body structure. ok is false for anything outside that shape (unknown
// members, surrogate escapes, invalid UTF-8...); the caller then decodes
// with encoding/json, which remains the reference.
func decodeEnvelope(raw []byte) (e message.Envelope, ok bool) {
	r := jreader{b: raw}
	if !r.next('{') || r.key() != "env" || !r.next('{') {
		return e, false
	}
	if r.next('}') {
		return e, true
	}
	for {
		k := r.key()
		var good bool
		switch k {
		case "date":
			e.Date, good = r.str()
		case "subject":
			e.Subject, good = r.str()
		case "inReplyTo":
			e.InReplyTo, good = r.str()
		case "messageId":
			e.MessageID, good = r.str()
		case "from":
			e.From, good = r.addrs()
		case "sender":
			e.Sender, good = r.addrs()
		case "replyTo":
			e.ReplyTo, good = r.addrs()
		case "to":
			e.To, good = r.addrs()
		case "cc":
			e.Cc, good = r.addrs()
		case "bcc":
			e.Bcc, good = r.addrs()
		}
		if !good {
			return message.Envelope{}, false
		}
		if r.next('}') {
			return e, true
		}
		if !r.next(',') {
			return message.Envelope{}, false
		}
	}
}

// jreader is a cursor over JSON bytes for decodeEnvelope.
type jreader struct {
	b []byte
	i int
}

func (r *jreader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// next consumes c (after white space) if it comes next.
func (r *jreader) next(c byte) bool {
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// key reads `"name":`; "" when malformed.
func (r *jreader) key() string {
	k, ok := r.str()
	if !ok || !r.next(':') {
		return ""
	}
	return k
}

// str reads a JSON string.
func (r *jreader) str() (string, bool) {
	if !r.next('"') {
		return "", false
	}
	start := r.i
	ascii := true
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			s := r.b[start:r.i]
			r.i++
			if !ascii && !utf8.Valid(s) {
				return "", false
			}
			return string(s), true
		case c == '\\':
			return r.escaped(start)
		case c < 0x20:
			return "", false
		case c >= 0x80:
			ascii = false
		}
		r.i++
	}
	return "", false
}

// escaped finishes a string with escapes that started at start.
func (r *jreader) escaped(start int) (string, bool) {
	buf := append([]byte(nil), r.b[start:r.i]...)
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			r.i++
			if !utf8.Valid(buf) {
				return "", false
			}
			return string(buf), true
		case c < 0x20:
			return "", false
		case c != '\\':
			buf = append(buf, c)
			r.i++
			continue
		}
		if r.i+1 >= len(r.b) {
			return "", false
		}
		e := r.b[r.i+1]
		r.i += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			v, ok := r.hex4()
			if !ok || utf16.IsSurrogate(v) {
				return "", false
			}
			buf = utf8.AppendRune(buf, v)
		default:
			return "", false
		}
	}
	return "", false
}

func (r *jreader) hex4() (rune, bool) {
	if r.i+4 > len(r.b) {
		return 0, false
	}
	var v rune
	for _, c := range r.b[r.i : r.i+4] {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			v = v<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	r.i += 4
	return v, true
}

// addrs reads an array of address objects.
func (r *jreader) addrs() ([]message.Address, bool) {
	if !r.next('[') {
		return nil, false
	}
	var out []message.Address
	if r.next(']') {
		return []message.Address{}, true
	}
	for {
		a, ok := r.addr()
		if !ok {
			return nil, false
		}
		out = append(out, a)
		if r.next(']') {
			return out, true
		}
		if !r.next(',') {
			return nil, false
		}
	}
}

func (r *jreader) addr() (a message.Address, ok bool) {
	if !r.next('{') {
		return a, false
	}
	if r.next('}') {
		return a, true
	}
	for {
		var good bool
		switch r.key() {
		case "name":
			a.Name, good = r.str()
		case "adl":
			a.Adl, good = r.str()
		case "mailbox":
			a.Mailbox, good = r.str()
		case "host":
			a.Host, good = r.str()
		case "gs":
			a.GroupStart, good = r.boolean()
		case "ge":
			a.GroupEnd, good = r.boolean()
		}
		if !good {
			return a, false
		}
		if r.next('}') {
			return a, true
		}
		if !r.next(',') {
			return a, false
		}
	}
}

func (r *jreader) boolean() (bool, bool) {
	r.ws()
	switch {
	case len(r.b)-r.i >= 4 && string(r.b[r.i:r.i+4]) == "true":
		r.i += 4
		return true, true
	case len(r.b)-r.i >= 5 && string(r.b[r.i:r.i+5]) == "false":
		r.i += 5
		return false, true
	}
	return false, false
}

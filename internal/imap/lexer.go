// Package imap is the IMAP4rev1/IMAP4rev2 grammar (RFC 3501, RFC 9051 and
// the extensions tern supports): it frames commands off a reader, parses a
// framed command into typed arguments, formats responses, and converts
// mailbox names to and from modified UTF-7. It is pure: it does no I/O
// beyond the readers and writers it is handed, keeps no state between
// calls, and never panics on hostile input (see the Fuzz targets).
package imap

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ParseError is a syntax error; the server answers it with BAD.
type ParseError struct {
	Msg string
}

func (e *ParseError) Error() string { return e.Msg }

func errorf(format string, a ...any) error {
	return &ParseError{Msg: fmt.Sprintf(format, a...)}
}

// IsParseError reports whether err is a syntax error.
func IsParseError(err error) bool {
	var pe *ParseError
	return errors.As(err, &pe)
}

// maxDepth bounds list and search-key nesting so hostile input costs bounded
// stack.
const maxDepth = 32

// lexer walks one framed command (the line bytes with literals inlined as
// they arrived: "{3}\r\nabc").
type lexer struct {
	b     []byte
	p     int
	depth int
	// utf8 allows 8-bit bytes in quoted strings (RFC 9051 / UTF8=ACCEPT).
	utf8 bool
}

func (l *lexer) eof() bool { return l.p >= len(l.b) }

func (l *lexer) peek() byte {
	if l.p < len(l.b) {
		return l.b[l.p]
	}
	return 0
}

func (l *lexer) take(c byte) bool {
	if l.p < len(l.b) && l.b[l.p] == c {
		l.p++
		return true
	}
	return false
}

func (l *lexer) expect(c byte) error {
	if !l.take(c) {
		if l.eof() {
			return errorf("expected %q, got end of line", c)
		}
		return errorf("expected %q at offset %d", c, l.p)
	}
	return nil
}

func (l *lexer) sp() error { return l.expect(' ') }

// end checks that the command has been consumed entirely.
func (l *lexer) end() error {
	if !l.eof() {
		return errorf("unexpected text at offset %d: %q", l.p, clip(l.b[l.p:]))
	}
	return nil
}

func clip(b []byte) string {
	if len(b) > 20 {
		b = b[:20]
	}
	return string(b)
}

// isAtomChar implements RFC 9051 ATOM-CHAR: any CHAR except atom-specials.
func isAtomChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

// isAStringChar is ATOM-CHAR or resp-specials ("]").
func isAStringChar(c byte) bool { return isAtomChar(c) || c == ']' }

// atom reads 1*ATOM-CHAR.
func (l *lexer) atom() (string, error) {
	s := l.p
	for l.p < len(l.b) && isAtomChar(l.b[l.p]) {
		l.p++
	}
	if s == l.p {
		return "", errorf("expected atom at offset %d", s)
	}
	return string(l.b[s:l.p]), nil
}

// word reads characters allowed by ok (at least one).
func (l *lexer) word(ok func(byte) bool, what string) (string, error) {
	s := l.p
	for l.p < len(l.b) && ok(l.b[l.p]) {
		l.p++
	}
	if s == l.p {
		return "", errorf("expected %s at offset %d", what, s)
	}
	return string(l.b[s:l.p]), nil
}

// number reads an RFC 9051 number (32-bit unsigned).
func (l *lexer) number() (uint32, error) {
	n, err := l.number64()
	if err != nil {
		return 0, err
	}
	if n > 0xffffffff {
		return 0, errorf("number too large")
	}
	return uint32(n), nil
}

// number64 reads an RFC 9051 number64 (63-bit).
func (l *lexer) number64() (uint64, error) {
	s := l.p
	for l.p < len(l.b) && l.b[l.p] >= '0' && l.b[l.p] <= '9' {
		l.p++
	}
	if s == l.p {
		return 0, errorf("expected number at offset %d", s)
	}
	n, err := strconv.ParseUint(string(l.b[s:l.p]), 10, 63)
	if err != nil {
		return 0, errorf("bad number %q", clip(l.b[s:l.p]))
	}
	return n, nil
}

// quoted reads a quoted string (the opening quote not yet consumed).
func (l *lexer) quoted() (string, error) {
	if err := l.expect('"'); err != nil {
		return "", err
	}
	var sb strings.Builder
	for {
		if l.eof() {
			return "", errorf("unterminated quoted string")
		}
		c := l.b[l.p]
		l.p++
		switch {
		case c == '"':
			return sb.String(), nil
		case c == '\\':
			if l.eof() {
				return "", errorf("unterminated quoted string")
			}
			c = l.b[l.p]
			l.p++
			if c != '"' && c != '\\' {
				return "", errorf("bad escape in quoted string")
			}
			sb.WriteByte(c)
		case c == '\r' || c == '\n' || c == 0:
			return "", errorf("bad character in quoted string")
		case c >= 0x80 && !l.utf8:
			// RFC 3501 quoted strings are 7-bit; accept UTF-8 anyway
			// (clients send it in SEARCH with CHARSET UTF-8).
			sb.WriteByte(c)
		default:
			sb.WriteByte(c)
		}
	}
}

// literal reads {N}CRLF or {N+}CRLF (and ~{N} when binary is allowed)
// followed by the N bytes that the framer inlined.
func (l *lexer) literal(binaryOK bool) ([]byte, bool, error) {
	bin := false
	if l.take('~') {
		if !binaryOK {
			return nil, false, errorf("literal8 not allowed here")
		}
		bin = true
	}
	if err := l.expect('{'); err != nil {
		return nil, false, err
	}
	n, err := l.number64()
	if err != nil {
		return nil, false, err
	}
	l.take('+') // RFC 7888 non-synchronizing literal
	if err := l.expect('}'); err != nil {
		return nil, false, err
	}
	if !l.take('\r') || !l.take('\n') {
		return nil, false, errorf("literal size not followed by CRLF")
	}
	if n > uint64(len(l.b)-l.p) {
		return nil, false, errorf("literal shorter than announced")
	}
	data := l.b[l.p : l.p+int(n)]
	l.p += int(n)
	if !bin {
		for _, c := range data {
			if c == 0 {
				return nil, false, errorf("NUL in literal (use literal8)")
			}
		}
	}
	return data, bin, nil
}

// string reads a quoted string or a literal.
func (l *lexer) string() (string, error) {
	switch l.peek() {
	case '"':
		return l.quoted()
	case '{':
		b, _, err := l.literal(false)
		return string(b), err
	}
	return "", errorf("expected string at offset %d", l.p)
}

// astring reads 1*ASTRING-CHAR or a string.
func (l *lexer) astring() (string, error) {
	switch l.peek() {
	case '"', '{':
		return l.string()
	}
	return l.word(isAStringChar, "astring")
}

// nstring reads NIL or a string.
func (l *lexer) nstring() (string, bool, error) {
	switch l.peek() {
	case '"', '{':
		s, err := l.string()
		return s, true, err
	}
	a, err := l.atom()
	if err != nil {
		return "", false, err
	}
	if !strings.EqualFold(a, "NIL") {
		return "", false, errorf("expected NIL or string")
	}
	return "", false, nil
}

// isListChar: list-mailbox = 1*list-char / string; list-char adds % * ].
func isListChar(c byte) bool { return isAtomChar(c) || c == '%' || c == '*' || c == ']' }

// listMailbox reads a LIST pattern.
func (l *lexer) listMailbox() (string, error) {
	switch l.peek() {
	case '"', '{':
		return l.string()
	}
	return l.word(isListChar, "list-mailbox")
}

// flag reads a flag: "\" atom, or atom (keyword). "\*" is allowed when
// star is true (PERMANENTFLAGS-like contexts).
func (l *lexer) flag() (string, error) {
	if l.take('\\') {
		if l.take('*') {
			return `\*`, nil
		}
		a, err := l.atom()
		if err != nil {
			return "", err
		}
		return `\` + a, nil
	}
	return l.atom()
}

// flagList reads "(" [flag *(SP flag)] ")".
func (l *lexer) flagList() ([]string, error) {
	if err := l.expect('('); err != nil {
		return nil, err
	}
	var flags []string
	for !l.take(')') {
		if len(flags) > 0 {
			if err := l.sp(); err != nil {
				return nil, err
			}
		}
		f, err := l.flag()
		if err != nil {
			return nil, err
		}
		flags = append(flags, f)
		if len(flags) > 1000 {
			return nil, errorf("too many flags")
		}
	}
	return flags, nil
}

// atomList reads "(" [atom *(SP atom)] ")" (used for option lists).
func (l *lexer) atomList() ([]string, error) {
	if err := l.expect('('); err != nil {
		return nil, err
	}
	var out []string
	for !l.take(')') {
		if len(out) > 0 {
			if err := l.sp(); err != nil {
				return nil, err
			}
		}
		a, err := l.flag()
		if err != nil {
			return nil, err
		}
		out = append(out, a)
		if len(out) > 1000 {
			return nil, errorf("list too long")
		}
	}
	return out, nil
}

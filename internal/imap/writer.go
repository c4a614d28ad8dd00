package imap

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// Writer formats server responses onto a buffered writer. Errors are
// sticky in the bufio.Writer and reported by Flush.
type Writer struct {
	W *bufio.Writer
	// UTF8: the client enabled IMAP4rev2 or UTF8=ACCEPT, so quoted strings
	// may carry UTF-8 and mailbox names are not modified-UTF-7 encoded.
	UTF8 bool
}

// NewWriter returns a Writer on w.
func NewWriter(w *bufio.Writer) *Writer { return &Writer{W: w} }

// Raw writes s as is (protocol text the caller has checked).
func (w *Writer) Raw(s string) *Writer { w.W.WriteString(s); return w }

// SP writes a space.
func (w *Writer) SP() *Writer { w.W.WriteByte(' '); return w }

// Byte writes one byte.
func (w *Writer) Byte(c byte) *Writer { w.W.WriteByte(c); return w }

// CRLF ends a response line.
func (w *Writer) CRLF() *Writer { w.W.WriteString("\r\n"); return w }

// Number writes a decimal number.
func (w *Writer) Number(n uint64) *Writer {
	// Formatting into the buffer's free space allocates nothing.
	w.W.Write(strconv.AppendUint(w.W.AvailableBuffer(), n, 10))
	return w
}

// Flush flushes the buffer.
func (w *Writer) Flush() error { return w.W.Flush() }

// quotable reports whether s can be sent as a quoted string.
func quotable(s string, utf8 bool) bool {
	if len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' || c == 0 || (c >= 0x80 && !utf8) {
			return false
		}
	}
	return true
}

// Quote returns s as a quoted string (the caller knows s is quotable).
func Quote(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			sb.WriteByte('\\')
		}
		sb.WriteByte(s[i])
	}
	sb.WriteByte('"')
	return sb.String()
}

// String writes s as a quoted string when it can, else as a literal.
func (w *Writer) String(s string) *Writer {
	if !quotable(s, w.UTF8) {
		return w.Literal([]byte(s))
	}
	w.W.WriteByte('"')
	for len(s) > 0 {
		i := strings.IndexAny(s, "\"\\")
		if i < 0 {
			w.W.WriteString(s)
			break
		}
		w.W.WriteString(s[:i])
		w.W.WriteByte('\\')
		w.W.WriteByte(s[i])
		s = s[i+1:]
	}
	w.W.WriteByte('"')
	return w
}

// NString writes NIL for the empty string, else String(s).
func (w *Writer) NString(s string) *Writer {
	if s == "" {
		return w.Raw("NIL")
	}
	return w.String(s)
}

// AString writes s as an atom when it is one, else as a string.
func (w *Writer) AString(s string) *Writer {
	if s == "" || strings.EqualFold(s, "NIL") {
		return w.String(s)
	}
	for i := 0; i < len(s); i++ {
		if !isAStringChar(s[i]) {
			return w.String(s)
		}
	}
	return w.Raw(s)
}

// Mailbox writes a mailbox name, in modified UTF-7 for rev1 clients.
func (w *Writer) Mailbox(name string) *Writer {
	if !w.UTF8 {
		name = EncodeMUTF7(name)
	}
	return w.String(name)
}

// Literal writes a literal.
func (w *Writer) Literal(b []byte) *Writer {
	w.W.WriteByte('{')
	w.Number(uint64(len(b)))
	w.W.WriteString("}\r\n")
	w.W.Write(b)
	return w
}

// LiteralFrom writes a literal of n bytes copied from r; binary selects
// the literal8 form (RFC 3516 "~{n}").
func (w *Writer) LiteralFrom(r io.Reader, n int64, binary bool) error {
	if binary {
		w.W.WriteByte('~')
	}
	w.W.WriteByte('{')
	w.Number(uint64(n))
	w.W.WriteString("}\r\n")
	got, err := io.CopyN(w.W, r, n)
	if err == io.EOF && got < n {
		// The stored bytes are shorter than announced: pad so the
		// stream stays in sync.
		for ; got < n; got++ {
			w.W.WriteByte(' ')
		}
		err = nil
	}
	return err
}

// Flags writes a parenthesised flag list.
func (w *Writer) Flags(flags []string) *Writer {
	w.W.WriteByte('(')
	for i, f := range flags {
		if i > 0 {
			w.W.WriteByte(' ')
		}
		w.W.WriteString(f)
	}
	w.W.WriteByte(')')
	return w
}

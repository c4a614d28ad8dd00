// Package mbox reads and writes mbox files (RFC 4155) in constant memory.
//
// The Reader splits an mbox file into messages at "From " lines and yields
// each message as an io.Reader, so that a message of any size is never held
// whole in memory. It handles the mboxrd quoting (a line of one or more '>'
// followed by "From " loses one '>'), the mboxo variant (no unquoting), LF and
// CRLF files, a missing final newline, and a file that does not start with a
// "From " line (the bytes before the first one are a message of their own, so
// a single RFC 5322 message file reads as a one-message mbox).
//
// Content-Length based variants (mboxcl, mboxcl2) are read as mboxo: an
// unquoted "From " line inside a message starts a new one.
//
// The Writer produces mboxrd: a From_ line carrying the envelope sender and
// the date, the message with every line matching ^>*From  quoted by one more
// '>', and one line feed after each message. The Reader removes exactly that
// line feed again, so reading what the Writer wrote gives back every message
// byte for byte, whether or not it ended with a newline.
//
// # Flags
//
// Classic mbox keeps flags in Status: (R read, O old) and X-Status: (A
// answered, F flagged, T draft, D deleted) header fields, and Dovecot keeps
// keywords in X-Keywords:. Mutt and Dovecot read these, so an export that
// left them out would lose what users see. Writing them into the message
// would, however, change its bytes. FlagBlock resolves this: tern writes, in
// front of the original header, a marker field "X-Tern-Flags:" listing the
// IMAP flags, followed by the Status:, X-Status: and X-Keywords: fields
// derived from them. ReadFlags recognises a block that starts with the marker
// and whose following fields are exactly the derived ones, returns the flags
// and removes the block, so that the stored message is the original again.
// For an mbox written by another program (no marker) HeaderFlags derives the
// flags from the Status:, X-Status: and X-Keywords: fields, which are left in
// the message untouched.
//
// The package does no I/O beyond the readers and writers it is given.
package mbox

import (
	"bufio"
	"bytes"
	"io"
	"time"
)

// Format selects how quoted "From " lines are read.
type Format int

const (
	// MboxRD removes one '>' from every line matching ^>+From  (mboxrd).
	MboxRD Format = iota
	// MboxO leaves quoted lines alone: mboxo quoting cannot be undone
	// exactly, so the quoted text is kept as the writer left it.
	MboxO
)

// MaxFromLine caps the length of a From_ line that is kept; longer ones
// are read and truncated.
const MaxFromLine = 4096

// Message is one message of an mbox file. Body is valid until the next
// call to Reader.Next.
type Message struct {
	// FromLine is the From_ line without "From " and its line ending; it
	// is empty for the bytes before the first From_ line.
	FromLine string
	// Sender is the envelope sender from the From_ line ("" if absent).
	Sender string
	// Date is the delivery date from the From_ line; zero if unparsable.
	Date time.Time
	// Body reads the message bytes, unquoted.
	Body io.Reader
}

// Reader splits an mbox stream into messages.
type Reader struct {
	src    *countingReader
	br     *bufio.Reader
	format Format
	body   *body
	// next is the From_ line (without "From ") that opens the next message.
	next    []byte
	nextEOL int
	started bool
	err     error
}

// NewReader returns a Reader of the mbox stream r.
func NewReader(r io.Reader, format Format) *Reader {
	c := &countingReader{r: r}
	return &Reader{src: c, br: bufio.NewReaderSize(c, 64<<10), format: format}
}

// Offset is the number of input bytes consumed so far (for progress).
func (r *Reader) Offset() int64 { return r.src.n - int64(r.br.Buffered()) }

// Next returns the next message, or io.EOF after the last one. Unread
// bytes of the previous message are skipped.
func (r *Reader) Next() (*Message, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.body != nil {
		if _, err := io.Copy(io.Discard, r.body); err != nil {
			r.err = err
			return nil, err
		}
		r.body = nil
	}
	if !r.started {
		r.started = true
		if err := r.start(); err != nil {
			r.err = err
			return nil, err
		}
		if r.next == nil {
			// The stream does not begin with a From_ line: what comes
			// before the first one is a message without envelope.
			r.body = &body{r: r, atLineStart: true, preamble: true}
			return &Message{Body: r.body}, nil
		}
	}
	if r.next == nil {
		r.err = io.EOF
		return nil, io.EOF
	}
	line := string(r.next)
	crlf := r.nextEOL == 2
	r.next = nil
	m := &Message{FromLine: line}
	m.Sender, m.Date = ParseFromLine(line)
	r.body = &body{r: r, atLineStart: true, crlf: crlf}
	m.Body = r.body
	return m, nil
}

// start skips blank lines at the head of the stream and reads the first
// From_ line if there is one. An empty stream has no messages: io.EOF.
func (r *Reader) start() error {
	for {
		b, err := r.br.Peek(1)
		if err != nil {
			return err
		}
		if b[0] != '\n' && b[0] != '\r' {
			break
		}
		r.br.Discard(1)
	}
	isFrom, err := r.peekFrom()
	if err != nil && err != io.EOF {
		return err
	}
	if isFrom {
		return r.readFromLine()
	}
	return nil
}

// peekFrom reports whether the input at the current position (a line
// start) begins with "From ".
func (r *Reader) peekFrom() (bool, error) {
	b, err := r.br.Peek(5)
	if len(b) < 5 {
		return false, err
	}
	return string(b) == "From ", nil
}

// readFromLine consumes a From_ line and keeps it (truncated to
// MaxFromLine) in r.next.
func (r *Reader) readFromLine() error {
	r.br.Discard(5)
	line := make([]byte, 0, 80)
	var last2 [2]byte // the final bytes of the whole line, kept or not
	for {
		chunk, err := r.br.ReadSlice('\n')
		if room := MaxFromLine - len(line); room > 0 {
			line = append(line, chunk[:min(room, len(chunk))]...)
		}
		for _, c := range chunk[max(0, len(chunk)-2):] {
			last2[0], last2[1] = last2[1], c
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil && err != io.EOF {
			return err
		}
		break
	}
	r.nextEOL = 0
	if last2[1] == '\n' {
		r.nextEOL = 1
		if last2[0] == '\r' {
			r.nextEOL = 2
		}
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	if r.nextEOL == 2 {
		line = bytes.TrimSuffix(line, []byte("\r"))
	}
	r.next = line
	return nil
}

// body reads one message. Each line ending is held back until the next
// line shows that the message goes on: the line ending before a From_
// line (or the end of the stream) is the separator, not message bytes.
type body struct {
	r           *Reader
	atLineStart bool
	crlf        bool // the From_ line ended in CRLF: so does the separator
	preamble    bool
	pending     []byte // held-back line ending, or what is left of it
	pendBuf     [2]byte
	gts         int64 // '>' characters read at line start, not yet emitted
	last        bool  // the message ends once pending is emitted
	done        bool
	err         error
}

func (b *body) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && !b.done {
		switch {
		case b.atLineStart:
			if err := b.lineStart(); err != nil {
				b.err, b.done = err, true
			}
		case len(b.pending) > 0:
			c := copy(p[n:], b.pending)
			b.pending = b.pending[c:]
			n += c
		case b.gts > 0:
			for b.gts > 0 && n < len(p) {
				p[n] = '>'
				n++
				b.gts--
			}
		case b.last:
			b.done = true
		default:
			c, err := b.copyLine(p[n:])
			n += c
			if err != nil {
				b.err, b.done = err, true
			}
		}
	}
	if n > 0 || len(p) == 0 {
		return n, nil
	}
	if b.err != nil {
		return 0, b.err
	}
	return 0, io.EOF
}

// lineStart decides what the line at the current position is: a From_
// line ends the message, a quoted one loses a '>' (mboxrd), and any other
// line releases the held-back line ending.
func (b *body) lineStart() error {
	r := b.r
	b.atLineStart = false
	isFrom, err := r.peekFrom()
	if err != nil && err != io.EOF {
		return err
	}
	if isFrom {
		b.separator()
		return r.readFromLine()
	}
	if _, err := r.br.Peek(1); err == io.EOF {
		if !b.preamble {
			b.separator()
		}
		// A file without any From_ line is one plain message: its
		// final line ending is its own.
		b.last = true
		return nil
	} else if err != nil {
		return err
	}
	if r.format != MboxRD {
		return nil
	}
	// Count the run of '>' without holding it: it may be longer than
	// the buffer.
	var gts int64
	for {
		c, err := r.br.Peek(1)
		if err != nil || c[0] != '>' {
			break
		}
		r.br.Discard(1)
		gts++
	}
	if gts > 0 {
		isFrom, err := r.peekFrom()
		if err != nil && err != io.EOF {
			return err
		}
		if isFrom {
			gts-- // RFC 4155 mboxrd: one level of quoting is removed
		}
	}
	b.gts = gts
	return nil
}

// separator ends the message: the held-back line ending is dropped, except
// for the CR of a CRLF ending when the separator is a lone LF.
func (b *body) separator() {
	if !b.crlf && len(b.pending) == 2 {
		b.pending = b.pending[:1]
	} else {
		b.pending = nil
	}
	b.last = true
}

// copyLine copies bytes of the current line into p, stopping at its line
// ending, which it consumes and holds back.
func (b *body) copyLine(p []byte) (int, error) {
	br := b.r.br
	if br.Buffered() < 2 {
		if _, err := br.Peek(2); err != nil && err != io.EOF {
			return 0, err
		}
	}
	buf, _ := br.Peek(br.Buffered())
	if len(buf) == 0 {
		b.last = true
		return 0, nil
	}
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		k := min(len(p), len(buf))
		if k == len(buf) && k > 1 && buf[k-1] == '\r' {
			k-- // the CR may begin a CRLF line ending
		}
		copy(p, buf[:k])
		br.Discard(k)
		return k, nil
	}
	content, eol := i, 1
	if i > 0 && buf[i-1] == '\r' {
		content, eol = i-1, 2
	}
	if content > len(p) {
		copy(p, buf[:len(p)])
		br.Discard(len(p))
		return len(p), nil
	}
	copy(p, buf[:content])
	br.Discard(content + eol)
	b.pendBuf = [2]byte{'\r', '\n'}
	b.pending = b.pendBuf[2-eol:]
	b.atLineStart = true
	return content, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ForEach calls fn for every message of the mbox stream r, in order. A
// message body not read to its end by fn is skipped. An error from fn
// stops the iteration and is returned.
func ForEach(r io.Reader, format Format, fn func(*Message) error) error {
	mr := NewReader(r, format)
	for {
		m, err := mr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
	}
}

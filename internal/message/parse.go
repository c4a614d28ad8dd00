package message

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// Limits that bound the memory and work of one Parse, whatever the input.
const (
	// maxHeaderBytes caps the bytes of one header block that are kept and
	// parsed; the rest is scanned and counted in Part.HeaderOverflow.
	maxHeaderBytes = 64 << 10
	// maxDepth caps the nesting of open parts; a multipart or message
	// deeper than this is an opaque application/octet-stream leaf.
	maxDepth = 50
	// maxParts caps the parts of one message; after it, the remaining
	// bytes of the enclosing multipart are epilogue.
	maxParts = 10000
	// readBufSize is the longest line examined as a whole for boundaries
	// (RFC 2046 §5.1.1 caps them at 70 characters) and blank lines;
	// longer lines are consumed in pieces.
	readBufSize = 2 << 10
)

// state is where a frame is in its part.
type state uint8

const (
	stHeader    state = iota // reading the header block
	stLeaf                   // in the body of a leaf part
	stMultipart              // in a multipart body: preamble, or a child is open above
	stEpilogue               // after the close delimiter of a multipart
	stMessage                // in a message/rfc822 body: the embedded message is open above
)

// frame is one open part on the parser's stack.
type frame struct {
	part     *Part
	st       state
	boundary []byte // "--" + boundary of an open multipart, nil when none
	digest   bool   // multipart/digest: children default to message/rfc822
	env      *Envelope
	lfBody   int64 // parser.lf at BodyStart
	bareBody int64 // parser.bare at BodyStart
	bareHdr  int64 // parser.bare at HeaderStart
	preview  previewKind
}

// parser is the state of one Parse: a single pass over the input, line by
// line, with a stack of open parts. Offsets and line counts come from
// running counters, so no part's body is ever held in memory.
type parser struct {
	br          *bufio.Reader
	off         int64 // offset of the next byte to read
	lf, bare    int64 // LF bytes, and LF bytes not preceded by CR, in [0, off)
	lastEOL     int64 // length of the terminator of the previous line: 1 (LF) or 2 (CRLF)
	atLineStart bool
	// inBoundary is set while the rest of a boundary line longer than
	// the buffer is skipped; opened says whether it opened a child.
	inBoundary, opened bool
	prevByte           byte

	stack      []*frame
	nparts     int
	addrBudget int // addresses still allowed in envelopes

	hdr     []byte // kept fields of the header block being read
	hdrKeep bool   // the field being read is one the parser uses
	hdrFull bool   // the cap was reached: later header lines are only counted
	hdrOver int64

	pv  previewState
	out *Parsed
}

// Parse reads a whole message and returns its envelope, body structure,
// preview and attachment flag. It is lenient: whatever the bytes, it
// returns a valid structure, and its only errors are those of r. Memory
// use is bounded by the caps above, not by the size of the message.
func Parse(r io.Reader) (*Parsed, error) {
	p := &parser{
		br:          bufio.NewReaderSize(r, readBufSize),
		atLineStart: true,
		addrBudget:  maxAddresses,
		out:         &Parsed{},
	}
	root := p.newPart(0)
	p.out.Structure = root
	p.push(&frame{part: root, st: stHeader, env: &p.out.Envelope})
	for {
		line, err := p.br.ReadSlice('\n')
		if len(line) > 0 {
			p.line(line)
		}
		if err == nil || err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		return nil, err
	}
	p.closeAbove(-1, p.off)
	p.out.Preview = p.pv.result()
	return p.out, nil
}

func (p *parser) newPart(headerStart int64) *Part {
	p.nparts++
	return &Part{Type: "text", Subtype: "plain", Encoding: "7bit", HeaderStart: headerStart}
}

func (p *parser) push(f *frame) {
	f.bareHdr = p.bare
	p.stack = append(p.stack, f)
}

// line handles one line, or one piece of a line longer than the buffer.
func (p *parser) line(b []byte) {
	start := p.off
	if p.inBoundary {
		p.advance(b)
		p.afterBoundary()
		return
	}
	if p.atLineStart && len(b) >= 2 && b[0] == '-' && b[1] == '-' {
		if k, closing := p.matchBoundary(b); k >= 0 {
			p.opened = p.boundaryLine(k, closing, start, int64(len(b)))
			p.advance(b)
			p.inBoundary = true
			p.afterBoundary()
			return
		}
	}
	top := p.stack[len(p.stack)-1]
	switch top.st {
	case stHeader:
		if p.atLineStart && isBlankLine(b) {
			p.advance(b)
			p.endHeader(top)
			return
		}
		p.appendHeader(b)
	case stLeaf:
		if top.preview != pvNone {
			p.pv.capture(top.preview, b)
		}
	}
	p.advance(b)
}

// afterBoundary ends the boundary line once its line break is read: the
// child opened by it starts after the line.
func (p *parser) afterBoundary() {
	if !p.atLineStart {
		return
	}
	p.inBoundary = false
	if p.opened {
		top := p.stack[len(p.stack)-1]
		top.part.HeaderStart = p.off
		top.bareHdr = p.bare
	}
}

// advance moves the counters over b.
func (p *parser) advance(b []byte) {
	n := len(b)
	if b[n-1] == '\n' {
		p.lf++
		prev := p.prevByte
		if n >= 2 {
			prev = b[n-2]
		}
		if prev == '\r' {
			p.lastEOL = 2
		} else {
			p.lastEOL = 1
			p.bare++
		}
		p.atLineStart = true
	} else {
		p.atLineStart = false
	}
	p.prevByte = b[n-1]
	p.off += int64(n)
}

func isBlankLine(b []byte) bool {
	return (len(b) == 1 && b[0] == '\n') || (len(b) == 2 && b[0] == '\r' && b[1] == '\n')
}

// matchBoundary finds the open multipart whose boundary line b is, the
// innermost first, and whether it is a close delimiter. RFC 2046 §5.1.1
// allows trailing white space after a boundary; a first pass wants exactly
// that, a second pass accepts any trailing junk after a known boundary, as
// lenient parsers do. It returns -1 when b is no boundary line.
func (p *parser) matchBoundary(b []byte) (int, bool) {
	t := bytes.TrimRight(b, " \t\r\n")
	for pass := 0; pass < 2; pass++ {
		for k := len(p.stack) - 1; k >= 0; k-- {
			f := p.stack[k]
			if f.st != stMultipart || f.boundary == nil || !bytes.HasPrefix(t, f.boundary) {
				continue
			}
			rest := t[len(f.boundary):]
			if pass == 1 {
				rest = bytes.TrimLeft(rest, " \t")
			}
			closing := len(rest) >= 2 && rest[0] == '-' && rest[1] == '-'
			if pass == 1 || len(rest) == 0 || (closing && len(rest) == 2) {
				return k, closing
			}
		}
	}
	return -1, false
}

// boundaryLine handles a boundary of the multipart at stack index k found
// at offset start: it closes the parts open inside it and opens the next
// child, unless it is the close delimiter; it reports whether it did.
func (p *parser) boundaryLine(k int, closing bool, start, n int64) bool {
	// RFC 2046 §5.1.1: the line break before the boundary belongs to it.
	p.closeAbove(k, start-p.lastEOL)
	f := p.stack[k]
	if closing || p.nparts >= maxParts {
		f.st = stEpilogue
		return false
	}
	child := p.newPart(start + n)
	if f.digest {
		// RFC 2046 §5.1.5: in a digest the default is message/rfc822.
		child.Type, child.Subtype = "message", "rfc822"
	}
	f.part.Parts = append(f.part.Parts, child)
	p.push(&frame{part: child, st: stHeader})
	p.resetHeader()
	return true
}

// closeAbove closes every frame above stack index k, the innermost first,
// at offset end (moved up when it would fall before a part's start).
func (p *parser) closeAbove(k int, end int64) {
	if len(p.stack)-1 <= k {
		return
	}
	top := p.stack[len(p.stack)-1]
	if lb := top.part.BodyStart; top.st != stHeader && lb > end {
		end = lb
	} else if top.st == stHeader && top.part.HeaderStart > end {
		end = top.part.HeaderStart
	}
	// The counters at end: end is either the current offset or just
	// before the terminator of the previous line.
	lf, bare := p.lf, p.bare
	if end < p.off {
		lf--
		if p.lastEOL == 1 {
			bare--
		}
	}
	for i := len(p.stack) - 1; i > k; i-- {
		p.finish(p.stack[i], end, lf, bare)
		p.stack[i] = nil
	}
	p.stack = p.stack[:k+1]
}

// finish completes the part of frame f, which ends at end.
func (p *parser) finish(f *frame, end, lf, bare int64) {
	part := f.part
	if f.st == stHeader {
		// The header block never ended: all of it is header.
		part.BodyStart = end
		part.HeaderBareLF = bare - f.bareHdr
		f.lfBody, f.bareBody = lf, bare
		p.applyHeader(f)
		p.resetHeader()
	}
	part.End = end
	part.BodyBareLF = bare - f.bareBody
	if part.Type == "text" || isMessageType(part) {
		part.Lines = lf - f.lfBody
	}
	switch {
	case part.Type == "multipart" && len(part.Parts) == 0:
		// A multipart needs a child (RFC 9051 §7.5.2); like Dovecot,
		// an empty text/plain one stands in when none was found.
		part.Parts = []*Part{emptyPart(end)}
	case isMessageType(part) && part.Message == nil:
		part.Envelope = &Envelope{}
		part.Message = emptyPart(part.BodyStart)
	}
	if f.preview != pvNone {
		p.pv.done(f.preview, part)
	}
	if isAttachment(part, part == p.out.Structure) {
		p.out.HasAttachment = true
	}
}

// emptyPart is a zero-length text/plain part at off.
func emptyPart(off int64) *Part {
	return &Part{
		Type: "text", Subtype: "plain", Encoding: "7bit",
		Params:      []Param{{Key: "charset", Value: "us-ascii"}},
		HeaderStart: off, BodyStart: off, End: off,
	}
}

func isMessageType(p *Part) bool {
	return p.Type == "message" && (p.Subtype == "rfc822" || p.Subtype == "global")
}

// appendHeader keeps a header line if it belongs to a field the parser
// uses (most of a header is Received and the like), up to the cap.
func (p *parser) appendHeader(b []byte) {
	if p.atLineStart && b[0] != ' ' && b[0] != '\t' {
		n := fieldNameLen(b)
		p.hdrKeep = n > 0 && fieldIndex(bytes.TrimRight(b[:n], " \t")) >= 0
	}
	if !p.hdrKeep {
		return
	}
	if p.hdrFull || len(p.hdr)+len(b) > maxHeaderBytes {
		p.hdrFull = true
		p.hdrOver += int64(len(b))
		return
	}
	p.hdr = append(p.hdr, b...)
}

func (p *parser) resetHeader() {
	p.hdr = p.hdr[:0]
	p.hdrKeep = false
	p.hdrFull = false
	p.hdrOver = 0
}

// endHeader is called after the blank line that ends f's header block: it
// applies the header and decides how the body is read.
func (p *parser) endHeader(f *frame) {
	part := f.part
	part.BodyStart = p.off
	part.HeaderBareLF = p.bare - f.bareHdr
	f.lfBody, f.bareBody = p.lf, p.bare
	boundary := p.applyHeader(f)
	p.resetHeader()
	switch {
	case part.Type == "multipart":
		f.st = stMultipart
		// Lines are matched with trailing white space removed, so the
		// boundary is too (RFC 2046 §5.1.1 forbids it there anyway).
		if boundary = strings.TrimRight(boundary, " \t"); boundary != "" {
			f.boundary = append([]byte("--"), boundary...)
		}
		f.digest = part.Subtype == "digest"
	case isMessageType(part) && identityEncoding(part.Encoding):
		f.st = stMessage
		inner := p.newPart(p.off)
		part.Envelope = &Envelope{}
		part.Message = inner
		p.push(&frame{part: inner, st: stHeader, env: part.Envelope})
	default:
		f.st = stLeaf
		f.preview = p.pv.want(part)
	}
}

// applyHeader parses the kept header block of f into its part (and its
// envelope when f is the top of a message), and returns the multipart
// boundary. Parts nested too deep, or beyond the part cap, become opaque.
func (p *parser) applyHeader(f *frame) string {
	part := f.part
	part.HeaderOverflow = p.hdrOver
	h := splitHeader(p.hdr)
	boundary := applyContentHeaders(part, &h)
	if f.env != nil {
		*f.env = buildEnvelope(&h, &p.addrBudget)
	}
	if part.Type == "multipart" || isMessageType(part) {
		if len(p.stack) >= maxDepth || (isMessageType(part) && p.nparts >= maxParts) {
			part.Type, part.Subtype = "application", "octet-stream"
			boundary = ""
		}
	}
	return boundary
}

// identityEncoding reports whether a body in this transfer encoding can be
// parsed in place (RFC 2046 §5.2.1 allows only these for message/rfc822).
func identityEncoding(enc string) bool {
	switch enc {
	case "", "7bit", "8bit", "binary":
		return true
	}
	return false
}

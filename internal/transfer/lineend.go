package transfer

import (
	"bytes"
	"io"
)

// Line ends. Messages live in the store with CRLF line ends, as RFC 5322
// §2.3 writes them and IMAP (RFC 9051 §2.3.4 counts RFC822.SIZE in them)
// and POP3 (RFC 1939 §3) send them: import turns every bare LF into CRLF.
// mbox and Maildir files hold LF line ends (RFC 4155 §2: the local
// convention; Maildir files are written as delivery agents on Unix write
// them), so export turns every CRLF back into LF. Importing an export
// gives back the stored bytes: a lone CR is left alone both ways, and a
// CRLF after a CR ("\r\r\n", seen in spam) is exported as it is.

// appendCRLF appends src to dst with every LF that does not follow a CR
// turned into CRLF. cr says whether the byte before src was a CR; the
// second result says whether src ended in one.
func appendCRLF(dst, src []byte, cr bool) ([]byte, bool) {
	if len(src) == 0 {
		return dst, cr
	}
	endCR := src[len(src)-1] == '\r'
	for len(src) > 0 {
		i := bytes.IndexByte(src, '\n')
		if i < 0 {
			dst = append(dst, src...)
			break
		}
		dst = append(dst, src[:i]...)
		if !(i > 0 && src[i-1] == '\r' || i == 0 && cr) {
			dst = append(dst, '\r')
		}
		dst = append(dst, '\n')
		src = src[i+1:]
		cr = false
	}
	return dst, endCR
}

// lfState carries appendLF from one chunk to the next: the input so far
// ends in a CR, held back until the next byte is known, and the byte
// before that CR was a CR too.
type lfState struct{ held, crcr bool }

// appendLF appends src to dst with every CRLF turned into LF, except a
// CRLF that follows a CR: "\r\r\n" stays as it is, so that appendCRLF
// gives every message back byte for byte.
func appendLF(dst, src []byte, st lfState) ([]byte, lfState) {
	for len(src) > 0 {
		if st.held {
			if src[0] != '\n' || st.crcr {
				dst = append(dst, '\r')
			}
			st.held = false
			if src[0] == '\r' {
				st.held, st.crcr = true, true
				src = src[1:]
				continue
			}
		}
		// No CR is held: the byte before src[0] is not a CR, nor is
		// the byte before the first CR of src.
		i := bytes.IndexByte(src, '\r')
		if i < 0 {
			return append(dst, src...), st
		}
		dst = append(dst, src[:i]...)
		st.held, st.crcr = true, false
		src = src[i+1:]
	}
	return dst, st
}

// convReader converts what it reads with appendCRLF or appendLF.
type convReader struct {
	r    io.Reader
	toLF bool
	cr   bool    // appendCRLF's state
	lf   lfState // appendLF's state
	in   []byte
	buf  []byte
	out  []byte // converted, not yet read
	err  error
}

func newConvReader(toLF bool) *convReader {
	return &convReader{toLF: toLF, in: make([]byte, 32<<10), buf: make([]byte, 0, 64<<10+1)}
}

// reset makes c read r from the start of a message.
func (c *convReader) reset(r io.Reader) {
	c.r, c.cr, c.lf, c.out, c.err = r, false, lfState{}, nil, nil
}

func (c *convReader) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		n, err := c.r.Read(c.in)
		if c.toLF {
			c.out, c.lf = appendLF(c.buf[:0], c.in[:n], c.lf)
			if err != nil && c.lf.held {
				c.out, c.lf = append(c.out, '\r'), lfState{} // a final CR
			}
		} else {
			c.out, c.cr = appendCRLF(c.buf[:0], c.in[:n], c.cr)
		}
		c.err = err
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

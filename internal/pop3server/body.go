package pop3server

import (
	"bufio"
	"errors"
	"io"
)

// writeBody sends a message as a POP3 multi-line response body (RFC 1939
// §3): every line ends in CRLF whatever the stored form (bare LF and CRLF
// both become CRLF), a line beginning with "." gets one more ".", and the
// body ends with ".\r\n". A final line without a line end gets CRLF.
//
// With bodyLines >= 0 it implements TOP (RFC 1939 §7): the header, the
// blank line, and then at most bodyLines lines of the body. A message
// without a blank line is all header and is sent whole.
//
// src is read through br (reset here, so one buffer serves a session).
func writeBody(w *bufio.Writer, br *bufio.Reader, src io.Reader, bodyLines int) error {
	br.Reset(src)
	inBody := false
	sent := 0 // body lines sent
	atStart := true
	pendingCR := false // an over-long fragment ended in CR: line end or not?
	for {
		if inBody && bodyLines >= 0 && sent >= bodyLines && atStart {
			break
		}
		frag, err := br.ReadSlice('\n')
		if len(frag) > 0 {
			complete := frag[len(frag)-1] == '\n'
			if pendingCR && !(complete && len(frag) == 1) {
				w.WriteByte('\r') // a CR inside a line, kept as is
			}
			if atStart && frag[0] == '.' {
				w.WriteByte('.') // RFC 1939 §3 byte-stuffing
			}
			content := frag
			if complete {
				content = frag[:len(frag)-1]
			}
			if n := len(content); n > 0 && content[n-1] == '\r' {
				content = content[:n-1]
				pendingCR = !complete
			} else {
				pendingCR = false
			}
			w.Write(content)
			if complete {
				w.WriteString("\r\n")
				if inBody {
					sent++
				} else if atStart && len(content) == 0 {
					inBody = true // the blank line ending the header
				}
			}
			atStart = complete
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if errors.Is(err, io.EOF) {
			if pendingCR {
				w.WriteByte('\r')
			}
			if !atStart {
				w.WriteString("\r\n")
			}
			break
		}
		if err != nil {
			return err
		}
	}
	_, err := w.WriteString(".\r\n")
	return err
}

// crlfSize is the size of a message as writeBody sends it, without
// byte-stuffing and terminator: stored size plus one CR per bare LF, plus
// CRLF for a final line without line end. RFC 1939 §11 asks LIST for the
// size "in octets" of the message as transmitted, and clients (fetchmail)
// compare.
func crlfSize(r io.Reader, br *bufio.Reader) (int64, error) {
	br.Reset(r)
	var n int64
	var prev byte = '\n'
	for {
		b, err := br.ReadSlice('\n')
		n += int64(len(b))
		if len(b) > 0 {
			last := b[len(b)-1]
			if last == '\n' {
				before := prev
				if len(b) >= 2 {
					before = b[len(b)-2]
				}
				if before != '\r' {
					n++
				}
			}
			prev = last
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if errors.Is(err, io.EOF) {
			if prev != '\n' {
				n += 2
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

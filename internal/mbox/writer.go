package mbox

import (
	"bufio"
	"bytes"
	"io"
	"time"
)

// Writer writes messages to an mboxrd stream.
type Writer struct {
	bw *bufio.Writer
	q  quoter
}

// NewWriter returns a Writer of mboxrd to w. Call Flush when done.
func NewWriter(w io.Writer) *Writer {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &Writer{bw: bw, q: quoter{w: bw}}
}

// WriteMessage writes one message: the From_ line made of sender and date,
// the message read from body with ^>*From  lines quoted, and a line feed
// that separates it from the next. It returns the message bytes copied.
func (w *Writer) WriteMessage(sender string, date time.Time, body io.Reader) (int64, error) {
	if _, err := w.bw.WriteString(FormatFromLine(sender, date) + "\n"); err != nil {
		return 0, err
	}
	w.q.reset()
	n, err := io.Copy(&w.q, body)
	if err != nil {
		return n, err
	}
	if err := w.q.flush(); err != nil {
		return n, err
	}
	// The separator: the Reader removes exactly this line feed.
	return n, w.bw.WriteByte('\n')
}

// Flush writes buffered data to the underlying writer.
func (w *Writer) Flush() error { return w.bw.Flush() }

// quoter is an io.Writer adding one '>' in front of every line that
// matches ^>*From  (mboxrd). It holds at most a count of '>' and a partial
// "From " between writes, so it works on streams of any size.
type quoter struct {
	w       *bufio.Writer
	midLine bool  // past the point where quoting can apply on this line
	gts     int64 // '>' seen at line start, not yet written
	matched int   // bytes of "From " matched after them
}

const fromPrefix = "From "

func (q *quoter) reset() { *q = quoter{w: q.w} }

func (q *quoter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if q.midLine {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				if _, err := q.w.Write(p); err != nil {
					return 0, err
				}
				return total, nil
			}
			if _, err := q.w.Write(p[:i+1]); err != nil {
				return 0, err
			}
			p = p[i+1:]
			q.midLine = false
			q.gts, q.matched = 0, 0
			continue
		}
		c := p[0]
		switch {
		case q.matched == 0 && c == '>':
			q.gts++
			p = p[1:]
		case c == fromPrefix[q.matched]:
			q.matched++
			p = p[1:]
			if q.matched == len(fromPrefix) {
				// RFC 4155 mboxrd: quote by one more '>'.
				if err := q.emit(q.gts+1, fromPrefix); err != nil {
					return 0, err
				}
				q.midLine = true
			}
		default:
			if err := q.flush(); err != nil {
				return 0, err
			}
			q.midLine = true
		}
	}
	return total, nil
}

// flush writes what is held (a line start that turned out not to need
// quoting).
func (q *quoter) flush() error {
	if q.midLine {
		return nil
	}
	err := q.emit(q.gts, fromPrefix[:q.matched])
	q.gts, q.matched = 0, 0
	return err
}

func (q *quoter) emit(gts int64, rest string) error {
	for ; gts > 0; gts-- {
		if err := q.w.WriteByte('>'); err != nil {
			return err
		}
	}
	_, err := q.w.WriteString(rest)
	return err
}

package imap

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// Limits bound what ReadCommand accepts.
type Limits struct {
	MaxLine    int   // one line without literals
	MaxLiteral int64 // one literal
	MaxCommand int64 // the whole command with its literals
}

// literalChunk is how much of a literal is read (and allocated) at a time.
const literalChunk = 256 << 10

// DefaultLimits are generous for clients and bounded for attackers.
var DefaultLimits = Limits{MaxLine: 64 << 10, MaxLiteral: 64 << 20, MaxCommand: 80 << 20}

// Framing errors. ErrLineTooLong leaves the reader at the next line;
// LiteralTooBigError says whether the client waits for a continuation
// (Sync: the server answers NO and the client sends nothing more of this
// command) or is already sending (the connection must be closed).
var ErrLineTooLong = errors.New("imap: line too long")

// maxTagLen bounds the tag a framing error reports.
const maxTagLen = 64

// LineTooLongError is ErrLineTooLong (errors.Is) with the tag the line
// began with, when it began with one, so that the command can still be
// answered with a tagged BAD.
type LineTooLongError struct{ Tag string }

func (e *LineTooLongError) Error() string        { return ErrLineTooLong.Error() }
func (e *LineTooLongError) Is(target error) bool { return target == ErrLineTooLong }

// LiteralTooBigError reports a literal over the limit.
type LiteralTooBigError struct {
	Size int64
	Sync bool
	// Tag is the command's tag, for the NO reply.
	Tag string
}

func (e *LiteralTooBigError) Error() string {
	return "imap: literal of " + strconv.FormatInt(e.Size, 10) + " bytes too big"
}

// ReadLine reads one CRLF- or LF-terminated line of at most max bytes and
// returns it without the line ending. Over-long lines are discarded up to
// their end and reported as a *LineTooLongError.
func ReadLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > max+2 {
			start := line
			if len(start) == 0 {
				start = chunk
			}
			tooLong := &LineTooLongError{Tag: tagOf(start)}
			if err == nil {
				return nil, tooLong
			}
			line = nil
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			if err != nil {
				return nil, err
			}
			return nil, tooLong
		}
		line = append(line, chunk...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if err == io.EOF && len(line) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return line, nil
}

// literalAtEnd finds "{n}" / "{n+}" / "~{n}" at the end of a line.
func literalAtEnd(line []byte) (size int64, sync bool, ok bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false, false
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false, false
	}
	num := line[i+1 : len(line)-1]
	sync = true
	if len(num) > 0 && num[len(num)-1] == '+' {
		sync = false
		num = num[:len(num)-1]
	}
	if len(num) == 0 || len(num) > 19 {
		return 0, false, false
	}
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || n < 0 {
		return 0, false, false
	}
	return n, sync, true
}

// ReadCommand reads one complete command: its line and every literal the
// line announces, inlined as they arrived ("{3}\r\nabc..."). Before reading
// a synchronizing literal it calls cont (which sends "+ ..."). The result
// has no final CRLF and is what ParseCommand takes.
func ReadCommand(r *bufio.Reader, lim Limits, cont func() error) ([]byte, error) {
	var cmd []byte
	for {
		line, err := ReadLine(r, lim.MaxLine)
		if err != nil {
			if len(cmd) > 0 && errors.Is(err, ErrLineTooLong) {
				// A line after a literal: the tag is the command's.
				err = &LineTooLongError{Tag: tagOf(cmd)}
			}
			return nil, err
		}
		cmd = append(cmd, line...)
		n, sync, ok := literalAtEnd(line)
		if !ok {
			return cmd, nil
		}
		if n > lim.MaxLiteral || int64(len(cmd))+n > lim.MaxCommand {
			return nil, &LiteralTooBigError{Size: n, Sync: sync, Tag: tagOf(cmd)}
		}
		if sync {
			if err := cont(); err != nil {
				return nil, err
			}
		}
		cmd = append(cmd, '\r', '\n')
		// The buffer grows with what arrives, not with what the client
		// announced: "{67108864}" followed by silence costs nothing.
		for left := n; left > 0; {
			k := min(left, literalChunk)
			start := len(cmd)
			cmd = append(cmd, make([]byte, k)...)
			if _, err := io.ReadFull(r, cmd[start:]); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return nil, err
			}
			left -= k
		}
	}
}

// tagOf returns the tag a command starts with, or "" when it starts
// with none.
func tagOf(cmd []byte) string {
	i := bytes.IndexByte(cmd, ' ')
	if i <= 0 || i > maxTagLen {
		return ""
	}
	for _, c := range cmd[:i] {
		if !isTagChar(c) {
			return ""
		}
	}
	return string(cmd[:i])
}

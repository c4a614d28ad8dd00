package mbox

import (
	"bufio"
	"bytes"
	"strings"
)

// FlagMarker is the header field that opens the flag block tern writes in
// front of each exported message (see the package documentation).
const FlagMarker = "X-Tern-Flags:"

// MaxFlagBlock caps the size of a flag block that ReadFlags recognises; a
// reader given to ReadFlags must have a buffer at least this large.
const MaxFlagBlock = 16 << 10

// FlagBlock returns the header fields written in front of a message to
// carry its IMAP flags: the marker listing them, then the Status:,
// X-Status: and X-Keywords: fields that mutt and Dovecot read. eol is the
// line ending to use ("\n" or "\r\n", matching the message).
func FlagBlock(flags []string, eol string) []byte {
	var b bytes.Buffer
	b.WriteString(FlagMarker)
	var seen bool
	var xstatus []byte
	var keywords []string
	for _, f := range flags {
		if strings.ContainsAny(f, " \t\r\n") || f == "" {
			continue
		}
		b.WriteByte(' ')
		b.WriteString(f)
		switch strings.ToLower(f) {
		case `\seen`:
			seen = true
		case `\answered`:
			xstatus = append(xstatus, 'A')
		case `\flagged`:
			xstatus = append(xstatus, 'F')
		case `\draft`:
			xstatus = append(xstatus, 'T')
		case `\deleted`:
			xstatus = append(xstatus, 'D')
		default:
			if !strings.HasPrefix(f, `\`) {
				keywords = append(keywords, f)
			}
		}
	}
	b.WriteString(eol)
	// Status: R is read, O is "old" (no longer new); RFC 4155 leaves
	// these to convention, the one mutt, Pine and Dovecot share.
	if seen {
		b.WriteString("Status: RO" + eol)
	} else {
		b.WriteString("Status: O" + eol)
	}
	if len(xstatus) > 0 {
		b.WriteString("X-Status: " + string(xstatus) + eol)
	}
	if len(keywords) > 0 {
		b.WriteString("X-Keywords: " + strings.Join(keywords, " ") + eol)
	}
	return b.Bytes()
}

// ReadFlags looks for a flag block at the current position of br (the
// start of a message). If there is one, exactly as FlagBlock writes it, it
// consumes the block and returns its flags and true. Otherwise it consumes
// nothing and returns false.
func ReadFlags(br *bufio.Reader) ([]string, bool, error) {
	head, err := br.Peek(len(FlagMarker))
	if err != nil || string(head) != FlagMarker {
		return nil, false, nil
	}
	b, _ := br.Peek(min(MaxFlagBlock, br.Size()))
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, false, nil
	}
	eol := "\n"
	line := b[len(FlagMarker):i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		eol = "\r\n"
		line = line[:len(line)-1]
	}
	flags := strings.Fields(string(line))
	block := FlagBlock(flags, eol)
	if !bytes.HasPrefix(b, block) {
		return nil, false, nil
	}
	if _, err := br.Discard(len(block)); err != nil {
		return nil, false, err
	}
	if flags == nil {
		flags = []string{}
	}
	return flags, true, nil
}

// HeaderFlags derives IMAP flags from the Status:, X-Status: and
// X-Keywords: fields of a message header written by another mbox program.
// header may be the whole message or its first bytes; reading stops at the
// blank line that ends the header.
func HeaderFlags(header []byte) []string {
	var flags []string
	add := func(f string) {
		for _, g := range flags {
			if strings.EqualFold(f, g) {
				return
			}
		}
		flags = append(flags, f)
	}
	for len(header) > 0 {
		i := bytes.IndexByte(header, '\n')
		var line []byte
		if i < 0 {
			line, header = header, nil
		} else {
			line, header = header[:i], header[i+1:]
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch strings.ToLower(string(name)) {
		case "status":
			if bytes.IndexByte(value, 'R') >= 0 {
				add(`\Seen`)
			}
		case "x-status":
			for _, c := range bytes.TrimSpace(value) {
				switch c {
				case 'A':
					add(`\Answered`)
				case 'F':
					add(`\Flagged`)
				case 'T':
					add(`\Draft`)
				case 'D':
					add(`\Deleted`)
				}
			}
		case "x-keywords":
			for _, k := range strings.FieldsFunc(string(value), func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
				if ValidKeyword(k) {
					add(k)
				}
			}
		}
	}
	return flags
}

// ValidKeyword reports whether k can be an IMAP keyword: an atom
// (RFC 9051 §9, flag-keyword) that is not a system flag.
func ValidKeyword(k string) bool {
	if k == "" || len(k) > 250 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

package pop3server

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// Command is one parsed POP3 command line.
type Command struct {
	Name string   // upper case keyword
	Args []string // arguments; PASS has its whole argument, spaces included, as Args[0]
}

// Parse errors; the session turns them into "-ERR" replies.
var (
	errEmptyLine  = errors.New("empty command line")
	errBadKeyword = errors.New("command keyword must be 3 or 4 letters")
	errBadChar    = errors.New("command line contains control characters")
	errTooMany    = errors.New("too many arguments")
	errArgTooLong = errors.New("argument too long")
)

const (
	maxArgs = 4
	// RFC 2449 §4: arguments are at most 40 octets. AUTH's initial
	// response (RFC 5034 §4) and PASS (passwords) may be longer; they are
	// bounded by the line length cap instead.
	maxArgLen = 40
)

// ParseCommand parses a command line without its CRLF (RFC 1939 §3):
// a case-insensitive keyword of 3 or 4 printable ASCII characters,
// followed by arguments separated by single spaces. Extra spaces are
// tolerated. The argument of PASS is everything after "PASS " (RFC 1939 §7
// lets passwords contain spaces). Control characters other than TAB are
// refused, so a command can never smuggle a NUL or bare CR into a log or
// store look-up.
func ParseCommand(line []byte) (Command, error) {
	var c Command
	line = bytes.TrimRight(line, "\r\n")
	for _, b := range line {
		if b < 0x20 && b != '\t' || b == 0x7f {
			return c, errBadChar
		}
	}
	s := string(line)
	kw, rest, _ := strings.Cut(s, " ")
	if kw == "" && strings.TrimSpace(rest) == "" {
		return c, errEmptyLine
	}
	if len(kw) < 3 || len(kw) > 4 {
		return c, errBadKeyword
	}
	for i := 0; i < len(kw); i++ {
		ch := kw[i] | 0x20
		if ch < 'a' || ch > 'z' {
			return c, errBadKeyword
		}
	}
	c.Name = strings.ToUpper(kw)
	if c.Name == "PASS" {
		if rest != "" {
			c.Args = []string{rest}
		}
		return c, nil
	}
	c.Args = strings.Fields(rest)
	if len(c.Args) > maxArgs {
		return Command{}, errTooMany
	}
	for i, a := range c.Args {
		if len(a) > maxArgLen && !(c.Name == "AUTH" && i == 1) && c.Name != "USER" {
			return Command{}, errArgTooLong
		}
	}
	return c, nil
}

// parseMsgNum parses a message-number argument (RFC 1939 §3: a decimal
// number, 1 for the first message).
func parseMsgNum(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n > 0
}

// parseLines parses TOP's line count: a non-negative decimal number.
func parseLines(s string) (int, bool) {
	if s == "0" {
		return 0, true
	}
	if len(s) > 9 {
		// A huge count just means "all of it".
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false
			}
		}
		return 1 << 30, true
	}
	return parseMsgNum(s)
}

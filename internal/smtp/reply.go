package smtp

import (
	"fmt"
	"strconv"
	"strings"
)

// EnhancedCode is an RFC 3463 status code: class.subject.detail.
type EnhancedCode [3]int

// String formats the code as "5.1.1"; the zero code formats as "".
func (c EnhancedCode) String() string {
	if c == (EnhancedCode{}) {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
}

// Reply is an SMTP reply as a value: handlers return it (as an error when
// it is not a success) and the connection loop writes it. Text goes to the
// client, Detail only to the log.
type Reply struct {
	Code     int
	Enhanced EnhancedCode
	Text     string
	// Detail is logged, never sent (habit 10: plain message to the
	// client, the cause to the log).
	Detail string
	// Close asks the server to close the connection after the reply.
	Close bool
}

// Error implements error: "550 5.1.1 text".
func (r *Reply) Error() string {
	s := strconv.Itoa(r.Code)
	if e := r.Enhanced.String(); e != "" {
		s += " " + e
	}
	s += " " + r.Text
	if r.Detail != "" {
		s += " (" + r.Detail + ")"
	}
	return s
}

// Temporary reports a 4xx reply (RFC 5321 §4.2.1: transient negative).
func (r *Reply) Temporary() bool { return r.Code/100 == 4 }

// Permanent reports a 5xx reply.
func (r *Reply) Permanent() bool { return r.Code/100 == 5 }

// WithDetail returns a copy of r carrying a log-only detail.
func (r *Reply) WithDetail(detail string) *Reply {
	c := *r
	c.Detail = detail
	return &c
}

// ParseReplyLine parses one reply line "250-text" or "550 5.1.1 text"
// into its code, whether more lines follow, the enhanced code (zero when
// absent) and the text.
func ParseReplyLine(line string) (code int, more bool, enh EnhancedCode, text string, err error) {
	line = strings.TrimRight(line, "\r\n")
	if len(line) < 3 {
		return 0, false, enh, "", fmt.Errorf("short reply line %q", line)
	}
	code, err = strconv.Atoi(line[:3])
	if err != nil || code < 200 || code > 599 {
		return 0, false, enh, "", fmt.Errorf("bad reply code in %q", line)
	}
	rest := line[3:]
	if rest != "" {
		switch rest[0] {
		case '-':
			more = true
		case ' ':
		default:
			return 0, false, enh, "", fmt.Errorf("bad reply separator in %q", line)
		}
		rest = rest[1:]
	}
	if e, tail, ok := parseEnhanced(rest, code/100); ok {
		enh, rest = e, tail
	}
	return code, more, enh, rest, nil
}

// parseEnhanced reads "c.s.d " at the start of s whose class matches the
// reply code's first digit (RFC 2034 §4).
func parseEnhanced(s string, class int) (EnhancedCode, string, bool) {
	word, tail, _ := strings.Cut(s, " ")
	parts := strings.Split(word, ".")
	if len(parts) != 3 {
		return EnhancedCode{}, s, false
	}
	var e EnhancedCode
	for i, p := range parts {
		if p == "" || len(p) > 3 {
			return EnhancedCode{}, s, false
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return EnhancedCode{}, s, false
		}
		e[i] = n
	}
	if e[0] != class {
		return EnhancedCode{}, s, false
	}
	return e, tail, true
}

// Replies used by tern's servers. Each call returns a fresh value, so a
// caller may set Detail without touching shared state.

// ErrUnknownUser is 550 5.1.1 (RFC 3463: bad destination mailbox).
func ErrUnknownUser() *Reply {
	return &Reply{Code: 550, Enhanced: EnhancedCode{5, 1, 1}, Text: "unknown local user"}
}

// ErrRelayDenied is 554 5.7.1 for a non-local recipient without AUTH.
func ErrRelayDenied() *Reply {
	return &Reply{Code: 554, Enhanced: EnhancedCode{5, 7, 1}, Text: "relay access denied"}
}

// ErrTooManyRecipients is 452 4.5.3 (RFC 5321 §4.5.3.1.10: the client
// sends the rest in another transaction).
func ErrTooManyRecipients() *Reply {
	return &Reply{Code: 452, Enhanced: EnhancedCode{4, 5, 3}, Text: "too many recipients"}
}

// ErrTooBig is 552 5.3.4 (RFC 1870 §6.1).
func ErrTooBig() *Reply {
	return &Reply{Code: 552, Enhanced: EnhancedCode{5, 3, 4}, Text: "message size exceeds the limit"}
}

// ErrMailboxFull is 452 4.2.2 (RFC 3463: mailbox full, transient).
func ErrMailboxFull() *Reply {
	return &Reply{Code: 452, Enhanced: EnhancedCode{4, 2, 2}, Text: "mailbox full"}
}

// ErrLocal is 451 4.3.0: a local error, try again later.
func ErrLocal() *Reply {
	return &Reply{Code: 451, Enhanced: EnhancedCode{4, 3, 0}, Text: "local error, try again later"}
}

// ErrAuthRequired is 530 5.7.0 (RFC 4954 §6).
func ErrAuthRequired() *Reply {
	return &Reply{Code: 530, Enhanced: EnhancedCode{5, 7, 0}, Text: "authentication required"}
}

// ErrNotOwner is 550 5.7.1: the account may not use that sender address.
func ErrNotOwner(what string) *Reply {
	return &Reply{Code: 550, Enhanced: EnhancedCode{5, 7, 1}, Text: what + " is not an address of the authenticated account"}
}

// ErrShuttingDown is 421 4.3.2 (RFC 3463: system not accepting messages).
func ErrShuttingDown() *Reply {
	return &Reply{Code: 421, Enhanced: EnhancedCode{4, 3, 2}, Text: "server shutting down, try again later", Close: true}
}

// ErrTooManyErrors is 421 4.7.0: the client made too many errors.
func ErrTooManyErrors() *Reply {
	return &Reply{Code: 421, Enhanced: EnhancedCode{4, 7, 0}, Text: "too many errors, closing connection", Close: true}
}

// ErrTooManyCommands is 421 4.7.0: the connection used up its commands.
func ErrTooManyCommands() *Reply {
	return &Reply{Code: 421, Enhanced: EnhancedCode{4, 7, 0}, Text: "too many commands, closing connection", Close: true}
}

// ErrTooManyConnections is 421 4.7.0 sent at connect.
func ErrTooManyConnections() *Reply {
	return &Reply{Code: 421, Enhanced: EnhancedCode{4, 7, 0}, Text: "too many connections from your address", Close: true}
}

// ErrBadSequence is 503 5.5.1 (RFC 5321 §4.1.4).
func ErrBadSequence(text string) *Reply {
	return &Reply{Code: 503, Enhanced: EnhancedCode{5, 5, 1}, Text: text}
}

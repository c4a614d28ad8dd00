package delivery

import "github.com/tern-mail/tern/internal/smtp"

// MaxHops is the number of Received fields above which a message is taken
// to be looping and refused (RFC 5321 §6.3 asks for a limit of at least
// 100). Two servers forwarding to each other through aliases stop here.
const MaxHops = 100

// hopCounter counts the Received fields of a message's header as the
// bytes pass through, and ignores everything after the header.
type hopCounter struct {
	n         int
	done      bool // past the blank line ending the header
	lineStart bool
	prefix    [9]byte // the first bytes of the current line
	plen      int
}

func newHopCounter() *hopCounter { return &hopCounter{lineStart: true} }

func (h *hopCounter) Write(p []byte) (int, error) {
	for _, c := range p {
		if h.done {
			break
		}
		if h.lineStart {
			h.plen = 0
			h.lineStart = false
			if c == '\r' || c == '\n' {
				// An empty line ends the header.
				h.done = true
				break
			}
		}
		if c == '\n' {
			h.lineStart = true
			continue
		}
		if h.plen < len(h.prefix) {
			h.prefix[h.plen] = c | 0x20 // lower-case letters; ':' stays
			h.plen++
			if h.plen == len(h.prefix) && string(h.prefix[:]) == "received:" {
				h.n++
			}
		}
	}
	return len(p), nil
}

// tooManyHops is the reply for a looping message: permanent, so the
// sending server bounces it instead of sending it round again.
func tooManyHops() *smtp.Reply {
	return &smtp.Reply{Code: 554, Enhanced: smtp.EnhancedCode{5, 4, 6}, Text: "too many hops: a mail loop?"}
}

package imapserver

import (
	"bytes"
	"strings"

	"github.com/tern-mail/tern/internal/imap"
	"github.com/tern-mail/tern/internal/message"
	"github.com/tern-mail/tern/internal/store"
)

// A search over many messages for an envelope string (SUBJECT, FROM,
// HEADER Subject ...) first looks at each message's stored structure as
// bytes and decodes only those that may hold the string: on a large
// mailbox most messages are then never decoded. The test is conservative:
// whenever the stored bytes could hide a match (MIME encoded words, the
// two non-ASCII letters that lower-case to ASCII, unusual JSON escapes)
// the message is decoded and matched as usual, so results never change.

// prefiltered returns the envelopes of the batch's messages that pass
// filter, and the batch narrowed to them.
func (s *session) prefiltered(idx []int, filter func([]byte) bool) (map[uint32]*message.Parsed, []int, error) {
	v := s.sel
	uids := make([]uint32, len(idx))
	for k, i := range idx {
		uids[k] = v.uids[i]
	}
	parsed, err := s.srv.cfg.Store.ParsedSome(s.ctx, v.mb.ID, uids, store.ParsedOptions{EnvelopeOnly: true, MayMatch: filter})
	if err != nil {
		return nil, nil, err
	}
	keep := idx[:0]
	for _, i := range idx {
		if parsed[v.uids[i]] != nil {
			keep = append(keep, i)
		}
	}
	return parsed, keep, nil
}

// prefilters reports whether mayMatch can rule messages out for k.
func prefilters(k *imap.SearchKey) bool {
	switch k.Op {
	case "AND":
		for _, sub := range k.Sub {
			if prefilters(sub) {
				return true
			}
		}
		return false
	case "OR":
		return prefilters(k.Sub[0]) && prefilters(k.Sub[1])
	}
	return envelopeNeedle(k) != ""
}

// envelopeNeedle is the lower-case string an envelope criterion looks
// for, when the stored bytes can be tested for it: printable ASCII
// without the characters that JSON escapes or that address formatting
// adds ('"', '\\', '<', '>', '&', '@'), and no space at either end.
// Otherwise "".
func envelopeNeedle(k *imap.SearchKey) string {
	switch k.Op {
	case "SUBJECT", "FROM", "TO", "CC", "BCC":
	case "HEADER":
		switch strings.ToLower(k.Field) {
		case "subject", "message-id", "in-reply-to", "date", "from", "to", "cc", "bcc":
		default:
			return ""
		}
	default:
		return ""
	}
	v := k.Value
	if v == "" || v[0] == ' ' || v[len(v)-1] == ' ' {
		return ""
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c < 0x20 || c > 0x7e:
			return ""
		case c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c == '@':
			return ""
		}
	}
	return strings.ToLower(v)
}

// mayMatch is false only when no message with these stored bytes can
// match k.
func mayMatch(k *imap.SearchKey, raw []byte) bool {
	switch k.Op {
	case "AND":
		for _, sub := range k.Sub {
			if !mayMatch(sub, raw) {
				return false
			}
		}
		return true
	case "OR":
		return mayMatch(k.Sub[0], raw) || mayMatch(k.Sub[1], raw)
	}
	needle := envelopeNeedle(k)
	return needle == "" || rawMayContain(raw, needle)
}

// rawMayContain reports whether raw contains needle (lower-case ASCII)
// ignoring ASCII case, or holds something that decoding could turn into
// it: an RFC 2047 encoded word ("=?"), one of the two letters that
// Unicode lower-cases to ASCII (U+0130 to "i", U+212A to "k"), or a JSON
// escape of a character a needle may hold. encoding/json escapes only
// '<', '>', '&', control characters, U+2028, U+2029 and invalid UTF-8
// (U+FFFD), none of which a needle holds, so the usual escapes (the
// Message-ID's angle brackets) keep the test exact.
func rawMayContain(raw []byte, needle string) bool {
	if bytes.Contains(raw, encodedWordStart) || bytes.Contains(raw, dottedCapitalI) || bytes.Contains(raw, kelvinSign) {
		return true
	}
	for i := 0; ; {
		j := bytes.IndexByte(raw[i:], '\\')
		if j < 0 {
			break
		}
		i += j
		if escapeMayMatch(raw[i+1:]) {
			return true
		}
		if raw[i+1] == 'u' {
			i += 6
		} else {
			i += 2
		}
		if i >= len(raw) {
			break
		}
	}
	return containsFoldASCII(raw, needle)
}

var (
	encodedWordStart = []byte("=?")
	dottedCapitalI   = []byte("\u0130") // lower-cases to "i"
	kelvinSign       = []byte("\u212a") // lower-cases to "k"
)

// containsFoldASCII reports whether b contains needle (lower-case ASCII),
// ignoring ASCII case; the first byte is found with bytes.IndexByte.
func containsFoldASCII(b []byte, needle string) bool {
	lo, up := needle[0], needle[0]
	if 'a' <= lo && lo <= 'z' {
		up = lo - 'a' + 'A'
	}
	nextUp := -1 // index in b of the next up, once searched
	for off := 0; len(b)-off >= len(needle); {
		i := bytes.IndexByte(b[off:], lo)
		if i >= 0 {
			i += off
		}
		if up != lo {
			if nextUp < off {
				nextUp = bytes.IndexByte(b[off:], up)
				if nextUp >= 0 {
					nextUp += off
				} else {
					nextUp = len(b)
				}
			}
			if nextUp < len(b) && (i < 0 || nextUp < i) {
				i = nextUp
			}
		}
		if i < 0 || len(b)-i < len(needle) {
			return false
		}
		if equalFoldASCII(b[i:i+len(needle)], needle) {
			return true
		}
		off = i + 1
	}
	return false
}

// escapeMayMatch looks at what follows a backslash in a JSON string: true
// when it could decode to a character a needle holds, or is malformed.
func escapeMayMatch(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	switch b[0] {
	case '"', '\\', 'b', 'f', 'n', 'r', 't':
		return false
	case 'u':
	default:
		return true // "\/" or not JSON
	}
	if len(b) < 5 {
		return true
	}
	var v rune
	for _, c := range b[1:5] {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			v = v<<4 | rune(c-'A'+10)
		default:
			return true
		}
	}
	switch {
	case v == '<' || v == '>' || v == '&' || v < 0x20:
		return false
	case v < 0x80 || v == 0x130 || v == 0x212a:
		return true
	}
	return false
}

func equalFoldASCII(b []byte, lower string) bool {
	for i := 0; i < len(lower); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

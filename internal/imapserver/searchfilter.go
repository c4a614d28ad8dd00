package imapserver

import (
	"strings"

	"github.com/tern-mail/tern/internal/imap"
	"github.com/tern-mail/tern/internal/message"
	"github.com/tern-mail/tern/internal/store"
)

// A search over many messages for an envelope string (SUBJECT, FROM,
// HEADER Subject ...) first looks at each message's stored structure as
// bytes and decodes only those that may hold the string: on a large
// mailbox most messages are then never decoded. The test is conservative:
// whenever the stored bytes could hide a match (non-ASCII text, MIME
// encoded words, JSON \u escapes) the message is decoded and matched as
// usual, so results never change.

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
// it: a byte above 0x7f (Unicode case folding maps a few letters to
// ASCII), an RFC 2047 encoded word ("=?") or a JSON \u escape.
func rawMayContain(raw []byte, needle string) bool {
	n0 := needle[0]
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c >= 0x80:
			return true
		case (c == '=' && i+1 < len(raw) && raw[i+1] == '?') || (c == '\\' && i+1 < len(raw) && raw[i+1] == 'u'):
			return true
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c == n0 && len(raw)-i >= len(needle) && equalFoldASCII(raw[i:i+len(needle)], needle) {
			return true
		}
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

package message

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// checkParsed verifies the invariants every Parse result must hold for
// the raw bytes it came from, and returns the first violation.
func checkParsed(raw []byte, m *Parsed) error {
	if m == nil || m.Structure == nil {
		return fmt.Errorf("no structure")
	}
	root := m.Structure
	if root.HeaderStart != 0 || root.End != int64(len(raw)) {
		return fmt.Errorf("root spans [%d,%d), want [0,%d)", root.HeaderStart, root.End, len(raw))
	}
	if !utf8.ValidString(m.Preview) || utf8.RuneCountInString(m.Preview) > PreviewLen {
		return fmt.Errorf("bad preview %q", m.Preview)
	}
	if strings.TrimSpace(m.Preview) != m.Preview {
		return fmt.Errorf("preview not trimmed: %q", m.Preview)
	}
	if _, err := json.Marshal(m); err != nil {
		return fmt.Errorf("json: %v", err)
	}
	return checkPart(raw, root, 0, int64(len(raw)), "1")
}

func checkPart(raw []byte, p *Part, lo, hi int64, path string) error {
	if !(lo <= p.HeaderStart && p.HeaderStart <= p.BodyStart && p.BodyStart <= p.End && p.End <= hi) {
		return fmt.Errorf("part %s: offsets %d %d %d outside [%d,%d]", path, p.HeaderStart, p.BodyStart, p.End, lo, hi)
	}
	if p.Type == "" || p.Subtype == "" || p.Type != strings.ToLower(p.Type) || p.Subtype != strings.ToLower(p.Subtype) {
		return fmt.Errorf("part %s: type %q/%q", path, p.Type, p.Subtype)
	}
	if p.Encoding == "" {
		return fmt.Errorf("part %s: no encoding", path)
	}
	body := raw[p.BodyStart:p.End]
	if p.Type == "text" || isMessageType(p) {
		if n := int64(bytes.Count(body, []byte("\n"))); n != p.Lines {
			return fmt.Errorf("part %s: lines %d, want %d", path, p.Lines, n)
		}
	}
	if n := bareLFs(body); n != p.BodyBareLF {
		return fmt.Errorf("part %s: body bare LF %d, want %d", path, p.BodyBareLF, n)
	}
	if n := bareLFs(raw[p.HeaderStart:p.BodyStart]); n != p.HeaderBareLF {
		return fmt.Errorf("part %s: header bare LF %d, want %d", path, p.HeaderBareLF, n)
	}
	switch {
	case p.Type == "multipart":
		if len(p.Parts) == 0 || p.Message != nil {
			return fmt.Errorf("part %s: multipart with %d parts", path, len(p.Parts))
		}
		prev := p.BodyStart
		for i, c := range p.Parts {
			if c.HeaderStart < prev {
				return fmt.Errorf("part %s.%d starts at %d before %d", path, i+1, c.HeaderStart, prev)
			}
			if err := checkPart(raw, c, p.BodyStart, p.End, path+"."+strconv.Itoa(i+1)); err != nil {
				return err
			}
			prev = c.End
		}
	case isMessageType(p):
		if p.Message == nil || p.Envelope == nil || len(p.Parts) != 0 {
			return fmt.Errorf("part %s: message without message", path)
		}
		return checkPart(raw, p.Message, p.BodyStart, p.End, path+".m")
	default:
		if len(p.Parts) != 0 || p.Message != nil {
			return fmt.Errorf("part %s: leaf with children", path)
		}
	}
	return nil
}

func bareLFs(b []byte) int64 {
	var n int64
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			n++
		}
	}
	return n
}

// shape renders a structure compactly with each leaf's body as sliced
// from raw, so that tests check offsets by content:
// multipart/mixed[text/plain"A",message/rfc822{text/plain"x"}].
func shape(raw []byte, p *Part) string {
	s := p.Type + "/" + p.Subtype
	switch {
	case p.Type == "multipart":
		var cs []string
		for _, c := range p.Parts {
			cs = append(cs, shape(raw, c))
		}
		s += "[" + strings.Join(cs, ",") + "]"
	case isMessageType(p):
		s += "{" + shape(raw, p.Message) + "}"
	default:
		s += strconv.Quote(string(raw[p.BodyStart:p.End]))
	}
	return s
}

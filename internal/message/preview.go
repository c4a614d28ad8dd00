package message

import (
	"html"
	"strings"
	"unicode"
	"unicode/utf8"
)

// PreviewLen is the longest preview, in characters (RFC 8970 §3 allows up
// to 256).
const PreviewLen = 256

// Raw bytes kept at most of the candidate parts for the preview.
const (
	maxPreviewPlain = 16 << 10
	maxPreviewHTML  = 64 << 10
)

type previewKind uint8

const (
	pvNone previewKind = iota
	pvPlain
	pvHTML
)

// previewState keeps the start of the first text/plain and the first
// text/html part that are not attachments.
type previewState struct {
	plain, html slot
}

// slot is the captured start of one candidate part. Capture stops as soon
// as what was captured makes a whole preview, so a long body costs little.
type slot struct {
	taken, full bool
	part        *Part
	buf         []byte
	max         int
	check       int    // capture length at which to try a preview again
	preview     string // set when full
}

func (s *previewState) slot(k previewKind) *slot {
	if k == pvPlain {
		return &s.plain
	}
	return &s.html
}

// want decides whether the body of part, a leaf, is captured.
func (s *previewState) want(part *Part) previewKind {
	if part.Type != "text" || part.Disposition == "attachment" {
		return pvNone
	}
	k, max := pvPlain, maxPreviewPlain
	switch {
	case part.Subtype == "plain" && !s.plain.taken:
	case part.Subtype == "html" && !s.html.taken && !s.plain.full:
		k, max = pvHTML, maxPreviewHTML
	default:
		return pvNone
	}
	*s.slot(k) = slot{taken: true, part: part, max: max, check: 1 << 10}
	return k
}

func (s *previewState) capture(k previewKind, b []byte) {
	sl := s.slot(k)
	if sl.full {
		return
	}
	if room := sl.max - len(sl.buf); room > 0 {
		sl.buf = append(sl.buf, b[:min(room, len(b))]...)
	}
	if len(sl.buf) >= sl.check && len(sl.buf) < sl.max {
		// Enough for a whole preview already? Then stop here.
		sl.check *= 4
		if p := sl.text(k, PreviewLen+1); utf8.RuneCountInString(p) > PreviewLen {
			sl.preview, sl.full = foldSpace(p, PreviewLen), true
			sl.buf = nil
		}
	}
}

// text decodes the capture and folds it to at most n characters.
func (sl *slot) text(k previewKind, n int) string {
	t := decodeBytes(sl.buf, sl.part.Encoding, ParamValue(sl.part.Params, "charset"))
	if k == pvHTML {
		t = HTMLText(t)
	}
	return foldSpace(t, n)
}

// done trims a capture to the part's body (the line break before a
// boundary was captured too).
func (s *previewState) done(k previewKind, part *Part) {
	sl := s.slot(k)
	if size := part.Size(); !sl.full && int64(len(sl.buf)) > size {
		sl.buf = sl.buf[:size]
	}
}

// result is the preview: the text/plain part, else the text of the HTML.
func (s *previewState) result() string {
	for _, k := range []previewKind{pvPlain, pvHTML} {
		sl := s.slot(k)
		if sl.full {
			return sl.preview
		}
		if len(sl.buf) > 0 {
			if p := sl.text(k, PreviewLen); p != "" {
				return p
			}
		}
	}
	return ""
}

// foldSpace replaces runs of white space and control characters by one
// space, trims the ends and cuts the text to at most n characters.
func foldSpace(s string, n int) string {
	var b strings.Builder
	b.Grow(min(len(s), 4*n))
	count := 0
	space := false
	for i := 0; i < len(s); {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		if isFoldSpace(r) {
			space = b.Len() > 0
			i += size
			continue
		}
		if space {
			if count+1 >= n {
				break
			}
			b.WriteByte(' ')
			count++
			space = false
		}
		b.WriteString(s[i : i+size])
		i += size
		count++
		if count >= n {
			break
		}
	}
	return b.String()
}

// isFoldSpace reports whether r is white space, a control character or
// an invisible one, all of which a preview folds into one space.
func isFoldSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r <= ' ' || r == 0x7f
	}
	return unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError || r == '\u200b' || r == '\u200c' || r == '\ufeff'
}

// HTMLText returns the text of an HTML document for previews and search:
// tags removed (block tags leave a space), the contents of head, script,
// style and comments dropped, character references decoded. It is a
// tolerant scan, not an HTML parser.
func HTMLText(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			b.WriteString(unescape(s))
			break
		}
		b.WriteString(unescape(s[:i]))
		s = s[i:]
		if strings.HasPrefix(s, "<!--") {
			s = skipPast(s, "-->")
			continue
		}
		end := strings.IndexByte(s, '>')
		if end < 0 {
			break
		}
		name := tagName(s[1:end])
		s = s[end+1:]
		switch name {
		case "script", "style", "title", "head":
			if j := indexFold(s, "</"+name); j >= 0 {
				s = skipPast(s[j:], ">")
			} else if name != "head" {
				s = ""
			}
		case "br", "p", "/p", "div", "/div", "tr", "/tr", "td", "th", "li", "h1", "h2", "h3", "h4", "h5", "h6",
			"/h1", "/h2", "/h3", "/h4", "/h5", "/h6", "table", "/table", "blockquote", "hr", "body", "/td":
			b.WriteByte(' ')
		}
	}
	return b.String()
}

func unescape(s string) string {
	if strings.IndexByte(s, '&') < 0 {
		return s
	}
	return html.UnescapeString(s)
}

// tagName is the lower-cased name of a tag ("/p" for a closing tag).
func tagName(t string) string {
	i := 0
	if i < len(t) && t[i] == '/' {
		i++
	}
	for i < len(t) && (t[i] >= 'a' && t[i] <= 'z' || t[i] >= 'A' && t[i] <= 'Z' || t[i] >= '0' && t[i] <= '9') {
		i++
	}
	return strings.ToLower(t[:i])
}

func skipPast(s, marker string) string {
	if j := strings.Index(s, marker); j >= 0 {
		return s[j+len(marker):]
	}
	return ""
}

// indexFold is strings.Index ignoring ASCII case of an ASCII needle.
func indexFold(s, needle string) int {
	for i := 0; i+len(needle) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(needle)], needle) {
			return i
		}
	}
	return -1
}

// isAttachment reports whether a part counts as an attachment for the
// webmail's paperclip: a Content-Disposition of attachment (RFC 2183), or
// a named leaf without an inline disposition, or an embedded message.
func isAttachment(p *Part, top bool) bool {
	if p.Type == "multipart" {
		return false
	}
	switch p.Disposition {
	case "attachment":
		return true
	case "inline":
		return false
	}
	if isMessageType(p) {
		return !top
	}
	return ParamValue(p.Params, "name") != "" || ParamValue(p.DispositionParams, "filename") != ""
}

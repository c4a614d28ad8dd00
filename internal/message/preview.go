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

// Raw bytes kept of the candidate parts for the preview.
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
	plainTaken, htmlTaken bool
	plain, html           []byte
	plainEnc, htmlEnc     string
	plainCS, htmlCS       string
}

// want decides whether the body of part, a leaf, is captured.
func (s *previewState) want(part *Part) previewKind {
	if part.Type != "text" || part.Disposition == "attachment" {
		return pvNone
	}
	switch {
	case part.Subtype == "plain" && !s.plainTaken:
		s.plainTaken = true
		return pvPlain
	case part.Subtype == "html" && !s.htmlTaken:
		s.htmlTaken = true
		return pvHTML
	}
	return pvNone
}

func (s *previewState) capture(k previewKind, b []byte) {
	switch k {
	case pvPlain:
		if room := maxPreviewPlain - len(s.plain); room > 0 {
			s.plain = append(s.plain, b[:min(room, len(b))]...)
		}
	case pvHTML:
		if room := maxPreviewHTML - len(s.html); room > 0 {
			s.html = append(s.html, b[:min(room, len(b))]...)
		}
	}
}

// done trims a capture to the part's body (the line break before a
// boundary was captured too) and notes how to decode it.
func (s *previewState) done(k previewKind, part *Part) {
	size := part.Size()
	cs := ParamValue(part.Params, "charset")
	switch k {
	case pvPlain:
		if int64(len(s.plain)) > size {
			s.plain = s.plain[:size]
		}
		s.plainEnc, s.plainCS = part.Encoding, cs
	case pvHTML:
		if int64(len(s.html)) > size {
			s.html = s.html[:size]
		}
		s.htmlEnc, s.htmlCS = part.Encoding, cs
	}
}

// result is the preview: the text/plain part, else the text of the HTML.
func (s *previewState) result() string {
	if len(s.plain) > 0 {
		if p := foldSpace(decodeBytes(s.plain, s.plainEnc, s.plainCS), PreviewLen); p != "" {
			return p
		}
	}
	if len(s.html) > 0 {
		return foldSpace(HTMLText(decodeBytes(s.html, s.htmlEnc, s.htmlCS)), PreviewLen)
	}
	return ""
}

// foldSpace replaces runs of white space and control characters by one
// space, trims the ends and cuts the text to at most n characters.
func foldSpace(s string, n int) string {
	var b strings.Builder
	count := 0
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError || r == '\u200b' || r == '\u200c' || r == '\ufeff' {
			space = b.Len() > 0
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
		b.WriteRune(r)
		count++
		if count >= n {
			break
		}
	}
	return b.String()
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
			b.WriteString(html.UnescapeString(s))
			break
		}
		b.WriteString(html.UnescapeString(s[:i]))
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

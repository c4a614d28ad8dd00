package message

import (
	"io"
	"strings"
)

// DecodeHeaderValue decodes the RFC 2047 encoded words in a header value
// to UTF-8. It is lenient as mail readers are: encoded words may touch
// other text or hold spaces, white space between adjacent encoded words is
// dropped (RFC 2047 §6.2), consecutive words in one charset are decoded
// together (so a character split between words survives), an unknown
// charset or a damaged word is decoded as well as it can be, and 8-bit
// bytes outside encoded words are read as UTF-8, else as Windows-1252.
func DecodeHeaderValue(s string) string {
	if !strings.Contains(s, "=?") {
		if isASCII(s) {
			return s
		}
		return toUTF8([]byte(s), "")
	}
	var out strings.Builder
	var pending []byte // decoded bytes of adjacent words in pendingCharset
	pendingCharset := ""
	flush := func() {
		if len(pending) > 0 {
			out.WriteString(toUTF8(pending, pendingCharset))
			pending = pending[:0]
		}
	}
	lastWasWord := false
	for len(s) > 0 {
		i := strings.Index(s, "=?")
		if i < 0 {
			flush()
			out.WriteString(toUTF8([]byte(s), ""))
			break
		}
		charset, decoded, n, ok := encodedWord(s[i:])
		if !ok {
			flush()
			out.WriteString(toUTF8([]byte(s[:i+2]), ""))
			s = s[i+2:]
			lastWasWord = false
			continue
		}
		text := s[:i]
		if lastWasWord && strings.Trim(text, " \t\r\n") == "" {
			text = "" // RFC 2047 §6.2: the gap between words goes
		}
		if text != "" || !strings.EqualFold(charset, pendingCharset) {
			flush()
		}
		if text != "" {
			out.WriteString(toUTF8([]byte(text), ""))
		}
		pending = append(pending, decoded...)
		pendingCharset = charset
		lastWasWord = true
		s = s[i+n:]
	}
	flush()
	return out.String()
}

// encodedWord parses "=?charset?enc?text?=" at the start of s and returns
// the charset, the decoded bytes and the length of the word.
func encodedWord(s string) (charset string, decoded []byte, n int, ok bool) {
	q1 := strings.IndexByte(s[2:], '?')
	if q1 < 0 || q1 > 64 {
		return "", nil, 0, false
	}
	charset = s[2 : 2+q1]
	rest := s[2+q1+1:]
	if len(rest) < 2 || rest[1] != '?' {
		return "", nil, 0, false
	}
	enc := rest[0] | 0x20
	end := strings.Index(rest[2:], "?=")
	if end < 0 || (enc != 'b' && enc != 'q') {
		return "", nil, 0, false
	}
	text := rest[2 : 2+end]
	if strings.ContainsAny(text, "\r\n") {
		return "", nil, 0, false
	}
	n = 2 + q1 + 1 + 2 + end + 2
	if i := strings.IndexByte(charset, '*'); i >= 0 {
		charset = charset[:i] // RFC 2231 §5 language suffix
	}
	if enc == 'b' {
		decoded, _ = io.ReadAll(&base64Reader{r: strings.NewReader(text)})
	} else {
		decoded = qDecode(text)
	}
	return charset, decoded, n, true
}

// qDecode decodes the RFC 2047 §4.2 "Q" encoding.
func qDecode(s string) []byte {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_':
			b = append(b, ' ')
		case c == '=' && i+2 < len(s) && unhex(s[i+1]) >= 0 && unhex(s[i+2]) >= 0:
			b = append(b, byte(unhex(s[i+1])<<4|unhex(s[i+2])))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return b
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Filename returns the file name of a part for display, decoded to UTF-8:
// the Content-Disposition filename, else the Content-Type name, in their
// RFC 2231 extended form (charset'language'%XX) or with RFC 2047 encoded
// words, as mail software writes them. It is "" when the part has none.
func (p *Part) Filename() string {
	for _, c := range []struct {
		ps  []Param
		key string
	}{{p.DispositionParams, "filename"}, {p.Params, "name"}} {
		if v := ParamValue(c.ps, c.key+"*"); v != "" {
			return decode2231(v)
		}
		if v := ParamValue(c.ps, c.key); v != "" {
			return DecodeHeaderValue(v)
		}
	}
	return ""
}

// decode2231 decodes an RFC 2231 §4 extended value: charset'lang'%XX text.
func decode2231(v string) string {
	charset := ""
	if i := strings.IndexByte(v, '\''); i >= 0 {
		if j := strings.IndexByte(v[i+1:], '\''); j >= 0 {
			charset, v = v[:i], v[i+1+j+1:]
		}
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '%' && i+2 < len(v) && unhex(v[i+1]) >= 0 && unhex(v[i+2]) >= 0 {
			b = append(b, byte(unhex(v[i+1])<<4|unhex(v[i+2])))
			i += 2
			continue
		}
		b = append(b, v[i])
	}
	return toUTF8(b, charset)
}

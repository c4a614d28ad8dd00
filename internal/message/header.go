package message

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
)

// maxParams caps the parameters (and language tags) kept per field.
const maxParams = 100

// Header fields the parser keeps. Only the first occurrence of each counts.
const (
	hContentType = iota
	hContentTransferEncoding
	hContentID
	hContentDescription
	hContentMD5
	hContentDisposition
	hContentLanguage
	hContentLocation
	hDate
	hSubject
	hFrom
	hSender
	hReplyTo
	hTo
	hCc
	hBcc
	hInReplyTo
	hMessageID
	numFields
)

var fieldNames = [numFields]string{
	"content-type", "content-transfer-encoding", "content-id",
	"content-description", "content-md5", "content-disposition",
	"content-language", "content-location", "date", "subject", "from",
	"sender", "reply-to", "to", "cc", "bcc", "in-reply-to", "message-id",
}

// header holds the raw (still folded) values of the kept fields, as
// slices of the header block; nil means absent. Address fields that occur
// more than once are joined, as Dovecot does (mailers that write several
// Cc fields mean all of them).
type header struct {
	v     [numFields][]byte
	extra [numFields][][]byte // later occurrences of address fields
}

func isAddressField(i int) bool {
	return i >= hFrom && i <= hBcc
}

func fieldIndex(name []byte) int {
	for i, n := range fieldNames {
		if len(n) == len(name) && equalFoldASCII(name, n) {
			return i
		}
	}
	return -1
}

// equalFoldASCII compares b with the lower-case ASCII string s, ignoring
// the case of b.
func equalFoldASCII(b []byte, s string) bool {
	for i := range len(s) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// splitHeader walks a header block (RFC 5322 §2.2) leniently: a line
// starting with white space continues the previous field; a line that is
// not "name:" (the obsolete "name :" of RFC 5322 §4.5 included) is broken
// and skipped, and it ends the field before it.
func splitHeader(block []byte) header {
	var h header
	cur := -1
	curStart := 0
	flush := func(end int) {
		switch {
		case cur < 0:
		case h.v[cur] == nil:
			h.v[cur] = block[curStart:end]
		case isAddressField(cur):
			h.extra[cur] = append(h.extra[cur], block[curStart:end])
		}
		cur = -1
	}
	for i := 0; i < len(block); {
		j := bytes.IndexByte(block[i:], '\n')
		next := len(block)
		if j >= 0 {
			next = i + j + 1
		}
		line := block[i:next]
		switch {
		case line[0] == ' ' || line[0] == '\t':
			// continuation: the value runs on
		default:
			flush(i)
			if n := fieldNameLen(line); n > 0 {
				cur = fieldIndex(bytes.TrimRight(line[:n], " \t"))
				curStart = i + n + 1
			}
		}
		i = next
	}
	flush(len(block))
	return h
}

// fieldNameLen returns the index of the colon ending a field name at the
// start of line, or 0 when the line does not start with a field name.
func fieldNameLen(line []byte) int {
	i := 0
	for i < len(line) && line[i] > ' ' && line[i] < 127 && line[i] != ':' {
		i++
	}
	if i == 0 {
		return 0
	}
	j := i
	for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
		j++
	}
	if j < len(line) && line[j] == ':' {
		return j
	}
	return 0
}

// unfold returns a raw field value unfolded (RFC 5322 §2.2.3: line breaks
// before white space removed) with surrounding white space trimmed.
func unfold(v []byte) string {
	if bytes.IndexByte(v, '\n') < 0 {
		return string(bytes.Trim(v, " \t\r"))
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\n' || (c == '\r' && i+1 < len(v) && v[i+1] == '\n') {
			continue
		}
		b = append(b, c)
	}
	return string(bytes.Trim(b, " \t\r"))
}

// get returns the unfolded value of field i, "" when absent.
func (h *header) get(i int) string {
	if h.v[i] == nil {
		return ""
	}
	if len(h.extra[i]) > 0 {
		parts := []string{unfold(h.v[i])}
		for _, v := range h.extra[i] {
			parts = append(parts, unfold(v))
		}
		return strings.Join(parts, ", ")
	}
	return unfold(h.v[i])
}

// applyContentHeaders fills the MIME fields of part (RFC 2045, RFC 2183,
// RFC 3282, RFC 2557) and returns the multipart boundary parameter. A
// missing or unparsable Content-Type leaves the default the caller set
// (text/plain, or message/rfc822 in a digest), as RFC 2045 §5.2 says.
func applyContentHeaders(part *Part, h *header) string {
	boundary := ""
	if h.v[hContentType] != nil {
		if t, s, params, ok := parseContentType(h.get(hContentType)); ok {
			part.Type, part.Subtype, part.Params = t, s, params
		}
	}
	for _, prm := range part.Params {
		if prm.Key == "boundary" && boundary == "" {
			boundary = prm.Value
		}
	}
	if part.Type == "text" && !hasParam(part.Params, "charset") {
		// RFC 2045 §5.2 default, which IMAP servers make explicit.
		part.Params = append(part.Params, Param{Key: "charset", Value: "us-ascii"})
	}
	if enc := h.get(hContentTransferEncoding); enc != "" {
		if i := strings.IndexAny(enc, " \t;("); i >= 0 {
			enc = enc[:i]
		}
		if enc != "" {
			part.Encoding = strings.ToLower(enc)
		}
	}
	part.ID = h.get(hContentID)
	part.Description = h.get(hContentDescription)
	part.MD5 = h.get(hContentMD5)
	if d := h.get(hContentDisposition); d != "" {
		v, rest := splitToken(d)
		if v != "" {
			part.Disposition = strings.ToLower(v)
			part.DispositionParams = parseParams(rest)
		}
	}
	if l := h.get(hContentLanguage); l != "" {
		for _, tag := range strings.Split(l, ",") {
			if tag = strings.TrimSpace(stripComments(tag)); tag != "" && len(part.Language) < maxParams {
				part.Language = append(part.Language, tag)
			}
		}
	}
	if loc := h.get(hContentLocation); loc != "" {
		// RFC 2557 §4.1: a folded URI is read with its white space removed.
		part.Location = strings.Join(strings.Fields(loc), "")
	}
	return boundary
}

func hasParam(ps []Param, key string) bool {
	for _, p := range ps {
		if p.Key == key {
			return true
		}
	}
	return false
}

// ParamValue returns the value of the parameter key (lower case) or "".
func ParamValue(ps []Param, key string) string {
	for _, p := range ps {
		if p.Key == key {
			return p.Value
		}
	}
	return ""
}

// parseContentType parses "type/subtype; params" (RFC 2045 §5.1). Type and
// subtype are lower-cased; ok is false when they are not both there. A
// missing ';' before the first parameter is forgiven.
func parseContentType(s string) (typ, sub string, params []Param, ok bool) {
	s = strings.TrimLeft(stripComments(s), " \t")
	i := strings.IndexAny(s, "/; \t")
	if i <= 0 || s[i] != '/' {
		return "", "", nil, false
	}
	typ, s = s[:i], strings.TrimLeft(s[i+1:], " \t")
	j := strings.IndexAny(s, "; \t")
	if j < 0 {
		j = len(s)
	}
	sub, rest := s[:j], s[j:]
	if sub == "" {
		return "", "", nil, false
	}
	return strings.ToLower(typ), strings.ToLower(sub), parseParams(rest), true
}

// splitToken returns the text up to the first ';' with white space and
// comments removed, and the rest after the ';'.
func splitToken(s string) (string, string) {
	rest := ""
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s, rest = s[:i], s[i+1:]
	}
	s = stripComments(s)
	return strings.Join(strings.Fields(s), ""), rest
}

// stripComments removes RFC 5322 §3.2.2 comments outside quoted strings.
func stripComments(s string) string {
	if strings.IndexByte(s, '(') < 0 {
		return s
	}
	var b strings.Builder
	depth, quoted := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (quoted || depth > 0) && i+1 < len(s):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
		case c == '"' && depth == 0:
			quoted = !quoted
			b.WriteByte(c)
		case c == '(' && !quoted:
			depth++
		case c == ')' && !quoted && depth > 0:
			depth--
		default:
			if depth == 0 {
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// parseParams parses "; key=value" pairs leniently (RFC 2045 §5.1): keys
// lower-cased, values unquoted, junk skipped up to the next ';', pairs kept
// in order. RFC 2231 continuations (key*0, key*1, ...) are joined into the
// first one, named key, or key* when the segments are extended.
func parseParams(s string) []Param {
	var out []Param
	for len(s) > 0 && len(out) < maxParams {
		var key, val string
		key, val, s = nextParam(s)
		if key == "" {
			continue
		}
		out = append(out, Param{Key: key, Value: val})
	}
	return joinContinuations(out)
}

// nextParam parses one "key=value" from s and returns the rest after the
// next ';'. A pair without a usable key yields key "".
func nextParam(s string) (key, val, rest string) {
	s = strings.TrimLeft(s, " \t;")
	eq := strings.IndexAny(s, "=;")
	if eq < 0 || s[eq] == ';' {
		if eq < 0 {
			return "", "", ""
		}
		return "", "", s[eq+1:]
	}
	key = strings.ToLower(strings.TrimSpace(stripComments(s[:eq])))
	s = strings.TrimLeft(s[eq+1:], " \t")
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
		}
		val = b.String()
		s = s[min(i+1, len(s)):]
		if j := strings.IndexByte(s, ';'); j >= 0 {
			rest = s[j+1:]
		}
	} else {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			s, rest = s[:j], s[j+1:]
		}
		val = strings.TrimSpace(stripComments(s))
	}
	if strings.ContainsAny(key, " \t\"") {
		key = ""
	}
	return key, val, rest
}

// joinContinuations merges RFC 2231 §3 segments "name*N" / "name*N*" into
// one parameter at the position of the first, in segment order.
func joinContinuations(ps []Param) []Param {
	has := false
	for _, p := range ps {
		if _, _, ok := continuation(p.Key); ok {
			has = true
			break
		}
	}
	if !has {
		return ps
	}
	type seg struct {
		n   int
		val string
	}
	segs := map[string][]seg{}
	extended := map[string]bool{}
	var out []Param
	for _, p := range ps {
		name, n, ok := continuation(p.Key)
		if !ok {
			out = append(out, p)
			continue
		}
		if _, seen := segs[name]; !seen {
			out = append(out, Param{Key: "\x00" + name})
		}
		if n == 0 && strings.HasSuffix(p.Key, "*") {
			extended[name] = true
		}
		segs[name] = append(segs[name], seg{n, p.Value})
	}
	for i, p := range out {
		if !strings.HasPrefix(p.Key, "\x00") {
			continue
		}
		name := p.Key[1:]
		ss := segs[name]
		slices.SortStableFunc(ss, func(a, b seg) int { return a.n - b.n })
		var b strings.Builder
		for _, s := range ss {
			b.WriteString(s.val)
		}
		key := name
		if extended[name] {
			key += "*"
		}
		out[i] = Param{Key: key, Value: b.String()}
	}
	return out
}

// continuation splits "name*N" or "name*N*" into name and N.
func continuation(key string) (string, int, bool) {
	k := strings.TrimSuffix(key, "*")
	i := strings.LastIndexByte(k, '*')
	if i <= 0 || i == len(k)-1 {
		return "", 0, false
	}
	n, err := strconv.Atoi(k[i+1:])
	if err != nil || n < 0 || n > 1000 {
		return "", 0, false
	}
	return k[:i], n, true
}

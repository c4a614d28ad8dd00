package message

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
)

// DecodedText returns the body of the leaf part p of the message in src,
// decoded from its transfer encoding (RFC 2045 §6) and its charset to
// UTF-8, at most max bytes of it. Decoding is lenient: bad base64 or
// quoted-printable is decoded as well as it can be, an unknown charset is
// read as UTF-8 when it is valid and as Windows-1252 otherwise, and the
// result is always valid UTF-8. Its only errors are those of src.
func DecodedText(src io.ReaderAt, p *Part, max int64) (string, error) {
	if max <= 0 {
		return "", nil
	}
	r := TransferDecoder(io.NewSectionReader(src, p.BodyStart, p.Size()), p.Encoding)
	raw, err := io.ReadAll(io.LimitReader(r, max))
	if err != nil {
		return "", err
	}
	s := toUTF8(raw, ParamValue(p.Params, "charset"))
	if int64(len(s)) > max {
		s = truncateUTF8(s, int(max))
	}
	return s, nil
}

// HeaderBytes returns the raw header block of p, blank line included.
func HeaderBytes(src io.ReaderAt, p *Part) ([]byte, error) {
	b := make([]byte, p.BodyStart-p.HeaderStart)
	if _, err := src.ReadAt(b, p.HeaderStart); err != nil && !(err == io.EOF && len(b) == 0) {
		return nil, err
	}
	return b, nil
}

// BodyReader returns a reader of the raw body bytes of p, as stored.
func BodyReader(src io.ReaderAt, p *Part) io.Reader {
	return io.NewSectionReader(src, p.BodyStart, p.Size())
}

// TransferDecoder returns a reader of r decoded from the transfer encoding
// enc ("base64", "quoted-printable"; anything else is read as is).
func TransferDecoder(r io.Reader, enc string) io.Reader {
	switch strings.ToLower(enc) {
	case "base64":
		return &base64Reader{r: r}
	case "quoted-printable":
		return &qpReader{br: bufio.NewReader(r)}
	}
	return r
}

// decodeBytes decodes a captured body: transfer encoding, then charset.
func decodeBytes(raw []byte, enc, charset string) string {
	if enc == "base64" || enc == "quoted-printable" {
		b, _ := io.ReadAll(TransferDecoder(bytes.NewReader(raw), enc))
		raw = b
	}
	return toUTF8(raw, charset)
}

// lookupCharset finds a decoder for a MIME charset name (RFC 2978 names
// and the WHATWG labels mail software uses); nil means UTF-8 or unknown.
func lookupCharset(name string) encoding.Encoding {
	name = strings.ToLower(strings.Trim(name, " \t\"'"))
	switch name {
	case "", "utf-8", "utf8", "us-ascii", "ascii", "us_ascii", "ansi_x3.4-1968", "unknown-8bit", "x-unknown", "unknown":
		return nil
	case "iso-8859-1", "latin1", "iso8859-1", "iso_8859-1":
		// WHATWG reads Latin-1 as Windows-1252, a superset that mail
		// written on Windows relies on.
		return charmap.Windows1252
	}
	if e, err := ianaindex.MIME.Encoding(name); err == nil && e != nil {
		return e
	}
	if e, err := htmlindex.Get(name); err == nil && e != nil {
		return e
	}
	return nil
}

// toUTF8 converts b from charset to valid UTF-8.
func toUTF8(b []byte, charset string) string {
	if enc := lookupCharset(charset); enc != nil {
		if out, err := enc.NewDecoder().Bytes(b); err == nil {
			return strings.ToValidUTF8(string(out), "\uFFFD")
		}
	}
	if utf8.Valid(b) {
		return string(b)
	}
	out, err := charmap.Windows1252.NewDecoder().Bytes(b)
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return string(out)
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// base64Reader decodes base64 leniently: bytes outside the alphabet are
// skipped, and padding ends a quantum, so that concatenated or damaged
// base64 still yields what can be read.
type base64Reader struct {
	r    io.Reader
	buf  [4096]byte
	out  []byte
	acc  uint32
	nacc int
	err  error
}

func (d *base64Reader) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		n, err := d.r.Read(d.buf[:])
		d.out = d.decode(d.buf[:n], d.buf[:0])
		if err != nil {
			d.err = err
			d.out = d.flush(d.out)
		}
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

// decode decodes in into dst; it is safe for dst to alias in because
// output never overtakes input (3 bytes out per 4 in).
func (d *base64Reader) decode(in, dst []byte) []byte {
	for _, c := range in {
		v := b64val(c)
		if v < 0 {
			if c == '=' {
				dst = d.flush(dst)
			}
			continue
		}
		d.acc = d.acc<<6 | uint32(v)
		d.nacc++
		if d.nacc == 4 {
			dst = append(dst, byte(d.acc>>16), byte(d.acc>>8), byte(d.acc))
			d.acc, d.nacc = 0, 0
		}
	}
	return dst
}

// flush emits the whole bytes of a partial quantum.
func (d *base64Reader) flush(dst []byte) []byte {
	switch d.nacc {
	case 2:
		dst = append(dst, byte(d.acc>>4))
	case 3:
		dst = append(dst, byte(d.acc>>10), byte(d.acc>>2))
	}
	d.acc, d.nacc = 0, 0
	return dst
}

func b64val(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '+' || c == '-':
		return 62
	case c == '/' || c == '_':
		return 63
	}
	return -1
}

// qpReader decodes quoted-printable (RFC 2045 §6.7) leniently: a '=' not
// followed by two hex digits or a line break is kept as it is, and
// trailing white space is kept too.
type qpReader struct {
	br  *bufio.Reader
	buf []byte // decoded line; out is what is left of it
	out []byte
	err error
}

func (d *qpReader) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		line, err := d.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			d.err = err
		}
		d.buf = qpDecodeLine(d.buf[:0], line)
		d.out = d.buf
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

func qpDecodeLine(dst, line []byte) []byte {
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c != '=' {
			dst = append(dst, c)
			continue
		}
		rest := line[i+1:]
		if len(rest) >= 2 && unhex(rest[0]) >= 0 && unhex(rest[1]) >= 0 {
			dst = append(dst, byte(unhex(rest[0])<<4|unhex(rest[1])))
			i += 2
			continue
		}
		// soft line break: '=' then optional white space, then the end
		if t := bytes.TrimLeft(rest, " \t"); len(t) == 0 || t[0] == '\n' || (t[0] == '\r' && (len(t) == 1 || t[1] == '\n')) {
			return dst
		}
		dst = append(dst, c)
	}
	return dst
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

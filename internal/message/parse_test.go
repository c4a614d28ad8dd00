package message

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

func mustParse(t testing.TB, raw []byte) *Parsed {
	t.Helper()
	m, err := Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if err := checkParsed(raw, m); err != nil {
		t.Fatalf("invariant: %v\n%s", err, raw)
	}
	return m
}

func TestParseShapes(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"crlf single", "Subject: hi\r\n\r\nHello\r\nWorld\r\n",
			`text/plain"Hello\r\nWorld\r\n"`},
		{"empty input", "", `text/plain""`},
		{"header only", "Subject: x\r\n", `text/plain""`},
		{"blank line only", "\n", `text/plain""`},
		{"no header", "\nbody\n", `text/plain"body\n"`},
		{"nested lf",
			"Content-Type: multipart/mixed; boundary=b\n\npreamble\n--b\nContent-Type: text/plain\n\nA\n" +
				"--b\nContent-Type: multipart/alternative; boundary=\"c\"\n\n--c\n\nin\n--c\nContent-Type: text/html\n\n<p>x</p>\n--c--\n" +
				"--b\n\nafter\n--b--\nepilogue\n",
			`multipart/mixed[text/plain"A",multipart/alternative[text/plain"in",text/html"<p>x</p>"],text/plain"after"]`},
		{"nested crlf",
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nA\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n" +
				"Subject: inner\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c\r\n\r\ny\r\n--c--\r\n\r\n--b--\r\n",
			`multipart/mixed[text/plain"A\r\n",message/rfc822{multipart/alternative[text/plain"x",text/plain"y"]}]`},
		{"missing boundary param",
			"Content-Type: multipart/mixed\n\nhello\n--b\nx\n",
			`multipart/mixed[text/plain""]`},
		{"boundary never found",
			"Content-Type: multipart/mixed; boundary=zz\n\nhello\n--b\nx\n",
			`multipart/mixed[text/plain""]`},
		{"missing final boundary",
			"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nA\n--b\n\nlast\nline\n",
			`multipart/mixed[text/plain"A",text/plain"last\nline\n"]`},
		{"outer boundary closes inner",
			"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: multipart/related; boundary=c\n\n--c\n\nin\n--b\n\nout\n--b--\n",
			`multipart/mixed[multipart/related[text/plain"in"],text/plain"out"]`},
		{"header cut by boundary",
			"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n--b\n\nx\n--b--\n",
			`multipart/mixed[text/html"",text/plain"x"]`},
		{"body without blank line",
			"Content-Type: multipart/mixed; boundary=b\n\n--b\nno header here\n--b--\n",
			`multipart/mixed[text/plain""]`},
		{"boundary with padding and junk",
			"Content-Type: multipart/mixed; boundary=b\n\n--b  \t\n\nA\n--b junk\n\nB\n--b--  \n",
			`multipart/mixed[text/plain"A",text/plain"B"]`},
		{"boundary prefix of another",
			"Content-Type: multipart/mixed; boundary=ab\n\n--ab\nContent-Type: multipart/mixed; boundary=abc\n\n--abc\n\nin\n--abc--\n--ab--\n",
			`multipart/mixed[multipart/mixed[text/plain"in"]]`},
		{"boundary with trailing space",
			"Content-Type: multipart/mixed; boundary=\"b \"\n\n--b \n\nA\n--b --\n",
			`multipart/mixed[text/plain"A"]`},
		{"digest default",
			"Content-Type: multipart/digest; boundary=b\n\n--b\n\nSubject: d1\n\nx\n--b\nContent-Type: text/plain\n\ny\n--b--\n",
			`multipart/digest[message/rfc822{text/plain"x"},text/plain"y"]`},
		{"rfc822 base64 stays opaque",
			"Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeAoKeQo=\n",
			`message/rfc822{text/plain""}`},
		{"message global",
			"Content-Type: message/global\n\nSubject: x\n\nbody\n",
			`message/global{text/plain"body\n"}`},
		{"rfc822 at end of multipart without header end",
			"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\nSubject: x\n--b--\n",
			`multipart/mixed[message/rfc822{text/plain""}]`},
		{"blank line is the boundary's line break",
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n--b--\r\n",
			`multipart/mixed[text/plain""]`},
		{"bad content type",
			"Content-Type: garbage\nContent-Transfer-Encoding: x-unknown\n\nbody",
			`text/plain"body"`},
		{"junk",
			"\x00\xff\xfe:::\n\t\n--\n--x\r\r\r\n\n\x80\x81",
			`text/plain"\x80\x81"`},
		{"from line and broken headers",
			"From someone@example.org Thu Aug 22 12:36:23 2002\nSubject: s\nbroken line\n\tcontinued\n\nbody\n",
			`text/plain"body\n"`},
		{"close delimiter then more boundaries",
			"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nA\n--b--\n--b\n\nB\n",
			`multipart/mixed[text/plain"A"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := []byte(tt.raw)
			m := mustParse(t, raw)
			if got := shape(raw, m.Structure); got != tt.want {
				t.Errorf("shape\n got %s\nwant %s", got, tt.want)
			}
			// Reading one byte at a time must not change anything.
			m2, err := Parse(iotest.OneByteReader(bytes.NewReader(raw)))
			if err != nil {
				t.Fatal(err)
			}
			if got := shape(raw, m2.Structure); got != tt.want {
				t.Errorf("one byte reader: %s", got)
			}
		})
	}
}

func TestParseFields(t *testing.T) {
	raw := []byte("Content-Type: TEXT/Plain; CharSet=\"ISO-8859-1\"; format=flowed (c); name*0=a; name*1=\"b c\"\r\n" +
		"Content-Disposition: Attachment; filename=a.txt; size=3\r\n" +
		"Content-Language: en, (comment) fr\r\n" +
		"Content-Location: http://x/\r\n a\r\n" +
		"Content-MD5: abc\r\nContent-ID: <id@x>\r\nContent-Description: desc\r\n" +
		"Content-Transfer-Encoding: QUOTED-PRINTABLE (yes)\r\n\r\nh=E9llo\r\n")
	m := mustParse(t, raw)
	p := m.Structure
	got := fmt.Sprintf("%s/%s %v %q %q %q %q %q %v %v %q", p.Type, p.Subtype, p.Params, p.ID, p.Description,
		p.Encoding, p.MD5, p.Disposition, p.DispositionParams, p.Language, p.Location)
	want := `text/plain [{charset ISO-8859-1} {format flowed} {name ab c}] "<id@x>" "desc" "quoted-printable" "abc" "attachment" [{filename a.txt} {size 3}] [en fr] "http://x/a"`
	if got != want {
		t.Errorf("fields\n got %s\nwant %s", got, want)
	}
	if !m.HasAttachment {
		t.Error("attachment not seen")
	}
	if m.Preview != "" {
		t.Errorf("preview of an attachment: %q", m.Preview)
	}
	if p.Lines != 1 || p.Size() != 9 {
		t.Errorf("lines %d size %d", p.Lines, p.Size())
	}
}

func TestParseDefaults(t *testing.T) {
	m := mustParse(t, []byte("Subject: x\n\nbody\n"))
	p := m.Structure
	if p.Type != "text" || p.Subtype != "plain" || p.Encoding != "7bit" ||
		len(p.Params) != 1 || p.Params[0] != (Param{"charset", "us-ascii"}) {
		t.Errorf("defaults: %+v", p)
	}
	if p.BodyBareLF != 1 || p.HeaderBareLF != 2 {
		t.Errorf("bare LF: header %d body %d", p.HeaderBareLF, p.BodyBareLF)
	}
}

func TestParseLimits(t *testing.T) {
	t.Run("depth", func(t *testing.T) {
		var b strings.Builder
		for i := 0; i < 2*maxDepth; i++ {
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i)
		}
		b.WriteString("\nleaf\n")
		raw := []byte(b.String())
		m := mustParse(t, raw)
		depth, p := 0, m.Structure
		for len(p.Parts) > 0 {
			depth++
			p = p.Parts[0]
		}
		if depth >= maxDepth || p.Type != "application" {
			t.Errorf("depth %d, innermost %s/%s", depth, p.Type, p.Subtype)
		}
	})
	t.Run("parts", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("Content-Type: multipart/mixed; boundary=b\n\n")
		for i := 0; i < maxParts+50; i++ {
			b.WriteString("--b\n\nx\n")
		}
		b.WriteString("--b--\n")
		m := mustParse(t, []byte(b.String()))
		if n := len(m.Structure.Parts); n >= maxParts {
			t.Errorf("%d parts", n)
		}
	})
	t.Run("header", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("Subject: first\n")
		for b.Len() < 2*maxHeaderBytes {
			b.WriteString("To: filler0123456789012345678901234567890123456789@example.org\n")
		}
		b.WriteString("Content-Type: text/html\n\n<b>hi</b>\n")
		m := mustParse(t, []byte(b.String()))
		if m.Structure.HeaderOverflow == 0 || m.Envelope.Subject != "first" || m.Structure.Subtype != "plain" {
			t.Errorf("overflow %d subject %q type %s", m.Structure.HeaderOverflow, m.Envelope.Subject, m.Structure.Subtype)
		}
	})
	t.Run("long boundary line", func(t *testing.T) {
		junk := strings.Repeat("j", 3*readBufSize)
		raw := []byte("Content-Type: multipart/mixed; boundary=b\n\n--b" + junk + "\nContent-Type: text/html\n\nA\n--b--" + junk + "\nepilogue\n")
		m := mustParse(t, raw)
		if got := shape(raw, m.Structure); got != `multipart/mixed[text/html"A"]` {
			t.Errorf("long boundary line: %.80s", got)
		}
	})
	t.Run("long line", func(t *testing.T) {
		long := strings.Repeat("x", 3*readBufSize)
		raw := []byte("Content-Type: multipart/mixed; boundary=b\n\n--b\n\n" + long + "--b\n--b\n\nA\n--b--\n")
		m := mustParse(t, raw)
		if got := shape(raw, m.Structure); got != `multipart/mixed[text/plain"`+long+`--b",text/plain"A"]` {
			t.Errorf("long line: %.80s", got)
		}
	})
}

func TestParseReadError(t *testing.T) {
	boom := errors.New("boom")
	r := iotest.TimeoutReader(strings.NewReader(strings.Repeat("Subject: x\n", 10000)))
	if _, err := Parse(r); err == nil {
		t.Error("no error from a failing reader")
	}
	if _, err := Parse(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("err %v", err)
	}
}

func TestPreview(t *testing.T) {
	tests := []struct{ name, raw, want string }{
		{"plain qp utf8",
			"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nH=C3=A9llo   =\nworld\n\n\n  again\n",
			"Héllo world again"},
		{"html only",
			"Content-Type: text/html; charset=iso-8859-1\n\n<html><head><title>T</title><style>p{}</style></head><body><p>Caf\xe9 &amp; <b>bar</b></p><script>x()</script>end</body></html>\n",
			"Café & bar end"},
		{"plain preferred",
			"Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/html\n\n<p>html</p>\n--b\nContent-Type: text/plain\n\nplain\n--b--\n",
			"plain"},
		{"base64 windows-1252",
			"Content-Type: text/plain; charset=windows-1252\nContent-Transfer-Encoding: base64\n\nk2hpk2k=\n",
			"“hi“i"},
		{"empty plain falls back to html",
			"Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\n\n--b\nContent-Type: text/html\n\n<p>html</p>\n--b--\n",
			"html"},
		{"unknown charset latin bytes", "Content-Type: text/plain; charset=x-bogus\n\nna\xefve\n", "naïve"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, []byte(tt.raw))
			if m.Preview != tt.want {
				t.Errorf("preview %q, want %q", m.Preview, tt.want)
			}
		})
	}
	long := "Subject: x\n\n" + strings.Repeat("éb ", 200)
	if m := mustParse(t, []byte(long)); len([]rune(m.Preview)) != PreviewLen {
		t.Errorf("long preview has %d characters", len([]rune(m.Preview)))
	}
}

func TestHasAttachment(t *testing.T) {
	tests := []struct {
		raw  string
		want bool
	}{
		{"Subject: x\n\nbody\n", false},
		{"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nA\n--b\nContent-Type: application/pdf; name=x.pdf\n\nx\n--b--\n", true},
		{"Content-Type: multipart/related; boundary=b\n\n--b\n\nA\n--b\nContent-Type: image/png\nContent-Disposition: inline; filename=a.png\n\nx\n--b--\n", false},
		{"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nA\n--b\nContent-Type: message/rfc822\n\nSubject: y\n\nz\n--b--\n", true},
		{"Content-Type: message/rfc822\n\nSubject: y\n\nz\n", false},
	}
	for i, tt := range tests {
		if m := mustParse(t, []byte(tt.raw)); m.HasAttachment != tt.want {
			t.Errorf("%d: HasAttachment %v", i, m.HasAttachment)
		}
	}
}

// repeatReader streams n bytes made of line repeated, never holding them.
type repeatReader struct {
	line []byte
	n    int64
	pos  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && r.n > 0 {
		c := copy(p[k:], r.line[r.pos:])
		if int64(c) > r.n {
			c = int(r.n)
		}
		k += c
		r.n -= int64(c)
		r.pos = (r.pos + c) % len(r.line)
	}
	return k, nil
}

// TestParseMemoryBounded streams a 64 MiB message and checks that parsing
// it allocates a small, fixed amount: bodies are never held.
func TestParseMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	head := "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	body := &repeatReader{line: []byte("SGVsbG8sIHdvcmxkISBIZWxsbywgd29ybGQhIEhlbGxvLCB3b3JsZCEgSGVsbG8sIHdvcmxkIQ==\r\n"), n: 64 << 20}
	tail := "\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n" + strings.Repeat("x", 1<<20) + "\r\n--b--\r\n"
	r := io.MultiReader(strings.NewReader(head), body, strings.NewReader(tail))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := Parse(r)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("parsing a 65 MiB message allocated %d bytes", got)
	}
	if len(m.Structure.Parts) != 2 || m.Structure.Parts[0].Lines == 0 || !strings.HasPrefix(m.Preview, "Hello, world!") {
		t.Errorf("structure %+v preview %q", m.Structure, m.Preview)
	}
}

package message

import (
	"bytes"
	"strings"
	"testing"
)

func TestDecodedText(t *testing.T) {
	raw := []byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"caf=E9 =\r\nsoft=3Dbreak =ZZ\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"w6ly\r\nw6k=\r\n" +
		"--b\r\nContent-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"\xf0\xd2\xc9\xd7\xc5\xd4\r\n" +
		"--b\r\nContent-Type: text/plain; charset=shift_jis\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n" +
		"raw as is\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"!!AAEC!!\r\n" +
		"--b--\r\n")
	m := mustParse(t, raw)
	src := bytes.NewReader(raw)
	want := []string{"café soft=break =ZZ", "éré", "Привет", "raw as is", "\x00\x01\x02"}
	for i, w := range want {
		got, err := DecodedText(src, m.Structure.Parts[i], 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if got != w {
			t.Errorf("part %d: %q, want %q", i+1, got, w)
		}
	}
	got, err := DecodedText(src, m.Structure.Parts[1], 2)
	if err != nil || got != "é" {
		t.Errorf("limited: %q %v", got, err)
	}
	if got, _ := DecodedText(src, m.Structure.Parts[1], 0); got != "" {
		t.Errorf("max 0: %q", got)
	}
	h, err := HeaderBytes(src, m.Structure.Parts[0])
	if err != nil || !strings.HasPrefix(string(h), "Content-Type: text/plain") || !strings.HasSuffix(string(h), "\r\n\r\n") {
		t.Errorf("HeaderBytes: %q %v", h, err)
	}
}

func TestHTMLText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<p>a</p><p>b</p>", " a  b "},
		{"x<!-- hidden -->y", "xy"},
		{"<STYLE>p{}</STYLE>t<SCRIPT>1</SCRIPT>", "t"},
		{"a &lt; b &amp;&nbsp;c", "a < b &\u00a0c"},
		{"<b>unclosed", "unclosed"},
		{"tag <never closed", "tag "},
		{"<head><title>T</title></head><body>x</body>", " x"},
	}
	for _, tt := range tests {
		if got := HTMLText(tt.in); got != tt.want {
			t.Errorf("HTMLText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFilename(t *testing.T) {
	tests := []struct{ hdr, want string }{
		{"Content-Type: application/pdf; name=\"a b.pdf\"", "a b.pdf"},
		{"Content-Type: application/pdf; name=x.pdf\nContent-Disposition: attachment; filename=y.pdf", "y.pdf"},
		{"Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%20rates.txt", "€ rates.txt"},
		{"Content-Disposition: attachment; filename*0*=iso-8859-1''caf%E9; filename*1*=.txt", "café.txt"},
		{"Content-Type: image/png; name=\"=?utf-8?q?J=C3=B6.png?=\"", "Jö.png"},
		{"Content-Type: text/plain", ""},
	}
	for _, tt := range tests {
		m := mustParse(t, []byte(tt.hdr+"\n\nx\n"))
		if got := m.Structure.Filename(); got != tt.want {
			t.Errorf("%q: Filename %q, want %q", tt.hdr, got, tt.want)
		}
	}
}

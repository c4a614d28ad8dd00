package message

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks that any input parses without error into a structure
// that holds the invariants, and that decoding its leaves never fails.
// The seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nA\n--b--\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := Parse(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if err := checkParsed(raw, m); err != nil {
			t.Fatalf("%v", err)
		}
		if err := decodeLeaves(raw, m.Structure); err != nil {
			t.Fatal(err)
		}
		for _, a := range m.Envelope.From {
			_ = DecodeHeaderValue(a.Name)
		}
		_ = DecodeHeaderValue(m.Envelope.Subject)
	})
}

// FuzzDecodeHeaderValue checks that decoding always yields valid UTF-8.
func FuzzDecodeHeaderValue(f *testing.F) {
	for _, s := range []string{"=?utf-8?q?caf=C3=A9?=", "=?iso-8859-1?b?6Q==?= =?iso-8859-1?q?x?=", "a =?x?q?b", "\xff=?utf-8*en?B?w6k=?="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if out := DecodeHeaderValue(s); !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 %q from %q", out, s)
		}
	})
}

// FuzzParseAddressList checks the address parser's bounds: no marker
// without its pair, and no more addresses than the input could hold.
func FuzzParseAddressList(f *testing.F) {
	for _, s := range []string{`"A" <a@b>, g: c@d, <@r:e@f>;`, "a@b (c)", "<x:;@y>", `"\` + `"<`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		as := ParseAddressList(s)
		depth := 0
		for _, a := range as {
			switch {
			case a.GroupStart:
				if depth != 0 || a.Mailbox == "" {
					t.Fatalf("bad group start in %q: %+v", s, as)
				}
				depth++
			case a.GroupEnd:
				depth--
			default:
				if a.Mailbox == "" || a.Host == "" {
					t.Fatalf("address without mailbox or host in %q: %+v", s, a)
				}
			}
			if depth < 0 {
				t.Fatalf("group end without start in %q", s)
			}
		}
		if depth != 0 || len(as) > len(s)+1 {
			t.Fatalf("%d addresses, depth %d from %q", len(as), depth, s)
		}
	})
}

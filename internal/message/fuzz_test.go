package message

import (
	"bytes"
	"testing"
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

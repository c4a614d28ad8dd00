package sasl

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func FuzzParsePlain(f *testing.F) {
	for _, s := range []string{"\x00u\x00p", "a\x00u\x00p", "", "\x00\x00", "u\x00p", "\xff\x00u\x00p"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		z, c, p, err := ParsePlain(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if c == "" || p == "" {
			t.Fatal("empty authcid or passwd accepted")
		}
		if got := z + "\x00" + c + "\x00" + p; !bytes.Equal([]byte(got), b) {
			t.Fatalf("round trip: %q != %q", got, b)
		}
	})
}

func FuzzParseGS2Header(f *testing.F) {
	for _, s := range []string{"n,,n=user,r=abc", "y,a=x=2Cy=3Dz,n=u,r=1", "p=tls-exporter,,n=u,r=1", "p=,,", "n,a=,", "=", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, rest, err := ParseGS2Header(s)
		if err != nil {
			return
		}
		if !strings.HasSuffix(s, rest) {
			t.Fatalf("rest %q is not a suffix of %q", rest, s)
		}
		if h.Flag != 'n' && h.Flag != 'y' && h.Flag != 'p' {
			t.Fatalf("flag %q", h.Flag)
		}
		if (h.Flag == 'p') != (h.CBName != "") {
			t.Fatalf("cb name %q with flag %q", h.CBName, h.Flag)
		}
	})
}

// FuzzScram feeds arbitrary client messages to a SCRAM server: it must
// never panic, never succeed, and always classify its errors.
func FuzzScram(f *testing.F) {
	f.Add("n,,n=alice@example.org,r=abc", "c=biws,r=abc,p=AAAA")
	f.Add("y,,n=nobody,r=x", "c=eSws,r=x,p=")
	f.Add("n,a=bob,n=alice@example.org,r=1", "c=,r=,p=====")
	f.Add("n,,n=a=2Cb,r=\xff", "")
	fa := newFake()
	f.Fuzz(func(t *testing.T, c1, c2 string) {
		s, err := NewServer(ScramSHA256, context.Background(), fa, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, done, err := s.Next([]byte(c1))
		if err != nil || done {
			if err == nil || IsTemporary(err) {
				t.Fatalf("first: done=%v err=%v", done, err)
			}
			return
		}
		_, done, err = s.Next([]byte(c2))
		if err == nil {
			t.Fatalf("a random proof was accepted (done=%v)", done)
		}
		if IsTemporary(err) {
			t.Fatalf("unclassified error: %v", err)
		}
	})
}

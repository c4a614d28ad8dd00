package imapserver

import (
	"bytes"
	"compress/flate"
	"io"
	"testing"
)

func inflateAll(t testing.TB, data []byte) ([]byte, error) {
	return io.ReadAll(newInflater(&byteReader{r: bytes.NewReader(data)}))
}

func TestInflateMatchesFlate(t *testing.T) {
	inputs := [][]byte{nil, []byte("a"), bytes.Repeat([]byte("abcabcabd"), 10000)}
	noise := make([]byte, 100000)
	x := uint32(1)
	for i := range noise {
		x = x*1664525 + 1013904223
		noise[i] = byte(x >> 24 % 7)
	}
	inputs = append(inputs, noise)
	for _, in := range inputs {
		for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.HuffmanOnly} {
			var buf bytes.Buffer
			w, _ := flate.NewWriter(&buf, level)
			w.Write(in)
			w.Close()
			got, err := inflateAll(t, buf.Bytes())
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("level %d, %d bytes: got %d bytes, %v", level, len(in), len(got), err)
			}
		}
	}
}

func FuzzInflate(f *testing.F) {
	f.Add([]byte("hello hello hello"), true)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, data []byte, compress bool) {
		// A few bytes of deflate can stand for megabytes (back-references
		// of 258 bytes each): what is read, and what is compressed, is
		// bounded, so that no input costs more than a few milliseconds and
		// the run's pace does not collapse as the corpus grows.
		if !compress {
			// Garbage must not panic or hang.
			io.Copy(io.Discard, io.LimitReader(newInflater(&byteReader{r: bytes.NewReader(data)}), 1<<20))
			return
		}
		if len(data) > 64<<10 {
			data = data[:64<<10]
		}
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestSpeed)
		w.Write(data)
		w.Flush()
		w.Write(data)
		w.Close()
		got, err := inflateAll(t, buf.Bytes())
		if err != nil || !bytes.Equal(got, append(append([]byte(nil), data...), data...)) {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}

package pop3server

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"USER alice", "PASS a b  c", "RETR 1", "TOP 1 10", "AUTH PLAIN =", "capa", "", " ", "LIST\t1", "X", "ABCDE f", "USER \x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		c, err := ParseCommand(line)
		if err != nil {
			return
		}
		if len(c.Name) < 3 || len(c.Name) > 4 || strings.ToUpper(c.Name) != c.Name {
			t.Fatalf("bad name %q", c.Name)
		}
		if len(c.Args) > maxArgs {
			t.Fatalf("%d args", len(c.Args))
		}
		for _, a := range c.Args {
			if strings.ContainsAny(a, "\x00\r\n") {
				t.Fatalf("control character in %q", a)
			}
		}
		if _, ok := commandTable[c.Name]; ok && c.Name != "PASS" {
			for _, a := range c.Args {
				if a == "" || strings.ContainsAny(a, " ") {
					t.Fatalf("arg %q", a)
				}
			}
		}
	})
}

// unstuff reverses writeBody's framing: it checks the terminator and
// that every line ends in CRLF, and removes the byte-stuffing.
func unstuff(t *testing.T, out []byte) []byte {
	if !bytes.HasSuffix(out, []byte(".\r\n")) {
		t.Fatalf("no terminator: %q", out)
	}
	out = out[:len(out)-3]
	var b bytes.Buffer
	for len(out) > 0 {
		i := bytes.Index(out, []byte("\r\n"))
		if i < 0 {
			t.Fatalf("line without CRLF: %q", out)
		}
		line := out[:i]
		if bytes.IndexByte(line, '\n') >= 0 {
			t.Fatalf("bare LF inside %q", line)
		}
		if len(line) > 0 && line[0] == '.' {
			if len(line) == 1 {
				t.Fatalf("unstuffed terminator inside the body")
			}
			line = line[1:]
		}
		b.Write(line)
		b.WriteString("\r\n")
		out = out[i+2:]
	}
	return b.Bytes()
}

// normalize is what a message looks like on the wire: CRLF line ends, a
// final CRLF.
func normalize(in []byte) []byte {
	s := strings.ReplaceAll(string(in), "\r\n", "\n")
	s = strings.ReplaceAll(s, "\n", "\r\n")
	if s != "" && !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return []byte(s)
}

func FuzzWriteBody(f *testing.F) {
	f.Add([]byte(msg1), 1)
	f.Add([]byte(msg2), -1)
	f.Add([]byte(msg3), 0)
	f.Add([]byte(".\r\n.\n..\r\r\n\r"), 2)
	f.Add([]byte(strings.Repeat("x", 40000)+"\r\n.y\n"), -1)
	f.Fuzz(func(t *testing.T, in []byte, lines int) {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		br := bufio.NewReaderSize(nil, 16)
		if err := writeBody(w, br, bytes.NewReader(in), -1); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		// The in-memory path (read-ahead) sends the same bytes.
		if mem := append(appendWire(nil, in), ".\r\n"...); !bytes.Equal(mem, out.Bytes()) {
			t.Fatalf("appendWire:\n got %q\nwant %q", mem, out.Bytes())
		}
		got := unstuff(t, out.Bytes())
		want := normalize(in)
		if !bytes.Equal(got, want) {
			t.Fatalf("RETR body:\n got %q\nwant %q", got, want)
		}
		n, err := crlfSize(bytes.NewReader(in), br)
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(len(want)) {
			t.Fatalf("crlfSize %d, sent %d", n, len(want))
		}
		// TOP: a prefix of the full body, ending at a line end.
		out.Reset()
		if err := writeBody(w, br, bytes.NewReader(in), lines%50); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		top := unstuff(t, out.Bytes())
		if !bytes.HasPrefix(want, top) {
			t.Fatalf("TOP is not a prefix:\n top %q\nfull %q", top, want)
		}
	})
}

package mbox

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/tern-mail/tern/internal/testutil"
)

type readMsg struct {
	from string
	body string
}

// readAll splits data, reading sources and bodies in awkward chunk sizes
// when slow is set.
func readAll(t testing.TB, data []byte, format Format, slow bool) []readMsg {
	t.Helper()
	var src io.Reader = bytes.NewReader(data)
	if slow {
		src = iotest.HalfReader(iotest.OneByteReader(src))
	}
	var out []readMsg
	err := ForEach(src, format, func(m *Message) error {
		var body io.Reader = m.Body
		if slow {
			body = iotest.OneByteReader(body)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		out = append(out, readMsg{m.FromLine, string(b)})
		return nil
	})
	if err != nil {
		t.Fatalf("ForEach: %v", err)
	}
	return out
}

func TestSplit(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		format Format
		want   []readMsg
	}{
		{"empty", "", MboxRD, nil},
		{"blank lines only", "\n\r\n\n", MboxRD, nil},
		{"one", "From a@b Thu Aug 22 12:36:23 2002\nSubject: x\n\nhi\n\n", MboxRD,
			[]readMsg{{"a@b Thu Aug 22 12:36:23 2002", "Subject: x\n\nhi\n"}}},
		{"two, no final newline", "From a x\nA\n\nFrom b y\nB", MboxRD,
			[]readMsg{{"a x", "A\n"}, {"b y", "B"}}},
		{"no blank line before From", "From a x\nA\nFrom b y\nB\n", MboxRD,
			[]readMsg{{"a x", "A"}, {"b y", "B"}}},
		{"mboxrd unquote", "From a x\n>From me\n>>From you\n>Fromage\n From\n\n", MboxRD,
			[]readMsg{{"a x", "From me\n>From you\n>Fromage\n From\n"}}},
		{"mboxo keeps quotes", "From a x\n>From me\n>>From you\n\n", MboxO,
			[]readMsg{{"a x", ">From me\n>>From you\n"}}},
		{"crlf", "From a x\r\nA: 1\r\n\r\nbody\r\n\r\nFrom b y\r\nB\r\n\r\n", MboxRD,
			[]readMsg{{"a x", "A: 1\r\n\r\nbody\r\n"}, {"b y", "B\r\n"}}},
		{"preamble message", "Subject: plain\n\nbody\n", MboxRD,
			[]readMsg{{"", "Subject: plain\n\nbody\n"}}},
		{"preamble then mbox", "junk\n\nFrom a x\nA\n\n", MboxRD,
			[]readMsg{{"", "junk\n"}, {"a x", "A\n"}}},
		{"lone cr kept", "From a x\nA\r\r\n\n", MboxRD,
			[]readMsg{{"a x", "A\r\r\n"}}},
		{"cr before lf separator", "From a x\nA\r\nFrom b y\n\n", MboxRD,
			[]readMsg{{"a x", "A\r"}, {"b y", ""}}},
	}
	for _, tc := range tests {
		for _, slow := range []bool{false, true} {
			got := readAll(t, []byte(tc.in), tc.format, slow)
			if len(got) != len(tc.want) {
				t.Errorf("%s (slow %v): got %q, want %q", tc.name, slow, got, tc.want)
				continue
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("%s (slow %v): message %d = %q, want %q", tc.name, slow, i, got[i], tc.want[i])
				}
			}
		}
	}
}

func TestParseFromLine(t *testing.T) {
	tests := []struct {
		line   string
		sender string
		date   string
	}{
		{"exmh-workers-admin@redhat.com  Thu Aug 22 12:36:23 2002", "exmh-workers-admin@redhat.com", "2002-08-22T12:36:23Z"},
		{"- Mon Jan  6 01:02:03 2020", "", "2020-01-06T01:02:03Z"},
		{"a@b Mon Jan 6 01:02:03 2020 +0200", "a@b", "2020-01-05T23:02:03Z"},
		{"a@b Mon Jan 6 01:02:03 2020 remote from x", "a@b", "2020-01-06T01:02:03Z"},
		{"MAILER-DAEMON garbage", "MAILER-DAEMON", ""},
		{"nospace", "nospace", ""},
	}
	for _, tc := range tests {
		s, d := ParseFromLine(tc.line)
		got := ""
		if !d.IsZero() {
			got = d.UTC().Format(time.RFC3339)
		}
		if s != tc.sender || got != tc.date {
			t.Errorf("ParseFromLine(%q) = %q, %q; want %q, %q", tc.line, s, got, tc.sender, tc.date)
		}
	}
	d := time.Date(2024, 3, 5, 7, 8, 9, 0, time.FixedZone("x", 3600))
	line := FormatFromLine("<a b@c>", d)
	if line != "From ab@c Tue Mar  5 06:08:09 2024" {
		t.Errorf("FormatFromLine = %q", line)
	}
	s, got := ParseFromLine(strings.TrimPrefix(line, "From "))
	if s != "ab@c" || !got.Equal(d) {
		t.Errorf("round trip: %q %v", s, got)
	}
	if FormatFromLine("", time.Time{}) != "From MAILER-DAEMON Thu Jan  1 00:00:00 1970" {
		t.Errorf("empty: %q", FormatFromLine("", time.Time{}))
	}
}

// roundTrip writes msgs with the Writer and checks that the Reader gives
// them back byte for byte.
func roundTrip(t testing.TB, msgs [][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	date := time.Date(2002, 8, 22, 12, 36, 23, 0, time.UTC)
	for _, m := range msgs {
		n, err := w.WriteMessage("a@b", date, bytes.NewReader(m))
		if err != nil || n != int64(len(m)) {
			t.Fatalf("WriteMessage: %d, %v", n, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, slow := range []bool{false, true} {
		if slow && buf.Len() > 1<<20 {
			continue
		}
		got := readAll(t, buf.Bytes(), MboxRD, slow)
		if len(got) != len(msgs) {
			t.Fatalf("read %d messages, wrote %d", len(got), len(msgs))
		}
		for i := range got {
			if got[i].body != string(msgs[i]) {
				t.Fatalf("message %d (slow %v): got %q, want %q", i, slow, got[i].body, msgs[i])
			}
			if s, d := ParseFromLine(got[i].from); s != "a@b" || !d.Equal(date) {
				t.Fatalf("message %d: From_ line %q", i, got[i].from)
			}
		}
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	msgs := [][]byte{
		[]byte(""),
		[]byte("no newline"),
		[]byte("From the start\nFrom x\n>From y\n>>>From z\n>Fro\n>\n"),
		[]byte("\n\n"),
		[]byte("crlf\r\n\r\nFrom a\r\n"),
		[]byte("ends in cr\r"),
		[]byte(">"),
		[]byte("From "),
		[]byte("From"),
		[]byte(">>From"),
		[]byte("\r"),
		[]byte(strings.Repeat(">", 200000) + "From long quote\n"),
		[]byte(strings.Repeat("x", 300000) + "\r\n" + strings.Repeat("y", 70000) + "\r"),
	}
	out := roundTrip(t, msgs)
	if !bytes.Contains(out, []byte("\n>From the start\n>From x\n>>From y\n>>>>From z\n>Fro\n")) {
		t.Errorf("quoting wrong:\n%q", out[:200])
	}
}

func TestRoundTripCorpus(t *testing.T) {
	files := testutil.CorpusFiles(t)
	var msgs [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	roundTrip(t, msgs)
}

func TestFlags(t *testing.T) {
	for _, eol := range []string{"\n", "\r\n"} {
		flags := []string{`\Seen`, `\Answered`, `\Flagged`, "$Label1", `\Draft`, `\Deleted`}
		block := FlagBlock(flags, eol)
		want := "X-Tern-Flags: \\Seen \\Answered \\Flagged $Label1 \\Draft \\Deleted" + eol +
			"Status: RO" + eol + "X-Status: AFTD" + eol + "X-Keywords: $Label1" + eol
		if string(block) != want {
			t.Errorf("FlagBlock = %q", block)
		}
		msg := "Status: O" + eol + "Subject: x" + eol + eol + "body"
		br := bufio.NewReader(strings.NewReader(string(block) + msg))
		got, ok, err := ReadFlags(br)
		if err != nil || !ok || strings.Join(got, " ") != strings.Join(flags, " ") {
			t.Errorf("ReadFlags = %q, %v, %v", got, ok, err)
		}
		rest, _ := io.ReadAll(br)
		if string(rest) != msg {
			t.Errorf("rest = %q", rest)
		}
		hf := HeaderFlags(block)
		if strings.Join(hf, " ") != `\Seen \Answered \Flagged \Draft \Deleted $Label1` {
			t.Errorf("HeaderFlags = %q", hf)
		}
	}
	// No flags: the block is still written, and removed.
	block := FlagBlock(nil, "\n")
	if string(block) != "X-Tern-Flags:\nStatus: O\n" {
		t.Errorf("empty block = %q", block)
	}
	got, ok, _ := ReadFlags(bufio.NewReader(bytes.NewReader(append(block, "X-Tern-Flags: \\Seen\n"...))))
	if !ok || len(got) != 0 {
		t.Errorf("empty: %q %v", got, ok)
	}
	// A marker whose derived fields do not follow is not ours: untouched.
	br := bufio.NewReader(strings.NewReader("X-Tern-Flags: \\Seen\nSubject: x\n\n"))
	if _, ok, _ := ReadFlags(br); ok {
		t.Error("foreign marker accepted")
	}
	if b, _ := br.Peek(5); string(b) != "X-Ter" {
		t.Error("foreign marker consumed")
	}
	if f := HeaderFlags([]byte("X-Status: F\nstatus: R\n\nX-Status: D\n")); strings.Join(f, " ") != `\Flagged \Seen` {
		t.Errorf("HeaderFlags = %q", f)
	}
}

func FuzzSplit(f *testing.F) {
	f.Add([]byte("From a x\n>From me\n\nFrom b y\r\nB\r\n\r\n"))
	f.Add([]byte("junk\nFrom a x\nA\r"))
	f.Add([]byte(">>From \n\r\nFrom "))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range []Format{MboxRD, MboxO} {
			msgs := readAll(t, data, format, false)
			slow := readAll(t, data, format, true)
			if len(msgs) != len(slow) {
				t.Fatalf("chunking changed the split: %d vs %d", len(msgs), len(slow))
			}
			var bodies [][]byte
			for i, m := range msgs {
				if m != slow[i] {
					t.Fatalf("chunking changed message %d: %q vs %q", i, m, slow[i])
				}
				bodies = append(bodies, []byte(m.body))
			}
			roundTrip(t, bodies)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("From x\x00>From y\r\x00\x00\r\n"))
	f.Add([]byte("a\nFrom b\n\x00\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, bytes.Split(data, []byte{0}))
	})
}

func TestLongFromLine(t *testing.T) {
	long := "a@b " + strings.Repeat("x", 100000)
	in := "From " + long + "\r\nA\r\n\r\nFrom b y\r\nB\r\n\r\n"
	for _, slow := range []bool{false, true} {
		got := readAll(t, []byte(in), MboxRD, slow)
		if len(got) != 2 || got[0].from != long[:MaxFromLine] || got[0].body != "A\r\n" || got[1].body != "B\r\n" {
			t.Errorf("slow %v: got %d messages: %.60q", slow, len(got), got)
		}
	}
}

package imap

import (
	"bufio"
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func mustParse(t *testing.T, s string, opt Options) *Command {
	t.Helper()
	cmd, err := ParseCommand([]byte(s), opt)
	if err != nil {
		t.Fatalf("ParseCommand(%q): %v", s, err)
	}
	return cmd
}

func TestParseCommands(t *testing.T) {
	good := []string{
		`a1 CAPABILITY`,
		`a LOGIN joe "sec\"ret"`,
		"a LOGIN {3+}\r\njoe {2}\r\npw",
		`a AUTHENTICATE PLAIN AGpvZQBwdw==`,
		`a AUTHENTICATE PLAIN =`,
		`a SELECT INBOX (CONDSTORE)`,
		`a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))`,
		`a SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7000,9000 25000,35000,45000)))`,
		`a CREATE Sent (USE (\Sent))`,
		`a LIST "" *`,
		`a LIST (SUBSCRIBED) "" ("INBOX" "Sent/%") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))`,
		`a STATUS INBOX (MESSAGES UIDNEXT SIZE)`,
		"a APPEND INBOX (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {5+}\r\nhello {2+}\r\nhi",
		"a APPEND INBOX ~{3+}\r\na\x00b",
		`a FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From "To")]<0.100> BODY[1.2.MIME] BINARY[1] BINARY.SIZE[2] RFC822.SIZE)`,
		`a UID FETCH 1:* FAST (CHANGEDSINCE 12345 VANISHED)`,
		`a FETCH 2 BODY[]`,
		`a STORE 1:3 +FLAGS.SILENT (\Deleted $Junk)`,
		`a UID STORE 1 (UNCHANGEDSINCE 5) FLAGS \Seen \Flagged`,
		`a SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR FROM "x" NOT (SUBJECT y LARGER 100) 1:5 $ SINCE 1-Feb-1994 HEADER X-Foo bar MODSEQ 5`,
		`a UID SORT (REVERSE DATE SUBJECT) UTF-8 ALL`,
		`a THREAD REFERENCES UTF-8 SINCE "1-Feb-2020"`,
		`a UID EXPUNGE 3:5`,
		`a MOVE 1:2 Trash`,
		`a ID ("name" "x" "version" NIL)`,
		`a ID NIL`,
		`a ENABLE CONDSTORE IMAP4rev2`,
		`a COMPRESS DEFLATE`,
		`a GETQUOTAROOT INBOX`,
		`a RENAME a b`,
	}
	for _, s := range good {
		mustParse(t, s, Options{})
	}
	bad := []string{``, `a`, `a FOO`, `a LOGIN joe`, `a FETCH 0 FLAGS`, `a FETCH 1 BODY[HEADER.FIELDS ()]`,
		`a UID NOOP`, `a SEARCH (((`, "a LOGIN {5}\r\nab", `a STORE 1 FLAGS`, `+ NOOP`, `a SEARCH ` + strings.Repeat("NOT ", 100) + "ALL"}
	for _, s := range bad {
		if _, err := ParseCommand([]byte(s), Options{}); err == nil {
			t.Errorf("ParseCommand(%q) accepted", s)
		}
	}
}

func TestParseDetails(t *testing.T) {
	// RFC 4959 §3: "=" is a zero-length initial response, not an absent one.
	for s, want := range map[string]string{`a AUTHENTICATE PLAIN =`: "", `a AUTHENTICATE PLAIN AGpvZQBwdw==`: "\x00joe\x00pw"} {
		a := mustParse(t, s, Options{}).Args.(*AuthenticateArgs)
		if !a.HasInitial || a.Initial == nil || string(a.Initial) != want {
			t.Errorf("%s: initial %q (nil %v, has %v)", s, a.Initial, a.Initial == nil, a.HasInitial)
		}
	}
	if a := mustParse(t, `a AUTHENTICATE PLAIN`, Options{}).Args.(*AuthenticateArgs); a.HasInitial || a.Initial != nil {
		t.Errorf("no initial response: %+v", a)
	}
	c := mustParse(t, `a FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS.NOT (From To)]<5.10>)`, Options{})
	fa := c.Args.(*FetchArgs)
	want := FetchItem{Name: "BODY", Peek: true, Section: &Section{Parts: []int{1, 2}, Specifier: "HEADER.FIELDS.NOT", Fields: []string{"From", "To"}}, Partial: &Partial{5, 10}}
	if !reflect.DeepEqual(fa.Items[1], want) {
		t.Errorf("got %+v", fa.Items[1])
	}
	if got := fa.Items[1].Section.String(); got != `1.2.HEADER.FIELDS.NOT (From To)` {
		t.Errorf("section string %q", got)
	}
	c = mustParse(t, `a SELECT &AOk-t&AOk-`, Options{})
	if mb := c.Args.(*SelectArgs).Mailbox; mb != "été" {
		t.Errorf("mailbox %q", mb)
	}
	c = mustParse(t, `a SELECT "été"`, Options{UTF8: true})
	if mb := c.Args.(*SelectArgs).Mailbox; mb != "été" {
		t.Errorf("utf8 mailbox %q", mb)
	}
	c = mustParse(t, `a UID STORE 1 -FLAGS (\Seen)`, Options{})
	if sa := c.Args.(*StoreArgs); !c.UID || sa.Op != StoreRemove || sa.Flags[0] != `\Seen` {
		t.Errorf("store %+v", sa)
	}
}

func TestSeqSet(t *testing.T) {
	s, err := ParseSeqSet("1:3,7,9:*")
	if err != nil {
		t.Fatal(err)
	}
	for n, want := range map[uint32]bool{1: true, 3: true, 4: false, 7: true, 9: true, 100: true} {
		if s.Contains(n, 100) != want {
			t.Errorf("Contains(%d) = %v", n, !want)
		}
	}
	if s.String() != "1:3,7,9:*" {
		t.Errorf("String %q", s.String())
	}
	if got := CompactUIDs([]uint32{5, 1, 2, 3, 9, 10}); got != "1:3,5,9:10" {
		t.Errorf("CompactUIDs %q", got)
	}
}

func TestMUTF7(t *testing.T) {
	for dec, enc := range map[string]string{"Entwürfe": "Entw&APw-rfe", "a&b": "a&-b", "日本語": "&ZeVnLIqe-", "~peter/mail/台北/日本語": "~peter/mail/&U,BTFw-/&ZeVnLIqe-"} {
		if got := EncodeMUTF7(dec); got != enc {
			t.Errorf("Encode(%q) = %q", dec, got)
		}
		if got, err := DecodeMUTF7(enc); err != nil || got != dec {
			t.Errorf("Decode(%q) = %q, %v", enc, got, err)
		}
	}
	for _, bad := range []string{"&", "&Jjo", "&AGE-", "é"} {
		if _, err := DecodeMUTF7(bad); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}

func TestReadCommand(t *testing.T) {
	in := "a LOGIN {3}\r\njoe {2+}\r\npw\r\nb NOOP\r\nt1 " + strings.Repeat("x", 100) + "\r\nc NOOP\r\nd APPEND x {999}\r\n"
	r := bufio.NewReaderSize(strings.NewReader(in), 16)
	conts := 0
	lim := Limits{MaxLine: 50, MaxLiteral: 100, MaxCommand: 200}
	cmd, err := ReadCommand(r, lim, func() error { conts++; return nil })
	if err != nil || string(cmd) != "a LOGIN {3}\r\njoe {2+}\r\npw" || conts != 1 {
		t.Fatalf("got %q, %v, %d", cmd, err, conts)
	}
	if cmd, _ = ReadCommand(r, lim, nil); string(cmd) != "b NOOP" {
		t.Fatalf("got %q", cmd)
	}
	var long *LineTooLongError
	if _, err = ReadCommand(r, lim, nil); !errors.Is(err, ErrLineTooLong) || !errors.As(err, &long) || long.Tag != "t1" {
		t.Fatalf("long line: %v", err)
	}
	if cmd, _ = ReadCommand(r, lim, nil); string(cmd) != "c NOOP" {
		t.Fatalf("after long line got %q", cmd)
	}
	_, err = ReadCommand(r, lim, nil)
	if e, ok := err.(*LiteralTooBigError); !ok || !e.Sync || e.Tag != "d" {
		t.Fatalf("big literal: %v", err)
	}
}

func TestWriter(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(bufio.NewWriter(&buf))
	w.String(`a"b`).SP().String("x\r\ny").SP().NString("").SP().AString("INBOX").SP().Mailbox("été").Flags([]string{`\Seen`}).Flush()
	want := "\"a\\\"b\" {4}\r\nx\r\ny NIL INBOX \"&AOk-t&AOk-\"(\\Seen)"
	if buf.String() != want {
		t.Errorf("got %q", buf.String())
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"a FETCH 1:* (BODY[1.HEADER.FIELDS (a b)]<1.2>)", "a SEARCH OR NOT 1 UID 2:* (HEADER a b)",
		"a APPEND x (\\Seen) {1+}\r\nx", "a SELECT x (QRESYNC (1 2 1:3 (1 2)))", "a LIST () \"\" (a b) RETURN (STATUS (MESSAGES))"} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, utf bool) {
		cmd, err := ParseCommand(b, Options{UTF8: utf})
		if err == nil && cmd == nil {
			t.Fatal("nil command without error")
		}
		if err != nil && !IsParseError(err) {
			t.Fatalf("error of unexpected type %T", err)
		}
	})
}

// FuzzWriterRoundTrip checks that every string the writer emits parses back
// to the same value.
func FuzzWriterRoundTrip(f *testing.F) {
	for _, s := range []string{"", "abc", `a"b\c`, "x\r\ny", "été", "NIL", "\x00"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, utf bool) {
		if strings.IndexByte(s, 0) >= 0 {
			return // NUL needs literal8, which the writer never uses for strings
		}
		var buf bytes.Buffer
		w := &Writer{W: bufio.NewWriter(&buf), UTF8: utf}
		w.String(s).SP().AString(s).SP().Mailbox(s)
		w.Flush()
		l := &lexer{b: buf.Bytes(), utf8: utf}
		got, err := l.string()
		if err != nil || got != s {
			t.Fatalf("String(%q) -> %q -> %q, %v", s, buf.Bytes(), got, err)
		}
		l.sp()
		if got, err = l.astring(); err != nil || got != s {
			t.Fatalf("AString(%q) -> %q -> %q, %v", s, buf.Bytes(), got, err)
		}
		l.sp()
		got, err = l.astring()
		if err != nil {
			t.Fatalf("Mailbox(%q): %v", s, err)
		}
		if !utf && utf8.ValidString(s) {
			if got, err = DecodeMUTF7(got); err != nil || got != s {
				t.Fatalf("Mailbox(%q) round trip %q, %v", s, got, err)
			}
		}
	})
}

// TestLineTooLongTag: the tag of an over-long command is reported, also
// when the long line follows a literal, and never one that is no tag.
func TestLineTooLongTag(t *testing.T) {
	lim := Limits{MaxLine: 50, MaxLiteral: 100, MaxCommand: 200}
	long := strings.Repeat("A", 100)
	for in, want := range map[string]string{
		"a1 AUTHENTICATE PLAIN " + long + "\r\n":      "a1",
		"a2 LOGIN {3+}\r\njoe " + long + "\r\n":       "a2",
		long + "\r\n":                                 "",
		"+ " + long + "\r\n":                          "",
		strings.Repeat("t", 70) + " " + long + "\r\n": "",
	} {
		r := bufio.NewReaderSize(strings.NewReader(in+"n NOOP\r\n"), 16)
		_, err := ReadCommand(r, lim, func() error { return nil })
		var e *LineTooLongError
		if !errors.As(err, &e) || e.Tag != want {
			t.Errorf("%.30q: %v (%+v), want tag %q", in, err, e, want)
		}
		if cmd, err := ReadCommand(r, lim, nil); string(cmd) != "n NOOP" {
			t.Errorf("%.30q: next command %q, %v", in, cmd, err)
		}
	}
}

func FuzzReadCommand(f *testing.F) {
	f.Add([]byte("a LOGIN {3}\r\njoe {2+}\r\npw\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(b), 16)
		for i := 0; i < 10; i++ {
			if _, err := ReadCommand(r, Limits{MaxLine: 100, MaxLiteral: 100, MaxCommand: 300}, func() error { return nil }); err != nil && !errors.Is(err, ErrLineTooLong) {
				return
			}
		}
	})
}

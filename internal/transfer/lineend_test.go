package transfer

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestAppendCRLF(t *testing.T) {
	cases := []struct{ in, crlf, lf string }{
		{"a\nb\n", "a\r\nb\r\n", "a\nb\n"},
		{"a\r\nb\n\n", "a\r\nb\r\n\r\n", "a\nb\n\n"},
		{"\n", "\r\n", "\n"},
		{"no end", "no end", "no end"},
		{"lone\rcr\r", "lone\rcr\r", "lone\rcr\r"},
		{"cr cr lf\r\r\n", "cr cr lf\r\r\n", "cr cr lf\r\r\n"},
		{"\r\r\r\n\r\n", "\r\r\r\n\r\n", "\r\r\r\n\n"},
		{"", "", ""},
	}
	for _, c := range cases {
		got, _ := appendCRLF(nil, []byte(c.in), false)
		if string(got) != c.crlf {
			t.Errorf("appendCRLF(%q) = %q, want %q", c.in, got, c.crlf)
		}
		if lf := toLF(t, got, 1); lf != c.lf {
			t.Errorf("toLF(%q) = %q, want %q", got, lf, c.lf)
		}
		if back := toCRLF(t, []byte(c.lf), 1); back != c.crlf {
			t.Errorf("toCRLF(%q) = %q, want %q", c.lf, back, c.crlf)
		}
	}
}

// toCRLF and toLF convert through a convReader reading n bytes at a time.
func toCRLF(t testing.TB, b []byte, n int) string { return conv(t, b, n, false) }
func toLF(t testing.TB, b []byte, n int) string   { return conv(t, b, n, true) }

func conv(t testing.TB, b []byte, n int, lf bool) string {
	c := newConvReader(lf)
	c.in = make([]byte, n) // chunks of n bytes: every split point is tried
	c.reset(bytes.NewReader(b))
	out, err := io.ReadAll(iotest.OneByteReader(c))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// FuzzLineEnds: import(export(m)) == m for every message as the store
// holds it (every LF after a CR), whatever the chunk sizes; export
// leaves no CRLF but after a CR.
func FuzzLineEnds(f *testing.F) {
	f.Add([]byte("Subject: x\n\nbody\r\n\r\r\n\rend\r"), 3)
	f.Add([]byte("\r\n\r"), 1)
	f.Fuzz(func(t *testing.T, raw []byte, n int) {
		n = 1 + (n&0xffff)%97
		m, _ := appendCRLF(nil, raw, false)
		if whole := toCRLF(t, raw, 1<<16); whole != string(m) {
			t.Fatalf("chunked appendCRLF differs: %q, want %q", whole, m)
		}
		exported := toLF(t, m, n)
		if strings.Count(exported, "\r\n") != strings.Count(exported, "\r\r\n") {
			t.Fatalf("export %q keeps a CRLF", exported)
		}
		if back := toCRLF(t, []byte(exported), n); back != string(m) {
			t.Fatalf("round trip of %q: exported %q, imported %q", m, exported, back)
		}
	})
}

// TestImportExportLineEnds: imported messages are stored with CRLF line
// ends (sizes and parsed structure counted in them), exported files have
// LF line ends, and a message stored with bare LFs (before this rule)
// comes back normalised.
func TestImportExportLineEnds(t *testing.T) {
	ctx := t.Context()
	st := openStore(t)
	acct := addAccount(t, st, "a@example.org")
	dir := t.TempDir()
	mboxPath := dir + "/lf.mbox"
	lfMsg := "Subject: lf\nX-A: 1\n\nline one\nline two\n"
	if err := writeFile(mboxPath, "From a@b Thu Aug 22 12:36:23 2002\n"+lfMsg+"\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(ctx, st, acct, ImportOptions{Path: mboxPath, Mailbox: "Lf"}); err != nil {
		t.Fatal(err)
	}
	md := dir + "/md"
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := mkdir(md + "/" + sub); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeFile(md+"/cur/1.M1P1.h:2,S", lfMsg); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(ctx, st, acct, ImportOptions{Path: md, Mailbox: "LfMD"}); err != nil {
		t.Fatal(err)
	}
	// A message stored with bare LFs by an older tern.
	appendMsg(t, st, acct, "Legacy", lfMsg, time.Unix(1e9, 0))
	snap := snapshot(t, st, acct)
	for _, name := range []string{"Lf", "LfMD"} {
		if len(snap[name]) != 1 || snap[name][0].body != crlf(lfMsg) {
			t.Fatalf("%s: stored %+v, want %q", name, snap[name], crlf(lfMsg))
		}
		mb, _ := st.MailboxByName(ctx, acct.ID, name)
		infos, _ := st.Messages(ctx, mb.ID, 1, 0)
		p, err := st.Parsed(ctx, mb.ID, infos[0].UID)
		if err != nil {
			t.Fatal(err)
		}
		if infos[0].Size != int64(len(crlf(lfMsg))) || p.Structure.HeaderBareLF != 0 || p.Structure.BodyBareLF != 0 {
			t.Errorf("%s: size %d, bare LFs %d+%d", name, infos[0].Size, p.Structure.HeaderBareLF, p.Structure.BodyBareLF)
		}
	}
	for _, format := range []string{"mbox", "maildir"} {
		out := dir + "/export-" + format
		if _, err := Export(ctx, st, acct, ExportOptions{Path: out, Format: format}); err != nil {
			t.Fatal(err)
		}
		files, err := listFiles(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if b, _ := readFile(f); bytes.Contains(b, []byte("\r\n")) {
				t.Errorf("%s has CRLF line ends: %q", f, b)
			}
		}
		dst := addAccount(t, st, "dst-"+format+"@example.org")
		if _, err := Import(ctx, st, dst, ImportOptions{Path: out}); err != nil {
			t.Fatal(err)
		}
		got := snapshot(t, st, dst)
		for _, name := range []string{"Lf", "LfMD", "Legacy"} {
			if len(got[name]) != 1 || got[name][0].body != crlf(lfMsg) {
				t.Errorf("%s %s after export and import: %+v", format, name, got[name])
			}
		}
	}
}

func writeFile(path, s string) error       { return os.WriteFile(path, []byte(s), 0o600) }
func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
func mkdir(path string) error              { return os.MkdirAll(path, 0o700) }

func listFiles(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return err
	})
	return out, err
}

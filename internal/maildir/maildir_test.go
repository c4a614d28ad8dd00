package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseInfo(t *testing.T) {
	kw := []string{"$Label1", "", "Junk"}
	tests := []struct {
		name string
		want string
	}{
		{"1.M1P1.host,S=10:2,FRS", `\Flagged \Answered \Seen`},
		{"1.M1P1.host:2,DTPac", `\Draft \Deleted $Label1 Junk`},
		{"1.M1P1.host;2,S", `\Seen`},
		{"1.M1P1.host:2,bz", ``},
		{"1.M1P1.host", ``},
		{"1.M1P1.host:2,", ``},
	}
	for _, tc := range tests {
		if got := strings.Join(ParseInfo(tc.name, kw), " "); got != tc.want {
			t.Errorf("ParseInfo(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestFolderNames(t *testing.T) {
	for _, tc := range []struct{ name, dir string }{
		{"Folder/Sub", ".Folder.Sub"},
		{"Entwürfe", ".Entw&APw-rfe"},
		{"a.b/c", `.a\2eb.c`},
		{`x\y&z`, `.x\5cy&-z`},
	} {
		if got := FolderDir(tc.name); got != tc.dir {
			t.Errorf("FolderDir(%q) = %q, want %q", tc.name, got, tc.dir)
		}
		if got, ok := FolderName(tc.dir); !ok || got != tc.name {
			t.Errorf("FolderName(%q) = %q, %v", tc.dir, got, ok)
		}
	}
	for _, bad := range []string{"cur", ".", "..", ".a..b", "."} {
		if _, ok := FolderName(bad); ok {
			t.Errorf("FolderName(%q) accepted", bad)
		}
	}
}

func TestWriteRead(t *testing.T) {
	root := t.TempDir()
	w, err := NewWriter(root)
	if err != nil {
		t.Fatal(err)
	}
	type msg struct {
		folder string
		flags  []string
		body   string
		date   time.Time
	}
	base := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	var msgs []msg
	folders := []string{"", "Folder/Sub", "Entwürfe", "Folder"}
	for i := range 300 {
		m := msg{
			folder: folders[i%len(folders)],
			body:   fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i),
			date:   base.Add(time.Duration(i) * time.Hour),
		}
		switch i % 5 {
		case 1:
			m.flags = []string{`\Seen`}
		case 2:
			m.flags = []string{`\Answered`, `\Flagged`, "$Label1"}
		case 3:
			m.flags = []string{`\Draft`, `\Deleted`, "Junk", "$Label1"}
		}
		if _, err := w.WriteMessage(m.folder, m.flags, m.date, strings.NewReader(m.body)); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	if err := w.CreateFolder("Empty"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fs, err := Folders(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fs {
		names = append(names, f.Name)
	}
	if want := []string{"", "Empty", "Entwürfe", "Folder", "Folder/Sub"}; !slices.Equal(names, want) {
		t.Fatalf("folders = %q, want %q", names, want)
	}
	for _, f := range fs {
		var want []msg
		for _, m := range msgs {
			if m.folder == f.Name {
				want = append(want, m)
			}
		}
		i := 0
		err := f.Walk(func(m Message) error {
			b, err := os.ReadFile(m.Path)
			if err != nil {
				return err
			}
			w := want[i]
			i++
			if string(b) != w.body || !m.InternalDate.Equal(w.date) || m.Size != int64(len(b)) {
				t.Errorf("%s: got %q %v, want %q %v", f.Name, b, m.InternalDate, w.body, w.date)
			}
			got, exp := slices.Sorted(slices.Values(m.Flags)), slices.Sorted(slices.Values(w.flags))
			if !slices.Equal(got, exp) {
				t.Errorf("%s: flags %q, want %q", f.Name, got, exp)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if i != len(want) {
			t.Errorf("%s: %d messages, want %d", f.Name, i, len(want))
		}
		if n, size, err := f.Size(); err != nil || n != len(want) || (n > 0) != (size > 0) {
			t.Errorf("%s: Size = %d %d %v", f.Name, n, size, err)
		}
	}
	if tmp, _ := os.ReadDir(filepath.Join(root, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ not empty: %v", tmp)
	}
}

// TestReadForeign reads a Maildir laid out as Dovecot leaves it: new/
// without info, keywords file, files that are not messages.
func TestReadForeign(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp", ".notmaildir"} {
		os.MkdirAll(filepath.Join(root, d), 0o700)
	}
	files := map[string]string{
		"new/1000000002.M1P1.h":              "two",
		"cur/1000000001.M1P1.h:2,Sa":         "one",
		"cur/1000000003.M1P1.h,S=5:2,":       "three",
		"cur/.hidden":                        "x",
		"dovecot-keywords":                   "0 $Important\nbad line\n",
		".Sent/cur/1000000001.M1P1.h:2,ST":   "sent",
		"dovecot-uidlist":                    "3 V1 N4\n",
		".Sent/cur/1000000000.M1P1.h:2,RSxy": "sent0",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fs, err := Folders(root)
	if err != nil || len(fs) != 2 || fs[0].Name != "" || fs[1].Name != "Sent" {
		t.Fatalf("Folders = %v, %v", fs, err)
	}
	var got []string
	for _, f := range fs {
		f.Walk(func(m Message) error {
			b, _ := os.ReadFile(m.Path)
			got = append(got, fmt.Sprintf("%s=%s%q", f.Name, b, m.Flags))
			return nil
		})
	}
	want := []string{`=one["\\Seen" "$Important"]`, `=two[]`, `=three[]`, `Sent=sent0["\\Answered" "\\Seen"]`, `Sent=sent["\\Seen" "\\Deleted"]`}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func FuzzFolderName(f *testing.F) {
	f.Add("Folder/Sub")
	f.Add(`a.b\c&d/Entwürfe`)
	f.Fuzz(func(t *testing.T, name string) {
		ParseInfo(name, []string{"k"})
		FolderName(name)
		if !utf8.ValidString(name) || name == "" {
			return
		}
		for _, part := range strings.Split(name, "/") {
			if part == "" {
				return
			}
		}
		for _, r := range name {
			if r < 0x20 || r == 0x7f || r == utf8.RuneError {
				return
			}
		}
		dir := FolderDir(name)
		if strings.ContainsAny(dir, "/") {
			t.Fatalf("FolderDir(%q) = %q contains a slash", name, dir)
		}
		if got, ok := FolderName(dir); !ok || got != name {
			t.Fatalf("FolderName(FolderDir(%q)) = %q, %v (dir %q)", name, got, ok, dir)
		}
	})
}

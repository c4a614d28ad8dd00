package maildir

import (
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Message is one message file of a folder.
type Message struct {
	// Path is the file to read the message bytes from.
	Path string
	// Flags are the IMAP flags from the info suffix; files in new/ have
	// none.
	Flags []string
	// InternalDate is the file's modification time.
	InternalDate time.Time
	// Size is the file size in bytes.
	Size int64
}

// entry is a message file name: its subdirectory and name.
type entry struct {
	sub, name string
}

// list returns the message file names of new/ and cur/, sorted by their
// unique part. Only names are held: a folder of a million messages costs
// tens of megabytes here, the bodies are opened one by one.
func (f Folder) list() ([]entry, error) {
	var out []entry
	for _, sub := range []string{"new", "cur"} {
		d, err := os.Open(filepath.Join(f.Dir, sub))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		names, err := d.Readdirnames(-1)
		d.Close()
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if n == "" || n[0] == '.' {
				continue // hidden files are not messages
			}
			out = append(out, entry{sub, n})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := baseName(out[i].name), baseName(out[j].name)
		if a != b {
			return a < b
		}
		return out[i].name < out[j].name
	})
	return out, nil
}

// Size returns the number of messages in the folder and their total
// size, for progress reports.
func (f Folder) Size() (count int, bytes int64, err error) {
	list, err := f.list()
	if err != nil {
		return 0, 0, err
	}
	for _, e := range list {
		st, err := os.Stat(filepath.Join(f.Dir, e.sub, e.name))
		if err != nil {
			continue // delivered or expunged meanwhile
		}
		if st.Mode().IsRegular() {
			count++
			bytes += st.Size()
		}
	}
	return count, bytes, nil
}

// Walk calls fn for each message of the folder in order. A file that
// disappears meanwhile (moved by a running mail server) is skipped. An
// error from fn stops the walk and is returned.
func (f Folder) Walk(fn func(Message) error) error {
	keywords, err := f.Keywords()
	if err != nil {
		return err
	}
	list, err := f.list()
	if err != nil {
		return err
	}
	for _, e := range list {
		p := filepath.Join(f.Dir, e.sub, e.name)
		st, err := os.Stat(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			continue
		}
		m := Message{Path: p, InternalDate: st.ModTime(), Size: st.Size()}
		if e.sub == "cur" {
			m.Flags = ParseInfo(e.name, keywords)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

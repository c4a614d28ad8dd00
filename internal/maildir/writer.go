package maildir

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Writer adds messages to a Maildir tree.
type Writer struct {
	root    string
	host    string
	pid     int
	start   time.Time
	seq     uint64
	folders map[string]*folderState
	pending []pendingFile
}

type folderState struct {
	dir      string
	keywords []string // index i is letter 'a'+i
	dirty    bool     // cur/ has new names not yet fsynced
}

// NewWriter returns a Writer adding to the Maildir at root, creating it
// if needed.
func NewWriter(root string) (*Writer, error) {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	// Maildir: "/" and ":" in the host name are written as \057 and \072.
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	w := &Writer{root: root, host: host, pid: os.Getpid(), start: time.Now(), folders: map[string]*folderState{}}
	if _, err := w.folder(""); err != nil {
		return nil, err
	}
	return w, nil
}

// CreateFolder makes sure a folder exists, so that empty mailboxes are
// kept too.
func (w *Writer) CreateFolder(name string) error {
	_, err := w.folder(name)
	return err
}

func (w *Writer) folder(name string) (*folderState, error) {
	if f := w.folders[name]; f != nil {
		return f, nil
	}
	dir := filepath.Join(w.root, FolderDir(name))
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if name != "" {
		// Maildir++: a subfolder carries an empty maildirfolder file.
		mf := filepath.Join(dir, "maildirfolder")
		if f, err := os.OpenFile(mf, os.O_CREATE|os.O_WRONLY, 0o600); err != nil {
			return nil, err
		} else {
			f.Close()
		}
	}
	kw, err := Folder{Name: name, Dir: dir}.Keywords()
	if err != nil {
		return nil, err
	}
	f := &folderState{dir: dir, keywords: kw}
	w.folders[name] = f
	return f, nil
}

// WriteMessage delivers one message into the folder's cur/ with the
// given flags, and sets its modification time to date. It returns the
// file's path in cur/. Messages are made durable in batches: a message
// is in place once the batch it belongs to is flushed (every writeBatch
// messages, and by Flush and Close).
func (w *Writer) WriteMessage(folder string, flags []string, date time.Time, body io.Reader) (string, error) {
	f, err := w.folder(folder)
	if err != nil {
		return "", err
	}
	info, err := w.info(f, flags)
	if err != nil {
		return "", err
	}
	w.seq++
	// The unique part: time, microseconds, pid and a zero-padded counter,
	// so that names sort in the order they were written.
	unique := fmt.Sprintf("%d.M%06dP%dQ%09d.%s", w.start.Unix(), w.start.Nanosecond()/1000, w.pid, w.seq, w.host)
	tmp := filepath.Join(f.dir, "tmp", unique)
	file, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	n, err := io.Copy(file, body)
	if err == nil && !date.IsZero() {
		err = os.Chtimes(tmp, date, date)
	}
	if err != nil {
		file.Close()
		os.Remove(tmp)
		return "", err
	}
	final := filepath.Join(f.dir, "cur", fmt.Sprintf("%s,S=%d:2,%s", unique, n, info))
	w.pending = append(w.pending, pendingFile{file: file, tmp: tmp, final: final, folder: f})
	if len(w.pending) >= writeBatch {
		if err := w.Flush(); err != nil {
			return "", err
		}
	}
	return final, nil
}

// writeBatch is how many messages wait in tmp/ (with their files open)
// before a flush.
const writeBatch = 128

// pendingFile is a message written to tmp/, not yet durable.
type pendingFile struct {
	file       *os.File
	tmp, final string
	folder     *folderState
}

// Flush makes the pending messages durable and moves them into cur/: the
// Maildir protocol's fsync before rename, run in parallel because file
// systems merge concurrent fsyncs into few journal commits. The renames
// become durable with the directory fsyncs of Close.
func (w *Writer) Flush() error {
	pending := w.pending
	w.pending = nil
	errs := make([]error, len(pending))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(16, len(pending)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				err := pending[i].file.Sync()
				if cerr := pending[i].file.Close(); err == nil {
					err = cerr
				}
				errs[i] = err
			}
		}()
	}
	for i := range pending {
		next <- i
	}
	close(next)
	wg.Wait()
	var first error
	for i, p := range pending {
		err := errs[i]
		if err == nil {
			err = os.Rename(p.tmp, p.final)
		}
		if err != nil {
			os.Remove(p.tmp)
			if first == nil {
				first = err
			}
			continue
		}
		p.folder.dirty = true
	}
	return first
}

// info returns the letters of the info suffix for flags, assigning
// keyword letters (and rewriting dovecot-keywords) as needed.
func (w *Writer) info(f *folderState, flags []string) (string, error) {
	var letters []byte
	for _, fl := range flags {
		if strings.HasPrefix(fl, `\`) {
			for _, m := range infoFlags {
				if strings.EqualFold(m.flag, fl) {
					letters = append(letters, m.letter)
				}
			}
			continue
		}
		i := slices.Index(f.keywords, fl)
		if i < 0 {
			i = slices.Index(f.keywords, "")
			if i < 0 && len(f.keywords) < 26 {
				i = len(f.keywords)
				f.keywords = append(f.keywords, "")
			}
			if i < 0 {
				continue // only 26 keyword letters: the rest is dropped
			}
			f.keywords[i] = fl
			if err := writeKeywords(f.dir, f.keywords); err != nil {
				return "", err
			}
		}
		letters = append(letters, byte('a'+i))
	}
	slices.Sort(letters)
	letters = slices.Compact(letters)
	return string(letters), nil
}

// writeKeywords replaces dovecot-keywords durably (temp file, fsync,
// rename).
func writeKeywords(dir string, keywords []string) error {
	var b strings.Builder
	for i, k := range keywords {
		if k != "" {
			fmt.Fprintf(&b, "%d %s\n", i, k)
		}
	}
	tmp := filepath.Join(dir, KeywordsFile+".tmp")
	file, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = file.WriteString(b.String())
	if err == nil {
		err = file.Sync()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, KeywordsFile)); err != nil {
		return err
	}
	return syncDir(dir)
}

// Close flushes pending messages and fsyncs the cur/ directories that
// received messages, making the renames durable.
func (w *Writer) Close() error {
	first := w.Flush()
	for _, f := range w.folders {
		if !f.dirty {
			continue
		}
		if err := syncDir(filepath.Join(f.dir, "cur")); err != nil && first == nil {
			first = err
		}
		f.dirty = false
	}
	if err := syncDir(w.root); err != nil && first == nil {
		first = err
	}
	return first
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

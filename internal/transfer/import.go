package transfer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/maildir"
	"github.com/tern-mail/tern/internal/mbox"
	"github.com/tern-mail/tern/internal/store"
)

// headerPeek is how much of a message is looked at for flags and date
// fields; fields beyond it are not seen.
const headerPeek = 64 << 10

// importer carries the state of one Import.
type importer struct {
	st   *store.Store
	acct store.Account
	opts ImportOptions
	mbs  *mailboxes
	br   *bufio.Reader
	crlf *convReader // LF to CRLF (see lineend.go)
	prog *progress
	pipe *pipeline
}

// mboxSource is one mbox file to import and the folder it stands for.
type mboxSource struct {
	folder string
	path   string
	size   int64
}

// Import reads the mbox file, mbox directory or Maildir at opts.Path into
// the account. It returns what was done so far along with any error.
func Import(ctx context.Context, st *store.Store, acct store.Account, opts ImportOptions) (Stats, error) {
	info, err := os.Stat(opts.Path)
	if err != nil {
		return Stats{}, err
	}
	imp := &importer{
		st: st, acct: acct, opts: opts,
		mbs:  &mailboxes{st: st, acct: acct, byName: map[string]int64{}},
		br:   bufio.NewReaderSize(nil, headerPeek),
		crlf: newConvReader(false),
	}
	imp.pipe = newPipeline(ctx, st, acct, opts.IgnoreQuota)
	switch {
	case !info.IsDir():
		err = imp.mboxFiles(ctx, []mboxSource{{path: opts.Path, size: info.Size()}})
	case isMaildirTree(opts.Path):
		err = imp.maildir(ctx, opts.Path)
	default:
		var srcs []mboxSource
		srcs, err = findMboxFiles(opts.Path)
		if err == nil && len(srcs) == 0 {
			err = fmt.Errorf("%s: no Maildir and no mbox files found", opts.Path)
		}
		if err == nil {
			err = imp.mboxFiles(ctx, srcs)
		}
	}
	stats, perr := imp.pipe.wait()
	if err == nil || (perr != nil && errors.Is(err, context.Canceled)) {
		err = perr
	}
	stats.Mailboxes = imp.mbs.created
	if imp.prog != nil && err == nil {
		imp.prog.finish()
	}
	return stats, err
}

// isMaildirTree reports whether dir is a Maildir or holds Maildir++
// folders.
func isMaildirTree(dir string) bool {
	if maildir.IsMaildir(dir) {
		return true
	}
	fs, err := maildir.Folders(dir)
	return err == nil && len(fs) > 0
}

// findMboxFiles lists the mbox files below dir: files named *.mbox, and
// other files that begin with "From " (Thunderbird keeps mailboxes
// without suffix next to .msf index files).
func findMboxFiles(dir string) ([]mboxSource, error) {
	var out []mboxSource
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		// .msf: Thunderbird's index; .tmp: an export cut short.
		if !d.Type().IsRegular() || strings.HasSuffix(d.Name(), ".msf") || strings.HasSuffix(d.Name(), ".tmp") {
			return nil
		}
		if !strings.HasSuffix(d.Name(), mboxExt) && !startsWithFrom(p) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, mboxSource{folder: mailboxOfFile(rel), path: p, size: info.Size()})
		return nil
	})
	return out, err
}

func startsWithFrom(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [5]byte
	n, _ := io.ReadFull(f, b[:])
	return string(b[:n]) == "From "
}

func (imp *importer) mboxFiles(ctx context.Context, srcs []mboxSource) error {
	var total int64
	for _, s := range srcs {
		total += s.size
	}
	imp.prog = newProgress(imp.opts.Progress, total)
	var base int64
	for _, s := range srcs {
		if err := imp.mboxFile(ctx, s, base); err != nil {
			return fmt.Errorf("%s: %w", s.path, err)
		}
		base += s.size
	}
	return nil
}

func (imp *importer) mboxFile(ctx context.Context, src mboxSource, base int64) error {
	f, err := os.Open(src.path)
	if err != nil {
		return err
	}
	defer f.Close()
	mbID, err := imp.mbs.get(ctx, targetName(imp.opts.Mailbox, src.folder))
	if err != nil {
		return err
	}
	format := mbox.MboxRD
	if imp.opts.MboxO {
		format = mbox.MboxO
	}
	r := mbox.NewReader(f, format)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := imp.add(mbID, m.Body, nil, m.Date, true); err != nil {
			return fmt.Errorf("message at byte %d: %w", r.Offset(), err)
		}
		imp.prog.set(base + r.Offset())
	}
}

func (imp *importer) maildir(ctx context.Context, root string) error {
	folders, err := maildir.Folders(root)
	if err != nil {
		return err
	}
	var total int64
	if imp.opts.Progress != nil {
		for _, f := range folders {
			_, size, err := f.Size()
			if err != nil {
				return err
			}
			total += size
		}
	}
	imp.prog = newProgress(imp.opts.Progress, total)
	for _, f := range folders {
		mbID, err := imp.mbs.get(ctx, targetName(imp.opts.Mailbox, f.Name))
		if err != nil {
			return err
		}
		err = f.Walk(func(m maildir.Message) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			file, err := os.Open(m.Path)
			if os.IsNotExist(err) {
				return nil // moved by a running server meanwhile
			}
			if err != nil {
				return err
			}
			defer file.Close()
			if err := imp.add(mbID, file, m.Flags, m.InternalDate, false); err != nil {
				return fmt.Errorf("%s: %w", m.Path, err)
			}
			imp.prog.add(m.Size)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// add appends one message. With mboxFlags the flags come from the
// message: tern's flag block (removed) or foreign Status: fields (kept).
// A zero date is taken from the Date: field.
func (imp *importer) add(mbID int64, body io.Reader, flags []string, date time.Time, mboxFlags bool) error {
	br := imp.br
	br.Reset(body)
	defer br.Reset(nil)
	if mboxFlags {
		fl, ok, err := mbox.ReadFlags(br)
		if err != nil {
			return err
		}
		if ok {
			flags = fl
		} else {
			head, _ := br.Peek(headerPeek)
			flags = mbox.HeaderFlags(head)
		}
	}
	if date.IsZero() {
		head, _ := br.Peek(headerPeek)
		date = headerDate(head)
	}
	// The store holds CRLF line ends (see lineend.go).
	imp.crlf.reset(br)
	defer imp.crlf.reset(nil)
	return imp.pipe.submit(mbID, flags, date, imp.crlf)
}

// headerDate returns the Date: field of a header (RFC 5322 §3.6.1), or
// the zero time.
func headerDate(head []byte) time.Time {
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			i = len(head) - 1
		}
		line := bytes.TrimRight(head[:i+1], "\r\n")
		head = head[i+1:]
		if len(line) == 0 {
			break
		}
		if len(line) < 5 || !strings.EqualFold(string(line[:5]), "date:") {
			continue
		}
		value := string(line[5:])
		// Unfold continuation lines (RFC 5322 §2.2.3).
		for len(head) > 0 && (head[0] == ' ' || head[0] == '\t') {
			j := bytes.IndexByte(head, '\n')
			if j < 0 {
				j = len(head) - 1
			}
			value += " " + string(bytes.TrimSpace(head[:j+1]))
			head = head[j+1:]
		}
		if t, err := mail.ParseDate(strings.TrimSpace(value)); err == nil {
			return t
		}
		return time.Time{}
	}
	return time.Time{}
}

package transfer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tern-mail/tern/internal/maildir"
	"github.com/tern-mail/tern/internal/mbox"
	"github.com/tern-mail/tern/internal/store"
)

// exportPage is how many UIDs are listed at a time, so that a mailbox of
// any size is exported with bounded memory.
const exportPage = 4096

type exporter struct {
	st    *store.Store
	acct  store.Account
	opts  ExportOptions
	br    *bufio.Reader
	lf    *convReader // CRLF to LF (see lineend.go)
	prog  *progress
	stats Stats
}

// Export writes the account's mailboxes (or opts.Mailbox) to opts.Path as
// mbox or Maildir. It refuses to overwrite existing files.
func Export(ctx context.Context, st *store.Store, acct store.Account, opts ExportOptions) (Stats, error) {
	format := strings.ToLower(opts.Format)
	if format == "" {
		format = "mbox"
	}
	if format != "mbox" && format != "maildir" {
		return Stats{}, fmt.Errorf("export format %q: want mbox or maildir", opts.Format)
	}
	var mbs []store.Mailbox
	if opts.Mailbox != "" {
		mb, err := st.MailboxByName(ctx, acct.ID, opts.Mailbox)
		if err != nil {
			return Stats{}, fmt.Errorf("mailbox %q: %w", opts.Mailbox, err)
		}
		mbs = []store.Mailbox{mb}
	} else {
		var err error
		if mbs, err = st.Mailboxes(ctx, acct.ID); err != nil {
			return Stats{}, err
		}
	}
	var total int64
	for _, mb := range mbs {
		c, err := st.MailboxCounts(ctx, mb.ID)
		if err != nil {
			return Stats{}, err
		}
		total += c.Size
	}
	ex := &exporter{st: st, acct: acct, opts: opts, br: bufio.NewReaderSize(nil, headerPeek),
		lf: newConvReader(true), prog: newProgress(opts.Progress, total)}
	var err error
	if format == "mbox" {
		err = ex.mbox(ctx, mbs)
	} else {
		err = ex.maildir(ctx, mbs)
	}
	ex.prog.finish()
	return ex.stats, err
}

func (ex *exporter) mbox(ctx context.Context, mbs []store.Mailbox) error {
	if ex.opts.Mailbox != "" {
		return ex.mboxFile(ctx, mbs[0], ex.opts.Path)
	}
	if err := os.MkdirAll(ex.opts.Path, 0o700); err != nil {
		return err
	}
	for _, mb := range mbs {
		path := filepath.Join(ex.opts.Path, mboxFile(mb.Name))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := ex.mboxFile(ctx, mb, path); err != nil {
			return err
		}
	}
	return nil
}

// mboxFile writes one mailbox to a new mbox file: written under a
// temporary name, fsynced, then renamed into place.
func (ex *exporter) mboxFile(ctx context.Context, mb store.Mailbox, path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s: %w", path, os.ErrExist)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // fails harmlessly once renamed
	defer f.Close()
	w := mbox.NewWriter(f)
	err = ex.eachMessage(ctx, mb, func(m store.MessageInfo, body *bufio.Reader) error {
		head, _ := body.Peek(headerPeek)
		block := mbox.FlagBlock(m.Flags, "\n")
		_, err := w.WriteMessage(returnPath(head), m.InternalDate, io.MultiReader(bytes.NewReader(block), body))
		return err
	})
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ex.stats.Mailboxes++
	return syncDir(filepath.Dir(path))
}

func (ex *exporter) maildir(ctx context.Context, mbs []store.Mailbox) error {
	w, err := maildir.NewWriter(ex.opts.Path)
	if err != nil {
		return err
	}
	for _, mb := range mbs {
		folder := mb.Name
		if ex.opts.Mailbox != "" || mb.Name == "INBOX" {
			folder = ""
		}
		if err := w.CreateFolder(folder); err != nil {
			return err
		}
		err := ex.eachMessage(ctx, mb, func(m store.MessageInfo, body *bufio.Reader) error {
			_, err := w.WriteMessage(folder, m.Flags, m.InternalDate, body)
			return err
		})
		if err != nil {
			w.Close()
			return fmt.Errorf("mailbox %q: %w", mb.Name, err)
		}
		ex.stats.Mailboxes++
	}
	return w.Close()
}

// eachMessage calls fn with every message of the mailbox in UID order, its
// bytes behind a reader. Messages added after the export began are left
// out.
func (ex *exporter) eachMessage(ctx context.Context, mb store.Mailbox, fn func(store.MessageInfo, *bufio.Reader) error) error {
	mb, err := ex.st.MailboxByID(ctx, mb.ID)
	if err != nil {
		return err
	}
	for lo := uint64(1); lo < uint64(mb.UIDNext); lo += exportPage {
		hi := min(lo+exportPage-1, uint64(mb.UIDNext)-1)
		msgs, err := ex.st.Messages(ctx, mb.ID, uint32(lo), uint32(hi))
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := ex.one(m, fn); err != nil {
				return fmt.Errorf("uid %d: %w", m.UID, err)
			}
		}
	}
	return nil
}

func (ex *exporter) one(m store.MessageInfo, fn func(store.MessageInfo, *bufio.Reader) error) error {
	f, err := ex.st.OpenBlob(m.BlobID)
	if err != nil {
		return err
	}
	defer f.Close()
	// mbox and Maildir files have LF line ends (see lineend.go).
	ex.lf.reset(f)
	defer ex.lf.reset(nil)
	ex.br.Reset(ex.lf)
	defer ex.br.Reset(nil)
	if err := fn(m, ex.br); err != nil {
		return err
	}
	ex.stats.Messages++
	ex.stats.Bytes += m.Size
	ex.prog.add(m.Size)
	return nil
}

// returnPath is the address of the message's Return-Path: field (RFC 5322
// §3.6.7), the envelope sender for the From_ line; "" if there is none.
func returnPath(head []byte) string {
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
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(name), "return-path") {
			v := strings.TrimSpace(string(value))
			if strings.HasPrefix(v, "<") {
				if j := strings.IndexByte(v, '>'); j > 0 {
					v = v[1:j]
				}
			}
			return v
		}
	}
	return ""
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

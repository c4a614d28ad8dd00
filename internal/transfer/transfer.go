// Package transfer imports mail from mbox files and Maildir trees into an
// account of the store, and exports an account (or one mailbox) to them.
//
// Both directions stream: one message is in flight at a time and its bytes
// go from file to blob (or back) through fixed-size buffers, so memory
// stays flat whatever the size of the mailbox or of one message.
//
// Layouts:
//
//   - mbox, one mailbox: Path is one mboxrd file (see package mbox for the
//     format and for how flags travel with the X-Tern-Flags block).
//   - mbox, whole account: Path is a directory holding one file per
//     mailbox, "INBOX.mbox", "Sent.mbox", "Folder/Sub.mbox": hierarchy
//     levels are directories, each file is the mailbox named by its path
//     without ".mbox". Bytes a file system may not like (control
//     characters, %, \, :, *, ?, ", <, >, |, a leading '.', the '.' of a
//     trailing ".mbox") are written %XX.
//   - Maildir: Path is a Maildir++ tree (see package maildir). A whole
//     account puts INBOX at the root and "Folder/Sub" in ".Folder.Sub"; one
//     mailbox is written at the root.
//
// Import accepts all of these, and also a single RFC 5322 message file, an
// mbox written by another program (flags from Status:/X-Status:/
// X-Keywords:) and a directory of mbox files without the ".mbox" suffix (a
// Thunderbird profile: files beginning with "From ", "X.sbd" directories
// for subfolders). Messages are appended in source order with their flags
// and internal dates (From_ line date, else the Date: field; Maildir file
// modification time). Re-running an import stores nothing twice: the
// store skips a message whose bytes the mailbox already holds. The same
// rule means that byte-identical copies inside one source mailbox are kept
// once.
//
// Messages are stored with CRLF line ends and the files hold LF ones:
// import turns bare LFs into CRLF, export CRLF into LF (see lineend.go).
// Export followed by import gives back every message byte for byte, with
// its flags (keywords: up to 26 per folder in Maildir) and its internal
// date to the second.
//
// Import runs a pipeline (see pipeline.go): messages are parsed and
// written in parallel, then stored in source order in batches, each made
// durable with one file system sync and one commit. A crash loses at most
// the batches in flight; running the import again completes it without
// duplicates.
package transfer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/store"
)

// ImportOptions say what to import and where.
type ImportOptions struct {
	// Path is an mbox file, a directory of mbox files, a Maildir, or a
	// single message file.
	Path string
	// Mailbox is the target: "" puts a single mbox into INBOX and each
	// folder of a tree into the mailbox of its name (the Maildir root
	// into INBOX). Otherwise a single mbox and the Maildir root go into
	// Mailbox, and a folder F of a tree into Mailbox/F.
	Mailbox string
	// MboxO reads mbox files without mboxrd unquoting.
	MboxO bool
	// IgnoreQuota stores messages even over the account's quota.
	IgnoreQuota bool
	// Progress, if set, is called with the source bytes done so far and
	// the total, at most every 100 ms and once at the end (suitable for
	// driving a progress bar directly).
	Progress func(done, total int64)
}

// ExportOptions say what to export and where.
type ExportOptions struct {
	// Path is the mbox file (one mailbox) or the directory to create.
	Path string
	// Format is "mbox" (the default) or "maildir".
	Format string
	// Mailbox is the one mailbox to export; "" exports all of them.
	Mailbox string
	// Progress, as for ImportOptions, counts message bytes.
	Progress func(done, total int64)
}

// Stats count what an import or export did.
type Stats struct {
	Messages   int64 // messages stored (import) or written (export)
	Duplicates int64 // messages skipped: the mailbox already held them
	Mailboxes  int   // mailboxes created (import) or written (export)
	Bytes      int64 // message bytes stored or written
}

// progress throttles calls of a progress callback.
type progress struct {
	fn    func(done, total int64)
	total int64
	done  int64
	last  time.Time
}

func newProgress(fn func(done, total int64), total int64) *progress {
	return &progress{fn: fn, total: total}
}

// set reports done bytes if enough time passed since the last report.
func (p *progress) set(done int64) {
	p.done = done
	if p.fn == nil {
		return
	}
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		p.fn(done, max(p.total, done))
	}
}

func (p *progress) add(n int64) { p.set(p.done + n) }

// finish reports the end.
func (p *progress) finish() {
	if p.fn != nil {
		p.fn(max(p.total, p.done), max(p.total, p.done))
	}
}

// targetName maps a source folder ("" for a single mbox or the Maildir
// root) to a mailbox name following ImportOptions.Mailbox.
func targetName(prefix, folder string) string {
	switch {
	case folder == "" && prefix == "":
		return "INBOX"
	case folder == "":
		return prefix
	case prefix == "":
		return folder
	default:
		return prefix + "/" + folder
	}
}

// mailboxes finds or creates the target mailboxes of an import.
type mailboxes struct {
	st      *store.Store
	acct    store.Account
	byName  map[string]int64
	created int
}

// get returns the id of the mailbox name, creating it and its missing
// parents.
func (m *mailboxes) get(ctx context.Context, name string) (int64, error) {
	norm, err := store.NormalizeMailboxName(name)
	if err != nil {
		return 0, fmt.Errorf("mailbox name %q: %w", name, err)
	}
	if id, ok := m.byName[norm]; ok {
		return id, nil
	}
	parts := strings.Split(norm, "/")
	var id int64
	for i := range parts {
		level := strings.Join(parts[:i+1], "/")
		mb, err := m.st.MailboxByName(ctx, m.acct.ID, level)
		if errors.Is(err, store.ErrNotFound) {
			mb, err = m.st.CreateMailbox(ctx, m.acct.ID, level, "")
			if err == nil {
				m.created++
			} else if errors.Is(err, store.ErrExists) {
				mb, err = m.st.MailboxByName(ctx, m.acct.ID, level)
			}
		}
		if err != nil {
			return 0, fmt.Errorf("mailbox %q: %w", level, err)
		}
		id = mb.ID
	}
	m.byName[norm] = id
	return id, nil
}

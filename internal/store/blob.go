package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Blob names the stored bytes of one message.
type Blob struct {
	ID     string
	Size   int64
	Digest string // hex SHA-256 of the bytes
}

// inlineMax is the largest message kept inside the database instead of a
// file of its own. Creating a file is the dearest step of a small
// delivery (a fresh inode, a directory entry, two fsyncs); a row in the
// blobs table rides on the commit that references it, with the same one
// WAL fsync. Larger messages are files, read in place.
const inlineMax = 64 << 10

// Inline reports whether a blob of this size is kept in the database
// rather than in a file (readers that open files themselves ask first).
func Inline(size int64) bool { return size <= inlineMax }

// BlobWriter writes one message. Up to inlineMax bytes it stays in
// memory and becomes a row of the blobs table with the first reference;
// beyond, it spills to a file. Commit makes it durable (for a file:
// fsync of file and directory); Abort discards it. A committed blob that
// no row references is dropped: from memory after an hour, as a file by
// the sweep at the next start.
type BlobWriter struct {
	s    *Store
	id   string
	buf  []byte // the bytes while inline
	f    *os.File
	w    *bufio.Writer
	h    hash.Hash
	n    int64
	done bool
}

// NewBlob starts a new message.
func (s *Store) NewBlob() (*BlobWriter, error) {
	var b [16]byte
	rand.Read(b[:])
	return &BlobWriter{s: s, id: hex.EncodeToString(b[:]), h: sha256.New()}, nil
}

func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("store: write to a finished blob")
	}
	if w.f == nil && len(w.buf)+len(p) > inlineMax {
		if err := w.spill(); err != nil {
			return 0, err
		}
	}
	var n int
	var err error
	if w.f == nil {
		w.buf = append(w.buf, p...)
		n = len(p)
	} else {
		n, err = w.w.Write(p)
	}
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// spill moves the message from memory to its file.
func (w *BlobWriter) spill() error {
	dir := filepath.Join(w.s.blobDir, w.id[:2])
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		// A new directory (one of 256) must itself survive a power
		// failure, or the files in it are lost with it.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if err := syncDir(w.s.blobDir); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, w.id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	w.f, w.w = f, bufio.NewWriterSize(f, 64<<10)
	_, err = w.w.Write(w.buf)
	w.buf = nil
	return err
}

// Size is the number of bytes written so far.
func (w *BlobWriter) Size() int64 { return w.n }

// Commit finishes the blob. A file is flushed and fsynced with its
// directory entry (concurrent commits run their fsyncs in parallel,
// outside the serial group commit); an inline blob waits in memory for
// the transaction that references it.
func (w *BlobWriter) Commit() (Blob, error) { return w.finish(true) }

func (w *BlobWriter) finish(sync bool) (Blob, error) {
	if w.done {
		return Blob{}, errors.New("store: blob already finished")
	}
	w.done = true
	b := Blob{ID: w.id, Size: w.n, Digest: hex.EncodeToString(w.h.Sum(nil))}
	if w.f == nil {
		w.s.pending.put(w.id, w.buf)
		w.buf = nil
		return b, nil
	}
	err := w.w.Flush()
	if err == nil && sync {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil && sync {
		err = syncDir(filepath.Dir(w.s.blobPath(w.id)))
	}
	if err != nil {
		os.Remove(w.s.blobPath(w.id))
		return Blob{}, err
	}
	return b, nil
}

// Abort discards the blob. It is a no-op after Commit.
func (w *BlobWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.buf = nil
	if w.f != nil {
		w.f.Close()
		os.Remove(w.s.blobPath(w.id))
	}
}

// BlobReader reads a message's bytes: a file, or an inline blob.
type BlobReader interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	io.Closer
}

type memBlob struct{ *bytes.Reader }

func (memBlob) Close() error { return nil }

// OpenBlob opens a message's bytes for reading.
func (s *Store) OpenBlob(id string) (BlobReader, error) {
	if !validBlobID(id) {
		return nil, fmt.Errorf("store: bad blob id %q: %w", id, ErrInvalid)
	}
	if data, ok := s.pending.get(id); ok {
		return memBlob{bytes.NewReader(data)}, nil
	}
	var data []byte
	err := s.hot.readBlob.QueryRow(id).Scan(&data)
	if err == nil {
		return memBlob{bytes.NewReader(data)}, nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	return os.Open(s.blobPath(id))
}

// pendingBlobs holds inline blobs between Commit and the transaction that
// first references them.
type pendingBlobs struct {
	mu    sync.Mutex
	m     map[string]pendingBlob
	swept time.Time
}

type pendingBlob struct {
	data []byte
	at   time.Time
}

// pendingTTL bounds how long an unreferenced inline blob is kept (a
// delivery that failed without discarding its blob).
const pendingTTL = time.Hour

func (p *pendingBlobs) put(id string, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.m == nil {
		p.m = map[string]pendingBlob{}
	}
	if now.Sub(p.swept) > time.Minute {
		for k, v := range p.m {
			if now.Sub(v.at) > pendingTTL {
				delete(p.m, k)
			}
		}
		p.swept = now
	}
	p.m[id] = pendingBlob{data: data, at: now}
}

func (p *pendingBlobs) get(id string) ([]byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.m[id]
	return b.data, ok
}

func (p *pendingBlobs) drop(ids ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		delete(p.m, id)
	}
}

func validBlobID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// refBlob changes the reference count of a blob inside a write, creating
// its row on first reference (with the bytes, for an inline blob). When
// the count reaches zero the row goes, and a file is removed after commit.
func (s *Store) refBlob(tx *wtx, b Blob, delta int) error {
	ctx := context.Background()
	if delta > 0 {
		data, inline := s.pending.get(b.ID)
		var refs int
		if err := s.hot.refBlob.QueryRowContext(ctx, b.ID, b.Size, delta, inline).Scan(&refs); err != nil {
			return err
		}
		if refs == delta && !inline {
			// A new row for bytes not pending: the blob may have been
			// released meanwhile (a queue entry dropped while it was
			// delivered), its file gone or about to go.
			if err := s.reviveFile(b.ID); err != nil {
				return err
			}
		}
		if !inline {
			return nil
		}
		if s.cur != nil {
			s.cur.reqInlined = append(s.cur.reqInlined, b.ID)
		}
		_, err := s.hot.blobData.ExecContext(ctx, b.ID, data)
		return err
	}
	var refs int
	var file bool
	err := s.txQueryRow(ctx, tx, "UPDATE blobs SET refs = refs + ? WHERE id = ? RETURNING refs, NOT inline", delta, b.ID).Scan(&refs, &file)
	if err != nil {
		return fmt.Errorf("blob %s: %w", b.ID, err)
	}
	if refs <= 0 {
		if _, err := s.txExec(ctx, tx, "DELETE FROM blobs WHERE id = ?", b.ID); err != nil {
			return err
		}
		if file && s.cur != nil {
			s.cur.reqRemove = append(s.cur.reqRemove, b.ID)
		}
	}
	return nil
}

// removals are the message files of committed batches waiting for the
// WAL fsync before they go (see finish), and those of them a later write
// took a new reference to, which must stay.
type removals struct {
	mu      sync.Mutex
	waiting map[string]bool
	revived map[string]bool
}

// reviveFile makes sure a blob that gets its first reference has its file
// and keeps it: a removal planned by this batch or one waiting for its
// fsync is called off. It fails when the file is gone.
func (s *Store) reviveFile(id string) error {
	if b := s.cur; b != nil {
		b.reqRemove = slices.DeleteFunc(b.reqRemove, func(x string) bool { return x == id })
		b.removeBlobs = slices.DeleteFunc(b.removeBlobs, func(x string) bool { return x == id })
	}
	r := &s.removing
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := os.Stat(s.blobPath(id)); err != nil {
		return fmt.Errorf("blob %s: %w", id, ErrNotFound)
	}
	if r.waiting[id] {
		if r.revived == nil {
			r.revived = map[string]bool{}
		}
		r.revived[id] = true
	}
	return nil
}

// plan records files to remove once their batch is durable.
func (r *removals) plan(ids []string) {
	if len(ids) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting == nil {
		r.waiting = map[string]bool{}
	}
	for _, id := range ids {
		r.waiting[id] = true
	}
}

// remove deletes the files planned, but those revived meanwhile; with
// keep it deletes none (the batch is not known to be durable; the sweep
// takes the files that stay unreferenced).
func (r *removals) remove(s *Store, ids []string, keep bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		delete(r.waiting, id)
		if r.revived[id] {
			delete(r.revived, id)
			continue
		}
		if keep {
			continue
		}
		if err := os.Remove(s.blobPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("removing blob", "blob", id, "err", err)
		}
	}
}

// SweepBlobs removes message files that no row references and that are
// older than minAge (files younger than that may belong to a delivery in
// progress, in this or another process). It returns how many it removed.
func (s *Store) SweepBlobs(ctx context.Context, minAge time.Duration) (int, error) {
	dirs, err := os.ReadDir(s.blobDir)
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(s.blobDir, d.Name()))
		if err != nil {
			return removed, err
		}
		for _, f := range files {
			id := f.Name()
			if !validBlobID(id) || !strings.HasPrefix(id, d.Name()) {
				continue
			}
			info, err := f.Info()
			if err != nil || time.Since(info.ModTime()) < minAge {
				continue
			}
			var one int
			err = s.queryRow(ctx, "SELECT 1 FROM blobs WHERE id = ?", id).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				if os.Remove(filepath.Join(s.blobDir, d.Name(), id)) == nil {
					removed++
				}
			} else if err != nil {
				return removed, err
			}
		}
	}
	return removed, nil
}

// copyBlob is used by tests and tools: it reads a whole blob.
func (s *Store) readBlob(id string) ([]byte, error) {
	f, err := s.OpenBlob(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func removeFile(path string) error {
	err := os.Remove(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

package store

import (
	"bufio"
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
	"strings"
	"time"
)

// Blob names the stored bytes of one message.
type Blob struct {
	ID     string
	Size   int64
	Digest string // hex SHA-256 of the bytes
}

// BlobWriter writes one message file. Commit makes it durable; Abort
// removes it. A committed blob that no row references is removed by the
// sweep at the next start.
type BlobWriter struct {
	s    *Store
	id   string
	f    *os.File
	w    *bufio.Writer
	h    hash.Hash
	n    int64
	done bool
}

// NewBlob starts a new message file.
func (s *Store) NewBlob() (*BlobWriter, error) {
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	dir := filepath.Join(s.blobDir, id[:2])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &BlobWriter{s: s, id: id, f: f, w: bufio.NewWriterSize(f, 64<<10), h: sha256.New()}, nil
}

func (w *BlobWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Size is the number of bytes written so far.
func (w *BlobWriter) Size() int64 { return w.n }

// Commit flushes and fsyncs the file and its directory entry. Concurrent
// commits run their fsyncs in parallel, outside the serial group commit,
// where the file system merges them into few journal commits.
func (w *BlobWriter) Commit() (Blob, error) {
	if w.done {
		return Blob{}, errors.New("store: blob already finished")
	}
	w.done = true
	err := w.w.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(filepath.Dir(w.s.blobPath(w.id)))
	}
	if err != nil {
		os.Remove(w.s.blobPath(w.id))
		return Blob{}, err
	}
	return Blob{ID: w.id, Size: w.n, Digest: hex.EncodeToString(w.h.Sum(nil))}, nil
}

// Abort discards the file. It is a no-op after Commit.
func (w *BlobWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.f.Close()
	os.Remove(w.s.blobPath(w.id))
}

// OpenBlob opens a message file for reading.
func (s *Store) OpenBlob(id string) (*os.File, error) {
	if !validBlobID(id) {
		return nil, fmt.Errorf("store: bad blob id %q: %w", id, ErrInvalid)
	}
	return os.Open(s.blobPath(id))
}

func validBlobID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// refBlob changes the reference count of a blob inside a write, creating
// its row on first reference. When the count reaches zero the row goes and
// the file is removed after commit.
func (s *Store) refBlob(tx *sql.Tx, b Blob, delta int) error {
	ctx := context.Background()
	if delta > 0 {
		_, err := tx.StmtContext(ctx, s.hot.refBlob).ExecContext(ctx, b.ID, b.Size, delta)
		return err
	}
	var refs int
	err := tx.QueryRowContext(ctx, "UPDATE blobs SET refs = refs + ? WHERE id = ? RETURNING refs", delta, b.ID).Scan(&refs)
	if err != nil {
		return fmt.Errorf("blob %s: %w", b.ID, err)
	}
	if refs <= 0 {
		if _, err := tx.ExecContext(ctx, "DELETE FROM blobs WHERE id = ?", b.ID); err != nil {
			return err
		}
		if s.cur != nil {
			s.cur.removeBlobs = append(s.cur.removeBlobs, b.ID)
		}
	}
	return nil
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
			err = s.db.QueryRowContext(ctx, "SELECT 1 FROM blobs WHERE id = ?", id).Scan(&one)
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

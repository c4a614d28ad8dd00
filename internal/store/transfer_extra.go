package store

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DeliverBatch stores several deliveries in one write, in order: the UIDs
// of messages bound for one mailbox follow the order of ds (bulk import
// keeps the order of its source, which concurrent Deliver calls would
// not). It returns once the batch is durable. Results are per delivery and
// target as for Deliver; a delivery none of whose targets took it leaves
// its blob unreferenced, for the caller to discard. The error is for
// failures of the whole batch, which then stores nothing.
func (s *Store) DeliverBatch(ctx context.Context, ds []*Delivery) ([][]Delivered, error) {
	metas := make([][]byte, len(ds))
	for i, d := range ds {
		if d.Parsed == nil {
			return nil, fmt.Errorf("deliver: no parsed message: %w", ErrInvalid)
		}
		meta, err := json.Marshal(d.Parsed)
		if err != nil {
			return nil, err
		}
		metas[i] = meta
		if d.InternalDate.IsZero() {
			d.InternalDate = time.Now()
		}
	}
	results := make([][]Delivered, len(ds))
	err := s.update(ctx, func(tx *sql.Tx) error {
		for i, d := range ds {
			res := make([]Delivered, len(d.Targets))
			n := 0
			for j, t := range d.Targets {
				r, err := s.deliverOne(ctx, tx, d, t, metas[i])
				if err != nil && !errors.Is(err, ErrOverQuota) && !errors.Is(err, ErrExists) && !errors.Is(err, ErrNotFound) {
					return err
				}
				r.Err = err
				res[j] = r
				if err == nil {
					n++
				}
			}
			results[i] = res
			if n > 0 {
				if err := s.refBlob(tx, d.Blob, n); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// CommitUnsynced finishes a blob like Commit but without fsync: the caller
// must pass it to SyncBlobs before delivering it. Bulk import uses this to
// make a whole batch durable with one call instead of one fsync per file.
func (w *BlobWriter) CommitUnsynced() (Blob, error) {
	if w.done {
		return Blob{}, errors.New("store: blob already finished")
	}
	w.done = true
	err := w.w.Flush()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(w.s.blobPath(w.id))
		return Blob{}, err
	}
	return Blob{ID: w.id, Size: w.n, Digest: hex.EncodeToString(w.h.Sum(nil))}, nil
}

// syncBlobFiles fsyncs blob files and their directories one by one (the
// portable way of SyncBlobs).
func (s *Store) syncBlobFiles(ids []string) error {
	dirs := map[string]bool{}
	for _, id := range ids {
		if !validBlobID(id) {
			return fmt.Errorf("store: bad blob id %q: %w", id, ErrInvalid)
		}
		f, err := os.Open(s.blobPath(id))
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
		dirs[filepath.Dir(s.blobPath(id))] = true
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

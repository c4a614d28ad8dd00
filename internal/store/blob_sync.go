package store

import (
	"fmt"
	"os"
	"path/filepath"
)

// CommitUnsynced finishes a blob like Commit but without fsync: the caller
// must pass it to SyncBlobs before delivering it. Bulk import uses this to
// make a whole batch durable with one call instead of one fsync per file.
func (w *BlobWriter) CommitUnsynced() (Blob, error) { return w.finish(false) }

// syncBlobFiles fsyncs blob files and their directories one by one (the
// portable way of SyncBlobs).
func (s *Store) syncBlobFiles(ids []string) error {
	dirs := map[string]bool{}
	for _, id := range ids {
		if !validBlobID(id) {
			return fmt.Errorf("store: bad blob id %q: %w", id, ErrInvalid)
		}
		if _, inline := s.pending.get(id); inline {
			continue
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

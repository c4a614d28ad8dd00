package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// SyncBlobs makes blobs finished with CommitUnsynced durable, files and
// directory entries. On Linux one syncfs(2) of the blob file system does
// it for any number of blobs; it also flushes whatever else is pending
// there, which costs little next to thousands of fsyncs.
func (s *Store) SyncBlobs(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	d, err := os.Open(s.blobDir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return s.syncBlobFiles(ids)
	}
	return nil
}

//go:build !linux

package store

// SyncBlobs makes blobs finished with CommitUnsynced durable, files and
// directory entries.
func (s *Store) SyncBlobs(ids []string) error { return s.syncBlobFiles(ids) }

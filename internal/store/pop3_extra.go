package store

import "fmt"

// BlobPath returns the file holding a blob, for readers that open it
// themselves: POP3 reads each message with plain open/read/close calls,
// skipping os.File's poller registration and its final read for EOF
// (a third of the system calls per message on the download path). The
// file must only be read.
func (s *Store) BlobPath(id string) (string, error) {
	if !validBlobID(id) {
		return "", fmt.Errorf("store: bad blob id %q: %w", id, ErrInvalid)
	}
	return s.blobPath(id), nil
}

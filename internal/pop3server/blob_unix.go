//go:build unix

package pop3server

import (
	"io"
	"syscall"
)

// blobFile reads a message file with plain system calls and stops at the
// size the store recorded, so a message costs open, read and close only.
type blobFile struct {
	fd   int
	left int64
}

func openBlobFile(path string, size int64) (io.ReadCloser, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &pathError{path: path, err: err}
		}
		return &blobFile{fd: fd, left: size}, nil
	}
}

func (b *blobFile) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	for {
		n, err := syscall.Read(b.fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			b.left = 0 // shorter than recorded
			return 0, io.EOF
		}
		b.left -= int64(n)
		return n, nil
	}
}

func (b *blobFile) Close() error { return syscall.Close(b.fd) }

type pathError struct {
	path string
	err  error
}

func (e *pathError) Error() string { return "open " + e.path + ": " + e.err.Error() }
func (e *pathError) Unwrap() error { return e.err }

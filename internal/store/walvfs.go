package store

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// The store opens its database through walVFS, a thin layer over
// SQLite's default VFS that changes one thing: how the WAL is written.
// SQLite writes every WAL frame with two pwrite calls (the 24-byte frame
// header, then the page), a commit of the IMAP mix some thirty calls at
// a few microseconds each, and under load most of the writer's time.
// The frames of a commit are contiguous, and nobody may read them before
// the commit publishes them in the WAL index; so, while a connection
// holds the WAL write lock (the only time SQLite writes the WAL), walVFS
// gathers its contiguous WAL writes in a buffer and writes the buffer
// with one call when anything could need the bytes in the file:
//
//   - the page of a commit frame (a frame whose header gives the
//     database size): the commit's frames are all there, and a failure
//     still goes back to SQLite, which rolls the commit back;
//   - the connection's xShmBarrier on its database file, for bytes
//     written after that (checksums SQLite rewrites, padding). SQLite
//     calls it between writing a commit's frames and publishing the new
//     WAL-index header, the moment other connections and processes can
//     first look at the frames (and before a commit returns, so before
//     the syncer's fsync of the WAL). It is not where commits are
//     written: readers that meet the header half-written retry until
//     it is whole, so a slow write there would hold them up;
//   - the release of the write lock: frames still buffered then belong
//     to a transaction that did not commit, and are written as SQLite
//     would have, before another writer may use the same offsets;
//   - every other operation on the WAL file: a read that overlaps the
//     buffer, xSync, xFileSize, xTruncate, xFileControl, xClose, and a
//     write that does not continue or overwrite the buffered range.
//
// Without the write lock (exclusive locking mode takes no shared-memory
// locks, and calls no barrier) writes go straight through.
//
// A failed write is returned at the call that made it, as an I/O error
// (SQLite then rolls back the whole transaction), and kept until the lock
// goes, for reads too: SQLite had been told that the bytes before it
// were written, so the transaction must neither read on nor commit. At
// the barrier, which only sees bytes written after a commit frame,
// nothing can be returned and the WAL-index header is about to say the
// frames are there, so a failure there stops the process rather than
// publish frames that are not in the file; recovery at the next start
// ignores the unfinished commit, which no writer was told had succeeded.
// Disk space is the failure that can be foreseen: before the buffer grows
// past the space reserved for the file, walVFS reserves more (SQLite's
// size hint, which allocates the blocks in steps of the file's chunk
// size) and a full disk fails that write, as it would without the
// buffer; a write refused even so (a copy-on-write file system may refuse
// to overwrite reserved blocks) fails the commit at its commit frame. The
// frames sit only in process memory until written, which a crash loses
// exactly as it would lose a commit not yet made.
//
// The database file keeps the default VFS's methods except xShmLock,
// xShmBarrier and xClose; all other files (journals, temporary files)
// are the default VFS's own. Nothing of Go's heap is handed to SQLite:
// the tables and buffers are C memory, and per-file state lives in the
// bytes walVFS adds to each file object.

const (
	walVFSName = "tern-wal"
	// walBufSize bounds one file's pending frames; a commit larger than
	// this is written in pieces of this size. The default VFS writes at
	// most 128 KiB - 1 per call (it masks the length with 0x1ffff).
	walBufSize = 120 << 10
	// walReserve is the step in which space for the WAL is reserved.
	walReserve = 4 << 20
)

// The default VFS's limit on one write, checked when compiling.
const _ uint = 0x1ffff - walBufSize

// walTail is the state walVFS keeps after the default VFS's own part of
// each file object.
type walTail struct {
	n        int32   // WAL: bytes pending in buf
	base     uintptr // the default VFS's methods for this file
	peer     uintptr // database: its WAL file; WAL: its database file
	buf      uintptr // WAL: pending bytes (C memory), 0 until needed
	off      int64   // WAL: file offset of buf's first byte
	reserved int64   // WAL: bytes of file known to be allocated, -1 unknown
	err      int32   // WAL: a failed flush's code, kept until the write lock goes
	wlock    int32   // database: the connection holds the WAL write lock
	_        int32
	commitAt int64 // WAL: offset of the page that completes a commit frame, 0 none
}

const (
	walKindDB  = 1
	walKindWAL = 2
)

var (
	walVFSOnce sync.Once
	walVFSErr  error

	baseVFS    uintptr // the default VFS (C memory)
	tailOffset uintptr // where walTail starts in a file object
	// methodTables holds, by file kind, walVFS's method table (C
	// memory) and the default VFS's table it was made from.
	methodTables [3]struct{ from, table uintptr }

	// walNames maps the WAL file name a database file will open (a
	// pointer into the pager's own name block, which SQLite hands to
	// xOpen unchanged) to that database file, for the WAL's xOpen.
	walNamesMu sync.Mutex
	walNames   = map[uintptr]uintptr{}

	// walStats counts the WAL writes SQLite asked of walVFS and the
	// writes walVFS made of them, for tests.
	walStats struct{ writes, flushes, atBarrier atomic.Int64 }
)

// registerWALVFS registers walVFS with SQLite, once per process.
func registerWALVFS() error {
	walVFSOnce.Do(func() { walVFSErr = doRegisterWALVFS() })
	return walVFSErr
}

func doRegisterWALVFS() error {
	tls := libc.NewTLS()
	defer tls.Close()
	baseVFS = sqlite3.Xsqlite3_vfs_find(tls, 0)
	if baseVFS == 0 {
		return fmt.Errorf("store: SQLite has no default VFS")
	}
	b := (*sqlite3.Tsqlite3_vfs)(cptr(baseVFS))
	tailOffset = (uintptr(b.FszOsFile) + 7) &^ 7
	p := libc.Xcalloc(tls, 1, libc.Tsize_t(unsafe.Sizeof(sqlite3.Tsqlite3_vfs{})))
	name := libc.Xcalloc(tls, 1, libc.Tsize_t(len(walVFSName)+1))
	if p == 0 || name == 0 {
		return fmt.Errorf("store: out of memory registering the WAL VFS")
	}
	copy(unsafe.Slice((*byte)(cptr(name)), len(walVFSName)), walVFSName)
	v := (*sqlite3.Tsqlite3_vfs)(cptr(p))
	*v = *b
	v.FpNext = 0
	v.FzName = name
	v.FszOsFile = int32(tailOffset + unsafe.Sizeof(walTail{}))
	v.FxOpen = *(*uintptr)(unsafe.Pointer(&struct {
		f func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32
	}{walVFSOpen}))
	if rc := sqlite3.Xsqlite3_vfs_register(tls, p, 0); rc != sqlite3.SQLITE_OK {
		return fmt.Errorf("store: registering the WAL VFS: code %d", rc)
	}
	return nil
}

func tailOf(f uintptr) *walTail { return (*walTail)(cptr(f + tailOffset)) }

// methodTable returns walVFS's table for a file of the kind given whose
// default table is m, made on first use: a copy of m with the methods
// walVFS changes. The default VFS gives every file of a kind the same
// table; a file with another one keeps its own (0).
func methodTable(tls *libc.TLS, kind int32, m uintptr) uintptr {
	tab := &methodTables[kind]
	if tab.from == m {
		return tab.table
	}
	if tab.from != 0 {
		return 0
	}
	base := *(*sqlite3.Tsqlite3_io_methods)(cptr(m))
	if base.FiVersion < 2 || (base.FxShmBarrier == 0 || base.FxShmLock == 0) && kind == walKindDB {
		return 0
	}
	t := libc.Xmalloc(tls, libc.Tsize_t(unsafe.Sizeof(sqlite3.Tsqlite3_io_methods{})))
	if t == 0 {
		return 0
	}
	ours := base
	switch kind {
	case walKindDB:
		ours.FxClose = *(*uintptr)(unsafe.Pointer(&struct {
			f func(*libc.TLS, uintptr) int32
		}{dbClose}))
		ours.FxShmBarrier = *(*uintptr)(unsafe.Pointer(&struct {
			f func(*libc.TLS, uintptr)
		}{dbShmBarrier}))
		ours.FxShmLock = *(*uintptr)(unsafe.Pointer(&struct {
			f func(*libc.TLS, uintptr, int32, int32, int32) int32
		}{dbShmLock}))
	case walKindWAL:
		ours.FxClose = *(*uintptr)(unsafe.Pointer(&struct {
			f func(*libc.TLS, uintptr) int32
		}{walClose}))
		ours.FxRead = *(*uintptr)(unsafe.Pointer(&struct {
			f func(*libc.TLS, uintptr, uintptr, int32, int64) int32
		}{walRead}))
		ours.FxWrite = *(*uintptr)(unsafe.Pointer(&struct {
			f func(*libc.TLS, uintptr, uintptr, int32, int64) int32
		}{walWrite}))
		ours.FxTruncate = *(*uintptr)(unsafe.Pointer(&struct {
			f func(*libc.TLS, uintptr, int64) int32
		}{walTruncate}))
		ours.FxSync = *(*uintptr)(unsafe.Pointer(&struct {
			f func(*libc.TLS, uintptr, int32) int32
		}{walSync}))
		ours.FxFileSize = *(*uintptr)(unsafe.Pointer(&struct {
			f func(*libc.TLS, uintptr, uintptr) int32
		}{walFileSize}))
		ours.FxFileControl = *(*uintptr)(unsafe.Pointer(&struct {
			f func(*libc.TLS, uintptr, int32, uintptr) int32
		}{walFileControl}))
	}
	*(*sqlite3.Tsqlite3_io_methods)(cptr(t)) = ours
	tab.from, tab.table = m, t
	return t
}

func walVFSOpen(tls *libc.TLS, vfs, zName, f uintptr, flags int32, pOutFlags uintptr) int32 {
	t := tailOf(f)
	*t = walTail{}
	b := (*sqlite3.Tsqlite3_vfs)(cptr(baseVFS))
	rc := (*(*func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{b.FxOpen})))(tls, baseVFS, zName, f, flags, pOutFlags)
	file := (*sqlite3.Tsqlite3_file)(cptr(f))
	if rc != sqlite3.SQLITE_OK || file.FpMethods == 0 || zName == 0 {
		return rc
	}
	walNamesMu.Lock()
	defer walNamesMu.Unlock()
	switch {
	case flags&sqlite3.SQLITE_OPEN_MAIN_DB != 0:
		tab := methodTable(tls, walKindDB, file.FpMethods)
		if tab == 0 {
			return rc
		}
		t.base = file.FpMethods
		file.FpMethods = tab
		if w := sqlite3.Xsqlite3_filename_wal(tls, zName); w != 0 {
			walNames[w] = f
		}
	case flags&sqlite3.SQLITE_OPEN_WAL != 0:
		db, ok := walNames[zName]
		if !ok || tailOf(db).peer != 0 {
			// Not a WAL walVFS can pair with its database's barrier:
			// leave it unbuffered.
			return rc
		}
		tab := methodTable(tls, walKindWAL, file.FpMethods)
		if tab == 0 {
			return rc
		}
		t.base, t.peer, t.reserved = file.FpMethods, db, -1
		tailOf(db).peer = f
		file.FpMethods = tab
		// The default VFS allocates space on a size hint only for a
		// file with a chunk size, in steps of that size.
		arg := tls.Alloc(8)
		*(*int32)(cptr(arg)) = walReserve
		callFileControl(tls, baseMethods(t).FxFileControl, f, sqlite3.SQLITE_FCNTL_CHUNK_SIZE, arg)
		tls.Free(8)
	}
	return rc
}

func baseMethods(t *walTail) *sqlite3.Tsqlite3_io_methods {
	return (*sqlite3.Tsqlite3_io_methods)(cptr(t.base))
}

func dbClose(tls *libc.TLS, f uintptr) int32 {
	t := tailOf(f)
	walNamesMu.Lock()
	for k, v := range walNames {
		if v == f {
			delete(walNames, k)
		}
	}
	if t.peer != 0 {
		tailOf(t.peer).peer = 0
	}
	walNamesMu.Unlock()
	return callClose(tls, baseMethods(t).FxClose, f)
}

// walWriteLock is the shared-memory lock a connection holds while it
// writes the WAL (wal.c's WAL_WRITE_LOCK).
const walWriteLock = 0

// dbShmLock follows the WAL write lock. Frames are buffered only while the
// connection holds it: every WAL write of SQLite's happens under it, and
// once it is released the next writer (another connection or process) may
// write at the same offsets, so nothing of this connection's may be left
// to write after. When it is released, whatever is still buffered is
// what a transaction wrote without committing (a spilled page cache
// rolled back): it is written then, as SQLite would have written it,
// before the lock is given up.
func dbShmLock(tls *libc.TLS, f uintptr, ofst, n, flags int32) int32 {
	t := tailOf(f)
	covers := ofst <= walWriteLock && walWriteLock < ofst+n && flags&sqlite3.SQLITE_SHM_EXCLUSIVE != 0
	if covers && flags&sqlite3.SQLITE_SHM_UNLOCK != 0 {
		if t.peer != 0 {
			w := tailOf(t.peer)
			walFlush(tls, t.peer, w) // frames no commit refers to: an error changes nothing
			w.err, w.commitAt = 0, 0
		}
		t.wlock = 0
	}
	rc := (*(*func(*libc.TLS, uintptr, int32, int32, int32) int32)(unsafe.Pointer(&struct{ uintptr }{baseMethods(t).FxShmLock})))(tls, f, ofst, n, flags)
	if covers && flags&sqlite3.SQLITE_SHM_LOCK != 0 && rc == sqlite3.SQLITE_OK {
		t.wlock = 1
		if t.peer != 0 {
			// Another connection may have truncated the file meanwhile.
			w := tailOf(t.peer)
			w.reserved, w.commitAt = -1, 0
		}
	}
	return rc
}

func dbShmBarrier(tls *libc.TLS, f uintptr) {
	t := tailOf(f)
	if t.peer != 0 {
		if w := tailOf(t.peer); w.n > 0 || w.err != 0 {
			walStats.atBarrier.Add(1)
			if rc := walFlush(tls, t.peer, w); rc != sqlite3.SQLITE_OK {
				// The header that says these frames exist may come next,
				// and this call cannot refuse; see the type's comment.
				fmt.Fprintf(os.Stderr, "tern: writing the database's WAL failed (SQLite code %d); stopping before the commit becomes visible\n", rc)
				os.Exit(74)
			}
		}
	}
	(*(*func(*libc.TLS, uintptr))(unsafe.Pointer(&struct{ uintptr }{baseMethods(t).FxShmBarrier})))(tls, f)
}

// walFlush writes t's pending bytes. A failure is returned, and kept
// until the write lock goes: SQLite was told earlier that those bytes
// were written, so the transaction must not commit (SQLite rolls back on
// the error; should it go on, the barrier stops the process).
func walFlush(tls *libc.TLS, f uintptr, t *walTail) int32 {
	if t.n > 0 {
		n := t.n
		t.n = 0
		walStats.flushes.Add(1)
		if rc := callWrite(tls, baseMethods(t).FxWrite, f, t.buf, n, t.off); rc != sqlite3.SQLITE_OK && t.err == 0 {
			// An I/O error whatever the cause (a full disk included):
			// SQLite then rolls back the whole transaction, not only
			// the statement, whose earlier writes were in the buffer.
			t.err = sqlite3.SQLITE_IOERR_WRITE
		}
	}
	if t.err != 0 {
		return t.err
	}
	return sqlite3.SQLITE_OK
}

func walWrite(tls *libc.TLS, f, z uintptr, n int32, off int64) int32 {
	t := tailOf(f)
	walStats.writes.Add(1)
	if t.err != 0 {
		return t.err
	}
	if t.peer == 0 || tailOf(t.peer).wlock == 0 {
		// Not under the write lock (SQLite in exclusive locking mode
		// takes no shared-memory locks, and calls no barrier): as is.
		if rc := walFlush(tls, f, t); rc != sqlite3.SQLITE_OK {
			return rc
		}
		walStats.flushes.Add(1)
		return callWrite(tls, baseMethods(t).FxWrite, f, z, n, off)
	}
	if rc := walBuffer(tls, f, t, z, n, off); rc != sqlite3.SQLITE_OK {
		return rc
	}
	switch {
	case n == walFrameHeader && *(*[4]byte)(cptr(z + 4)) != [4]byte{}:
		// A commit frame's header (its bytes 4-7, the database size
		// after the commit, are zero in every other frame): the page
		// that follows completes the commit.
		t.commitAt = off + walFrameHeader
	case t.commitAt != 0 && off == t.commitAt:
		// The commit's frames are all here: write them now, where a
		// failure still reaches SQLite, which rolls the commit back.
		t.commitAt = 0
		return walFlush(tls, f, t)
	}
	return sqlite3.SQLITE_OK
}

// walFrameHeader is the size of a WAL frame's header.
const walFrameHeader = 24

// walBuffer adds one write to t's buffer, writing out what it holds
// first when the write does not continue it.
func walBuffer(tls *libc.TLS, f uintptr, t *walTail, z uintptr, n int32, off int64) int32 {
	end := off + int64(n)
	switch {
	case t.n > 0 && off >= t.off && end <= t.off+int64(t.n):
		// Overwrites pending bytes (SQLite rewrites a frame of the
		// current transaction in place).
		copyC(t.buf+uintptr(off-t.off), z, n)
		return sqlite3.SQLITE_OK
	case t.n > 0 && off == t.off+int64(t.n) && int(t.n)+int(n) <= walBufSize:
		if rc := walReserveFor(tls, f, t, end); rc != sqlite3.SQLITE_OK {
			return rc
		}
		copyC(t.buf+uintptr(t.n), z, n)
		t.n += n
		return sqlite3.SQLITE_OK
	}
	if rc := walFlush(tls, f, t); rc != sqlite3.SQLITE_OK {
		return rc
	}
	if t.buf == 0 {
		t.buf = libc.Xmalloc(tls, walBufSize)
	}
	if int(n) > walBufSize/2 || t.buf == 0 {
		walStats.flushes.Add(1)
		return callWrite(tls, baseMethods(t).FxWrite, f, z, n, off)
	}
	if rc := walReserveFor(tls, f, t, end); rc != sqlite3.SQLITE_OK {
		return rc
	}
	copyC(t.buf, z, n)
	t.off, t.n = off, n
	return sqlite3.SQLITE_OK
}

// walReserveFor makes sure the file has blocks up to end before bytes
// meant for them are only in the buffer, so that a full disk fails the
// write SQLite is making and not the flush at the barrier.
func walReserveFor(tls *libc.TLS, f uintptr, t *walTail, end int64) int32 {
	if end <= t.reserved {
		return sqlite3.SQLITE_OK
	}
	m := baseMethods(t)
	arg := tls.Alloc(8)
	defer tls.Free(8)
	if t.reserved < 0 {
		rc := (*(*func(*libc.TLS, uintptr, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{m.FxFileSize})))(tls, f, arg)
		if rc != sqlite3.SQLITE_OK {
			return rc
		}
		// Whole chunks below the size are allocated: the default VFS
		// grew the file chunk by chunk, or SQLite wrote every byte.
		t.reserved = *(*int64)(cptr(arg)) / walReserve * walReserve
		if end <= t.reserved {
			return sqlite3.SQLITE_OK
		}
	}
	want := (end + walReserve - 1) / walReserve * walReserve
	*(*int64)(cptr(arg)) = want
	if rc := callFileControl(tls, m.FxFileControl, f, sqlite3.SQLITE_FCNTL_SIZE_HINT, arg); rc != sqlite3.SQLITE_OK {
		return rc
	}
	t.reserved = want
	return sqlite3.SQLITE_OK
}

func walRead(tls *libc.TLS, f, z uintptr, n int32, off int64) int32 {
	t := tailOf(f)
	if t.err != 0 {
		// Bytes SQLite counts on are not in the file: it must not read
		// on in this transaction.
		return t.err
	}
	if t.n > 0 && off < t.off+int64(t.n) && off+int64(n) > t.off {
		if rc := walFlush(tls, f, t); rc != sqlite3.SQLITE_OK {
			return rc
		}
	}
	return (*(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&struct{ uintptr }{baseMethods(t).FxRead})))(tls, f, z, n, off)
}

func walTruncate(tls *libc.TLS, f uintptr, size int64) int32 {
	t := tailOf(f)
	if rc := walFlush(tls, f, t); rc != sqlite3.SQLITE_OK {
		return rc
	}
	t.reserved = -1
	return (*(*func(*libc.TLS, uintptr, int64) int32)(unsafe.Pointer(&struct{ uintptr }{baseMethods(t).FxTruncate})))(tls, f, size)
}

func walSync(tls *libc.TLS, f uintptr, flags int32) int32 {
	t := tailOf(f)
	if rc := walFlush(tls, f, t); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return (*(*func(*libc.TLS, uintptr, int32) int32)(unsafe.Pointer(&struct{ uintptr }{baseMethods(t).FxSync})))(tls, f, flags)
}

func walFileSize(tls *libc.TLS, f, pSize uintptr) int32 {
	t := tailOf(f)
	if rc := walFlush(tls, f, t); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return (*(*func(*libc.TLS, uintptr, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{baseMethods(t).FxFileSize})))(tls, f, pSize)
}

func walFileControl(tls *libc.TLS, f uintptr, op int32, arg uintptr) int32 {
	t := tailOf(f)
	if rc := walFlush(tls, f, t); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return callFileControl(tls, baseMethods(t).FxFileControl, f, op, arg)
}

func walClose(tls *libc.TLS, f uintptr) int32 {
	t := tailOf(f)
	rc := walFlush(tls, f, t)
	t.err = 0
	if t.buf != 0 {
		libc.Xfree(tls, t.buf)
		t.buf = 0
	}
	walNamesMu.Lock()
	if t.peer != 0 {
		tailOf(t.peer).peer = 0
		t.peer = 0
	}
	walNamesMu.Unlock()
	if crc := callClose(tls, baseMethods(t).FxClose, f); rc == sqlite3.SQLITE_OK {
		rc = crc
	}
	return rc
}

func callClose(tls *libc.TLS, fn, f uintptr) int32 {
	return (*(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{fn})))(tls, f)
}

func callWrite(tls *libc.TLS, fn, f, z uintptr, n int32, off int64) int32 {
	return (*(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&struct{ uintptr }{fn})))(tls, f, z, n, off)
}

func callFileControl(tls *libc.TLS, fn, f uintptr, op int32, arg uintptr) int32 {
	return (*(*func(*libc.TLS, uintptr, int32, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{fn})))(tls, f, op, arg)
}

// cptr turns an address SQLite handed over (C memory, never Go's heap)
// into a pointer. Reading the bits through a pointer, rather than
// converting the integer, says that the address did not come from Go.
func cptr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

// copyC copies n bytes between two C buffers.
func copyC(dst, src uintptr, n int32) {
	copy(unsafe.Slice((*byte)(cptr(dst)), n), unsafe.Slice((*byte)(cptr(src)), n))
}

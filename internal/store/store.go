// Package store owns tern's state: domains, accounts, aliases, mailboxes,
// messages with their flags and modification sequences, and the message
// bytes on disk. Every SQL statement of tern lives in this package, behind
// its Go API, so that a second SQL dialect is one more file set. The store
// never knows which protocol asked.
//
// Durability: a write method returns only after its transaction committed
// with the WAL fsynced and every blob it references fsynced (file and
// directory). Concurrent writes are batched into one transaction and one
// fsync (group commit) by a single writer goroutine.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Errors returned by the store; compare with errors.Is.
var (
	ErrNotFound  = errors.New("not found")
	ErrExists    = errors.New("already exists")
	ErrOverQuota = errors.New("over quota")
	// ErrUIDsExhausted: the mailbox has given out its last UID.
	ErrUIDsExhausted = errors.New("no UIDs left in the mailbox")
	ErrModified      = errors.New("modified since")
	ErrInvalid       = errors.New("invalid")
)

// Options tune a Store.
type Options struct {
	Logger *slog.Logger
	// MaxBatch caps how many writes share one commit (default 256).
	MaxBatch int
}

// Store is an open data directory. It is safe for concurrent use, and
// several processes may open the same directory (the CLI while the server
// runs): SQLite's locking serialises their writes.
type Store struct {
	dir     string
	blobDir string
	db      *sql.DB // readers
	bulk    *sql.DB // readers of message bytes, mapping the file
	wdb     *sql.DB // the writer's pool: its connection (wtx), and one for migrations and tests
	wtx     *wtx    // the writer goroutine's connection
	log     *slog.Logger

	reqs     chan *writeReq
	stop     chan struct{}
	stopped  chan struct{}
	maxBatch int
	cur      *batch        // owned by the writer goroutine
	syncs    chan *syncJob // committed batches for the syncer
	hot      hotStmts
	pending  pendingBlobs
	removing removals
	reads    sync.Map             // query -> *sql.Stmt on db
	writes   map[string]*sql.Stmt // on wtx, owned by the writer goroutine (see txStmt)

	stats struct{ batches, writes, nanos atomic.Int64 }

	closeOnce sync.Once
	watch     watchers
	mirror    mirror      // see mirror.go
	parsed    parsedCache // see parsedcache.go
	modseqs   published   // see mirror.go
	lists     listCache   // see listcache.go
	// dataVersion is the writer connection's PRAGMA data_version when
	// last looked at, and when: it changes when another process commits.
	dataVersion     int64
	dataVersionRead time.Time
}

// Open opens (creating if needed) the store in dataDir: the database
// dataDir/tern.db and message files under dataDir/blobs. It runs pending
// migrations and refuses a database written by a newer tern.
func Open(ctx context.Context, dataDir string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if err := os.MkdirAll(filepath.Join(dataDir, "blobs"), 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, "tern.db")
	// RFC-free but important: WAL for concurrent readers; synchronous=FULL
	// so that a commit is on disk when it returns (the writer's own
	// connection is NORMAL: its commits are made durable by the syncer,
	// see writer.go); busy_timeout so that the
	// CLI and the server wait for each other instead of failing.
	// temp_store=MEMORY keeps statement journals and sort b-trees out of
	// temporary files (a multi-row UPDATE inside a write's savepoint
	// journals every row).
	if err := registerWALVFS(); err != nil {
		return nil, err
	}
	base := "file:" + path + "?vfs=" + walVFSName + "&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(15000)&_pragma=foreign_keys(ON)&_pragma=temp_store(MEMORY)"
	wdb, err := sql.Open("sqlite", strings.Replace(base, "synchronous(FULL)", "synchronous(NORMAL)", 1)+"&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	// The writer keeps one connection for itself (wtx); a second one
	// serves migrations and tests, and waits on SQLite's lock as the
	// CLI's would.
	wdb.SetMaxOpenConns(2)
	db, err := sql.Open("sqlite", base)
	if err != nil {
		wdb.Close()
		return nil, err
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	// The bulk readers map the file: reading a message kept in the
	// database is then a memory access, not a pread and a copy. Only
	// long sequential reads use them: a mapped reader unmaps the whole
	// file at its first read after any write (SQLite drops its view of
	// a changed database), which costs the short queries of IMAP more
	// than mapping saves them (-25% IMAP commands/s when all readers
	// mapped the file under the bench/imap mix).
	bulk, err := sql.Open("sqlite", base+"&_pragma=mmap_size(1073741824)")
	if err != nil {
		wdb.Close()
		db.Close()
		return nil, err
	}
	bulk.SetMaxOpenConns(4)
	bulk.SetMaxIdleConns(4)
	s := &Store{
		dir: dataDir, blobDir: filepath.Join(dataDir, "blobs"),
		db: db, wdb: wdb, bulk: bulk, log: opts.Logger,
		reqs: make(chan *writeReq, 1024), stop: make(chan struct{}), stopped: make(chan struct{}),
		syncs:    make(chan *syncJob, 256),
		maxBatch: opts.MaxBatch,
		writes:   map[string]*sql.Stmt{},
	}
	s.parsed.max = parsedCacheBytes
	if err := s.migrate(ctx); err != nil {
		db.Close()
		wdb.Close()
		bulk.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	wc, err := wdb.Conn(ctx)
	if err == nil {
		s.wtx = wc
		err = s.prepareHot(ctx)
	}
	if err != nil {
		if wc != nil {
			wc.Close()
		}
		db.Close()
		wdb.Close()
		bulk.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	go s.writer()
	go s.pruner()
	return s, nil
}

// Dir is the data directory.
func (s *Store) Dir() string { return s.dir }

// Close stops the writer after pending writes and closes the database.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.stopped
		err = errors.Join(s.wtx.Close(), s.db.Close(), s.wdb.Close(), s.bulk.Close())
	})
	return err
}

// IntegrityCheck runs SQLite's integrity check and returns its verdict
// ("ok" when sound).
func (s *Store) IntegrityCheck(ctx context.Context) (string, error) {
	var res string
	err := s.queryRow(ctx, "PRAGMA integrity_check").Scan(&res)
	return res, err
}

// WriterStats reports the group commit's work so far: transactions
// committed, writes they carried, and time spent committing.
func (s *Store) WriterStats() (batches, writes int64, busy time.Duration) {
	return s.stats.batches.Load(), s.stats.writes.Load(), time.Duration(s.stats.nanos.Load())
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// wtx is the transaction a write runs in: statements on the writer
// goroutine's own connection, between the BEGIN and COMMIT of its batch.
// It is not a *sql.Tx: database/sql starts a goroutine for every query
// run in one (to close its rows should the transaction's context end),
// a dozen goroutines started, scheduled and ended per loop of the IMAP
// mix for a context that never ends. On a *sql.Conn with a context
// without cancellation, a query starts none. The name says which
// connection a write function is handed.
type wtx = sql.Conn

// writeReq is one write waiting for the writer goroutine.
type writeReq struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *wtx) error
	done chan error
	lazy bool
}

// batch is the state of one group commit, owned by the writer goroutine.
type batch struct {
	removeBlobs []string               // blob files to delete after commit
	touched     map[int64]bool         // accounts to wake after commit
	reqInlined  []string               // inline blobs stored by the current write
	reqRemove   []string               // blob files the current write released
	inlined     []string               // inline blobs stored by the writes that succeeded
	reqModSeqs  map[int64]mailboxState // HIGHESTMODSEQ each mailbox reached in the current write
	modseqs     map[int64]mailboxState // the same for the writes that succeeded
	reqLists    bool                   // the current write changed mailbox names or subscriptions
	lists       bool                   // the same for the writes that succeeded
}

// update runs fn in a write transaction shared with other concurrent
// writes (group commit) and returns when the transaction is durable. fn
// runs inside a savepoint: its error rolls back only its own changes.
// fn must not block on anything but the database. fn gets ctx without
// its cancellation: once started a write runs to its end, since SQLite
// answers a statement interrupted inside a transaction by rolling back
// the whole transaction, the other writes of the batch with it.
func (s *Store) update(ctx context.Context, fn func(ctx context.Context, tx *wtx) error) error {
	return s.write(ctx, fn, false)
}

// updateLazy is update for changes whose loss in a power failure loses no
// mail (flags, expunges): its commit is written to the WAL but not
// fsynced, unless it shares a batch with a durable write. A process crash
// (kill -9) loses nothing either way: the WAL is in the kernel's cache.
// This is the difference Dovecot also makes between mail and flags.
func (s *Store) updateLazy(ctx context.Context, fn func(ctx context.Context, tx *wtx) error) error {
	return s.write(ctx, fn, true)
}

func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx *wtx) error, lazy bool) error {
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1), lazy: lazy}
	select {
	case s.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return errors.New("store: closed")
	}
	// Once queued the write is carried out whatever the context says, so
	// wait for its outcome: returning early would hide whether it landed.
	// Only a write queued after the writer's last look at the queue is
	// never carried out (every answer is sent before stopped closes).
	select {
	case err := <-req.done:
		return err
	case <-s.stopped:
		select {
		case err := <-req.done:
			return err
		default:
			return errors.New("store: closed")
		}
	}
}

// writer collects concurrent writes into one transaction and one fsync.
func (s *Store) writer() {
	syncerDone := make(chan struct{})
	go s.syncer(syncerDone)
	defer func() {
		close(s.syncs)
		<-syncerDone
		close(s.stopped)
	}()
	for {
		var first *writeReq
		select {
		case first = <-s.reqs:
		case <-s.stop:
			for {
				select {
				case r := <-s.reqs:
					s.commitBatch([]*writeReq{r})
				default:
					return
				}
			}
		}
		reqs := []*writeReq{first}
	drain:
		for len(reqs) < s.maxBatch {
			select {
			case r := <-s.reqs:
				reqs = append(reqs, r)
			default:
				break drain
			}
		}
		s.commitBatch(reqs)
	}
}

func (s *Store) commitBatch(reqs []*writeReq) {
	start := time.Now()
	defer func() {
		s.stats.batches.Add(1)
		s.stats.writes.Add(int64(len(reqs)))
		s.stats.nanos.Add(int64(time.Since(start)))
	}()
	b := &batch{touched: map[int64]bool{}, reqModSeqs: map[int64]mailboxState{}, modseqs: map[int64]mailboxState{}}
	s.cur = b
	defer func() { s.cur = nil }()
	errs := make([]error, len(reqs))
	fail := func(err error) {
		for _, r := range reqs {
			r.done <- err
		}
	}
	ctx := context.Background()
	tx := s.wtx
	rollback := func() {
		if _, err := s.txExec(ctx, tx, "ROLLBACK"); err != nil {
			s.log.Error("store: rolling back a batch", "err", err)
		}
	}
	if _, err := s.txExec(ctx, tx, "BEGIN IMMEDIATE"); err != nil {
		fail(err)
		return
	}
	s.checkDataVersion(ctx)
	// exec runs a statement of the batch's own; its failure fails all.
	exec := func(q string) bool {
		if _, err := s.txExec(ctx, tx, q); err != nil {
			rollback()
			fail(err)
			return false
		}
		return true
	}
	// A write alone in its batch needs no savepoint: its error rolls back
	// the whole transaction, which holds nothing else.
	alone := len(reqs) == 1
	for i, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if !alone && !exec("SAVEPOINT w") {
			return
		}
		b.reqInlined, b.reqRemove = b.reqInlined[:0], b.reqRemove[:0]
		clear(b.reqModSeqs)
		b.reqLists = false
		errs[i] = r.fn(context.WithoutCancel(r.ctx), tx)
		switch {
		case errs[i] == nil:
			b.inlined = append(b.inlined, b.reqInlined...)
			b.removeBlobs = append(b.removeBlobs, b.reqRemove...)
			for id, m := range b.reqModSeqs {
				b.modseqs[id] = m
			}
			b.lists = b.lists || b.reqLists
		case alone:
			rollback()
			r.done <- errs[i]
			return
		case !exec("ROLLBACK TO w"):
			return
		}
		if !alone && !exec("RELEASE w") {
			return
		}
	}
	// Readers see the commit before the writer can publish it: until then
	// no mirror of these mailboxes may trust the old values.
	s.modseqs.unpublish(b.modseqs)
	if _, err := s.txExec(ctx, tx, "COMMIT"); err != nil {
		// A COMMIT that fails may leave the transaction open (SQLITE_BUSY)
		// or have ended it; either way nothing of it is kept (and a
		// ROLLBACK of an ended one fails, which says nothing new).
		s.txExec(ctx, tx, "ROLLBACK")
		fail(err)
		return
	}
	// Committed inline blobs are read from the database from now on.
	s.pending.drop(b.inlined...)
	// Before anyone hears of the commit: readers may now trust these.
	s.modseqs.publish(b.modseqs)
	if b.lists {
		s.lists.changed()
	}
	// Lazy writers (flags and the like) hear back now: in the WAL, the
	// kernel's cache, is enough, and the next fsync takes them along.
	// The others wait for the syncer, and so does everyone when files
	// are to go (see finish).
	s.removing.plan(b.removeBlobs)
	job := &syncJob{removeBlobs: b.removeBlobs, touched: b.touched}
	for i, r := range reqs {
		if r.lazy && len(b.removeBlobs) == 0 {
			r.done <- errs[i]
			continue
		}
		job.reqs = append(job.reqs, r)
		job.errs = append(job.errs, errs[i])
	}
	if len(job.reqs) == 0 {
		s.finish(job, nil) // wakes the watchers
		return
	}
	s.syncs <- job
}

// syncJob is a committed batch whose writers wait for the WAL to be on
// disk.
type syncJob struct {
	reqs        []*writeReq
	errs        []error
	removeBlobs []string
	touched     map[int64]bool
}

// syncer makes committed batches durable. The writer connection runs
// with synchronous=NORMAL, so a commit writes the WAL without fsyncing
// it; the syncer fsyncs the WAL once for every batch committed so far and
// only then tells their writers. Meanwhile the writer goes on with the
// next batch: the disk's flush and SQLite's work overlap instead of
// taking turns, and one fsync serves several batches. An fsync covers
// every frame written before it was called; a checkpoint in between
// fsyncs the WAL and the database itself (synchronous=NORMAL does that),
// so frames it recycles are already safe in the database file.
func (s *Store) syncer(done chan<- struct{}) {
	defer close(done)
	var wal *os.File
	defer func() {
		if wal != nil {
			wal.Close()
		}
	}()
	sync := func() error {
		if wal == nil {
			f, err := os.Open(filepath.Join(s.dir, "tern.db-wal"))
			if err != nil {
				return err
			}
			wal = f
		}
		return wal.Sync()
	}
	for job := range s.syncs {
		jobs := []*syncJob{job}
	more:
		for {
			select {
			case j, ok := <-s.syncs:
				if !ok {
					break more
				}
				jobs = append(jobs, j)
			default:
				break more
			}
		}
		err := sync()
		if err != nil {
			// Once more on a fresh descriptor, in case the file was
			// replaced; then the writers hear of the failure (the data
			// is committed, but not known to be on disk, so the client
			// must try again rather than be told it is safe).
			wal.Close()
			wal = nil
			err = sync()
		}
		if err != nil {
			s.log.Error("store: syncing the WAL", "err", err)
			err = fmt.Errorf("store: syncing the WAL: %w", err)
		}
		for _, j := range jobs {
			s.finish(j, err)
		}
	}
}

// finish tells a batch's writers their outcome, once its changes are as
// durable as they asked (syncErr: the WAL fsync failed). Files of
// released blobs go before the writers hear back, so that a caller sees
// the effect of its own expunge, and only after the WAL is on disk: a
// file must never go while a row that could come back after a power
// failure still points at it.
func (s *Store) finish(j *syncJob, syncErr error) {
	if syncErr != nil && len(j.removeBlobs) > 0 {
		s.log.Warn("keeping released files for the sweep", "count", len(j.removeBlobs))
	}
	s.removing.remove(s, j.removeBlobs, syncErr != nil)
	// Watchers first: a writer that hears back (a delivery acknowledged)
	// may rely on every session of the account having been signalled.
	for acct := range j.touched {
		s.watch.notify(acct)
	}
	for i, r := range j.reqs {
		err := j.errs[i]
		if err == nil && syncErr != nil && !r.lazy {
			err = syncErr
		}
		r.done <- err
	}
}

// checkDataVersion looks, at most every tenth of a second, whether
// another process committed since the writer last looked (PRAGMA
// data_version counts other connections' commits), and if so tells the
// mirrors not to trust what this process published.
func (s *Store) checkDataVersion(ctx context.Context) {
	now := time.Now()
	if now.Sub(s.dataVersionRead) < 100*time.Millisecond {
		return
	}
	s.dataVersionRead = now
	var v int64
	st := s.txStmt(ctx, s.wtx, "PRAGMA data_version")
	if st == nil || st.QueryRowContext(ctx).Scan(&v) != nil {
		s.modseqs.epoch.Add(1)
		return
	}
	if v != s.dataVersion {
		s.dataVersion = v
		s.modseqs.epoch.Add(1)
	}
}

// noteModSeq records that the current write raised a mailbox's
// HIGHESTMODSEQ to modseq, published once the batch commits; modseq 0
// says the mailbox went (its ID may come back for another). Only valid
// inside update.
func (s *Store) noteModSeq(mailboxID int64, uidValidity uint32, modseq uint64) {
	if s.cur != nil {
		s.cur.reqModSeqs[mailboxID] = mailboxState{uidValidity, modseq}
	}
}

// touchLists records that the current write changes the names, special
// uses or subscriptions of an account's mailboxes (see listCache). Only
// valid inside update.
func (s *Store) touchLists() {
	if s.cur != nil {
		s.cur.reqLists = true
	}
}

// touch records that the current write changed an account, to wake its
// watchers after commit. Only valid inside update.
func (s *Store) touch(accountID int64) {
	if s.cur != nil {
		s.cur.touched[accountID] = true
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// blobPath maps a blob id to its file: blobs/ab/abcdef...
func (s *Store) blobPath(id string) string {
	return filepath.Join(s.blobDir, id[:2], id)
}

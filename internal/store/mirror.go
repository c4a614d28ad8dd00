package store

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// The mirror keeps, for recently listed mailboxes, the per-message state
// that Messages and MessageFlags return (UID, modseq, flags, date, size,
// blob), as of the mailbox's HIGHESTMODSEQ when last read. A listing then
// reads only what changed since: messages whose modseq is above that
// label, tombstones above it, and the mailbox row, one statement that
// returns a handful of rows instead of the whole mailbox. IMAP clients
// list the flags of a whole mailbox at every sync, and this is the cost
// Dovecot saves with its index files.
//
// Nothing has to tell the mirror of a change: every change to a message
// gives it a new modseq, every expunge leaves a tombstone with one, and
// both raise the mailbox's HIGHESTMODSEQ in the same transaction (what
// CONDSTORE and QRESYNC rest on anyway). The writer commits modseqs in
// ascending order, so a snapshot that holds a modseq holds every smaller
// one, and the HIGHESTMODSEQ read in the same statement as the changes is
// an exact label. A mailbox row gone, or with another UIDVALIDITY, drops
// the mirrored state.
//
// Mailboxes larger than mirrorMaxMessages are not mirrored (a million
// messages are listed in batches straight from the table, memory flat),
// and the mirror as a whole holds at most mirrorMaxRows messages: past
// that it starts over.
const (
	mirrorMaxMessages = 50_000
	mirrorMaxRows     = 400_000
)

// mirrorTrust bounds how long a mirror is believed without a look at the
// database when nothing says it changed: changes made by another process
// (the CLI) are seen within it even when nothing tells this one.
const mirrorTrust = time.Second

// published is what this process's writer last committed as each
// mailbox's HIGHESTMODSEQ, set before any writer hears back: a mirror
// labelled with the same value has nothing to read, unless another
// process wrote meanwhile, which bumps epoch (the writer's connection sees
// that in PRAGMA data_version, and admin commands say so through
// NotifyAccount).
type published struct {
	mu    sync.RWMutex
	m     map[int64]mailboxState
	epoch atomic.Uint64
}

// mailboxState names a mailbox's state: UIDVALIDITY (an ID can come back
// for another mailbox) and HIGHESTMODSEQ.
type mailboxState struct {
	uidValidity uint32
	modseq      uint64
}

// publish records committed states; modseq 0 forgets a mailbox.
func (p *published) publish(mods map[int64]mailboxState) {
	if len(mods) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[int64]mailboxState{}
	}
	for id, m := range mods {
		if m.modseq == 0 {
			delete(p.m, id)
		} else {
			p.m[id] = m
		}
	}
}

// unpublish forgets mailboxes about to change.
func (p *published) unpublish(mods map[int64]mailboxState) {
	if len(mods) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range mods {
		delete(p.m, id)
	}
}

func (p *published) get(id int64) (mailboxState, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	m, ok := p.m[id]
	return m, ok
}

// ChangeMark is taken before reading a mailbox's changes; Unchanged later
// says, from it alone, whether anything was committed since.
type ChangeMark struct {
	epoch uint64
	at    time.Time
}

// Mark is a ChangeMark for a read about to start.
func (s *Store) Mark() ChangeMark {
	return ChangeMark{epoch: s.modseqs.epoch.Load(), at: time.Now()}
}

// Unchanged reports, without reading the database, that a mailbox is
// still at (uidValidity, modseq): this process's writer published that
// state, and nothing says another process wrote since the mark (changes
// from a process that does not say so are seen within mirrorTrust of the
// mark, as for the mirror). False means only that the caller must read.
func (s *Store) Unchanged(mailboxID int64, uidValidity uint32, modseq uint64, m ChangeMark) bool {
	if !s.trusted(m) {
		return false
	}
	h, ok := s.modseqs.get(mailboxID)
	return ok && h == mailboxState{uidValidity, modseq}
}

// trusted reports that what was read at m may still be believed without
// a look at the database: no other process said it wrote since, and m is
// younger than mirrorTrust.
func (s *Store) trusted(m ChangeMark) bool {
	return s.modseqs.epoch.Load() == m.epoch && time.Since(m.at) < mirrorTrust
}

type mirror struct {
	mu    sync.Mutex
	m     map[int64]*mailboxMirror
	total int
}

type mailboxMirror struct {
	mu          sync.Mutex
	counted     int // rows counted in mirror.total
	loaded      bool
	tooBig      bool
	uidValidity uint32
	modseq      uint64
	epoch       uint64      // published.epoch when last read
	read        time.Time   // when last read
	rows        []mirrorRow // ascending UID
	lists       flagLists
}

type mirrorRow struct {
	uid    uint32
	modseq uint64
	flags  []string // shared, never modified
	date   int64
	size   int64
	blob   string
}

// mailbox returns the mirror entry of a mailbox, creating it.
func (mr *mirror) mailbox(id int64) *mailboxMirror {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	if mr.m == nil {
		mr.m = map[int64]*mailboxMirror{}
	}
	mm := mr.m[id]
	if mm == nil {
		mm = &mailboxMirror{}
		mr.m[id] = mm
	}
	return mm
}

// grew accounts for n more (or fewer) mirrored rows; past the bound every
// mailbox is forgotten (entries in use finish their call and go).
func (mr *mirror) grew(n int) {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	mr.total += n
	if mr.total > mirrorMaxRows {
		clear(mr.m)
		mr.total = 0
	}
}

const mirrorFullQuery = `SELECT 2, uidvalidity, highestmodseq, '', n_messages, vanished_floor, '' FROM mailboxes WHERE id = ?1
	UNION ALL SELECT 0, uid, modseq, flags, internal_date, size, blob_id FROM messages WHERE ` + mailboxKeys + ` AND ?2 >= 0`

const mirrorDeltaQuery = `SELECT 2, uidvalidity, highestmodseq, '', n_messages, vanished_floor, '' FROM mailboxes WHERE id = ?1
	UNION ALL SELECT 0, uid, modseq, flags, internal_date, size, blob_id FROM messages WHERE mailbox_id = ?1 AND modseq > ?2
	UNION ALL SELECT 1, uid, modseq, '', 0, 0, '' FROM tombstones WHERE mailbox_id = ?1 AND modseq > ?2`

// mirrored brings the mirror of a mailbox up to date and calls fn with
// it, under its lock. It returns false when the mailbox is not
// mirrored (too big); the caller then reads the store itself.
func (s *Store) mirrored(ctx context.Context, mailboxID int64, fn func(mm *mailboxMirror)) (bool, error) {
	mm := s.mirror.mailbox(mailboxID)
	mm.mu.Lock()
	defer mm.mu.Unlock()
	if mm.tooBig {
		return false, nil
	}
	if mm.loaded && s.Unchanged(mailboxID, mm.uidValidity, mm.modseq, ChangeMark{epoch: mm.epoch, at: mm.read}) {
		fn(mm) // nothing committed here since
		return true, nil
	}
	mm.epoch, mm.read = s.modseqs.epoch.Load(), time.Now()
	err := s.refreshMirror(ctx, mailboxID, mm)
	if n := len(mm.rows); n != mm.counted {
		s.mirror.grew(n - mm.counted)
		mm.counted = n
	}
	switch {
	case err == errMailboxGone:
		return true, nil // no messages, as a query would say
	case err != nil:
		return false, err
	case mm.tooBig:
		return false, nil
	}
	fn(mm)
	return true, nil
}

var errMailboxGone = errors.New("store: mailbox gone")

func (s *Store) refreshMirror(ctx context.Context, mailboxID int64, mm *mailboxMirror) error {
	q, since := mirrorDeltaQuery, mm.modseq
	if !mm.loaded {
		q, since = mirrorFullQuery, 0
	}
	rows, err := s.query(ctx, q, mailboxID, since)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		kind, uid, modseq, date, size int64
		flags                         sql.RawBytes
		blob                          string
		sawMailbox                    bool
		fresh                         []mirrorRow // rows of a full read
	)
	for rows.Next() {
		if err := rows.Scan(&kind, &uid, &modseq, &flags, &date, &size, &blob); err != nil {
			mm.forget()
			return err
		}
		switch kind {
		case 2: // the mailbox: UIDVALIDITY, HIGHESTMODSEQ, message count
			sawMailbox = true
			if mm.loaded && (uint32(uid) != mm.uidValidity || uint64(size) > mm.modseq) {
				// Another mailbox under a reused ID, or tombstones above
				// the label pruned (schemaV14): start over.
				rows.Close()
				mm.forget()
				return s.refreshMirror(ctx, mailboxID, mm)
			}
			if !mm.loaded && date > mirrorMaxMessages {
				mm.tooBig = true
				return nil
			}
			mm.uidValidity, mm.modseq = uint32(uid), uint64(modseq)
		case 0:
			r := mirrorRow{uid: uint32(uid), modseq: uint64(modseq), flags: mm.lists.get(flags), date: date, size: size, blob: blob}
			if !mm.loaded {
				fresh = append(fresh, r)
			} else {
				mm.put(r)
			}
		case 1:
			mm.remove(uint32(uid))
		}
	}
	if err := rows.Err(); err != nil {
		mm.forget()
		return err
	}
	if !sawMailbox {
		mm.forget()
		return errMailboxGone
	}
	if !mm.loaded {
		slices.SortFunc(fresh, func(a, b mirrorRow) int { return int(int64(a.uid) - int64(b.uid)) })
		mm.rows, mm.loaded = fresh, true
	}
	return nil
}

// forget drops the mirrored state; the next call reads the mailbox whole.
func (mm *mailboxMirror) forget() {
	mm.loaded, mm.rows, mm.modseq, mm.uidValidity = false, nil, 0, 0
	mm.lists = flagLists{}
}

func (mm *mailboxMirror) find(uid uint32) (int, bool) {
	i := sort.Search(len(mm.rows), func(i int) bool { return mm.rows[i].uid >= uid })
	return i, i < len(mm.rows) && mm.rows[i].uid == uid
}

// put sets a message's row, inserting it at its place (new messages
// usually go at the end).
func (mm *mailboxMirror) put(r mirrorRow) {
	if n := len(mm.rows); n == 0 || mm.rows[n-1].uid < r.uid {
		mm.rows = append(mm.rows, r)
		return
	}
	i, ok := mm.find(r.uid)
	if ok {
		mm.rows[i] = r
		return
	}
	mm.rows = slices.Insert(mm.rows, i, r)
}

func (mm *mailboxMirror) remove(uid uint32) {
	if i, ok := mm.find(uid); ok {
		mm.rows = slices.Delete(mm.rows, i, i+1)
	}
}

// span returns the rows with lo <= uid <= hi.
func span(rows []mirrorRow, lo, hi uint32) []mirrorRow {
	i := sort.Search(len(rows), func(i int) bool { return rows[i].uid >= lo })
	j := sort.Search(len(rows), func(i int) bool { return rows[i].uid > hi })
	if i >= j {
		return nil
	}
	return rows[i:j]
}

// info is the row as Messages returns it, with flags of its own (its
// callers may change them; the mirror's are shared).
func (r *mirrorRow) info() MessageInfo {
	return MessageInfo{UID: r.uid, ModSeq: r.modseq, Flags: slices.Clone(r.flags), InternalDate: time.Unix(r.date, 0), Size: r.size, BlobID: r.blob}
}

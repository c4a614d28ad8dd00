package store

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
)

// listCache keeps, per account, its mailboxes' names and attributes and
// its subscriptions: what IMAP clients list at every sync (LIST "" "*"),
// and what only CREATE, DELETE, RENAME, SUBSCRIBE and account changes
// alter. Those writes call touchLists; a commit that holds one moves gen
// on before any writer hears back, and an entry read under an older gen
// is read again. Changes made by another process are seen within
// mirrorTrust of the read, as for the mirror.
type listCache struct {
	gen atomic.Uint64
	mu  sync.Mutex
	m   map[int64]listEntry
}

type listEntry struct {
	gen   uint64
	mark  ChangeMark
	boxes []Mailbox
	subs  []string
}

// listCacheMax bounds the accounts kept; past it the cache starts over.
const listCacheMax = 10_000

func (c *listCache) changed() { c.gen.Add(1) }

// MailboxList returns an account's mailboxes sorted by name and its
// subscriptions, as Mailboxes and Subscriptions do, mostly without
// reading the database. UIDNext and HighestModSeq, which change with
// every delivery, are zero in what it returns: MailboxByID has them.
func (s *Store) MailboxList(ctx context.Context, accountID int64) ([]Mailbox, []string, error) {
	gen := s.lists.gen.Load()
	s.lists.mu.Lock()
	e, ok := s.lists.m[accountID]
	s.lists.mu.Unlock()
	if !ok || e.gen != gen || !s.trusted(e.mark) {
		e = listEntry{gen: gen, mark: s.Mark()}
		var err error
		if e.boxes, err = s.Mailboxes(ctx, accountID); err != nil {
			return nil, nil, err
		}
		if e.subs, err = s.Subscriptions(ctx, accountID); err != nil {
			return nil, nil, err
		}
		for i := range e.boxes {
			e.boxes[i].UIDNext, e.boxes[i].HighestModSeq = 0, 0
		}
		s.lists.mu.Lock()
		if s.lists.m == nil || len(s.lists.m) >= listCacheMax {
			s.lists.m = map[int64]listEntry{}
		}
		s.lists.m[accountID] = e
		s.lists.mu.Unlock()
	}
	return slices.Clone(e.boxes), slices.Clone(e.subs), nil
}

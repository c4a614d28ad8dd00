package pop3server

import (
	"sync"

	"github.com/tern-mail/tern/internal/store"
)

// sizeCache remembers the wire size (CRLF line ends) of message blobs.
// Blobs are immutable, so a blob ID keys its size for good; the cache
// spares every login the parse data of the whole INBOX (Dovecot keeps the
// same figure, the "virtual size", in its index cache). It is bounded and
// simply starts over when full.
type sizeCache struct {
	mu  sync.Mutex
	max int
	m   map[string]int64
}

func newSizeCache(max int) *sizeCache {
	return &sizeCache{max: max, m: make(map[string]int64)}
}

// fill sets wire for the messages it knows and reports whether all were
// found.
func (c *sizeCache) fill(msgs []msg) bool {
	all := true
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range msgs {
		if msgs[i].wire >= 0 {
			continue
		}
		if n, ok := c.m[msgs[i].blobID]; ok {
			msgs[i].wire = n
		} else {
			all = false
		}
	}
	return all
}

// add remembers the sizes of msgs.
func (c *sizeCache) add(msgs []msg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		if m.wire < 0 {
			continue
		}
		if len(c.m) >= c.max {
			clear(c.m)
		}
		c.m[m.blobID] = m.wire
	}
}

// listingCache keeps the last maildrop listing of each INBOX, labelled
// with the mailbox's UIDVALIDITY and HIGHESTMODSEQ when it was read. Every
// change to the listed state (a delivery, an expunge, a flag change)
// raises HIGHESTMODSEQ, so a login that finds the same two numbers gets
// the same messages without reading them again: a POP3 client that
// checks every few minutes, and finds nothing new, reads one mailbox row.
// (Dovecot answers the same login from its index file.) The label is the
// HIGHESTMODSEQ read before the listing, never after, so it can only be
// older than what it labels: a change in between raises the number past
// the label, and the next login reads afresh. Listings are shared and
// never modified. The cache is bounded in entries and starts over when
// full.
type listingCache struct {
	mu    sync.Mutex
	max   int // entries over all listings
	total int
	m     map[int64]listing
}

type listing struct {
	accountID   int64
	uidValidity uint32
	modseq      uint64
	entries     []store.DropEntry
}

func newListingCache(max int) *listingCache {
	return &listingCache{max: max, m: map[int64]listing{}}
}

// get returns the cached listing of mb if it is still the mailbox's state.
func (c *listingCache) get(mb store.Mailbox) ([]store.DropEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.m[mb.ID]
	if !ok || l.accountID != mb.AccountID || l.uidValidity != mb.UIDValidity || l.modseq != mb.HighestModSeq {
		return nil, false
	}
	return l.entries, true
}

// put remembers entries, read after mb was, as mb's listing.
func (c *listingCache) put(mb store.Mailbox, entries []store.DropEntry) {
	if len(entries) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[mb.ID]; ok {
		if old.uidValidity == mb.UIDValidity && old.modseq > mb.HighestModSeq {
			return // a newer listing is there already
		}
		c.total -= len(old.entries)
	}
	if c.total+len(entries) > c.max {
		clear(c.m)
		c.total = 0
	}
	c.m[mb.ID] = listing{accountID: mb.AccountID, uidValidity: mb.UIDValidity, modseq: mb.HighestModSeq, entries: entries}
	c.total += len(entries)
}

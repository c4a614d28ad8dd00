package store

import (
	"container/list"
	"context"
	"slices"
	"sync"

	"github.com/tern-mail/tern/internal/message"
)

// parsedCache keeps recently read message structures (ENVELOPE,
// BODYSTRUCTURE: what delivery parsed and stored), decoded, by blob ID.
// A blob's bytes never change and its ID is never given to other bytes
// (128 random bits), and the structure is parsed from those bytes alone
// (copies share the blob and the structure), so an entry never goes
// stale: nothing has to invalidate it, a message expunged only leaves an
// entry unused until it ages out. Dovecot serves the same from its index cache file;
// here it saves a join and a JSON decode per message for clients that
// fetch the same envelopes again (another device, a webmail page, a
// client without a local cache).
//
// The cache is bounded by an estimate of the decoded entries' size (twice
// the stored form for a whole structure, which decodes to 1.8-2.6 times
// its JSON; the stored size for an envelope alone) and drops the least
// recently used.
type parsedCache struct {
	mu    sync.Mutex
	ll    list.List // of *parsedEntry, most recently used first
	byID  map[string]*list.Element
	bytes int
	max   int
}

type parsedEntry struct {
	blob string
	p    *message.Parsed
	// envelopeOnly: p has the envelope only (Structure nil, no Preview).
	envelopeOnly bool
	size         int
}

// parsedCacheBytes bounds the cache: some 20,000 messages' structures.
const parsedCacheBytes = 32 << 20

// get returns the cached structure of blob, if there is one that has
// what the caller needs.
func (c *parsedCache) get(blob string, envelopeOnly bool) *message.Parsed {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[blob]
	if !ok {
		return nil
	}
	e := el.Value.(*parsedEntry)
	if e.envelopeOnly && !envelopeOnly {
		return nil
	}
	c.ll.MoveToFront(el)
	return e.p
}

// put records blob's structure; size is its stored form's length.
func (c *parsedCache) put(blob string, p *message.Parsed, envelopeOnly bool, size int) {
	if !envelopeOnly {
		size *= 2
	}
	size += len(blob) + 64
	if c.max <= 0 || size > c.max/16 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil {
		c.byID = map[string]*list.Element{}
	}
	if el, ok := c.byID[blob]; ok {
		e := el.Value.(*parsedEntry)
		if !e.envelopeOnly || envelopeOnly {
			c.ll.MoveToFront(el)
			return
		}
		c.bytes -= e.size
		e.p, e.envelopeOnly, e.size = p, envelopeOnly, size
		c.bytes += size
		c.ll.MoveToFront(el)
	} else {
		c.byID[blob] = c.ll.PushFront(&parsedEntry{blob: blob, p: p, envelopeOnly: envelopeOnly, size: size})
		c.bytes += size
	}
	for c.bytes > c.max {
		el := c.ll.Back()
		e := el.Value.(*parsedEntry)
		c.ll.Remove(el)
		delete(c.byID, e.blob)
		c.bytes -= e.size
	}
}

// parsedFromCache fills out with what the cache holds of the messages
// uids of a mirrored mailbox and returns the UIDs it could not, sorted;
// for a mailbox that is not mirrored (ok false) it returns uids as they
// are.
func (s *Store) parsedFromCache(ctx context.Context, mailboxID int64, uids []uint32, envelopeOnly bool, out map[uint32]*message.Parsed) (missing []uint32, ok bool, err error) {
	ok, err = s.mirrored(ctx, mailboxID, func(mm *mailboxMirror) {
		for _, uid := range uids {
			i, found := slices.BinarySearchFunc(mm.rows, uid, func(r mirrorRow, uid uint32) int {
				return int(int64(r.uid) - int64(uid))
			})
			if found {
				if p := s.parsed.get(mm.rows[i].blob, envelopeOnly); p != nil {
					out[uid] = p
					continue
				}
			}
			// Not cached, or not in the mirror (expunged, or committed by
			// another process a moment ago): the query says which.
			missing = append(missing, uid)
		}
	})
	if err != nil || !ok {
		return uids, false, err
	}
	slices.Sort(missing)
	return missing, true, nil
}

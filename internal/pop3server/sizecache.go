package pop3server

import "sync"

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

package queue

import (
	"sync"
	"time"
)

// dest is the per-destination state: a semaphore capping concurrent
// connections, idle connections for reuse, and a "down" mark set when no
// host of the destination accepted a connection.
type dest struct {
	sem chan struct{}

	mu        sync.Mutex
	idle      []*client
	downUntil time.Time
	downWhy   string
}

func (q *Queue) dest(key string) *dest {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.dests[key]
	if d == nil {
		d = &dest{sem: make(chan struct{}, q.cfg.PerDestination)}
		q.dests[key] = d
	}
	return d
}

func (d *dest) down(now time.Time) (bool, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return now.Before(d.downUntil), d.downWhy
}

func (d *dest) markDown(until time.Time, why string) {
	d.mu.Lock()
	d.downUntil, d.downWhy = until, why
	d.mu.Unlock()
}

// takeIdle returns the most recently used idle connection, or nil.
func (d *dest) takeIdle() *client {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := len(d.idle); n > 0 {
		c := d.idle[n-1]
		d.idle = d.idle[:n-1]
		return c
	}
	return nil
}

// putIdle keeps a healthy connection for the next message; at most as
// many as the destination may have open.
func (d *dest) putIdle(c *client, now time.Time, max int) {
	if c.broken || c.cancelled.Load() {
		c.close()
		return
	}
	c.used = now
	d.mu.Lock()
	if len(d.idle) < max {
		d.idle = append(d.idle, c)
		c = nil
	}
	d.mu.Unlock()
	if c != nil {
		c.close()
	}
}

// janitor closes idle connections and forgets unused destinations.
func (q *Queue) janitor(stop <-chan struct{}) {
	t := time.NewTicker(q.cfg.IdleTimeout / 2)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			q.closeIdle(false)
		}
	}
}

// closeIdle closes idle connections older than IdleTimeout (all of them
// when all is set) and drops destinations with nothing left.
func (q *Queue) closeIdle(all bool) {
	now := q.cfg.Now()
	var closing []*client
	q.mu.Lock()
	for key, d := range q.dests {
		d.mu.Lock()
		keep := d.idle[:0]
		for _, c := range d.idle {
			if all || now.Sub(c.used) >= q.cfg.IdleTimeout {
				closing = append(closing, c)
			} else {
				keep = append(keep, c)
			}
		}
		d.idle = keep
		unused := len(d.idle) == 0 && len(d.sem) == 0 && !now.Before(d.downUntil)
		d.mu.Unlock()
		if unused {
			delete(q.dests, key)
		}
	}
	q.mu.Unlock()
	for _, c := range closing {
		c.close()
	}
}

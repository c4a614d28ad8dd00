package queue

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tern-mail/tern/internal/store"
)

const (
	// scanBatch is how many due entries one scan loads; memory stays
	// bounded by it plus the entries in flight.
	scanBatch = 256
	// fullScan is the period of a scan from the start of the due list,
	// which picks up changes made by another process (tern queue retry).
	fullScan = 30 * time.Second
)

// Run delivers queued mail until ctx is cancelled, then waits for the
// deliveries in progress (at most Config.StopGrace, then interrupts
// them: they are retried later) and returns.
func (q *Queue) Run(ctx context.Context) error {
	// Deliveries get their own context so that stopping lets them finish.
	dctx, dcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer dcancel()
	jobs := make(chan store.QueueEntry)
	done := make(chan finished, q.cfg.Workers)
	var wg sync.WaitGroup
	for range q.cfg.Workers {
		wg.Go(func() {
			for e := range jobs {
				q.attempt(dctx, &e)
				f := finished{id: e.ID}
				if e.Pending() {
					f.next = e.NextAttempt
				}
				done <- f
			}
		})
	}
	janitorStop := make(chan struct{})
	go q.janitor(janitorStop)

	err := q.schedule(ctx, jobs, done)

	close(jobs)
	stopped := make(chan struct{})
	go func() {
		for range done {
		}
	}()
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(q.cfg.StopGrace):
		dcancel()
		<-stopped
	}
	close(done)
	close(janitorStop)
	q.closeIdle(true)
	return err
}

// finished reports a delivery attempt to the scheduler: the entry and,
// when it is still queued, its next attempt.
type finished struct {
	id   int64
	next time.Time
}

// schedule hands each due entry to a worker once. New entries are
// followed with an id cursor (ids only grow, and a batch commits in id
// order), so a busy queue is never rescanned; entries waiting for a retry
// are found by a sweep of the due index when the earliest of them comes
// due, and by a full sweep every 30 s (changes by another process).
func (q *Queue) schedule(ctx context.Context, jobs chan<- store.QueueEntry, done <-chan finished) error {
	inflight := map[int64]bool{}
	// Entries already queued are the first sweep's; the cursor follows
	// the ones added from now on.
	lastID, err := q.st.QueueMaxID(ctx)
	if err != nil {
		return err
	}
	sweep, lastSweep := true, time.Time{}
	// A page read before a delivery finished holds that entry's old
	// state: finishedAt (an event count) lets dispatch skip such rows, so
	// an entry is never handed out twice.
	var events uint64
	finishedAt := map[int64]uint64{}
	// due is the earliest next attempt known to the loop, from the store
	// and from finished attempts: an attempt that ends after its own next
	// attempt came due (a short retry, the end of the queue lifetime) is
	// swept at once rather than at the next full sweep.
	var due time.Time
	noteDue := func(t time.Time) {
		if !t.IsZero() && (due.IsZero() || t.Before(due)) {
			due = t
		}
	}
	markDone := func(f finished) {
		delete(inflight, f.id)
		events++
		finishedAt[f.id] = events
		noteDue(f.next)
	}
	dispatch := func(e store.QueueEntry, readAt uint64) bool {
		if inflight[e.ID] || finishedAt[e.ID] > readAt || e.NextAttempt.After(q.cfg.Now()) {
			return true
		}
		inflight[e.ID] = true
		for {
			select {
			case jobs <- e:
				return true
			case f := <-done:
				markDone(f)
			case <-ctx.Done():
				return false
			}
		}
	}
	for {
		var err error
		if sweep {
			lastSweep, sweep = q.cfg.Now(), false
			if !due.After(lastSweep) {
				due = time.Time{}
			}
			err = q.sweep(ctx, func() uint64 { return events }, dispatch)
		}
		var fresh []store.QueueEntry
		readAt := events
		if err == nil {
			fresh, err = q.st.QueueAfter(ctx, lastID, scanBatch)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			q.log.Error("queue scan", "err", err)
			sweep = true
			if !sleep(ctx, time.Second) {
				return nil
			}
			continue
		}
		for _, e := range fresh {
			lastID = e.ID
			if !dispatch(e, readAt) {
				return nil
			}
		}
		if len(fresh) == scanBatch {
			continue
		}
		// No page is pending: what finished so far is in every later read.
		clear(finishedAt)
		// Caught up: wait for new mail, a finished delivery, the next
		// entry to come due, or the periodic full sweep.
		now := q.cfg.Now()
		wait := fullScan - now.Sub(lastSweep)
		if next, ok, err := q.st.QueueNext(ctx, now); err == nil && ok {
			noteDue(next)
		}
		if !due.IsZero() {
			if wait = min(wait, due.Sub(now)); wait <= 0 {
				sweep = true
				continue
			}
		}
		timer := time.NewTimer(max(wait, 5*time.Millisecond))
		select {
		case <-q.wake:
		case f := <-done:
			markDone(f)
		case <-timer.C:
			sweep = true
		case <-ctx.Done():
			timer.Stop()
			return nil
		}
		timer.Stop()
	drain:
		for {
			select {
			case f := <-done:
				markDone(f)
			default:
				break drain
			}
		}
	}
}

// sweep dispatches every entry due now, a page at a time.
func (q *Queue) sweep(ctx context.Context, events func() uint64, dispatch func(store.QueueEntry, uint64) bool) error {
	var curNext time.Time
	var curID int64
	now := q.cfg.Now()
	for {
		readAt := events()
		due, err := q.st.QueueDue(ctx, now, curNext, curID, scanBatch)
		if err != nil {
			return err
		}
		for _, e := range due {
			curNext, curID = e.NextAttempt, e.ID
			if !dispatch(e, readAt) {
				return ctx.Err()
			}
		}
		if len(due) < scanBatch {
			return nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// backoff is the delay before attempt n+1: exponential from RetryBase,
// capped at RetryMax, with ±20% jitter so that retries spread out.
func (q *Queue) backoff(attempts int) time.Duration {
	d := q.cfg.RetryBase
	for i := 1; i < attempts && d < q.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, q.cfg.RetryMax)
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * jitter)
}

// errGone reports that an entry was dropped while being delivered.
func errGone(err error) bool { return errors.Is(err, store.ErrNotFound) }

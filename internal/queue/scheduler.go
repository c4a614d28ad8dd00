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
	// stopGrace bounds how long Run waits for deliveries in progress.
	stopGrace = 30 * time.Second
)

// Run delivers queued mail until ctx is cancelled, then waits for the
// deliveries in progress (at most 30 s) and returns.
func (q *Queue) Run(ctx context.Context) error {
	// Deliveries get their own context so that stopping lets them finish.
	dctx, dcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer dcancel()
	jobs := make(chan store.QueueEntry)
	done := make(chan int64, q.cfg.Workers)
	var wg sync.WaitGroup
	for range q.cfg.Workers {
		wg.Go(func() {
			for e := range jobs {
				q.attempt(dctx, &e)
				done <- e.ID
			}
		})
	}
	janitorStop := make(chan struct{})
	go q.janitor(janitorStop)

	err := q.schedule(ctx, jobs, done)

	close(jobs)
	finished := make(chan struct{})
	go func() {
		for range done {
		}
	}()
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(stopGrace):
		dcancel()
		<-finished
	}
	close(done)
	close(janitorStop)
	q.closeIdle(true)
	return err
}

// schedule pages through due entries in (next_attempt, id) order and
// hands each to a worker once, keeping a cursor so that a busy queue is
// not rescanned from the start for every new message.
func (q *Queue) schedule(ctx context.Context, jobs chan<- store.QueueEntry, done <-chan int64) error {
	inflight := map[int64]bool{}
	var curNext time.Time
	var curID int64
	lastFull := time.Time{}
	for {
		now := q.cfg.Now()
		if now.Sub(lastFull) >= fullScan {
			curNext, curID, lastFull = time.Time{}, 0, now
		}
		due, err := q.st.QueueDue(ctx, now, curNext, curID, scanBatch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			q.log.Error("queue scan", "err", err)
			if !sleep(ctx, time.Second) {
				return nil
			}
			continue
		}
		for _, e := range due {
			curNext, curID = e.NextAttempt, e.ID
			if inflight[e.ID] {
				continue
			}
			inflight[e.ID] = true
			for sent := false; !sent; {
				select {
				case jobs <- e:
					sent = true
				case id := <-done:
					delete(inflight, id)
				case <-ctx.Done():
					return nil
				}
			}
		}
		if len(due) == scanBatch {
			continue
		}
		// Caught up: wait for new mail, a finished delivery, the next
		// entry to come due, or the periodic full scan.
		now = q.cfg.Now()
		wait := fullScan - now.Sub(lastFull)
		if next, ok, err := q.st.QueueNext(ctx, now); err == nil && ok {
			wait = min(wait, next.Sub(now))
		}
		wait = max(wait, 5*time.Millisecond)
		timer := time.NewTimer(wait)
		select {
		case <-q.wake:
		case id := <-done:
			delete(inflight, id)
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil
		}
		timer.Stop()
	drain:
		for {
			select {
			case id := <-done:
				delete(inflight, id)
			default:
				break drain
			}
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

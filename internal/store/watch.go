package store

import "sync"

// Watcher wakes its owner after a committed change in one account. C
// carries no data and coalesces: a reader re-reads what it needs with
// ChangesSince or Messages.
type Watcher struct {
	C       <-chan struct{}
	c       chan struct{}
	account int64
	w       *watchers
}

type watchers struct {
	mu sync.Mutex
	m  map[int64]map[*Watcher]bool
}

// Watch returns a Watcher for changes in an account (new messages, flag
// changes, expunges, mailbox changes) made through this Store.
func (s *Store) Watch(accountID int64) *Watcher {
	c := make(chan struct{}, 1)
	w := &Watcher{C: c, c: c, account: accountID, w: &s.watch}
	s.watch.mu.Lock()
	if s.watch.m == nil {
		s.watch.m = map[int64]map[*Watcher]bool{}
	}
	if s.watch.m[accountID] == nil {
		s.watch.m[accountID] = map[*Watcher]bool{}
	}
	s.watch.m[accountID][w] = true
	s.watch.mu.Unlock()
	return w
}

// Close stops the watcher.
func (w *Watcher) Close() {
	w.w.mu.Lock()
	defer w.w.mu.Unlock()
	delete(w.w.m[w.account], w)
	if len(w.w.m[w.account]) == 0 {
		delete(w.w.m, w.account)
	}
}

func (ws *watchers) notify(accountID int64) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for w := range ws.m[accountID] {
		select {
		case w.c <- struct{}{}:
		default:
		}
	}
}

// NotifyAccount wakes an account's watchers for a change made by another
// process (an import by the CLI while the server runs).
func (s *Store) NotifyAccount(accountID int64) {
	s.modseqs.epoch.Add(1) // what this process knows of modseqs may be old
	s.watch.notify(accountID)
}

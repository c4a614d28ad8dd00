package store

import (
	"context"
	"time"
)

// schemaV9 counts the messages each account submitted, per hour, for the
// messages-per-day limit of submission: in the database, so that neither
// a restart nor a reload forgets what an account sent.
const schemaV9 = `
CREATE TABLE send_counts(
	account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	hour INTEGER NOT NULL,
	n INTEGER NOT NULL,
	PRIMARY KEY(account_id, hour)
) WITHOUT ROWID;
`

// sendWindow is how many hourly counts make a day: the current hour and
// the 23 before it.
const sendWindow = 24

func hourOf(t time.Time) int64 { return t.Unix() / 3600 }

// SentToday is how many messages the account submitted in the current
// hour and the 23 before it.
func (s *Store) SentToday(ctx context.Context, accountID int64, now time.Time) (int, error) {
	var n int
	err := s.queryRow(ctx, "SELECT coalesce(sum(n), 0) FROM send_counts WHERE account_id = ? AND hour > ? AND hour <= ?",
		accountID, hourOf(now)-sendWindow, hourOf(now)).Scan(&n)
	return n, err
}

// CountSent adds n submitted messages to the account's current hour, and
// forgets hours older than a day. The write does not wait for an fsync: a
// power failure may forget the last counts, never mail.
func (s *Store) CountSent(ctx context.Context, accountID int64, now time.Time, n int) error {
	h := hourOf(now)
	return s.updateLazy(ctx, func(ctx context.Context, tx *wtx) error {
		_, err := s.txExec(ctx, tx, `INSERT INTO send_counts(account_id, hour, n) VALUES(?1, ?2, ?3)
			ON CONFLICT(account_id, hour) DO UPDATE SET n = n + ?3`, accountID, h, n)
		if err != nil {
			return err
		}
		_, err = s.txExec(ctx, tx, "DELETE FROM send_counts WHERE account_id = ? AND hour <= ?", accountID, h-sendWindow)
		return err
	})
}

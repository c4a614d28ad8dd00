package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Recipient states in a queue entry.
const (
	QueuePending   = ""
	QueueDelivered = "delivered"
	QueueFailed    = "failed"
)

// QueueRecipient is one recipient of a queued message and its status.
type QueueRecipient struct {
	Address string   `json:"a"`
	Notify  []string `json:"n,omitempty"` // RFC 3461 NOTIFY values
	ORcpt   string   `json:"o,omitempty"` // RFC 3461 ORCPT, "rfc822;addr"
	Status  string   `json:"s,omitempty"` // QueuePending, QueueDelivered, QueueFailed
	// Code and Reply are the last SMTP reply (or local error) for it,
	// RemoteMTA the host that gave it.
	Code      int    `json:"c,omitempty"`
	Enhanced  string `json:"e,omitempty"`
	Reply     string `json:"r,omitempty"`
	RemoteMTA string `json:"h,omitempty"`
	// DelayNotified is set once a delay warning went out.
	DelayNotified bool `json:"d,omitempty"`
}

// schemaV11 keeps a queue entry's DKIM-Signature fields, computed at its
// first delivery attempt, so that a retry sends the same signatures
// instead of signing again (NULL: not signed yet).
const schemaV11 = `ALTER TABLE queue ADD COLUMN dkim BLOB;`

// QueueEntry is one queued message.
type QueueEntry struct {
	ID          int64
	AccountID   int64
	From        string // envelope sender; "" is the null reverse-path
	EnvID       string
	Ret         string // "FULL", "HDRS" or ""
	RequireTLS  bool
	Blob        Blob
	Created     time.Time
	NextAttempt time.Time
	Attempts    int
	LastError   string
	Recipients  []QueueRecipient
	// DKIM holds the DKIM-Signature fields to prepend, once computed;
	// QueueUpdate stores them with the entry.
	DKIM []byte
}

// Pending reports whether some recipient still waits for delivery.
func (e *QueueEntry) Pending() bool {
	for _, r := range e.Recipients {
		if r.Status == QueuePending {
			return true
		}
	}
	return false
}

const queueCols = `id, account_id, sender, env_id, ret, require_tls, blob_id, size, digest, created, next_attempt, attempts, last_error, rcpts, dkim`

// QueueAdd inserts a message into the queue, taking one reference on its
// blob, and returns once it is durable.
func (s *Store) QueueAdd(ctx context.Context, e *QueueEntry) (int64, error) {
	if len(e.Recipients) == 0 {
		return 0, fmt.Errorf("queue: no recipients: %w", ErrInvalid)
	}
	if !validBlobID(e.Blob.ID) {
		return 0, fmt.Errorf("queue: bad blob: %w", ErrInvalid)
	}
	rcpts, err := json.Marshal(e.Recipients)
	if err != nil {
		return 0, err
	}
	if e.Created.IsZero() {
		e.Created = time.Now()
	}
	if e.NextAttempt.IsZero() {
		e.NextAttempt = e.Created
	}
	var id int64
	err = s.update(ctx, func(ctx context.Context, tx *wtx) error {
		if err := s.refBlob(tx, e.Blob, 1); err != nil {
			return err
		}
		return s.txQueryRow(ctx, tx, `INSERT INTO queue(account_id, sender, env_id, ret, require_tls, blob_id, size, digest, created, next_attempt, attempts, last_error, rcpts)
			VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			e.AccountID, e.From, e.EnvID, e.Ret, e.RequireTLS, e.Blob.ID, e.Blob.Size, e.Blob.Digest,
			e.Created.UnixNano(), e.NextAttempt.UnixNano(), e.Attempts, e.LastError, string(rcpts)).Scan(&id)
	})
	if err != nil {
		return 0, err
	}
	e.ID = id
	return id, nil
}

type rowScanner interface{ Scan(...any) error }

func scanQueue(r rowScanner) (QueueEntry, error) {
	var e QueueEntry
	var created, next int64
	var rcpts string
	err := r.Scan(&e.ID, &e.AccountID, &e.From, &e.EnvID, &e.Ret, &e.RequireTLS, &e.Blob.ID, &e.Blob.Size, &e.Blob.Digest,
		&created, &next, &e.Attempts, &e.LastError, &rcpts, &e.DKIM)
	if err != nil {
		return e, err
	}
	e.Created, e.NextAttempt = time.Unix(0, created), time.Unix(0, next)
	if err := json.Unmarshal([]byte(rcpts), &e.Recipients); err != nil {
		return e, fmt.Errorf("queue %d: recipients: %w", e.ID, err)
	}
	return e, nil
}

func (s *Store) queryQueue(ctx context.Context, query string, args ...any) ([]QueueEntry, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []QueueEntry
	for rows.Next() {
		e, err := scanQueue(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// QueueDue returns up to limit entries whose next attempt is at or before
// now, in (next attempt, id) order, starting after the cursor (afterNext,
// afterID); a zero cursor starts at the beginning.
func (s *Store) QueueDue(ctx context.Context, now, afterNext time.Time, afterID int64, limit int) ([]QueueEntry, error) {
	after := int64(-1 << 63)
	if !afterNext.IsZero() {
		after = afterNext.UnixNano()
	}
	return s.queryQueue(ctx, `SELECT `+queueCols+` FROM queue
		WHERE next_attempt <= ? AND (next_attempt > ? OR (next_attempt = ? AND id > ?))
		ORDER BY next_attempt, id LIMIT ?`, now.UnixNano(), after, after, afterID, limit)
}

// QueueAfter returns up to limit entries with an id above afterID, by
// id: the entries added since the caller last looked (ids only grow).
func (s *Store) QueueAfter(ctx context.Context, afterID int64, limit int) ([]QueueEntry, error) {
	return s.queryQueue(ctx, `SELECT `+queueCols+` FROM queue WHERE id > ? ORDER BY id LIMIT ?`, afterID, limit)
}

// QueueMaxID returns the highest id ever given to an entry (0 if none).
func (s *Store) QueueMaxID(ctx context.Context) (int64, error) {
	var id int64
	err := s.queryRow(ctx, `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'queue'), 0)`).Scan(&id)
	return id, err
}

// QueueNext returns the earliest next attempt after the given time; ok
// is false when there is none.
func (s *Store) QueueNext(ctx context.Context, after time.Time) (t time.Time, ok bool, err error) {
	var n sql.NullInt64
	if err := s.queryRow(ctx, `SELECT MIN(next_attempt) FROM queue WHERE next_attempt > ?`, after.UnixNano()).Scan(&n); err != nil {
		return time.Time{}, false, err
	}
	if !n.Valid {
		return time.Time{}, false, nil
	}
	return time.Unix(0, n.Int64), true, nil
}

// QueueList returns entries ordered by id, after afterID, at most limit
// (0: all).
func (s *Store) QueueList(ctx context.Context, afterID int64, limit int) ([]QueueEntry, error) {
	if limit <= 0 {
		limit = -1
	}
	return s.queryQueue(ctx, `SELECT `+queueCols+` FROM queue WHERE id > ? ORDER BY id LIMIT ?`, afterID, limit)
}

// QueueCount returns the number of queued messages.
func (s *Store) QueueCount(ctx context.Context) (int, error) {
	var n int
	err := s.queryRow(ctx, `SELECT COUNT(*) FROM queue`).Scan(&n)
	return n, err
}

// QueueGet returns one entry; ErrNotFound when it is gone.
func (s *Store) QueueGet(ctx context.Context, id int64) (QueueEntry, error) {
	e, err := scanQueue(s.queryRow(ctx, `SELECT `+queueCols+` FROM queue WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("queue %d: %w", id, ErrNotFound)
	}
	return e, err
}

// QueueUpdate records the outcome of a delivery attempt: recipient
// statuses, attempts, next attempt and last error. An entry with no pending
// recipient left is removed and its blob reference released, in the same
// transaction. ErrNotFound when the entry was dropped meanwhile.
func (s *Store) QueueUpdate(ctx context.Context, e *QueueEntry) error {
	rcpts, err := json.Marshal(e.Recipients)
	if err != nil {
		return err
	}
	return s.update(ctx, func(ctx context.Context, tx *wtx) error {
		if !e.Pending() {
			return s.queueDelete(ctx, tx, e.ID)
		}
		var dkim any
		if len(e.DKIM) > 0 {
			dkim = e.DKIM
		}
		res, err := s.txExec(ctx, tx, `UPDATE queue SET next_attempt = ?, attempts = ?, last_error = ?, rcpts = ?, dkim = ? WHERE id = ?`,
			e.NextAttempt.UnixNano(), e.Attempts, e.LastError, string(rcpts), dkim, e.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("queue %d: %w", e.ID, ErrNotFound)
		}
		return nil
	})
}

func (s *Store) queueDelete(ctx context.Context, tx *wtx, id int64) error {
	var b Blob
	err := s.txQueryRow(ctx, tx, `DELETE FROM queue WHERE id = ? RETURNING blob_id, size`, id).Scan(&b.ID, &b.Size)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("queue %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return err
	}
	return s.refBlob(tx, b, -1)
}

// QueueDrop removes an entry without delivering it.
func (s *Store) QueueDrop(ctx context.Context, id int64) error {
	return s.update(ctx, func(ctx context.Context, tx *wtx) error { return s.queueDelete(ctx, tx, id) })
}

// QueueRetry makes an entry (id > 0) or every entry (id == 0) due at
// now. It returns how many entries it changed.
func (s *Store) QueueRetry(ctx context.Context, id int64, now time.Time) (int, error) {
	var n int64
	err := s.update(ctx, func(ctx context.Context, tx *wtx) error {
		q, args := `UPDATE queue SET next_attempt = ?`, []any{now.UnixNano()}
		if id > 0 {
			q, args = q+` WHERE id = ?`, append(args, id)
		}
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	if err == nil && id > 0 && n == 0 {
		return 0, fmt.Errorf("queue %d: %w", id, ErrNotFound)
	}
	return int(n), err
}

package store

import (
	"context"
	"database/sql"
	"time"
)

// schemaV14 lets tombstones go. Every expunge leaves one (mailbox, UID,
// modseq) row so that QRESYNC and CONDSTORE clients learn what vanished
// since their last sync; kept forever they would grow without bound.
// vanished_floor is the modseq at or below which a mailbox's tombstones
// may have been pruned: changes since a modseq below it report as
// vanished every UID under UIDNEXT that no longer exists, a superset of
// what went (RFC 7162 §3.2.5.2 and §3.2.10 let a client ignore UIDs it
// never had; Dovecot answers the same way once its log is gone).
const schemaV14 = `ALTER TABLE mailboxes ADD COLUMN vanished_floor INTEGER NOT NULL DEFAULT 0;`

// Pruning keeps the newest tombstonesKept of every mailbox, looked at
// every tombstonesEvery while the store is open.
const (
	tombstonesKept  = 10_000
	tombstonesEvery = time.Hour
)

// PruneTombstones drops all but the newest keep tombstones of every
// mailbox, raising its vanished_floor to the newest modseq dropped. It
// returns how many went. No modseq changes: no message changed.
func (s *Store) PruneTombstones(ctx context.Context, keep int) (int, error) {
	pruned := 0
	err := s.update(ctx, func(ctx context.Context, tx *wtx) error {
		pruned = 0
		rows, err := tx.QueryContext(ctx, "SELECT mailbox_id, count(*) FROM tombstones GROUP BY mailbox_id HAVING count(*) > ?", keep)
		if err != nil {
			return err
		}
		type over struct{ id, n int64 }
		var overs []over
		for rows.Next() {
			var o over
			if err := rows.Scan(&o.id, &o.n); err != nil {
				rows.Close()
				return err
			}
			overs = append(overs, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, o := range overs {
			// The oldest tombstone kept; those below its modseq go. One
			// expunge of many messages shares a modseq, so all of it
			// stays or goes: more than keep may stay.
			q := "SELECT modseq FROM tombstones WHERE mailbox_id = ?1 ORDER BY modseq LIMIT 1 OFFSET ?2"
			if keep <= 0 {
				q = "SELECT max(modseq) + 1 FROM tombstones WHERE mailbox_id = ?1 AND ?2 >= 0"
			}
			var kept int64
			if err := tx.QueryRowContext(ctx, q, o.id, o.n-int64(keep)).Scan(&kept); err != nil {
				return err
			}
			var floor sql.NullInt64 // the newest modseq that goes
			if err := tx.QueryRowContext(ctx, "SELECT max(modseq) FROM tombstones WHERE mailbox_id = ? AND modseq < ?", o.id, kept).Scan(&floor); err != nil {
				return err
			}
			if !floor.Valid {
				continue
			}
			res, err := tx.ExecContext(ctx, "DELETE FROM tombstones WHERE mailbox_id = ? AND modseq <= ?", o.id, floor.Int64)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			pruned += int(n)
			if _, err := tx.ExecContext(ctx, "UPDATE mailboxes SET vanished_floor = max(vanished_floor, ?) WHERE id = ?", floor.Int64, o.id); err != nil {
				return err
			}
		}
		return nil
	})
	return pruned, err
}

// pruner runs PruneTombstones now and then until the store closes.
func (s *Store) pruner() {
	t := time.NewTicker(tombstonesEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if n, err := s.PruneTombstones(context.Background(), tombstonesKept); err != nil {
				s.log.Warn("store: pruning tombstones", "err", err)
			} else if n > 0 {
				s.log.Info("store: pruned tombstones", "count", n)
			}
		case <-s.stop:
			return
		}
	}
}

// vanishedBelow is the fallback of a change listing asked for changes
// since a modseq below the mailbox's vanished_floor: every UID under
// uidNext not in the mailbox now.
func (s *Store) vanishedBelow(ctx context.Context, mailboxID int64, uidNext uint32) ([]uint32, error) {
	present, err := s.MessageUIDs(ctx, mailboxID)
	if err != nil {
		return nil, err
	}
	var out []uint32
	next := uint32(1)
	for _, u := range present {
		if u >= uidNext {
			break
		}
		for ; next < u; next++ {
			out = append(out, next)
		}
		next = u + 1
	}
	for ; next < uidNext; next++ {
		out = append(out, next)
	}
	return out, nil
}

package store

import (
	"context"
	"database/sql"
)

// MessageUIDs returns the UIDs of a mailbox's messages in ascending order:
// the list an IMAP session keeps as its sequence-number view. It reads
// only the (mailbox_id, uid) index, so a million-message SELECT stays
// fast and small (4 bytes a message).
func (s *Store) MessageUIDs(ctx context.Context, mailboxID int64) ([]uint32, error) {
	rows, err := s.query(ctx, "SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid", mailboxID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var uids []uint32
	for rows.Next() {
		var uid uint32
		if err := rows.Scan(&uid); err != nil {
			return nil, err
		}
		uids = append(uids, uid)
	}
	return uids, rows.Err()
}

// FirstUnseenUID returns the lowest UID without \Seen, or 0, from the
// partial index of unseen messages (IMAP4rev1 SELECT's [UNSEEN n]).
func (s *Store) FirstUnseenUID(ctx context.Context, mailboxID int64) (uint32, error) {
	var first sql.NullInt64
	err := s.queryRow(ctx, "SELECT min(uid) FROM messages WHERE mailbox_id = ? AND seen = 0", mailboxID).Scan(&first)
	return uint32(first.Int64), err
}

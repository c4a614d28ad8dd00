package store

import "context"

// MessageUIDs returns the UIDs and modseqs of a mailbox's messages, sorted
// by UID: the compact list an IMAP session keeps as its sequence-number
// view (12 bytes a message, so a million-message SELECT stays small).
func (s *Store) MessageUIDs(ctx context.Context, mailboxID int64) ([]uint32, []uint64, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT uid, modseq FROM messages WHERE mailbox_id = ? ORDER BY uid", mailboxID)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var uids []uint32
	var modseqs []uint64
	for rows.Next() {
		var uid uint32
		var modseq uint64
		if err := rows.Scan(&uid, &modseq); err != nil {
			return nil, nil, err
		}
		uids = append(uids, uid)
		modseqs = append(modseqs, modseq)
	}
	return uids, modseqs, rows.Err()
}

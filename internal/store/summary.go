package store

import (
	"context"
	"database/sql"
)

// schemaV8 keeps a summary of every mailbox that SELECT and STATUS read
// instead of the messages: the counters (messages, unseen, \Deleted,
// bytes) as columns of the mailbox row, and the set of UIDs as runs of
// consecutive UIDs. A mailbox that received a million messages and lost
// a few is a handful of runs, so opening it reads a few rows instead of a
// million index entries.
//
// Triggers on messages maintain both, so no code path that adds, moves or
// removes a message can forget them, and they change in the same
// transaction as the messages they describe.
//
// uid_runs holds disjoint runs [lo, hi], keyed by their first UID: the
// run holding a UID u is the one with the largest lo <= u, and appending
// the next UID changes its hi in place.
const schemaV8 = `
ALTER TABLE mailboxes ADD COLUMN n_messages INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN n_unseen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN n_deleted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN n_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE mailboxes SET
	n_messages = (SELECT count(*) FROM messages WHERE mailbox_id = mailboxes.id),
	n_unseen = (SELECT count(*) FROM messages WHERE mailbox_id = mailboxes.id AND seen = 0),
	n_deleted = (SELECT count(*) FROM messages WHERE mailbox_id = mailboxes.id AND deleted = 1),
	n_bytes = (SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = mailboxes.id);

CREATE TABLE uid_runs(
	mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	lo INTEGER NOT NULL,
	hi INTEGER NOT NULL,
	PRIMARY KEY(mailbox_id, lo)
) WITHOUT ROWID;
INSERT INTO uid_runs(mailbox_id, lo, hi)
	SELECT mailbox_id, min(uid), max(uid) FROM
		(SELECT mailbox_id, uid, uid - row_number() OVER (PARTITION BY mailbox_id ORDER BY uid) AS run FROM messages)
	GROUP BY mailbox_id, run;

CREATE TRIGGER messages_summary_insert AFTER INSERT ON messages BEGIN
	UPDATE mailboxes SET n_messages = n_messages + 1, n_unseen = n_unseen + (NEW.seen = 0),
		n_deleted = n_deleted + (NEW.deleted = 1), n_bytes = n_bytes + NEW.size
		WHERE id = NEW.mailbox_id;
	-- Extend the run ending just below (the usual case: UIDs arrive in
	-- ascending order), or start a run.
	UPDATE uid_runs SET hi = NEW.uid WHERE mailbox_id = NEW.mailbox_id AND hi = NEW.uid - 1
		AND lo = (SELECT max(lo) FROM uid_runs WHERE mailbox_id = NEW.mailbox_id AND lo <= NEW.uid);
	INSERT INTO uid_runs(mailbox_id, lo, hi) SELECT NEW.mailbox_id, NEW.uid, NEW.uid
		WHERE NOT EXISTS (SELECT 1 FROM uid_runs WHERE mailbox_id = NEW.mailbox_id AND hi >= NEW.uid
			AND lo = (SELECT max(lo) FROM uid_runs WHERE mailbox_id = NEW.mailbox_id AND lo <= NEW.uid));
	-- Absorb the run starting just above, if any.
	UPDATE uid_runs SET hi = (SELECT hi FROM uid_runs WHERE mailbox_id = NEW.mailbox_id AND lo = NEW.uid + 1)
		WHERE mailbox_id = NEW.mailbox_id AND hi = NEW.uid
		AND lo = (SELECT max(lo) FROM uid_runs WHERE mailbox_id = NEW.mailbox_id AND lo <= NEW.uid)
		AND EXISTS (SELECT 1 FROM uid_runs WHERE mailbox_id = NEW.mailbox_id AND lo = NEW.uid + 1);
	DELETE FROM uid_runs WHERE mailbox_id = NEW.mailbox_id AND lo = NEW.uid + 1;
END;

CREATE TRIGGER messages_summary_delete AFTER DELETE ON messages BEGIN
	UPDATE mailboxes SET n_messages = n_messages - 1, n_unseen = n_unseen - (OLD.seen = 0),
		n_deleted = n_deleted - (OLD.deleted = 1), n_bytes = n_bytes - OLD.size
		WHERE id = OLD.mailbox_id;
	-- Split the run holding the UID: its part above the UID becomes a run
	-- of its own, it ends below the UID, and goes if nothing is left.
	INSERT INTO uid_runs(mailbox_id, lo, hi) SELECT mailbox_id, OLD.uid + 1, hi FROM uid_runs
		WHERE mailbox_id = OLD.mailbox_id AND hi > OLD.uid
		AND lo = (SELECT max(lo) FROM uid_runs WHERE mailbox_id = OLD.mailbox_id AND lo <= OLD.uid);
	UPDATE uid_runs SET hi = OLD.uid - 1 WHERE mailbox_id = OLD.mailbox_id
		AND lo = (SELECT max(lo) FROM uid_runs WHERE mailbox_id = OLD.mailbox_id AND lo <= OLD.uid);
	DELETE FROM uid_runs WHERE mailbox_id = OLD.mailbox_id AND lo = OLD.uid AND hi = OLD.uid - 1;
END;

CREATE TRIGGER messages_summary_flags AFTER UPDATE OF seen, deleted ON messages
	WHEN OLD.seen != NEW.seen OR OLD.deleted != NEW.deleted BEGIN
	UPDATE mailboxes SET n_unseen = n_unseen + (NEW.seen = 0) - (OLD.seen = 0),
		n_deleted = n_deleted + (NEW.deleted = 1) - (OLD.deleted = 1)
		WHERE id = NEW.mailbox_id;
END;

CREATE TRIGGER messages_summary_move AFTER UPDATE OF mailbox_id, uid, size ON messages BEGIN
	SELECT RAISE(ABORT, 'messages are moved by copy and delete');
END;
`

// MessageUIDs returns the UIDs of a mailbox's messages in ascending order:
// the list an IMAP session keeps as its sequence-number view (4 bytes a
// message). A mirrored mailbox answers from the mirror; otherwise it
// expands the mailbox's UID runs, so its cost is the size of the list,
// not a walk of the messages.
func (s *Store) MessageUIDs(ctx context.Context, mailboxID int64) ([]uint32, error) {
	var uids []uint32
	ok, err := s.mirrored(ctx, mailboxID, func(mm *mailboxMirror) {
		uids = make([]uint32, len(mm.rows))
		for i := range mm.rows {
			uids[i] = mm.rows[i].uid
		}
	})
	if ok || err != nil {
		return uids, err
	}
	return s.uidsFromRuns(ctx, mailboxID)
}

// uidsFromRuns lists a mailbox's UIDs from its UID runs.
func (s *Store) uidsFromRuns(ctx context.Context, mailboxID int64) ([]uint32, error) {
	var n int
	if err := s.queryRow(ctx, "SELECT n_messages FROM mailboxes WHERE id = ?", mailboxID).Scan(&n); err != nil {
		return nil, err
	}
	rows, err := s.query(ctx, "SELECT lo, hi FROM uid_runs WHERE mailbox_id = ? ORDER BY lo", mailboxID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	uids := make([]uint32, 0, n)
	for rows.Next() {
		var lo, hi uint32
		if err := rows.Scan(&lo, &hi); err != nil {
			return nil, err
		}
		for u := lo; u <= hi; u++ {
			uids = append(uids, u)
		}
	}
	return uids, rows.Err()
}

// FirstUnseenUID returns the lowest UID without \Seen, or 0 (IMAP4rev1
// SELECT's [UNSEEN n]): from the mirror, or the partial index of unseen
// messages.
func (s *Store) FirstUnseenUID(ctx context.Context, mailboxID int64) (uint32, error) {
	var uid uint32
	ok, err := s.mirrored(ctx, mailboxID, func(mm *mailboxMirror) {
		for i := range mm.rows {
			if !hasFlag(mm.rows[i].flags, `\Seen`) {
				uid = mm.rows[i].uid
				return
			}
		}
	})
	if ok || err != nil {
		return uid, err
	}
	var first sql.NullInt64
	err = s.queryRow(ctx, "SELECT min(uid) FROM messages WHERE mailbox_id = ? AND seen = 0", mailboxID).Scan(&first)
	return uint32(first.Int64), err
}

// MailboxCounts returns a mailbox's counters (STATUS): read from its
// summary, not counted.
func (s *Store) MailboxCounts(ctx context.Context, mailboxID int64) (Counts, error) {
	var c Counts
	err := s.queryRow(ctx, "SELECT n_messages, n_unseen, n_deleted, n_bytes FROM mailboxes WHERE id = ?",
		mailboxID).Scan(&c.Messages, &c.Unseen, &c.Deleted, &c.Size)
	if err != nil {
		return c, err
	}
	if c.Unseen > 0 {
		c.FirstUnseenUID, err = s.FirstUnseenUID(ctx, mailboxID)
	}
	return c, err
}

// DeletedBytes is the size of a mailbox's \Deleted messages, what an
// EXPUNGE would free (STATUS DELETED-STORAGE, RFC 9208 §4.3.1).
func (s *Store) DeletedBytes(ctx context.Context, mailboxID int64) (int64, error) {
	var n int64
	err := s.queryRow(ctx, "SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = ? AND deleted = 1", mailboxID).Scan(&n)
	return n, err
}

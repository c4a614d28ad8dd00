package store

import (
	"context"
	"database/sql"
	"fmt"
)

// BlobPath returns the file holding a blob, for readers that open it
// themselves: POP3 reads each message with plain open/read/close calls,
// skipping os.File's poller registration and its final read for EOF
// (a third of the system calls per message on the download path). The
// file must only be read.
func (s *Store) BlobPath(id string) (string, error) {
	if !validBlobID(id) {
		return "", fmt.Errorf("store: bad blob id %q: %w", id, ErrInvalid)
	}
	return s.blobPath(id), nil
}

// DropEntry is one message of a POP3 maildrop listing.
type DropEntry struct {
	UID    uint32
	Size   int64
	BlobID string
	Seen   bool
}

// DropListing lists a mailbox for a POP3 login, in UID order: only what
// POP3 needs (no flag slices, no dates), read from the mailbox's stretch
// of the messages table (see schemaV15).
func (s *Store) DropListing(ctx context.Context, mailboxID int64) ([]DropEntry, error) {
	rows, err := s.query(ctx, "SELECT uid, size, blob_id, flags FROM messages WHERE "+mailboxKeys+" ORDER BY id", mailboxID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DropEntry
	var flags sql.RawBytes
	for rows.Next() {
		var e DropEntry
		if err := rows.Scan(&e.UID, &e.Size, &e.BlobID, &flags); err != nil {
			return nil, err
		}
		e.Seen = hasFlagText(flags, `\Seen`)
		out = append(out, e)
	}
	return out, rows.Err()
}

// hasFlagText reports whether a stored flags column (flags joined by
// single spaces) holds flag f.
func hasFlagText(flags []byte, f string) bool {
	for len(flags) > 0 {
		i := 0
		for i < len(flags) && flags[i] != ' ' {
			i++
		}
		if string(flags[:i]) == f {
			return true
		}
		if i == len(flags) {
			break
		}
		flags = flags[i+1:]
	}
	return false
}

const inlineMessagesQuery = "SELECT m.uid, d.data FROM messages m JOIN blob_data d ON d.id = m.blob_id WHERE m." + keyRange + " ORDER BY m.id"

// InlineMessages calls fn, in UID order, with the bytes of the messages
// of a mailbox with UIDs from first to last that are kept inside the
// database (see Inline); messages stored as files, or gone, are skipped.
// data is valid only during the call. One query serves the whole range:
// a POP3 download reads ahead this way instead of paying a statement and
// a read transaction per message.
func (s *Store) InlineMessages(ctx context.Context, mailboxID int64, first, last uint32, fn func(uid uint32, data []byte) error) error {
	rctx, err := shortRead(ctx) // bounded by the caller's window
	if err != nil {
		return err
	}
	rows, err := s.hot.inlineMessages.QueryContext(rctx, mailboxID, first, last)
	if err != nil {
		return err
	}
	defer rows.Close()
	var data sql.RawBytes
	for rows.Next() {
		var uid uint32
		if err := rows.Scan(&uid, &data); err != nil {
			return err
		}
		if err := fn(uid, data); err != nil {
			return err
		}
	}
	return rows.Err()
}

// WireSizes calls fn with the size of each message of a mailbox with UIDs
// from first to last as sent with CRLF line ends: the stored size plus
// the bare LFs that delivery counted in the parsed structure (the "hblf"
// and "bblf" of its root part; see message.Part). SQLite reads the two
// numbers out of the stored JSON itself, so a POP3 login that lists an
// uncached mailbox does not decode every envelope and structure in Go.
// Messages without a parsed structure are skipped. UIDs come in order.
func (s *Store) WireSizes(ctx context.Context, mailboxID int64, first, last uint32, fn func(uid uint32, wire int64)) error {
	rows, err := s.query(ctx, `SELECT m.uid, m.size + coalesce(json_extract(CAST(mm.meta AS TEXT), '$.body.hblf'), 0)
			+ coalesce(json_extract(CAST(mm.meta AS TEXT), '$.body.bblf'), 0)
		FROM messages m JOIN message_meta mm ON mm.message_id = m.id
		WHERE m.`+keyRange+` AND json_type(CAST(mm.meta AS TEXT), '$.body') = 'object'
		ORDER BY m.id`,
		mailboxID, first, last)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var uid uint32
		var wire int64
		if err := rows.Scan(&uid, &wire); err != nil {
			return err
		}
		fn(uid, wire)
	}
	return rows.Err()
}

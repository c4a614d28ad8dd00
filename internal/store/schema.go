package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order, each once, forward only. Their index+1
// is the schema version stored in PRAGMA user_version. Never edit a
// published migration: append a new one.
var migrations = []string{schemaV1, queueSchema, schemaV3, schemaV4, schemaV5, schemaV6, schemaV7, schemaV8, schemaV9, schemaV10, schemaV11, schemaV12, schemaV13, schemaV14, schemaV15}

const schemaV1 = `
CREATE TABLE domains(
	id INTEGER PRIMARY KEY,
	name TEXT NOT NULL UNIQUE COLLATE NOCASE
);
CREATE TABLE accounts(
	id INTEGER PRIMARY KEY,
	address TEXT NOT NULL UNIQUE COLLATE NOCASE,
	domain_id INTEGER NOT NULL REFERENCES domains(id),
	password_hash TEXT NOT NULL,
	scram_sha256 TEXT NOT NULL DEFAULT '',
	quota_bytes INTEGER NOT NULL DEFAULT 0,
	used_bytes INTEGER NOT NULL DEFAULT 0,
	modseq INTEGER NOT NULL DEFAULT 1,
	created INTEGER NOT NULL
);
CREATE TABLE aliases(
	address TEXT PRIMARY KEY COLLATE NOCASE,
	targets TEXT NOT NULL
);
CREATE TABLE mailboxes(
	id INTEGER PRIMARY KEY,
	account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	name TEXT NOT NULL,
	uidvalidity INTEGER NOT NULL,
	uidnext INTEGER NOT NULL DEFAULT 1,
	highestmodseq INTEGER NOT NULL DEFAULT 1,
	special_use TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX mailboxes_name ON mailboxes(account_id, name);
CREATE TABLE subscriptions(
	account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	name TEXT NOT NULL,
	PRIMARY KEY(account_id, name)
);
CREATE TABLE blobs(
	id TEXT PRIMARY KEY,
	size INTEGER NOT NULL,
	refs INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE messages(
	id INTEGER PRIMARY KEY,
	mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid INTEGER NOT NULL,
	modseq INTEGER NOT NULL,
	flags TEXT NOT NULL DEFAULT '',
	seen INTEGER NOT NULL DEFAULT 0,
	deleted INTEGER NOT NULL DEFAULT 0,
	internal_date INTEGER NOT NULL,
	size INTEGER NOT NULL,
	blob_id TEXT NOT NULL,
	digest TEXT NOT NULL,
	meta BLOB NOT NULL
);
CREATE UNIQUE INDEX messages_uid ON messages(mailbox_id, uid);
CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);
CREATE INDEX messages_digest ON messages(mailbox_id, digest);
CREATE INDEX messages_unseen ON messages(mailbox_id, uid) WHERE seen = 0;
CREATE TABLE tombstones(
	mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid INTEGER NOT NULL,
	modseq INTEGER NOT NULL,
	PRIMARY KEY(mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX tombstones_modseq ON tombstones(mailbox_id, modseq);
`

// schemaV3 keeps small messages inside the database (see inlineMax).
const schemaV3 = `ALTER TABLE blobs ADD COLUMN data BLOB;`

// schemaV4 is a covering index for the per-message state that IMAP and
// POP3 list (MessageInfo): listing reads the index alone, never the wide
// rows that carry the parsed structure.
const schemaV4 = `CREATE INDEX messages_info ON messages(mailbox_id, uid, modseq, flags, internal_date, size, blob_id);`

// schemaV5 moves the parsed structure out of the message rows, which
// flag changes rewrite: a STORE on many messages then writes a few pages
// of narrow rows instead of every page holding a wide one.
const schemaV5 = `
CREATE TABLE message_meta(
	message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
	meta BLOB NOT NULL
);
INSERT INTO message_meta(message_id, meta) SELECT id, meta FROM messages;
ALTER TABLE messages DROP COLUMN meta;
`

// schemaV6 finds the \Deleted messages of a mailbox (EXPUNGE, CLOSE)
// without visiting the others.
const schemaV6 = `CREATE INDEX messages_deleted ON messages(mailbox_id, uid) WHERE deleted = 1;`

// schemaV7 moves inline message bytes out of the blobs table: blobs is a
// WITHOUT ROWID table, which SQLite keeps fast only for small rows, and
// 4 KiB payloads in its b-tree made every lookup walk overflow pages.
const schemaV7 = `
ALTER TABLE blobs ADD COLUMN inline INTEGER NOT NULL DEFAULT 0;
UPDATE blobs SET inline = 1 WHERE data IS NOT NULL;
CREATE TABLE blob_data(
	id TEXT PRIMARY KEY REFERENCES blobs(id) ON DELETE CASCADE,
	data BLOB NOT NULL
);
INSERT INTO blob_data(id, data) SELECT id, data FROM blobs WHERE data IS NOT NULL;
ALTER TABLE blobs DROP COLUMN data;
`

// schemaV15 numbers each message row by its mailbox and UID, id =
// mailbox_id << 32 | uid, so that the messages table itself is in mailbox
// and UID order: a listing reads a stretch of the table, and the covering
// index that served listings before (schemaV4), which every flag change,
// delivery and expunge had to update too, goes, and so does messages_uid:
// a lookup by mailbox and UID is one by ID now, unique as the pair was
// (the indexes go first, so that renumbering rewrites fewer). Old IDs are
// below 2^32 and new ones at or above it, so renumbering in place never
// collides; foreign keys are checked at COMMIT, after both tables are
// renumbered. The key needs a UID of 32 bits and a mailbox ID of 31 (the
// trigger below checks both). Renumbering keeps the rows it moves in temporary storage,
// which migrate puts on disk (a million messages' meta would otherwise be
// in memory at once). A trigger refuses a row numbered otherwise (a
// tern from before v15 inserting while a newer CLI migrated): it would
// be invisible to its mailbox's listings.
const schemaV15 = `
PRAGMA defer_foreign_keys = ON;
DROP INDEX messages_info;
DROP INDEX messages_uid;
DELETE FROM message_meta WHERE message_id NOT IN (SELECT id FROM messages);
UPDATE message_meta SET message_id = (SELECT (m.mailbox_id << 32) | m.uid FROM messages m WHERE m.id = message_meta.message_id);
UPDATE messages SET id = (mailbox_id << 32) | uid;
CREATE TRIGGER messages_key BEFORE INSERT ON messages
	WHEN NEW.id IS NULL OR NEW.id != (NEW.mailbox_id << 32) | NEW.uid
		OR NEW.uid NOT BETWEEN 1 AND 4294967295 OR NEW.mailbox_id NOT BETWEEN 1 AND 2147483647 BEGIN
	SELECT RAISE(ABORT, 'a message row''s id is mailbox_id << 32 | uid');
END;
`

// migrate brings the database to the newest schema this binary knows.
func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var version int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this tern (%d): upgrade tern", version, len(migrations))
	}
	if version > 0 && version < len(migrations) {
		// Some migrations rewrite a table (schemaV15 takes ~40 s for a
		// million messages): say why the start is slow.
		s.log.Info("store: upgrading the database schema", "from", version, "to", len(migrations))
	}
	// Migrations that rewrite a table keep what they move in temporary
	// storage: on disk, not in memory as for the store's own statements.
	// (temp_store cannot change inside a transaction.)
	if _, err := conn.ExecContext(ctx, "PRAGMA temp_store = FILE"); err != nil {
		return err
	}
	defer conn.ExecContext(ctx, "PRAGMA temp_store = MEMORY")
	for v := version; v < len(migrations); v++ {
		err := func() error {
			tx, err := conn.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if migrations[v] != "" {
				if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
					return fmt.Errorf("migration %d: %w", v+1, err)
				}
			}
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
				return err
			}
			return tx.Commit()
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// scanner is what *sql.Row and *sql.Rows have in common.
type scanner interface{ Scan(dest ...any) error }

var _ scanner = (*sql.Row)(nil)

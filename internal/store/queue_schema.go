package store

// queueSchema is migration 2: the outbound queue. One row per message;
// the recipients with their individual status are a JSON array in the row
// (they are always read and written together), and next_attempt indexes
// the scheduler's scan so that memory stays flat however long the queue.
// AUTOINCREMENT: ids are never reused, so the scheduler can follow new
// entries with an id cursor.
const queueSchema = `
CREATE TABLE queue(
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	account_id INTEGER NOT NULL DEFAULT 0,
	sender TEXT NOT NULL,
	env_id TEXT NOT NULL DEFAULT '',
	ret TEXT NOT NULL DEFAULT '',
	require_tls INTEGER NOT NULL DEFAULT 0,
	blob_id TEXT NOT NULL,
	size INTEGER NOT NULL,
	digest TEXT NOT NULL DEFAULT '',
	created INTEGER NOT NULL,
	next_attempt INTEGER NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	rcpts TEXT NOT NULL
);
CREATE INDEX queue_next ON queue(next_attempt, id);
`

package store

import (
	"context"
	"database/sql"
	"errors"
)

// hotStmts are the statements of the delivery path, prepared once on the
// writer's connection (wtx): SQLite's parse and plan is a good part of a
// small delivery's cost otherwise. A write uses them as they are: they
// run on the connection that holds its transaction.
type hotStmts struct {
	mailboxByID   *sql.Stmt
	mailboxByName *sql.Stmt
	duplicate     *sql.Stmt
	chargeAccount *sql.Stmt
	bumpMailbox   *sql.Stmt
	insertMessage *sql.Stmt
	insertMeta    *sql.Stmt
	infosRange    *sql.Stmt
	refBlob       *sql.Stmt
	blobData      *sql.Stmt
	readBlob      *sql.Stmt // on the reader pool
	// inlineMessages is on the bulk pool (see Open).
	inlineMessages *sql.Stmt
}

func (s *Store) prepareHot(ctx context.Context) error {
	var errs []error
	prep := func(q string) *sql.Stmt {
		st, err := s.wtx.PrepareContext(ctx, q)
		errs = append(errs, err)
		return st
	}
	s.hot = hotStmts{
		mailboxByID:   prep("SELECT id, uidvalidity, uidnext FROM mailboxes WHERE id = ? AND account_id = ?"),
		mailboxByName: prep("SELECT id, uidvalidity, uidnext FROM mailboxes WHERE account_id = ?1 AND name IN (?2, 'INBOX') ORDER BY name = 'INBOX' LIMIT 1"),
		duplicate:     prep("SELECT 1 FROM messages WHERE mailbox_id = ? AND digest = ? LIMIT 1"),
		chargeAccount: prep("UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ? RETURNING quota_bytes, used_bytes"),
		bumpMailbox:   prep("UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1 WHERE id = ? RETURNING highestmodseq"),
		insertMessage: prep(`INSERT INTO messages(id, mailbox_id, uid, modseq, flags, seen, deleted, internal_date, size, blob_id, digest)
			VALUES((?1 << 32) | ?2, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id`),
		insertMeta: prep("INSERT INTO message_meta(message_id, meta) VALUES(?, ?)"),
		infosRange: prep("SELECT " + infoCols + " FROM messages WHERE " + keyRange + " ORDER BY id"),
		refBlob: prep(`INSERT INTO blobs(id, size, refs, inline) VALUES(?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET refs = refs + excluded.refs RETURNING refs`),
		blobData: prep("INSERT OR IGNORE INTO blob_data(id, data) VALUES(?, ?)"),
	}
	rb, err := s.db.PrepareContext(ctx, "SELECT data FROM blob_data WHERE id = ?")
	s.hot.readBlob = rb
	errs = append(errs, err)
	im, err := s.bulk.PrepareContext(ctx, inlineMessagesQuery)
	s.hot.inlineMessages = im
	errs = append(errs, err)
	return errors.Join(errs...)
}

// readStmt returns the reader pool's prepared statement for a query,
// preparing it on first use (database/sql prepares it again on each pool
// connection as needed).
func (s *Store) readStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.reads.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.reads.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// txStmt returns the writer connection's prepared statement for query,
// preparing it on first use (the reuse hotStmts have, for statements
// named where they are used); nil if it does not prepare.
func (s *Store) txStmt(ctx context.Context, tx *wtx, query string) *sql.Stmt {
	if st, ok := s.writes[query]; ok {
		return st
	}
	st, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return nil // the caller runs it unprepared, and meets the error
	}
	s.writes[query] = st
	return st
}

// txExec runs a write in tx through the writer's statement cache.
func (s *Store) txExec(ctx context.Context, tx *wtx, query string, args ...any) (sql.Result, error) {
	if st := s.txStmt(ctx, tx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// txQueryRow is txExec for a statement returning one row.
func (s *Store) txQueryRow(ctx context.Context, tx *wtx, query string, args ...any) *sql.Row {
	if st := s.txStmt(ctx, tx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, query, args...)
}

// query runs a read through a cached prepared statement. A context that
// has ended refuses the read, but one that ends while it runs does not
// interrupt it: these are short statements (a long listing is read in
// batches by its caller), and a cancellable context costs every query
// two goroutines, database/sql's to close the rows and the driver's to
// interrupt the statement, a few per IMAP command.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rctx, err := shortRead(ctx)
	if err != nil {
		return nil, err
	}
	st, err := s.readStmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(rctx, args...)
}

// shortRead is the context a short read runs with (see query): ctx
// without its cancellation, or ctx's error if it has ended already.
func shortRead(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return context.WithoutCancel(ctx), nil
}

// queryRow is QueryRow through a cached prepared statement, with the
// context as query takes it.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := s.readStmt(ctx, query)
	rctx, cerr := shortRead(ctx)
	if err != nil || cerr != nil {
		// Let the error surface at Scan, as database/sql does.
		return s.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(rctx, args...)
}

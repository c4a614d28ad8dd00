package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// checkSummary compares every mailbox's summary (counters and UID runs)
// with what counting its messages gives.
func checkSummary(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	rows, err := s.db.QueryContext(ctx, `SELECT m.id, m.n_messages, m.n_unseen, m.n_deleted, m.n_bytes,
		(SELECT count(*) FROM messages WHERE mailbox_id = m.id),
		(SELECT count(*) FROM messages WHERE mailbox_id = m.id AND seen = 0),
		(SELECT count(*) FROM messages WHERE mailbox_id = m.id AND deleted = 1),
		(SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = m.id)
		FROM mailboxes m`)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		var got, want [4]int64
		if err := rows.Scan(&id, &got[0], &got[1], &got[2], &got[3], &want[0], &want[1], &want[2], &want[3]); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("mailbox %d: summary (messages, unseen, deleted, bytes) %v, counted %v", id, got, want)
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		got, err := s.uidsFromRuns(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		// Straight from the table: some tests write rows by hand, without
		// the modseqs the mirror behind Messages follows.
		infos, err := s.queryInfos(ctx, nil, "SELECT "+infoCols+" FROM messages WHERE mailbox_id = ? ORDER BY uid", id)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]uint32, 0, len(infos))
		for _, m := range infos {
			want = append(want, m.UID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("mailbox %d: UIDs from runs %v, from messages %v", id, got, want)
		}
	}
	var orphans int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM uid_runs WHERE mailbox_id NOT IN (SELECT id FROM mailboxes)").Scan(&orphans); err != nil || orphans != 0 {
		t.Errorf("runs of deleted mailboxes: %d %v", orphans, err)
	}
}

// Random appends, flag changes, copies, moves, expunges and a mailbox
// deletion keep the summaries exact.
func TestMailboxSummary(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	if _, err := s.CreateMailbox(ctx, a.ID, "Scratch", ""); err != nil {
		t.Fatal(err)
	}
	names := []string{"INBOX", "Archive", "Scratch"}
	ids := map[string]int64{}
	for _, n := range names {
		mb, err := s.MailboxByName(ctx, a.ID, n)
		if err != nil {
			t.Fatal(err)
		}
		ids[n] = mb.ID
	}
	rng := rand.New(rand.NewPCG(1, 2))
	randUIDs := func(mb int64) []uint32 {
		uids, err := s.MessageUIDs(ctx, mb)
		if err != nil {
			t.Fatal(err)
		}
		var pick []uint32
		for _, u := range uids {
			if rng.IntN(4) == 0 {
				pick = append(pick, u)
			}
		}
		return pick
	}
	for step := 0; step < 300; step++ {
		src := ids[names[rng.IntN(len(names))]]
		dst := ids[names[rng.IntN(len(names))]]
		var err error
		switch op := rng.IntN(10); {
		case op < 4:
			var flags []string
			if rng.IntN(2) == 0 {
				flags = append(flags, `\Seen`)
			}
			_, err = s.Append(ctx, AppendRequest{AccountID: a.ID, MailboxID: src, Body: strings.NewReader(msg(fmt.Sprint(step))), Flags: flags})
		case op < 6:
			flag := []string{`\Seen`, `\Deleted`, `$X`}[rng.IntN(3)]
			opn := []FlagOp{FlagsAdd, FlagsRemove, FlagsReplace}[rng.IntN(3)]
			_, _, err = s.UpdateFlags(ctx, src, FlagUpdate{UIDs: randUIDs(src), Op: opn, Flags: []string{flag}})
		case op < 7:
			_, _, err = s.Copy(ctx, src, dst, randUIDs(src))
		case op < 8:
			if src != dst {
				_, _, err = s.Move(ctx, src, dst, randUIDs(src))
			}
		case op < 9:
			_, err = s.Expunge(ctx, src, nil)
		default:
			_, err = s.Expunge(ctx, src, randUIDs(src))
		}
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if step%50 == 0 {
			checkSummary(t, s)
		}
	}
	checkSummary(t, s)
	if err := s.DeleteMailbox(ctx, a.ID, "Scratch"); err != nil {
		t.Fatal(err)
	}
	checkSummary(t, s)
	c, err := s.MailboxCounts(ctx, ids["INBOX"])
	if err != nil || c.Messages == 0 {
		t.Fatalf("inbox counts %+v %v", c, err)
	}
}

// The runs handle UIDs arriving out of order (not something tern does,
// but the triggers must not depend on it): joining a run on either side,
// bridging two runs, and splitting one.
func TestUIDRunsAnyOrder(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	mb, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	insert := func(uid int) {
		t.Helper()
		_, err := s.wdb.ExecContext(ctx, `INSERT INTO messages(id, mailbox_id, uid, modseq, internal_date, size, blob_id, digest)
			VALUES((?1 << 32) | ?2, ?1, ?2, 1, 0, 10, 'b', 'd')`, mb.ID, uid)
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []int{5, 3, 4, 9, 1, 7, 8, 2, 6, 20} {
		insert(u)
		checkSummary(t, s)
	}
	for _, u := range []int{5, 1, 20, 9, 3} {
		if _, err := s.wdb.ExecContext(ctx, "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", mb.ID, u); err != nil {
			t.Fatal(err)
		}
		checkSummary(t, s)
	}
	var runs int
	s.db.QueryRowContext(ctx, "SELECT count(*) FROM uid_runs WHERE mailbox_id = ?", mb.ID).Scan(&runs)
	if runs != 3 { // 2, 4, 6-8
		t.Errorf("%d runs, want 3", runs)
	}
}

// A database from before the summaries gets them from its messages.
func TestMigrateSummary(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db := databaseAt(t, dir, 7)
	_, err := db.Exec(`INSERT INTO domains(name) VALUES('example.org');
		INSERT INTO accounts(address, domain_id, password_hash, created) VALUES('a@example.org', 1, 'h', 0);
		INSERT INTO mailboxes(account_id, name, uidvalidity) VALUES(1, 'INBOX', 1), (1, 'Empty', 2), (1, 'Other', 3);`)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []int{1, 2, 3, 5, 6, 9, 12, 13} {
		if _, err := db.Exec(`INSERT INTO messages(mailbox_id, uid, modseq, seen, deleted, internal_date, size, blob_id, digest)
			VALUES(?, ?, 1, ?, ?, 0, ?, 'b', 'd')`, 1+2*(u%2), u, u%3 == 0, u%4 == 0, 100+u); err != nil {
			t.Fatal(err)
		}
	}
	s := openMigrated(t, dir, db)
	checkSummary(t, s)
	if uids, _ := s.MessageUIDs(ctx, 1); fmt.Sprint(uids) != "[2 6 12]" {
		t.Errorf("INBOX UIDs %v", uids)
	}
}

// openMigrated closes db, made by databaseAt, and opens the store on it,
// which runs the later migrations.
func openMigrated(t *testing.T, dir string, db *sql.DB) *Store {
	t.Helper()
	db.Close()
	s, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// databaseAt makes a database in dir as a tern with only the first
// version migrations left it, to test the later ones.
func databaseAt(t *testing.T, dir string, version int) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "tern.db"))
	if err != nil {
		t.Fatal(err)
	}
	for v, m := range migrations[:version] {
		if _, err := db.Exec(m); err != nil {
			t.Fatalf("migration %d: %v", v+1, err)
		}
	}
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", version)); err != nil {
		t.Fatal(err)
	}
	return db
}

// A database from before schemaV15 gets its message rows renumbered by
// mailbox and UID, their structures with them.
func TestMigrateMessageKeys(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db := databaseAt(t, dir, 14)
	_, err := db.Exec(`PRAGMA foreign_keys = ON;
		INSERT INTO domains(name) VALUES('example.org');
		INSERT INTO accounts(address, domain_id, password_hash, created) VALUES('a@example.org', 1, 'h', 0);
		INSERT INTO mailboxes(account_id, name, uidvalidity) VALUES(1, 'INBOX', 1), (1, 'Other', 2);`)
	if err != nil {
		t.Fatal(err)
	}
	// Interleaved: row IDs in arrival order, not by mailbox and UID.
	for i, u := range []int{1, 2, 3, 4, 5, 6} {
		mb := 1 + i%2
		if _, err := db.Exec(`INSERT INTO messages(mailbox_id, uid, modseq, flags, internal_date, size, blob_id, digest)
			VALUES(?, ?, 1, '', 0, 10, 'b', 'd')`, mb, u); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO message_meta(message_id, meta) VALUES(last_insert_rowid(), ?)`,
			fmt.Sprintf(`{"env":{"subject":"mb%d uid%d"}}`, mb, u)); err != nil {
			t.Fatal(err)
		}
	}
	s := openMigrated(t, dir, db)
	rows, err := s.db.Query("SELECT m.id, m.mailbox_id, m.uid, json_extract(mm.meta, '$.env.subject') FROM messages m JOIN message_meta mm ON mm.message_id = m.id ORDER BY m.id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id, mb, uid int64
		var subject string
		if err := rows.Scan(&id, &mb, &uid, &subject); err != nil {
			t.Fatal(err)
		}
		if id != mb<<32|uid || subject != fmt.Sprintf("mb%d uid%d", mb, uid) {
			t.Errorf("row %d: mailbox %d UID %d with %q", id, mb, uid, subject)
		}
		n++
	}
	if n != 6 {
		t.Errorf("%d messages with their structure, want 6", n)
	}
	for mb, want := range map[int64]string{1: "[1 3 5]", 2: "[2 4 6]"} {
		infos, err := s.Messages(ctx, mb, 1, 0)
		var uids []uint32
		for _, m := range infos {
			uids = append(uids, m.UID)
		}
		if err != nil || fmt.Sprint(uids) != want {
			t.Errorf("mailbox %d: %v %v, want %s", mb, uids, err, want)
		}
	}
	var fk int
	if err := s.db.QueryRow("SELECT count(*) FROM pragma_foreign_key_check").Scan(&fk); err != nil || fk != 0 {
		t.Errorf("foreign key check: %d rows, %v", fk, err)
	}
	checkIntegrity(t, s)
	var idx int
	s.db.QueryRow("SELECT count(*) FROM sqlite_master WHERE name IN ('messages_info', 'messages_uid')").Scan(&idx)
	if idx != 0 {
		t.Error("messages_info or messages_uid is still there")
	}
	// A row numbered otherwise (a tern from before v15) is refused.
	if _, err := s.wdb.ExecContext(ctx, `INSERT INTO messages(mailbox_id, uid, modseq, internal_date, size, blob_id, digest)
		VALUES(1, 7, 1, 0, 10, 'b', 'd')`); err == nil || !strings.Contains(err.Error(), "mailbox_id << 32") {
		t.Errorf("a row without its key: %v", err)
	}
}

// A mailbox at the end of its UIDs refuses new messages with a clear
// error instead of wrapping around (UIDs and UIDNEXT are 32 bits).
func TestUIDsExhausted(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustAccount(t, s, "a@example.org")
	inbox, _ := s.MailboxByName(ctx, a.ID, "INBOX")
	d1 := appendMsg(t, s, a, "INBOX", msg("one"))
	d2 := appendMsg(t, s, a, "INBOX", msg("two"))
	full, err := s.CreateMailbox(ctx, a.ID, "Full", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.wdb.ExecContext(ctx, "UPDATE mailboxes SET uidnext = 4294967294 WHERE id = ?", full.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Copy(ctx, inbox.ID, full.ID, []uint32{d1.UID, d2.UID}); !errors.Is(err, ErrUIDsExhausted) {
		t.Errorf("copying two into a mailbox with one UID left: %v", err)
	}
	if _, pairs, err := s.Copy(ctx, inbox.ID, full.ID, []uint32{d1.UID}); err != nil || len(pairs) != 1 || pairs[0].Dst != 4294967294 {
		t.Fatalf("copying the last one: %v %v", pairs, err)
	}
	_, err = s.Append(ctx, AppendRequest{AccountID: a.ID, MailboxID: full.ID, Body: strings.NewReader(msg("three"))})
	if !errors.Is(err, ErrUIDsExhausted) {
		t.Errorf("appending after the last UID: %v", err)
	}
	infos, _ := s.Messages(ctx, full.ID, 1, 0)
	if len(infos) != 1 || infos[0].UID != 4294967294 {
		t.Errorf("the full mailbox holds %+v", infos)
	}
	checkIntegrity(t, s)
}

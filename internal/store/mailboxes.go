package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Mailbox is one folder of an account.
type Mailbox struct {
	ID            int64
	AccountID     int64
	Name          string // UTF-8, "/" separates levels; "INBOX" is upper case
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	SpecialUse    string // RFC 6154 attribute such as `\Sent`, or ""
	Subscribed    bool
}

// Counts summarises a mailbox for STATUS and webmail lists.
type Counts struct {
	Messages       int
	Unseen         int
	Deleted        int
	Size           int64
	FirstUnseenUID uint32 // 0: none
}

// NormalizeMailboxName makes "inbox" in any case "INBOX" and rejects names
// that cannot be stored: empty levels, control characters, invalid UTF-8.
func NormalizeMailboxName(name string) (string, error) {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX", nil
	}
	if i := strings.IndexByte(name, '/'); i >= 0 && strings.EqualFold(name[:i], "INBOX") {
		name = "INBOX" + name[i:]
	}
	if name == "" || !utf8.ValidString(name) || len(name) > 1000 {
		return "", fmt.Errorf("mailbox name %q: %w", name, ErrInvalid)
	}
	for _, level := range strings.Split(name, "/") {
		if level == "" {
			return "", fmt.Errorf("mailbox name %q has an empty level: %w", name, ErrInvalid)
		}
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '*' || r == '%' {
			return "", fmt.Errorf("mailbox name %q: %w", name, ErrInvalid)
		}
	}
	return name, nil
}

const mailboxCols = `m.id, m.account_id, m.name, m.uidvalidity, m.uidnext, m.highestmodseq, m.special_use,
	EXISTS(SELECT 1 FROM subscriptions s WHERE s.account_id = m.account_id AND s.name = m.name)`

func scanMailbox(r scanner) (Mailbox, error) {
	var m Mailbox
	err := r.Scan(&m.ID, &m.AccountID, &m.Name, &m.UIDValidity, &m.UIDNext, &m.HighestModSeq, &m.SpecialUse, &m.Subscribed)
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("mailbox: %w", ErrNotFound)
	}
	return m, err
}

// Mailboxes lists an account's mailboxes sorted by name.
func (s *Store) Mailboxes(ctx context.Context, accountID int64) ([]Mailbox, error) {
	rows, err := s.query(ctx, "SELECT "+mailboxCols+" FROM mailboxes m WHERE m.account_id = ? ORDER BY m.name", accountID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Mailbox
	for rows.Next() {
		m, err := scanMailbox(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// MailboxByName finds a mailbox of an account.
func (s *Store) MailboxByName(ctx context.Context, accountID int64, name string) (Mailbox, error) {
	name, err := NormalizeMailboxName(name)
	if err != nil {
		return Mailbox{}, fmt.Errorf("mailbox %q: %w", name, ErrNotFound)
	}
	return scanMailbox(s.queryRow(ctx, "SELECT "+mailboxCols+" FROM mailboxes m WHERE m.account_id = ? AND m.name = ?", accountID, name))
}

// MailboxByID finds a mailbox by id.
func (s *Store) MailboxByID(ctx context.Context, id int64) (Mailbox, error) {
	return scanMailbox(s.queryRow(ctx, "SELECT "+mailboxCols+" FROM mailboxes m WHERE m.id = ?", id))
}

// schemaV13 remembers the last UIDVALIDITY given out. Taking one more
// than the largest in use gave a mailbox deleted and made again within
// the same second the UIDVALIDITY it had before, with its UIDs starting
// over: a client's cache would have taken the new messages for the old
// ones (RFC 9051 §2.3.1.1 forbids the reuse).
const schemaV13 = `
CREATE TABLE uidvalidity_last(
	id INTEGER PRIMARY KEY CHECK (id = 1),
	value INTEGER NOT NULL
);
INSERT INTO uidvalidity_last(id, value) SELECT 1, coalesce(max(uidvalidity), 0) FROM mailboxes;
`

// newUIDValidity returns a value never given out before in this
// database: the current time, or one more than the last one.
func newUIDValidity(ctx context.Context, tx *wtx) (uint32, error) {
	var last int64
	if err := tx.QueryRowContext(ctx, "SELECT value FROM uidvalidity_last WHERE id = 1").Scan(&last); err != nil {
		return 0, err
	}
	v := uint32(time.Now().Unix())
	if uint32(last) >= v {
		v = uint32(last) + 1
	}
	if _, err := tx.ExecContext(ctx, "UPDATE uidvalidity_last SET value = ? WHERE id = 1", v); err != nil {
		return 0, err
	}
	return v, nil
}

func createMailbox(ctx context.Context, tx *wtx, accountID int64, name, specialUse string) (Mailbox, error) {
	name, err := NormalizeMailboxName(name)
	if err != nil {
		return Mailbox{}, err
	}
	v, err := newUIDValidity(ctx, tx)
	if err != nil {
		return Mailbox{}, err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO mailboxes(account_id, name, uidvalidity, special_use) VALUES(?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, accountID, name, v, specialUse)
	if err != nil {
		return Mailbox{}, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Mailbox{}, fmt.Errorf("mailbox %s: %w", name, ErrExists)
	}
	id, _ := res.LastInsertId()
	return Mailbox{ID: id, AccountID: accountID, Name: name, UIDValidity: v, UIDNext: 1, HighestModSeq: 1, SpecialUse: specialUse}, nil
}

// CreateMailbox creates a mailbox (ErrExists if it does). Missing parent
// levels are not created: IMAP clients see them as \NonExistent.
func (s *Store) CreateMailbox(ctx context.Context, accountID int64, name, specialUse string) (Mailbox, error) {
	var mb Mailbox
	err := s.update(ctx, func(ctx context.Context, tx *wtx) error {
		var err error
		mb, err = createMailbox(ctx, tx, accountID, name, specialUse)
		s.touch(accountID)
		s.touchLists()
		return err
	})
	return mb, err
}

// DeleteMailbox removes a mailbox and its messages. Child mailboxes stay.
func (s *Store) DeleteMailbox(ctx context.Context, accountID int64, name string) error {
	name, err := NormalizeMailboxName(name)
	if err != nil {
		return err
	}
	if name == "INBOX" {
		return fmt.Errorf("INBOX cannot be deleted: %w", ErrInvalid)
	}
	return s.update(ctx, func(ctx context.Context, tx *wtx) error {
		var id int64
		err := tx.QueryRowContext(ctx, "SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", accountID, name).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("mailbox %s: %w", name, ErrNotFound)
		} else if err != nil {
			return err
		}
		if err := s.releaseMessages(ctx, tx, "mailbox_id = ?", id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM mailboxes WHERE id = ?", id)
		s.touch(accountID)
		s.touchLists()
		s.noteModSeq(id, 0, 0) // its ID may come back for another mailbox
		return err
	})
}

// RenameMailbox renames a mailbox and its children. Renaming INBOX moves
// its messages to the new name and leaves an empty INBOX (RFC 9051 §6.3.6).
func (s *Store) RenameMailbox(ctx context.Context, accountID int64, from, to string) error {
	from, err := NormalizeMailboxName(from)
	if err != nil {
		return err
	}
	to, err = NormalizeMailboxName(to)
	if err != nil {
		return err
	}
	if to == "INBOX" || strings.HasPrefix(to+"/", from+"/") && from != "INBOX" {
		return fmt.Errorf("cannot rename %s to %s: %w", from, to, ErrInvalid)
	}
	return s.update(ctx, func(ctx context.Context, tx *wtx) error {
		s.touchLists()
		var one int
		err := tx.QueryRowContext(ctx, "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", accountID, to).Scan(&one)
		if err == nil {
			return fmt.Errorf("mailbox %s: %w", to, ErrExists)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		res, err := tx.ExecContext(ctx, "UPDATE mailboxes SET name = ? WHERE account_id = ? AND name = ?", to, accountID, from)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("mailbox %s: %w", from, ErrNotFound)
		}
		s.touch(accountID)
		if from == "INBOX" {
			// The old INBOX row now has the new name; INBOX starts afresh
			// and stays subscribed, and the new name is subscribed if
			// INBOX was.
			if _, err := tx.ExecContext(ctx, "UPDATE mailboxes SET special_use = '' WHERE account_id = ? AND name = ?", accountID, to); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO subscriptions(account_id, name)
				SELECT account_id, ? FROM subscriptions WHERE account_id = ? AND name = 'INBOX'`, to, accountID); err != nil {
				return err
			}
			_, err := createMailbox(ctx, tx, accountID, "INBOX", "")
			return err
		}
		// Children follow their parent, and subscriptions follow both (as
		// Dovecot does): a client that renames a folder keeps seeing it.
		for _, q := range []string{
			`UPDATE mailboxes SET name = ? || substr(name, ?) WHERE account_id = ? AND substr(name, 1, ?) = ?`,
			`UPDATE OR REPLACE subscriptions SET name = ? || substr(name, ?) WHERE account_id = ? AND substr(name, 1, ?) = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, to+"/", len(from)+2, accountID, len(from)+1, from+"/"); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, "UPDATE OR REPLACE subscriptions SET name = ? WHERE account_id = ? AND name = ?", to, accountID, from)
		return err
	})
}

// SetSubscribed subscribes or unsubscribes a name, which need not exist.
func (s *Store) SetSubscribed(ctx context.Context, accountID int64, name string, on bool) error {
	name, err := NormalizeMailboxName(name)
	if err != nil {
		return err
	}
	return s.update(ctx, func(ctx context.Context, tx *wtx) error {
		s.touchLists()
		q := "DELETE FROM subscriptions WHERE account_id = ? AND name = ?"
		if on {
			q = "INSERT OR IGNORE INTO subscriptions(account_id, name) VALUES(?, ?)"
		}
		_, err := tx.ExecContext(ctx, q, accountID, name)
		return err
	})
}

// Subscriptions lists the subscribed names of an account, sorted.
func (s *Store) Subscriptions(ctx context.Context, accountID int64) ([]string, error) {
	return s.queryStrings(ctx, "SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name", accountID)
}

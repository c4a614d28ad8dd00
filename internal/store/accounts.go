package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Account is one mail user.
type Account struct {
	ID           int64
	Address      string
	QuotaBytes   int64 // 0: unlimited
	UsedBytes    int64
	PasswordHash string // argon2id PHC string, see internal/account
	ScramSHA256  string // SCRAM-SHA-256 stored credentials, see internal/account
	// MaxRecipients and MaxPerDay override the server's submission
	// limits for this account; 0 keeps the server's.
	MaxRecipients int
	MaxPerDay     int
}

// schemaV12 adds per-account submission limits and the send-as grants:
// addresses (or "@domain" for a whole domain) an account may send as
// besides its own, its +tags and the aliases that point at it.
const schemaV12 = `
ALTER TABLE accounts ADD COLUMN max_rcpts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN max_per_day INTEGER NOT NULL DEFAULT 0;
CREATE TABLE send_as(
	account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	address TEXT NOT NULL COLLATE NOCASE,
	PRIMARY KEY(account_id, address)
) WITHOUT ROWID;
`

// Alias maps an address ("list@example.org", or "@example.org" for a
// catch-all) to local or remote targets.
type Alias struct {
	Address string
	Targets []string
}

// DefaultMailboxes are created with every account, with their RFC 6154
// special-use attributes.
var DefaultMailboxes = []struct{ Name, SpecialUse string }{
	{"INBOX", ""}, {"Sent", `\Sent`}, {"Drafts", `\Drafts`}, {"Trash", `\Trash`},
	{"Junk", `\Junk`}, {"Archive", `\Archive`},
}

// SplitAddress splits local@domain at the last "@", lower-casing the domain.
func SplitAddress(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || i == len(addr)-1 {
		return "", "", false
	}
	return addr[:i], strings.ToLower(addr[i+1:]), true
}

func normDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

// AddDomain makes a domain local.
func (s *Store) AddDomain(ctx context.Context, name string) error {
	name = normDomain(name)
	if name == "" || strings.ContainsAny(name, "@ \t/") {
		return fmt.Errorf("domain %q: %w", name, ErrInvalid)
	}
	return s.update(ctx, func(ctx context.Context, tx *wtx) error {
		res, err := tx.ExecContext(ctx, "INSERT INTO domains(name) VALUES(?) ON CONFLICT DO NOTHING", name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("domain %s: %w", name, ErrExists)
		}
		return nil
	})
}

// DeleteDomain removes a domain that has no accounts left.
func (s *Store) DeleteDomain(ctx context.Context, name string) error {
	name = normDomain(name)
	return s.update(ctx, func(ctx context.Context, tx *wtx) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM accounts a JOIN domains d ON a.domain_id = d.id WHERE d.name = ?", name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("domain %s still has %d accounts: %w", name, n, ErrInvalid)
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM domains WHERE name = ?", name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("domain %s: %w", name, ErrNotFound)
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM aliases WHERE address LIKE ?", "%@"+name)
		return err
	})
}

// Domains lists the local domains, sorted.
func (s *Store) Domains(ctx context.Context) ([]string, error) {
	return s.queryStrings(ctx, "SELECT name FROM domains ORDER BY name")
}

// queryStrings runs a query of one text column.
func (s *Store) queryStrings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// IsLocalDomain reports whether mail for the domain is delivered here.
func (s *Store) IsLocalDomain(ctx context.Context, name string) (bool, error) {
	var one int
	err := s.queryRow(ctx, "SELECT 1 FROM domains WHERE name = ?", normDomain(name)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// AddAccount creates an account with its default mailboxes. The domain
// must be local.
func (s *Store) AddAccount(ctx context.Context, address, passwordHash, scram string) (Account, error) {
	address = strings.TrimSpace(address)
	local, domain, ok := SplitAddress(address)
	if !ok || local == "" || strings.ContainsAny(address, " \t\r\n<>") {
		return Account{}, fmt.Errorf("address %q: %w", address, ErrInvalid)
	}
	address = local + "@" + domain
	var acct Account
	err := s.update(ctx, func(ctx context.Context, tx *wtx) error {
		var domainID int64
		err := tx.QueryRowContext(ctx, "SELECT id FROM domains WHERE name = ?", domain).Scan(&domainID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("domain %s is not local (add it first): %w", domain, ErrNotFound)
		} else if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO accounts(address, domain_id, password_hash, scram_sha256, created)
			VALUES(?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, address, domainID, passwordHash, scram, time.Now().Unix())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("account %s: %w", address, ErrExists)
		}
		id, _ := res.LastInsertId()
		s.touchLists()
		for _, mb := range DefaultMailboxes {
			if _, err := createMailbox(ctx, tx, id, mb.Name, mb.SpecialUse); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO subscriptions(account_id, name) VALUES(?, ?)", id, mb.Name); err != nil {
				return err
			}
		}
		acct = Account{ID: id, Address: address, PasswordHash: passwordHash, ScramSHA256: scram}
		return nil
	})
	return acct, err
}

// DeleteAccount removes an account, its mailboxes and messages.
func (s *Store) DeleteAccount(ctx context.Context, address string) error {
	return s.update(ctx, func(ctx context.Context, tx *wtx) error {
		var id int64
		err := tx.QueryRowContext(ctx, "SELECT id FROM accounts WHERE address = ?", address).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("account %s: %w", address, ErrNotFound)
		} else if err != nil {
			return err
		}
		if err := s.releaseMessages(ctx, tx, "mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?)", id); err != nil {
			return err
		}
		// The mailboxes go with the account; their IDs may come back.
		rows, err := tx.QueryContext(ctx, "SELECT id FROM mailboxes WHERE account_id = ?", id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var mb int64
			if err := rows.Scan(&mb); err != nil {
				rows.Close()
				return err
			}
			s.noteModSeq(mb, 0, 0)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM accounts WHERE id = ?", id)
		s.touch(id)
		s.touchLists() // its ID may come back for another account
		return err
	})
}

// SetPassword replaces an account's credentials.
func (s *Store) SetPassword(ctx context.Context, address, hash, scram string) error {
	return s.updateAccount(ctx, address, "password_hash = ?, scram_sha256 = ?", hash, scram)
}

// SetQuota sets an account's storage quota in bytes (0: unlimited).
func (s *Store) SetQuota(ctx context.Context, address string, bytes int64) error {
	return s.updateAccount(ctx, address, "quota_bytes = ?", bytes)
}

func (s *Store) updateAccount(ctx context.Context, address, set string, args ...any) error {
	return s.update(ctx, func(ctx context.Context, tx *wtx) error {
		res, err := tx.ExecContext(ctx, "UPDATE accounts SET "+set+" WHERE address = ?", append(args, address)...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("account %s: %w", address, ErrNotFound)
		}
		return nil
	})
}

// SetSendLimits sets an account's own submission limits: recipients per
// message and messages per day (0: the server's default).
func (s *Store) SetSendLimits(ctx context.Context, address string, maxRcpts, maxPerDay int) error {
	if maxRcpts < 0 || maxPerDay < 0 {
		return errors.New("limits must not be negative")
	}
	return s.updateAccount(ctx, address, "max_rcpts = ?, max_per_day = ?", maxRcpts, maxPerDay)
}

// AddSendAs lets an account send as another address, or as any address
// of a domain ("@example.org"), without it being an alias of the account.
func (s *Store) AddSendAs(ctx context.Context, account, address string) error {
	address = strings.TrimSpace(address)
	if strings.HasPrefix(address, "@") {
		if !strings.Contains(address[1:], ".") || strings.Contains(address[1:], "@") {
			return fmt.Errorf("bad domain %q", address)
		}
	} else if _, _, ok := SplitAddress(address); !ok {
		return fmt.Errorf("bad address %q", address)
	}
	a, err := s.AccountByAddress(ctx, account)
	if err != nil {
		return err
	}
	return s.update(ctx, func(ctx context.Context, tx *wtx) error {
		_, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO send_as(account_id, address) VALUES(?, ?)", a.ID, address)
		return err
	})
}

// DeleteSendAs withdraws a send-as grant.
func (s *Store) DeleteSendAs(ctx context.Context, account, address string) error {
	a, err := s.AccountByAddress(ctx, account)
	if err != nil {
		return err
	}
	return s.update(ctx, func(ctx context.Context, tx *wtx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM send_as WHERE account_id = ? AND address = ?", a.ID, strings.TrimSpace(address))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("send-as %s for %s: %w", address, account, ErrNotFound)
		}
		return nil
	})
}

// SendAs lists the send-as grants of an account, sorted.
func (s *Store) SendAs(ctx context.Context, accountID int64) ([]string, error) {
	return s.queryStrings(ctx, "SELECT address FROM send_as WHERE account_id = ? ORDER BY address", accountID)
}

const accountCols = "id, address, quota_bytes, used_bytes, password_hash, scram_sha256, max_rcpts, max_per_day"

func scanAccount(r scanner) (Account, error) {
	var a Account
	err := r.Scan(&a.ID, &a.Address, &a.QuotaBytes, &a.UsedBytes, &a.PasswordHash, &a.ScramSHA256, &a.MaxRecipients, &a.MaxPerDay)
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("account: %w", ErrNotFound)
	}
	return a, err
}

// Accounts lists all accounts, sorted by address.
func (s *Store) Accounts(ctx context.Context) ([]Account, error) {
	rows, err := s.query(ctx, "SELECT "+accountCols+" FROM accounts ORDER BY address")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// AccountByAddress finds an account by its address, case-insensitively.
func (s *Store) AccountByAddress(ctx context.Context, address string) (Account, error) {
	return scanAccount(s.queryRow(ctx, "SELECT "+accountCols+" FROM accounts WHERE address = ?", strings.TrimSpace(address)))
}

// AccountByID finds an account by id.
func (s *Store) AccountByID(ctx context.Context, id int64) (Account, error) {
	return scanAccount(s.queryRow(ctx, "SELECT "+accountCols+" FROM accounts WHERE id = ?", id))
}

// AddAlias creates or replaces an alias. A target is an address, local or
// remote.
func (s *Store) AddAlias(ctx context.Context, alias string, targets []string) error {
	alias = strings.TrimSpace(alias)
	local, domain, ok := SplitAddress(alias)
	if !ok || len(targets) == 0 {
		return fmt.Errorf("alias %q: %w", alias, ErrInvalid)
	}
	for _, t := range targets {
		if _, _, ok := SplitAddress(t); !ok {
			return fmt.Errorf("alias target %q: %w", t, ErrInvalid)
		}
	}
	alias = local + "@" + domain
	return s.update(ctx, func(ctx context.Context, tx *wtx) error {
		var one int
		err := tx.QueryRowContext(ctx, "SELECT 1 FROM domains WHERE name = ?", domain).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("domain %s is not local: %w", domain, ErrNotFound)
		} else if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO aliases(address, targets) VALUES(?, ?)
			ON CONFLICT(address) DO UPDATE SET targets = excluded.targets`, alias, strings.Join(targets, "\n"))
		return err
	})
}

// DeleteAlias removes an alias.
func (s *Store) DeleteAlias(ctx context.Context, alias string) error {
	return s.update(ctx, func(ctx context.Context, tx *wtx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM aliases WHERE address = ?", strings.TrimSpace(alias))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("alias %s: %w", alias, ErrNotFound)
		}
		return nil
	})
}

// Aliases lists all aliases, sorted by address.
func (s *Store) Aliases(ctx context.Context) ([]Alias, error) {
	rows, err := s.query(ctx, "SELECT address, targets FROM aliases ORDER BY address")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Alias
	for rows.Next() {
		var a Alias
		var t string
		if err := rows.Scan(&a.Address, &t); err != nil {
			return nil, err
		}
		a.Targets = strings.Split(t, "\n")
		out = append(out, a)
	}
	return out, rows.Err()
}

// Resolution is where mail for one address goes: local accounts and
// remote addresses (aliases may point outside).
type Resolution struct {
	Accounts []Account
	Remote   []string
}

// ResolveRecipient expands an address: an account (also with a
// "+tag" subaddress), an alias, or a domain's catch-all, recursively to a
// small depth. ErrNotFound when nothing matches.
func (s *Store) ResolveRecipient(ctx context.Context, address string) ([]Account, error) {
	r, err := s.Resolve(ctx, address)
	if err != nil {
		return nil, err
	}
	if len(r.Accounts) == 0 {
		return nil, fmt.Errorf("%s: no local recipient: %w", address, ErrNotFound)
	}
	return r.Accounts, nil
}

// Resolve is ResolveRecipient that also reports remote alias targets.
func (s *Store) Resolve(ctx context.Context, address string) (Resolution, error) {
	var res Resolution
	seen := map[int64]bool{}
	remote := map[string]bool{}
	if err := s.resolve(ctx, strings.TrimSpace(address), 0, &res, seen, remote); err != nil {
		return Resolution{}, err
	}
	if len(res.Accounts) == 0 && len(res.Remote) == 0 {
		return res, fmt.Errorf("%s: %w", address, ErrNotFound)
	}
	sort.Strings(res.Remote)
	return res, nil
}

const maxAliasDepth = 8

func (s *Store) resolve(ctx context.Context, addr string, depth int, res *Resolution, seen map[int64]bool, remote map[string]bool) error {
	local, domain, ok := SplitAddress(addr)
	if !ok {
		return fmt.Errorf("address %q: %w", addr, ErrInvalid)
	}
	if depth > maxAliasDepth {
		return fmt.Errorf("alias loop at %s: %w", addr, ErrInvalid)
	}
	isLocal, err := s.IsLocalDomain(ctx, domain)
	if err != nil {
		return err
	}
	if !isLocal {
		if depth > 0 && !remote[strings.ToLower(addr)] {
			remote[strings.ToLower(addr)] = true
			res.Remote = append(res.Remote, addr)
		}
		return nil
	}
	candidates := []string{local + "@" + domain}
	if i := strings.IndexByte(local, '+'); i > 0 {
		candidates = append(candidates, local[:i]+"@"+domain)
	}
	for _, c := range candidates {
		a, err := s.AccountByAddress(ctx, c)
		if err == nil {
			if !seen[a.ID] {
				seen[a.ID] = true
				res.Accounts = append(res.Accounts, a)
			}
			return nil
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		targets, err := s.aliasTargets(ctx, c)
		if err != nil {
			return err
		}
		if targets != nil {
			return s.resolveAll(ctx, targets, depth, res, seen, remote)
		}
	}
	targets, err := s.aliasTargets(ctx, "@"+domain)
	if err != nil || targets == nil {
		return err
	}
	return s.resolveAll(ctx, targets, depth, res, seen, remote)
}

func (s *Store) resolveAll(ctx context.Context, targets []string, depth int, res *Resolution, seen map[int64]bool, remote map[string]bool) error {
	for _, t := range targets {
		if err := s.resolve(ctx, t, depth+1, res, seen, remote); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

func (s *Store) aliasTargets(ctx context.Context, addr string) ([]string, error) {
	var t string
	err := s.queryRow(ctx, "SELECT targets FROM aliases WHERE address = ?", addr).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return strings.Split(t, "\n"), nil
}

// Owns reports whether an account may use an address as its sender: its
// own address, a subaddress of it, or an alias that resolves to it.
func (s *Store) Owns(ctx context.Context, acct Account, address string) (bool, error) {
	if strings.EqualFold(address, acct.Address) {
		return true, nil
	}
	local, domain, ok := SplitAddress(address)
	if !ok {
		return false, nil
	}
	if i := strings.IndexByte(local, '+'); i > 0 && strings.EqualFold(local[:i]+"@"+domain, acct.Address) {
		return true, nil
	}
	targets, err := s.aliasTargets(ctx, local+"@"+domain)
	if err != nil {
		return false, err
	}
	for _, t := range targets {
		if strings.EqualFold(t, acct.Address) {
			return true, nil
		}
	}
	var n int
	err = s.queryRow(ctx, "SELECT count(*) FROM send_as WHERE account_id = ? AND address IN (?, ?)",
		acct.ID, local+"@"+domain, "@"+domain).Scan(&n)
	return n > 0, err
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// schemaV10 keeps the MTA-STS policies the queue fetched (RFC 8461 §5.1),
// so that a restart does not open a window in which a blocked policy
// fetch downgrades delivery to a domain that asked for TLS.
const schemaV10 = `
CREATE TABLE mtasts_policies(
	domain TEXT PRIMARY KEY,
	id TEXT NOT NULL,
	policy TEXT NOT NULL,
	expires INTEGER NOT NULL
) WITHOUT ROWID;
`

// LoadPolicy returns the MTA-STS policy kept for domain (mtasts.PolicyCache).
func (s *Store) LoadPolicy(ctx context.Context, domain string) (id, policy string, expires time.Time, found bool, err error) {
	var exp int64
	err = s.queryRow(ctx, "SELECT id, policy, expires FROM mtasts_policies WHERE domain = ?", domain).Scan(&id, &policy, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", time.Time{}, false, nil
	}
	if err != nil {
		return "", "", time.Time{}, false, err
	}
	return id, policy, time.Unix(exp, 0), true, nil
}

// SavePolicy keeps a domain's MTA-STS policy until it expires, and drops
// the policies that expired long ago.
func (s *Store) SavePolicy(ctx context.Context, domain, id, policy string, expires time.Time) error {
	return s.updateLazy(ctx, func(ctx context.Context, tx *wtx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO mtasts_policies(domain, id, policy, expires) VALUES(?, ?, ?, ?)
			ON CONFLICT(domain) DO UPDATE SET id = excluded.id, policy = excluded.policy, expires = excluded.expires`,
			domain, id, policy, expires.Unix())
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM mtasts_policies WHERE expires < ?", time.Now().Add(-30*24*time.Hour).Unix())
		return err
	})
}

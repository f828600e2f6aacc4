package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/larder-cache/larder/internal/store"
)

// errTokenKind is returned for a token that is neither exactly an HTTP
// token nor exactly an S3 access key.
var errTokenKind = errors.New("exactly one of hash and access key id must be set")

const (
	// tokenSQL reads tokens. An HTTP token has no access key ID and an S3
	// key no hash: the column is NULL, so that each is unique among its
	// kind; both read as "".
	tokenSQL = `SELECT id, coalesce(hash, ''), coalesce(access_key_id, ''), secret, scope, perm,
		description, created_at, expires_at FROM tokens`

	// lookupTokenSQL and lookupAccessKeySQL find a token by the unique
	// index of its column. NULL equals nothing, so "" finds no token.
	lookupTokenSQL     = tokenSQL + ` WHERE hash = ?`
	lookupAccessKeySQL = tokenSQL + ` WHERE access_key_id = ?`
)

// scanToken reads a row of tokenSQL.
func scanToken(sc scanner) (store.Token, error) {
	var t store.Token
	var created int64
	var expires sql.NullInt64
	err := sc.Scan(&t.ID, &t.Hash, &t.AccessKeyID, &t.Secret, &t.Scope, &t.Perm,
		&t.Description, &created, &expires)
	t.CreatedAt = fromUnix(created)
	if expires.Valid {
		t.ExpiresAt = fromUnix(expires.Int64)
	}
	return t, err
}

// nullString returns s as a nullable column value: NULL if it is empty.
func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// CreateToken adds t with a new ID and the current time and returns it as
// stored. It returns store.ErrExists if its hash or access key ID is taken,
// and an error if not exactly one of them is set.
func (s *Store) CreateToken(ctx context.Context, t store.Token) (store.Token, error) {
	if (t.Hash == "") == (t.AccessKeyID == "") {
		return store.Token{}, fmt.Errorf("create token %q: %w", t.Description, errTokenKind)
	}
	t.CreatedAt = now()
	var expires sql.NullInt64
	if !t.ExpiresAt.IsZero() {
		t.ExpiresAt = fromUnix(t.ExpiresAt.Unix())
		expires = sql.NullInt64{Int64: t.ExpiresAt.Unix(), Valid: true}
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `
			INSERT INTO tokens (hash, access_key_id, secret, scope, perm, description, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			nullString(t.Hash), nullString(t.AccessKeyID), t.Secret, t.Scope, string(t.Perm),
			t.Description, t.CreatedAt.Unix(), expires,
		).Scan(&t.ID)
	})
	if err != nil {
		return store.Token{}, fmt.Errorf("create token %q: %w", t.Description, translate(err))
	}
	return t, nil
}

// LookupToken returns the HTTP token whose hash is hash, expired or not,
// or store.ErrNotFound.
func (s *Store) LookupToken(ctx context.Context, hash string) (store.Token, error) {
	t, err := scanToken(s.lookupToken.QueryRowContext(ctx, hash))
	if err != nil {
		return store.Token{}, fmt.Errorf("look up token: %w", translate(err))
	}
	return t, nil
}

// LookupAccessKey returns the S3 key with the given access key ID, expired
// or not, or store.ErrNotFound.
func (s *Store) LookupAccessKey(ctx context.Context, id string) (store.Token, error) {
	t, err := scanToken(s.lookupAccessKey.QueryRowContext(ctx, id))
	if err != nil {
		return store.Token{}, fmt.Errorf("look up access key %q: %w", id, translate(err))
	}
	return t, nil
}

// ListTokens returns every token, ordered by ID.
func (s *Store) ListTokens(ctx context.Context) ([]store.Token, error) {
	rows, err := s.r.QueryContext(ctx, tokenSQL+` ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var list []store.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		list = append(list, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return list, nil
}

// DeleteToken removes the token with the given ID, or returns
// store.ErrNotFound.
func (s *Store) DeleteToken(ctx context.Context, id int64) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE id = ?`, id)
		if err != nil {
			return err
		}
		return checkRowAffected(res)
	})
	if err != nil {
		return fmt.Errorf("delete token %d: %w", id, translate(err))
	}
	return nil
}

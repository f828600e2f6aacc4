package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

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
	lookupTokenSQL     = tokenSQL + ` WHERE hash = $1`
	lookupAccessKeySQL = tokenSQL + ` WHERE access_key_id = $1`
)

// scanToken reads a row of tokenSQL.
func scanToken(row pgx.CollectableRow) (store.Token, error) {
	var t store.Token
	var perm string
	var expires *time.Time
	err := row.Scan(&t.ID, &t.Hash, &t.AccessKeyID, &t.Secret, &t.Scope, &perm,
		&t.Description, &t.CreatedAt, &expires)
	t.Perm, t.CreatedAt = store.Perm(perm), t.CreatedAt.UTC()
	if expires != nil {
		t.ExpiresAt = expires.UTC()
	}
	return t, err
}

// nullString returns s as a nullable column value: NULL if it is empty.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// CreateToken adds t with a new ID and the current time and returns it as
// stored. It returns store.ErrExists if its hash or access key ID is taken,
// and an error if not exactly one of them is set.
func (s *Store) CreateToken(ctx context.Context, t store.Token) (store.Token, error) {
	if (t.Hash == "") == (t.AccessKeyID == "") {
		return store.Token{}, fmt.Errorf("create token %q: %w", t.Description, errTokenKind)
	}
	t.CreatedAt = now()
	var expires *time.Time
	if !t.ExpiresAt.IsZero() {
		t.ExpiresAt = orNow(t.ExpiresAt)
		expires = &t.ExpiresAt
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			INSERT INTO tokens (hash, access_key_id, secret, scope, perm, description, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			nullString(t.Hash), nullString(t.AccessKeyID), t.Secret, t.Scope, string(t.Perm),
			t.Description, t.CreatedAt, expires,
		).Scan(&t.ID)
		if err != nil {
			return err
		}
		return s.notify(ctx, tx)
	})
	if err != nil {
		return store.Token{}, fmt.Errorf("create token %q: %w", t.Description, translate(err))
	}
	return t, nil
}

// LookupToken returns the HTTP token whose hash is hash, expired or not,
// or store.ErrNotFound.
func (s *Store) LookupToken(ctx context.Context, hash string) (store.Token, error) {
	t, err := one(ctx, s, scanToken, lookupTokenSQL, hash)
	if err != nil {
		return store.Token{}, fmt.Errorf("look up token: %w", translate(err))
	}
	return t, nil
}

// LookupAccessKey returns the S3 key with the given access key ID, expired
// or not, or store.ErrNotFound.
func (s *Store) LookupAccessKey(ctx context.Context, id string) (store.Token, error) {
	t, err := one(ctx, s, scanToken, lookupAccessKeySQL, id)
	if err != nil {
		return store.Token{}, fmt.Errorf("look up access key %q: %w", id, translate(err))
	}
	return t, nil
}

// ListTokens returns every token, ordered by ID.
func (s *Store) ListTokens(ctx context.Context) ([]store.Token, error) {
	list, err := collect(ctx, s, scanToken, tokenSQL+` ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", translate(err))
	}
	return list, nil
}

// DeleteToken removes the token with the given ID, or returns
// store.ErrNotFound.
func (s *Store) DeleteToken(ctx context.Context, id int64) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM tokens WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if err := checkRowAffected(tag.RowsAffected()); err != nil {
			return err
		}
		return s.notify(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("delete token %d: %w", id, translate(err))
	}
	return nil
}

package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/larder-cache/larder/internal/store"
)

const cacheSQL = `SELECT id, name, private, priority, secret_key, public_key, created_at FROM caches`

// scanCache reads a row of cacheSQL.
func scanCache(sc scanner) (store.Cache, error) {
	var c store.Cache
	var created int64
	err := sc.Scan(&c.ID, &c.Name, &c.Private, &c.Priority, &c.SecretKey, &c.PublicKey, &created)
	c.CreatedAt = fromUnix(created)
	return c, err
}

// CreateCache adds c with a new ID and the current time and returns it as
// stored, or store.ErrExists if the name is taken.
func (s *Store) CreateCache(ctx context.Context, c store.Cache) (store.Cache, error) {
	c.CreatedAt = now()
	err := s.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `
			INSERT INTO caches (name, private, priority, secret_key, public_key, created_at)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
			c.Name, c.Private, c.Priority, c.SecretKey, c.PublicKey, c.CreatedAt.Unix(),
		).Scan(&c.ID)
	})
	if err != nil {
		return store.Cache{}, fmt.Errorf("create cache %s: %w", c.Name, translate(err))
	}
	return c, nil
}

// GetCache returns the cache called name, or store.ErrNotFound.
func (s *Store) GetCache(ctx context.Context, name string) (store.Cache, error) {
	c, err := scanCache(s.r.QueryRowContext(ctx, cacheSQL+` WHERE name = ?`, name))
	if err != nil {
		return store.Cache{}, fmt.Errorf("get cache %s: %w", name, translate(err))
	}
	return c, nil
}

// ListCaches returns every cache, ordered by name.
func (s *Store) ListCaches(ctx context.Context) ([]store.Cache, error) {
	rows, err := s.r.QueryContext(ctx, cacheSQL+` ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list caches: %w", err)
	}
	defer rows.Close()
	var list []store.Cache
	for rows.Next() {
		c, err := scanCache(rows)
		if err != nil {
			return nil, fmt.Errorf("list caches: %w", err)
		}
		list = append(list, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list caches: %w", err)
	}
	return list, nil
}

// DeleteCache removes the cache called name. Foreign keys cascade the
// delete to its tokens, NAR links, narinfos and file records; Nar records
// stay.
func (s *Store) DeleteCache(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM caches WHERE name = ?`, name)
		if err != nil {
			return err
		}
		return checkRowAffected(res)
	})
	if err != nil {
		return fmt.Errorf("delete cache %s: %w", name, translate(err))
	}
	return nil
}

// cacheName returns the name of the cache with the given ID, or
// store.ErrNotFound.
func cacheName(ctx context.Context, tx *sql.Tx, id int64) (string, error) {
	var name string
	err := tx.QueryRowContext(ctx, `SELECT name FROM caches WHERE id = ?`, id).Scan(&name)
	if err != nil {
		return "", fmt.Errorf("cache %d: %w", id, translate(err))
	}
	return name, nil
}

const tokenSQL = `
	SELECT t.id, t.hash, coalesce(t.cache_id, 0), coalesce(c.name, ''), t.perm,
		t.description, t.created_at, t.expires_at
	FROM tokens t LEFT JOIN caches c ON c.id = t.cache_id`

// scanToken reads a row of tokenSQL.
func scanToken(sc scanner) (store.Token, error) {
	var t store.Token
	var created int64
	var expires sql.NullInt64
	err := sc.Scan(&t.ID, &t.Hash, &t.CacheID, &t.CacheName, &t.Perm,
		&t.Description, &created, &expires)
	t.CreatedAt = fromUnix(created)
	if expires.Valid {
		t.ExpiresAt = fromUnix(expires.Int64)
	}
	return t, err
}

// CreateToken adds t with a new ID and the current time and returns it as
// stored. It returns store.ErrExists if the hash is taken and
// store.ErrNotFound if t.CacheID names no cache.
func (s *Store) CreateToken(ctx context.Context, t store.Token) (store.Token, error) {
	t.CreatedAt, t.CacheName = now(), ""
	scope := sql.NullInt64{Int64: t.CacheID, Valid: t.CacheID != 0}
	var expires sql.NullInt64
	if !t.ExpiresAt.IsZero() {
		t.ExpiresAt = fromUnix(t.ExpiresAt.Unix())
		expires = sql.NullInt64{Int64: t.ExpiresAt.Unix(), Valid: true}
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if scope.Valid {
			name, err := cacheName(ctx, tx, t.CacheID)
			if err != nil {
				return err
			}
			t.CacheName = name
		}
		return tx.QueryRowContext(ctx, `
			INSERT INTO tokens (hash, cache_id, perm, description, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
			t.Hash, scope, string(t.Perm), t.Description, t.CreatedAt.Unix(), expires,
		).Scan(&t.ID)
	})
	if err != nil {
		return store.Token{}, fmt.Errorf("create token %q: %w", t.Description, translate(err))
	}
	return t, nil
}

// LookupToken returns the token whose hash is hash, expired or not, or
// store.ErrNotFound.
func (s *Store) LookupToken(ctx context.Context, hash string) (store.Token, error) {
	t, err := scanToken(s.lookupToken.QueryRowContext(ctx, hash))
	if err != nil {
		return store.Token{}, fmt.Errorf("look up token: %w", translate(err))
	}
	return t, nil
}

// ListTokens returns every token, ordered by ID.
func (s *Store) ListTokens(ctx context.Context) ([]store.Token, error) {
	rows, err := s.r.QueryContext(ctx, tokenSQL+` ORDER BY t.id`)
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

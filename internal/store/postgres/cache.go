package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

const cacheSQL = `SELECT id, name, private, priority, secret_key, public_key, created_at,
	retention, max_size, last_gc FROM caches`

// scanCache reads a row of cacheSQL.
func scanCache(row pgx.CollectableRow) (store.Cache, error) {
	var c store.Cache
	var retention int64
	var lastGC *time.Time
	err := row.Scan(&c.ID, &c.Name, &c.Private, &c.Priority, &c.SecretKey, &c.PublicKey, &c.CreatedAt,
		&retention, &c.Policy.MaxSize, &lastGC)
	c.CreatedAt = c.CreatedAt.UTC()
	c.Policy.Retention = time.Duration(retention) * time.Second
	if lastGC != nil {
		c.LastGC = lastGC.UTC()
	}
	return c, err
}

// CreateCache adds c with a new ID, the current time and its policy, never
// collected, and returns it as stored, or store.ErrExists if the name is
// taken.
func (s *Store) CreateCache(ctx context.Context, c store.Cache) (store.Cache, error) {
	c.CreatedAt, c.LastGC = now(), time.Time{}
	c.Policy.Retention = c.Policy.Retention.Truncate(time.Second)
	err := s.tx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			INSERT INTO caches (name, private, priority, secret_key, public_key, created_at, retention, max_size)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			c.Name, c.Private, c.Priority, c.SecretKey, c.PublicKey, c.CreatedAt,
			int64(c.Policy.Retention/time.Second), c.Policy.MaxSize,
		).Scan(&c.ID)
		if err != nil {
			return err
		}
		return s.notify(ctx, tx)
	})
	if err != nil {
		return store.Cache{}, fmt.Errorf("create cache %s: %w", c.Name, translate(err))
	}
	return c, nil
}

// GetCache returns the cache called name, or store.ErrNotFound.
func (s *Store) GetCache(ctx context.Context, name string) (store.Cache, error) {
	c, err := one(ctx, s, scanCache, cacheSQL+` WHERE name = $1`, name)
	if err != nil {
		return store.Cache{}, fmt.Errorf("get cache %s: %w", name, translate(err))
	}
	return c, nil
}

// ListCaches returns every cache, ordered by name.
func (s *Store) ListCaches(ctx context.Context) ([]store.Cache, error) {
	list, err := collect(ctx, s, scanCache, cacheSQL+` ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list caches: %w", translate(err))
	}
	return list, nil
}

// DeleteCache removes the cache called name and the tokens whose scope is
// exactly its name. Foreign keys cascade the delete to its NAR links,
// narinfos, object records, held narinfos and uploads with their parts; Nar
// records stay.
func (s *Store) DeleteCache(ctx context.Context, name string) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM caches WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if err := checkRowAffected(tag.RowsAffected()); err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, `DELETE FROM tokens WHERE scope = $1`, name); err != nil {
			return err
		}
		return s.notify(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("delete cache %s: %w", name, translate(err))
	}
	return nil
}

package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

const cacheSQL = `SELECT id, name, private, priority, secret_key, public_key, created_at,
	retention, max_size, last_gc, upstreams, upstream_skip, upstream_pull FROM caches`

// scanCache reads a row of cacheSQL.
func scanCache(row pgx.CollectableRow) (store.Cache, error) {
	var c store.Cache
	var retention int64
	var lastGC *time.Time
	var ups []byte
	err := row.Scan(&c.ID, &c.Name, &c.Private, &c.Priority, &c.SecretKey, &c.PublicKey, &c.CreatedAt,
		&retention, &c.Policy.MaxSize, &lastGC, &ups, &c.Upstream.Skip, &c.Upstream.PullThrough)
	if err != nil {
		return store.Cache{}, err
	}
	c.CreatedAt = c.CreatedAt.UTC()
	c.Policy.Retention = time.Duration(retention) * time.Second
	if lastGC != nil {
		c.LastGC = lastGC.UTC()
	}
	if c.Upstream.Upstreams, err = decodeUpstreams(ups); err != nil {
		return store.Cache{}, fmt.Errorf("decode upstreams of cache %s: %w", c.Name, err)
	}
	return c, nil
}

// CreateCache adds c with a new ID, the current time, its policy and its
// upstreams, never collected, and returns it as stored, or
// store.ErrExists if the name is taken.
func (s *Store) CreateCache(ctx context.Context, c store.Cache) (store.Cache, error) {
	c.CreatedAt, c.LastGC = now(), time.Time{}
	c.Policy.Retention = c.Policy.Retention.Truncate(time.Second)
	ups, err := encodeUpstreams(c.Upstream.Upstreams)
	if err != nil {
		return store.Cache{}, fmt.Errorf("create cache %s: %w", c.Name, err)
	}
	err = s.tx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			INSERT INTO caches (name, private, priority, secret_key, public_key, created_at, retention, max_size,
				upstreams, upstream_skip, upstream_pull)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
			c.Name, c.Private, c.Priority, c.SecretKey, c.PublicKey, c.CreatedAt,
			int64(c.Policy.Retention/time.Second), c.Policy.MaxSize, ups, c.Upstream.Skip, c.Upstream.PullThrough,
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

// SetUpstream sets the upstream configuration of the cache, or returns
// store.ErrNotFound.
func (s *Store) SetUpstream(ctx context.Context, cacheID int64, u store.UpstreamConfig) error {
	ups, err := encodeUpstreams(u.Upstreams)
	if err != nil {
		return fmt.Errorf("set upstreams of cache %d: %w", cacheID, err)
	}
	err = s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE caches SET upstreams = $2, upstream_skip = $3, upstream_pull = $4 WHERE id = $1`,
			cacheID, ups, u.Skip, u.PullThrough)
		if err != nil {
			return err
		}
		if err := checkRowAffected(tag.RowsAffected()); err != nil {
			return err
		}
		return s.notify(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("set upstreams of cache %d: %w", cacheID, translate(err))
	}
	return nil
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

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

const cacheSQL = `SELECT id, name, private, priority, secret_key, public_key, created_at,
	retention, max_size, last_gc, upstreams, upstream_skip, upstream_pull FROM caches`

// scanCache reads a row of cacheSQL.
func scanCache(sc scanner) (store.Cache, error) {
	var c store.Cache
	var created, retention int64
	var lastGC sql.NullInt64
	var ups []byte
	err := sc.Scan(&c.ID, &c.Name, &c.Private, &c.Priority, &c.SecretKey, &c.PublicKey, &created,
		&retention, &c.Policy.MaxSize, &lastGC, &ups, &c.Upstream.Skip, &c.Upstream.PullThrough)
	if err != nil {
		return store.Cache{}, err
	}
	c.CreatedAt = fromUnix(created)
	c.Policy.Retention = time.Duration(retention) * time.Second
	if lastGC.Valid {
		c.LastGC = fromUnix(lastGC.Int64)
	}
	if c.Upstream.Upstreams, err = decodeUpstreams(ups); err != nil {
		return store.Cache{}, fmt.Errorf("decode upstreams of cache %s: %w", c.Name, err)
	}
	return c, nil
}

// CreateCache adds c with a new ID, the current time and its policy, never
// collected, and returns it as stored, or store.ErrExists if the name is
// taken.
func (s *Store) CreateCache(ctx context.Context, c store.Cache) (store.Cache, error) {
	c.CreatedAt, c.LastGC = now(), time.Time{}
	c.Policy.Retention = c.Policy.Retention.Truncate(time.Second)
	ups, err := encodeUpstreams(c.Upstream.Upstreams)
	if err != nil {
		return store.Cache{}, fmt.Errorf("create cache %s: %w", c.Name, err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `
			INSERT INTO caches (name, private, priority, secret_key, public_key, created_at, retention, max_size,
				upstreams, upstream_skip, upstream_pull)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			c.Name, c.Private, c.Priority, c.SecretKey, c.PublicKey, c.CreatedAt.Unix(),
			int64(c.Policy.Retention/time.Second), c.Policy.MaxSize, ups, c.Upstream.Skip, c.Upstream.PullThrough,
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

// SetUpstream sets the upstream configuration of the cache, or returns
// store.ErrNotFound.
func (s *Store) SetUpstream(ctx context.Context, cacheID int64, u store.UpstreamConfig) error {
	ups, err := encodeUpstreams(u.Upstreams)
	if err != nil {
		return fmt.Errorf("set upstreams of cache %d: %w", cacheID, err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE caches SET upstreams = ?, upstream_skip = ?, upstream_pull = ? WHERE id = ?`,
			ups, u.Skip, u.PullThrough, cacheID)
		if err != nil {
			return err
		}
		return checkRowAffected(res)
	})
	if err != nil {
		return fmt.Errorf("set upstreams of cache %d: %w", cacheID, translate(err))
	}
	return nil
}

// DeleteCache removes the cache called name and the tokens whose scope is
// exactly its name. Foreign keys cascade the delete to its NAR links,
// narinfos, object records, held narinfos and uploads with their parts; Nar
// records stay.
func (s *Store) DeleteCache(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM caches WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if err := checkRowAffected(res); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM tokens WHERE scope = ?`, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete cache %s: %w", name, translate(err))
	}
	return nil
}

// cacheExists returns store.ErrNotFound unless the cache with the given ID
// exists.
func cacheExists(ctx context.Context, tx *sql.Tx, id int64) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM caches WHERE id = ?`, id).Scan(&one)
	if err != nil {
		return fmt.Errorf("cache %d: %w", id, translate(err))
	}
	return nil
}

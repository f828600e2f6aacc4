package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// AddPin records the pin revision p, replacing one with the same cache,
// name and hash, and sets the rule of its name, in one transaction. An
// empty Name is taken to be the Hash; a zero CreatedAt is set to the
// current time. It returns store.ErrNotFound if the cache does not exist.
func (s *Store) AddPin(ctx context.Context, p store.Pin, rule store.PinRule) error {
	if p.Name == "" {
		p.Name = p.Hash
	}
	created := orNow(p.CreatedAt).Unix()
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := cacheExists(ctx, tx, p.CacheID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO pins (cache_id, name, hash, store_path, created_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (cache_id, name, hash) DO UPDATE SET
				store_path = excluded.store_path, created_at = excluded.created_at`,
			p.CacheID, p.Name, p.Hash, p.StorePath, created)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO pin_rules (cache_id, name, keep_revisions, keep_for)
			VALUES (?, ?, ?, ?) ON CONFLICT (cache_id, name) DO UPDATE SET
				keep_revisions = excluded.keep_revisions, keep_for = excluded.keep_for`,
			p.CacheID, p.Name, rule.KeepRevisions, int64(rule.KeepFor/time.Second))
		return err
	})
	if err != nil {
		return fmt.Errorf("add pin %s of cache %d: %w", p.Name, p.CacheID, translate(err))
	}
	return nil
}

// ListPins returns the pins of the cache ordered by name, then newest
// first (then by hash), with the rule of each name, from one snapshot. An
// unknown cache has none.
func (s *Store) ListPins(ctx context.Context, cacheID int64) ([]store.Pin, map[string]store.PinRule, error) {
	pins, rules, err := s.listPins(ctx, cacheID)
	if err != nil {
		return nil, nil, fmt.Errorf("list pins of cache %d: %w", cacheID, err)
	}
	return pins, rules, nil
}

// listPins does the work of ListPins.
func (s *Store) listPins(ctx context.Context, cacheID int64) ([]store.Pin, map[string]store.PinRule, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT name, hash, store_path, created_at FROM pins
		WHERE cache_id = ? ORDER BY name, created_at DESC, hash`, cacheID)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var pins []store.Pin
	for rows.Next() {
		p := store.Pin{CacheID: cacheID}
		var created int64
		if err := rows.Scan(&p.Name, &p.Hash, &p.StorePath, &created); err != nil {
			return nil, nil, err
		}
		p.CreatedAt = fromUnix(created)
		pins = append(pins, p)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	rows, err = tx.QueryContext(ctx, `SELECT name, keep_revisions, keep_for FROM pin_rules WHERE cache_id = ?`, cacheID)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	rules := map[string]store.PinRule{}
	for rows.Next() {
		var name string
		var r store.PinRule
		var keepFor int64
		if err := rows.Scan(&name, &r.KeepRevisions, &keepFor); err != nil {
			return nil, nil, err
		}
		r.KeepFor = time.Duration(keepFor) * time.Second
		rules[name] = r
	}
	return pins, rules, rows.Err()
}

// DeletePins removes the revisions of the named pin, all of them when hash
// is "", and the rule of the name once no revision is left, or returns
// store.ErrNotFound if there were none.
func (s *Store) DeletePins(ctx context.Context, cacheID int64, name, hash string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM pins WHERE cache_id = ?1 AND name = ?2 AND (?3 = '' OR hash = ?3)`,
			cacheID, name, hash)
		if err != nil {
			return err
		}
		if err := checkRowAffected(res); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM pin_rules WHERE cache_id = ?1 AND name = ?2
			AND NOT EXISTS (SELECT 1 FROM pins WHERE cache_id = ?1 AND name = ?2)`, cacheID, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete pin %s of cache %d: %w", name, cacheID, translate(err))
	}
	return nil
}

package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

// AddPin records the pin revision p, replacing one with the same cache,
// name and hash, and sets the rule of its name, in one transaction. An
// empty Name is taken to be the Hash; a zero CreatedAt is set to the
// current time. It returns store.ErrNotFound if the cache does not exist
// (the foreign key says so).
func (s *Store) AddPin(ctx context.Context, p store.Pin, rule store.PinRule) error {
	if p.Name == "" {
		p.Name = p.Hash
	}
	created := orNow(p.CreatedAt)
	err := s.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO pins (cache_id, name, hash, store_path, created_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (cache_id, name, hash) DO UPDATE SET
				store_path = excluded.store_path, created_at = excluded.created_at`,
			p.CacheID, p.Name, p.Hash, p.StorePath, created)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO pin_rules (cache_id, name, keep_revisions, keep_for)
			VALUES ($1, $2, $3, $4) ON CONFLICT (cache_id, name) DO UPDATE SET
				keep_revisions = excluded.keep_revisions, keep_for = excluded.keep_for`,
			p.CacheID, p.Name, rule.KeepRevisions, int64(rule.KeepFor/time.Second))
		return err
	})
	if err != nil {
		return fmt.Errorf("add pin %s of cache %d: %w", p.Name, p.CacheID, translate(err))
	}
	return nil
}

// pinRow is a pin with the rule of its name, as ListPins reads them.
type pinRow struct {
	pin  store.Pin
	rule store.PinRule
}

// ListPins returns the pins of the cache ordered by name, then newest
// first (then by hash), with the rule of each name, in one query. An
// unknown cache has none.
func (s *Store) ListPins(ctx context.Context, cacheID int64) ([]store.Pin, map[string]store.PinRule, error) {
	rows, err := collect(ctx, s, func(row pgx.CollectableRow) (pinRow, error) {
		r := pinRow{pin: store.Pin{CacheID: cacheID}}
		var keepFor int64
		err := row.Scan(&r.pin.Name, &r.pin.Hash, &r.pin.StorePath, &r.pin.CreatedAt, &r.rule.KeepRevisions, &keepFor)
		r.pin.CreatedAt, r.rule.KeepFor = r.pin.CreatedAt.UTC(), time.Duration(keepFor)*time.Second
		return r, err
	}, `SELECT p.name, p.hash, p.store_path, p.created_at, coalesce(r.keep_revisions, 0), coalesce(r.keep_for, 0)
		FROM pins p LEFT JOIN pin_rules r ON r.cache_id = p.cache_id AND r.name = p.name
		WHERE p.cache_id = $1 ORDER BY p.name, p.created_at DESC, p.hash`, cacheID)
	if err != nil {
		return nil, nil, fmt.Errorf("list pins of cache %d: %w", cacheID, translate(err))
	}
	var pins []store.Pin
	rules := map[string]store.PinRule{}
	for _, r := range rows {
		pins = append(pins, r.pin)
		rules[r.pin.Name] = r.rule
	}
	return pins, rules, nil
}

// DeletePins removes the revisions of the named pin, all of them when hash
// is "", and the rule of the name once no revision is left, or returns
// store.ErrNotFound if there were none.
func (s *Store) DeletePins(ctx context.Context, cacheID int64, name, hash string) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM pins WHERE cache_id = $1 AND name = $2 AND ($3 = '' OR hash = $3)`,
			cacheID, name, hash)
		if err != nil {
			return err
		}
		if err := checkRowAffected(tag.RowsAffected()); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM pin_rules WHERE cache_id = $1 AND name = $2
			AND NOT EXISTS (SELECT 1 FROM pins WHERE cache_id = $1 AND name = $2)`, cacheID, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete pin %s of cache %d: %w", name, cacheID, translate(err))
	}
	return nil
}

package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// unheldSQL selects, of the blob keys $1, those no record names (each a
// lookup on the blob_key index of nars, objects or parts, or on the key of
// packs).
const unheldSQL = `SELECT k FROM unnest($1::text[]) AS k WHERE
	NOT EXISTS (SELECT 1 FROM nars WHERE blob_key = k) AND
	NOT EXISTS (SELECT 1 FROM packs WHERE key = k) AND
	NOT EXISTS (SELECT 1 FROM objects WHERE blob_key = k) AND
	NOT EXISTS (SELECT 1 FROM parts WHERE blob_key = k)`

// OrphanBlobs forgets the orphans among keys that a record now names, notes
// the others as seen at at, and returns those of them first seen before
// before, in one transaction (in a dry run, without writing).
func (s *Store) OrphanBlobs(ctx context.Context, keys []string, at, before time.Time, dryRun bool) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	cutoff := secondsBefore(before)
	var old []string
	var err error
	if dryRun {
		old, err = collect(ctx, s, pgx.RowTo[string], `SELECT o.blob_key FROM orphan_blobs o
			WHERE o.blob_key IN (`+unheldSQL+`) AND o.first_seen < $2`, keys, cutoff)
	} else {
		err = s.tx(ctx, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM orphan_blobs WHERE blob_key = ANY($1)
				AND blob_key NOT IN (`+unheldSQL+`)`, keys)
			if err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `INSERT INTO orphan_blobs (blob_key, first_seen, last_seen)
				SELECT k, $2, $2 FROM (`+unheldSQL+`) AS u (k)
				ON CONFLICT (blob_key) DO UPDATE SET last_seen = excluded.last_seen
				RETURNING blob_key, first_seen < $3`, keys, time.Unix(at.Unix(), 0).UTC(), cutoff)
			if err != nil {
				return err
			}
			old = old[:0]
			var key string
			var first bool
			_, err = pgx.ForEachRow(rows, []any{&key, &first}, func() error {
				if first {
					old = append(old, key)
				}
				return nil
			})
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("orphan blobs: %w", translate(err))
	}
	return old, nil
}

// PruneOrphans forgets the orphans last seen before before.
func (s *Store) PruneOrphans(ctx context.Context, before time.Time) error {
	if _, err := s.exec(ctx, `DELETE FROM orphan_blobs WHERE last_seen < $1`, time.Unix(before.Unix(), 0).UTC()); err != nil {
		return fmt.Errorf("prune orphan blobs: %w", translate(err))
	}
	return nil
}

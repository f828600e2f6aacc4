package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// heldSQL selects, of the JSON array of blob keys ?1, those a record names:
// each a lookup on the blob_key index of nars, objects or parts, or on the
// key of packs.
const heldSQL = `SELECT k.value FROM json_each(?1) k WHERE
	EXISTS (SELECT 1 FROM nars WHERE blob_key = k.value) OR
	EXISTS (SELECT 1 FROM packs WHERE key = k.value) OR
	EXISTS (SELECT 1 FROM objects WHERE blob_key = k.value) OR
	EXISTS (SELECT 1 FROM parts WHERE blob_key = k.value)`

// OrphanBlobs forgets the orphans among keys that a record now names, notes
// the others as seen at at, and returns those of them first seen before
// before, in one transaction (in a dry run, without writing).
func (s *Store) OrphanBlobs(ctx context.Context, keys []string, at, before time.Time, dryRun bool) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	list, err := encodeList(keys)
	if err != nil {
		return nil, fmt.Errorf("orphan blobs: %w", err)
	}
	// The keys no record names, with their first sighting if any.
	const unheld = `SELECT k.value AS key, o.first_seen FROM json_each(?1) k
		LEFT JOIN orphan_blobs o ON o.blob_key = k.value
		WHERE k.value NOT IN (` + heldSQL + `)`
	var old []string
	cutoff := secondsBefore(before)
	if dryRun {
		rows, err := s.r.QueryContext(ctx, `SELECT key FROM (`+unheld+`) WHERE first_seen < ?2`, list, cutoff)
		if err == nil {
			old, err = scanStrings(rows)
		}
		if err != nil {
			return nil, fmt.Errorf("orphan blobs: %w", err)
		}
		return old, nil
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM orphan_blobs WHERE blob_key IN (`+heldSQL+`)`, list)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `INSERT INTO orphan_blobs (blob_key, first_seen, last_seen)
			SELECT key, ?2, ?2 FROM (`+unheld+`) WHERE true
			ON CONFLICT (blob_key) DO UPDATE SET last_seen = excluded.last_seen
			RETURNING blob_key, first_seen`, list, at.Unix())
		if err != nil {
			return err
		}
		defer rows.Close()
		old = old[:0]
		for rows.Next() {
			var key string
			var first int64
			if err := rows.Scan(&key, &first); err != nil {
				return err
			}
			if first < cutoff {
				old = append(old, key)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("orphan blobs: %w", err)
	}
	return old, nil
}

// PruneOrphans forgets the orphans last seen before before.
func (s *Store) PruneOrphans(ctx context.Context, before time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM orphan_blobs WHERE last_seen < ?`, before.Unix())
		return err
	})
	if err != nil {
		return fmt.Errorf("prune orphan blobs: %w", err)
	}
	return nil
}

package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

// SetPolicy sets the policy of the cache, Retention cut to whole seconds,
// or returns store.ErrNotFound.
func (s *Store) SetPolicy(ctx context.Context, cacheID int64, p store.Policy) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE caches SET retention = $2, max_size = $3 WHERE id = $1`,
			cacheID, int64(p.Retention/time.Second), p.MaxSize)
		if err != nil {
			return err
		}
		if err := checkRowAffected(tag.RowsAffected()); err != nil {
			return err
		}
		return s.notify(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("set policy of cache %d: %w", cacheID, translate(err))
	}
	return nil
}

// Touch records that the narinfos of the cache with the given hashes were
// read at t, kept to the second, keeping the later time, in one statement.
// The index scan visits the hashes in order, so concurrent touches lock
// rows in one order. Unknown hashes, and an unknown cache, are ignored.
func (s *Store) Touch(ctx context.Context, cacheID int64, hashes []string, t time.Time) error {
	if len(hashes) == 0 {
		return nil
	}
	at := time.Unix(t.Unix(), 0).UTC()
	_, err := s.exec(ctx, `UPDATE narinfos SET last_access = $3
		WHERE cache_id = $1 AND hash = ANY($2) AND (last_access IS NULL OR last_access < $3)`, cacheID, hashes, at)
	if err != nil {
		return fmt.Errorf("touch narinfos of cache %d: %w", cacheID, translate(err))
	}
	return nil
}

// TouchNars records reads of the NAR files with the given file hashes as
// reads of the narinfos of the cache that serve them, keeping later times.
func (s *Store) TouchNars(ctx context.Context, cacheID int64, fileHashes []string, t time.Time) error {
	if len(fileHashes) == 0 {
		return nil
	}
	at := time.Unix(t.Unix(), 0).UTC()
	_, err := s.exec(ctx, `UPDATE narinfos SET last_access = $3
		WHERE nar_id IN (SELECT id FROM nars WHERE file_hash = ANY($2))
		AND cache_id = $1 AND (last_access IS NULL OR last_access < $3)`, cacheID, fileHashes, at)
	if err != nil {
		return fmt.Errorf("touch nars of cache %d: %w", cacheID, translate(err))
	}
	return nil
}

// usageSQL counts the narinfos of cache $1 on their (cache_id, hash) index
// and adds the sizes of the NAR files they serve, each once, as the links
// of the cache (its primary key) for which a narinfo of the cache serves
// the NAR (the narinfos_nar_id index). It has no row if there is no such
// cache.
const usageSQL = `SELECT
	(SELECT count(*) FROM narinfos WHERE cache_id = $1),
	(SELECT coalesce(sum(n.file_size), 0)::bigint FROM cache_nars cn JOIN nars n ON n.id = cn.nar_id
		WHERE cn.cache_id = $1 AND EXISTS (
			SELECT 1 FROM narinfos ni WHERE ni.nar_id = cn.nar_id AND ni.cache_id = $1))
	FROM caches WHERE id = $1`

// Usage returns the number of narinfos of the cache and the bytes of the
// NAR files they serve, each file once, or store.ErrNotFound if there is
// no such cache.
func (s *Store) Usage(ctx context.Context, cacheID int64) (paths, bytes int64, err error) {
	u, err := one(ctx, s, func(row pgx.CollectableRow) ([2]int64, error) {
		var u [2]int64
		err := row.Scan(&u[0], &u[1])
		return u, err
	}, usageSQL, cacheID)
	if err != nil {
		return 0, 0, fmt.Errorf("usage of cache %d: %w", cacheID, translate(err))
	}
	return u[0], u[1], nil
}

// unusedNarsSQL selects the IDs of up to $2 Nars no cache links to,
// created before $1 and claimed by no upload now, oldest first.
const unusedNarsSQL = `SELECT n.id FROM nars n WHERE n.created_at < $1 AND n.claimed_until <= clock_timestamp()
	AND NOT EXISTS (SELECT 1 FROM cache_nars cn WHERE cn.nar_id = n.id)
	ORDER BY n.created_at, n.file_hash LIMIT $2`

// UnusedNars removes, unless dryRun, and returns up to limit Nar records
// that no cache links to, that were created before before and that no
// upload claims now, ordered by
// creation and file hash. A record kept to the second is before before if
// its second starts before it.
//
// The Nars are locked, skipping those that a transaction linking them
// holds, and checked again, in a statement of their own, before they are
// removed: a link committed in between is seen, and no link or claim can
// be made once they are locked.
func (s *Store) UnusedNars(ctx context.Context, before time.Time, limit int, dryRun bool) ([]store.Nar, error) {
	if limit <= 0 {
		return nil, nil
	}
	cutoff := secondsBefore(before)
	var list []store.Nar
	var err error
	if dryRun {
		list, err = collect(ctx, s, scanNar, `SELECT `+narColumns+` FROM nars n WHERE n.id IN (`+unusedNarsSQL+`)
			ORDER BY n.created_at, n.file_hash`, cutoff, limit)
	} else {
		err = s.tx(ctx, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, unusedNarsSQL+` FOR UPDATE SKIP LOCKED`, cutoff, limit)
			if err != nil {
				return err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				return err
			}
			rows, err = tx.Query(ctx, `WITH gone AS (DELETE FROM nars n WHERE n.id = ANY($1)
					AND NOT EXISTS (SELECT 1 FROM cache_nars cn WHERE cn.nar_id = n.id) RETURNING n.*)
				SELECT `+narColumns+` FROM gone n ORDER BY n.created_at, n.file_hash`, ids)
			if err != nil {
				return err
			}
			list, err = pgx.CollectRows(rows, scanNar)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("unused nars created before %v: %w", before, translate(err))
	}
	return list, nil
}

// secondsBefore returns the time below which a time kept to the second is
// before t: t, or the next second if t is within one.
func secondsBefore(t time.Time) time.Time {
	cutoff := time.Unix(t.Unix(), 0).UTC()
	if t.Nanosecond() > 0 {
		cutoff = cutoff.Add(time.Second)
	}
	return cutoff
}

// StaleUploads returns up to limit multipart uploads created before
// before, in every cache, ordered by creation and ID.
func (s *Store) StaleUploads(ctx context.Context, before time.Time, limit int) ([]store.Upload, error) {
	if limit <= 0 {
		return nil, nil
	}
	list, err := collect(ctx, s, scanUpload, `SELECT `+uploadColumns+` FROM uploads
		WHERE created_at < $1 ORDER BY created_at, id LIMIT $2`, secondsBefore(before), limit)
	if err != nil {
		return nil, fmt.Errorf("uploads created before %v: %w", before, translate(err))
	}
	return list, nil
}

// TryLease takes the named lease for holder until ttl from now if it is
// free, expired or held by holder already, in one upsert, and reports
// whether it did. The times are the server's, which every process sharing
// the database shares.
func (s *Store) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	took, err := collect(ctx, s, pgx.RowTo[bool], `
		INSERT INTO leases (name, holder, expires_at)
		VALUES ($1, $2, clock_timestamp() + $3::bigint * interval '1 microsecond')
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.expires_at <= clock_timestamp() OR leases.holder = excluded.holder
		RETURNING true`, name, holder, ttl.Microseconds())
	if err != nil {
		return false, fmt.Errorf("take lease %s for %s: %w", name, holder, translate(err))
	}
	return len(took) == 1, nil
}

// LeaseHolder returns the holder of the named lease unless it is free or
// expired.
func (s *Store) LeaseHolder(ctx context.Context, name string) (string, error) {
	holders, err := collect(ctx, s, pgx.RowTo[string], `SELECT holder FROM leases
		WHERE name = $1 AND expires_at > clock_timestamp()`, name)
	if err != nil {
		return "", fmt.Errorf("holder of lease %s: %w", name, translate(err))
	}
	if len(holders) == 0 {
		return "", nil
	}
	return holders[0], nil
}

// ReleaseLease gives up the named lease if holder holds it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder); err != nil {
		return fmt.Errorf("release lease %s of %s: %w", name, holder, translate(err))
	}
	return nil
}

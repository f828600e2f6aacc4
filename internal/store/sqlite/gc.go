package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// SetPolicy sets the policy of the cache, Retention cut to whole seconds,
// or returns store.ErrNotFound.
func (s *Store) SetPolicy(ctx context.Context, cacheID int64, p store.Policy) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE caches SET retention = ?, max_size = ? WHERE id = ?`,
			int64(p.Retention/time.Second), p.MaxSize, cacheID)
		if err != nil {
			return err
		}
		return checkRowAffected(res)
	})
	if err != nil {
		return fmt.Errorf("set policy of cache %d: %w", cacheID, translate(err))
	}
	return nil
}

// Touch records that the narinfos of the cache with the given hashes were
// read at t, kept to the second, keeping the later time, in one statement.
// Unknown hashes, and an unknown cache, are ignored.
func (s *Store) Touch(ctx context.Context, cacheID int64, hashes []string, t time.Time) error {
	if len(hashes) == 0 {
		return nil
	}
	list, err := encodeList(hashes)
	if err != nil {
		return fmt.Errorf("touch narinfos of cache %d: %w", cacheID, err)
	}
	at := t.Unix()
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE narinfos SET last_access = ?3
			WHERE cache_id = ?1 AND hash IN (SELECT value FROM json_each(?2)) AND coalesce(last_access, 0) < ?3`,
			cacheID, list, at)
		return err
	})
	if err != nil {
		return fmt.Errorf("touch narinfos of cache %d: %w", cacheID, err)
	}
	return nil
}

// TouchNars records reads of the NAR files with the given file hashes as
// reads of the narinfos of the cache that serve them, keeping later times.
func (s *Store) TouchNars(ctx context.Context, cacheID int64, fileHashes []string, t time.Time) error {
	if len(fileHashes) == 0 {
		return nil
	}
	list, err := encodeList(fileHashes)
	if err != nil {
		return fmt.Errorf("touch nars of cache %d: %w", cacheID, err)
	}
	at := t.Unix()
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE narinfos SET last_access = ?3
			WHERE nar_id IN (SELECT id FROM nars WHERE file_hash IN (SELECT value FROM json_each(?2)))
			AND cache_id = ?1 AND coalesce(last_access, 0) < ?3`,
			cacheID, list, at)
		return err
	})
	if err != nil {
		return fmt.Errorf("touch nars of cache %d: %w", cacheID, err)
	}
	return nil
}

// usageSQL counts the narinfos of cache ?1 on their (cache_id, hash) index
// and adds the sizes of the NAR files they serve, each once, as the links
// of the cache (its primary key) for which a narinfo of the cache serves
// the NAR (the narinfos_nar_id index).
const usageSQL = `SELECT
	(SELECT count(*) FROM narinfos WHERE cache_id = ?1),
	(SELECT coalesce(sum(n.file_size), 0) FROM cache_nars cn JOIN nars n ON n.id = cn.nar_id
		WHERE cn.cache_id = ?1 AND EXISTS (
			SELECT 1 FROM narinfos ni WHERE ni.nar_id = cn.nar_id AND ni.cache_id = ?1))`

// Usage returns the number of narinfos of the cache and the bytes of the
// NAR files they serve, each file once, or store.ErrNotFound if there is
// no such cache.
func (s *Store) Usage(ctx context.Context, cacheID int64) (paths, bytes int64, err error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, 0, fmt.Errorf("usage of cache %d: %w", cacheID, err)
	}
	defer tx.Rollback()
	var one int
	if err := tx.QueryRowContext(ctx, `SELECT 1 FROM caches WHERE id = ?`, cacheID).Scan(&one); err != nil {
		return 0, 0, fmt.Errorf("usage of cache %d: %w", cacheID, translate(err))
	}
	if err := tx.QueryRowContext(ctx, usageSQL, cacheID).Scan(&paths, &bytes); err != nil {
		return 0, 0, fmt.Errorf("usage of cache %d: %w", cacheID, err)
	}
	return paths, bytes, nil
}

// UnusedNars removes, unless dryRun, and returns up to limit Nar records
// that no cache links to, that were created before before and that no
// upload claims now, ordered by
// creation and file hash. A record kept to the second is before before if
// its second starts before it. Writes are serialised, so no link can be
// made to a Nar between the check and the removal.
func (s *Store) UnusedNars(ctx context.Context, before time.Time, limit int, dryRun bool) ([]store.Nar, error) {
	if limit <= 0 {
		return nil, nil
	}
	const unused = `SELECT n.id FROM nars n WHERE n.created_at < ?1 AND n.claimed_until <= ?3
		AND NOT EXISTS (SELECT 1 FROM cache_nars cn WHERE cn.nar_id = n.id)
		ORDER BY n.created_at, n.file_hash LIMIT ?2`
	var list []store.Nar
	read := func(q interface {
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	}, query string) error {
		rows, err := q.QueryContext(ctx, query, secondsBefore(before), limit, time.Now().Unix())
		if err != nil {
			return err
		}
		list, err = scanNars(rows)
		return err
	}
	var err error
	if dryRun {
		err = read(s.r, `SELECT `+narColumns+` FROM nars n WHERE n.id IN (`+unused+`)`)
	} else {
		err = s.write(ctx, func(tx *sql.Tx) error {
			// RETURNING names columns without a table.
			return read(tx, `DELETE FROM nars WHERE id IN (`+unused+`) RETURNING `+narReturning)
		})
	}
	if err != nil {
		return nil, fmt.Errorf("unused nars created before %v: %w", before, err)
	}
	sortNars(list)
	return list, nil
}

// secondsBefore returns the unix second below which a time kept to the
// second is before t: the second of t, or the next one if t is within it.
func secondsBefore(t time.Time) int64 {
	cutoff := t.Unix()
	if t.Nanosecond() > 0 {
		cutoff++
	}
	return cutoff
}

// StaleUploads returns up to limit multipart uploads created before
// before, in every cache, ordered by creation and ID.
func (s *Store) StaleUploads(ctx context.Context, before time.Time, limit int) ([]store.Upload, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+uploadColumns+` FROM uploads
		WHERE created_at < ? ORDER BY created_at, id LIMIT ?`, secondsBefore(before), limit)
	if err != nil {
		return nil, fmt.Errorf("uploads created before %v: %w", before, err)
	}
	defer rows.Close()
	var list []store.Upload
	for rows.Next() {
		u, err := scanUpload(rows)
		if err != nil {
			return nil, fmt.Errorf("uploads created before %v: %w", before, err)
		}
		list = append(list, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("uploads created before %v: %w", before, err)
	}
	return list, nil
}

// TryLease takes the named lease for holder until ttl from now if it is
// free, expired or held by holder already, in one upsert, and reports
// whether it did. Expiries are kept to the millisecond; the clock is this
// host's, which every process sharing the file shares.
func (s *Store) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	var took bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		now := time.Now()
		rows, err := tx.QueryContext(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE leases.expires_at <= ?4 OR leases.holder = excluded.holder
			RETURNING 1`, name, holder, now.Add(ttl).UnixMilli(), now.UnixMilli())
		if err != nil {
			return err
		}
		defer rows.Close()
		took = rows.Next()
		return rows.Err()
	})
	if err != nil {
		return false, fmt.Errorf("take lease %s for %s: %w", name, holder, err)
	}
	return took, nil
}

// LeaseHolder returns the holder of the named lease unless it is free or
// expired.
func (s *Store) LeaseHolder(ctx context.Context, name string) (string, error) {
	var holder string
	err := s.r.QueryRowContext(ctx, `SELECT holder FROM leases WHERE name = ? AND expires_at > ?`,
		name, time.Now().UnixMilli()).Scan(&holder)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("holder of lease %s: %w", name, err)
	}
	return holder, nil
}

// ReleaseLease gives up the named lease if holder holds it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("release lease %s of %s: %w", name, holder, err)
	}
	return nil
}

// scanNars reads and closes rows of narColumns.
func scanNars(rows *sql.Rows) ([]store.Nar, error) {
	defer rows.Close()
	var list []store.Nar
	for rows.Next() {
		n, err := scanNar(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, n)
	}
	return list, rows.Err()
}

// sortNars orders list by creation and file hash.
func sortNars(list []store.Nar) {
	slices.SortFunc(list, func(a, b store.Nar) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.FileHash, b.FileHash))
	})
}

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

const (
	narColumns = `n.file_hash, n.file_size, n.compression, n.nar_hash, n.nar_size, n.md5, n.blob_key, n.created_at, n.missing,
		n.packed_hash, n.packed_size`

	// narReturning is narColumns for RETURNING, which names columns
	// without a table.
	narReturning = `file_hash, file_size, compression, nar_hash, nar_size, md5, blob_key, created_at, missing,
		packed_hash, packed_size`

	narSQL = `SELECT ` + narColumns + ` FROM nars n WHERE n.file_hash = ?`

	// cacheNarSQL finds the Nar by its unique file hash, then the link by
	// the primary key of cache_nars; the time is the link's.
	cacheNarSQL = `SELECT n.file_hash, n.file_size, n.compression, n.nar_hash, n.nar_size, n.md5, n.blob_key, cn.created_at, n.missing,
		n.packed_hash, n.packed_size FROM nars n
		JOIN cache_nars cn ON cn.nar_id = n.id AND cn.cache_id = ?
		WHERE n.file_hash = ?`

	// narInfoColumns are the columns of a narinfo ni but its cache and
	// hash.
	narInfoColumns = `ni.seq, ni.key, ni.store_path, ni.nar_hash, ni.nar_size, ni.refs, ni.deriver, ni.system, ni.ca,
		ni.sigs, ni.created_at, ni.upstream, ni.checked_at`

	// getNarInfoSQL finds the narinfo by its unique (cache_id, hash), then
	// its Nar, if it has one, by primary key; an upstream-only narinfo
	// reads the zero Nar.
	getNarInfoSQL = `SELECT ` + narInfoColumns + `, coalesce(n.file_hash, ''), coalesce(n.file_size, 0),
		coalesce(n.compression, ''), coalesce(n.nar_hash, ''), coalesce(n.nar_size, 0), coalesce(n.md5, ''),
		coalesce(n.blob_key, ''), coalesce(n.created_at, 0), coalesce(n.missing, 0),
		coalesce(n.packed_hash, ''), coalesce(n.packed_size, 0)
		FROM narinfos ni LEFT JOIN nars n ON n.id = ni.nar_id
		WHERE ni.cache_id = ? AND ni.hash = ?`
)

// narDest returns the scan destinations of narColumns for n, with the
// creation time going to created.
func narDest(n *store.Nar, created *int64) []any {
	return []any{&n.FileHash, &n.FileSize, &n.Compression, &n.NarHash, &n.NarSize, &n.MD5, &n.BlobKey, created, &n.Missing,
		&n.PackedHash, &n.PackedSize}
}

// scanNar reads a row of narColumns.
func scanNar(sc scanner) (store.Nar, error) {
	var n store.Nar
	var created int64
	err := sc.Scan(narDest(&n, &created)...)
	n.CreatedAt = fromUnix(created)
	return n, err
}

// GetNar returns the Nar whose file hash is fileHash, or store.ErrNotFound.
func (s *Store) GetNar(ctx context.Context, fileHash string) (store.Nar, error) {
	n, err := scanNar(s.r.QueryRowContext(ctx, narSQL, fileHash))
	if err != nil {
		return store.Nar{}, fmt.Errorf("get nar %s: %w", fileHash, translate(err))
	}
	return n, nil
}

// CacheNar returns the Nar whose file hash is fileHash if it is linked to
// the cache, or store.ErrNotFound.
func (s *Store) CacheNar(ctx context.Context, cacheID int64, fileHash string) (store.Nar, error) {
	n, err := scanNar(s.cacheNar.QueryRowContext(ctx, cacheID, fileHash))
	if err != nil {
		return store.Nar{}, fmt.Errorf("get nar %s of cache %d: %w", fileHash, cacheID, translate(err))
	}
	return n, nil
}

// ClaimNar keeps the Nar from UnusedNars until ttl from now, rounded up to
// the second, unless it is kept longer already, and returns it, or
// store.ErrNotFound if there is none or it is missing. Writes are
// serialised, so UnusedNars either removed the record before, or sees the
// claim. Every process using the file runs on its host, with its clock.
func (s *Store) ClaimNar(ctx context.Context, fileHash string, ttl time.Duration) (store.Nar, error) {
	var n store.Nar
	err := s.write(ctx, func(tx *sql.Tx) error {
		var created int64
		err := tx.QueryRowContext(ctx, `UPDATE nars SET claimed_until = max(claimed_until, ?1)
			WHERE file_hash = ?2 AND missing = 0 RETURNING `+narReturning,
			secondsBefore(time.Now().Add(ttl)), fileHash).Scan(narDest(&n, &created)...)
		n.CreatedAt = fromUnix(created)
		return err
	})
	if err != nil {
		return store.Nar{}, fmt.Errorf("claim nar %s: %w", fileHash, translate(err))
	}
	return n, nil
}

// AddNar records n unless a Nar with its file hash exists (replacing a
// missing one that has another blob key), links the Nar to the cache under
// key or renews its link, and returns it. A zero n.CreatedAt is
// set to the current time. It returns store.ErrNotFound if the cache does
// not exist or the missing Nar has n's blob key, and store.ErrExists if
// another Nar of the cache is linked under key.
func (s *Store) AddNar(ctx context.Context, cacheID int64, n store.Nar, key string) (store.Nar, error) {
	n.CreatedAt = orNow(n.CreatedAt)
	var stored store.Nar
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := cacheExists(ctx, tx, cacheID); err != nil {
			return err
		}
		// A missing record is replaced by a new copy of the bytes; one with
		// the same blob key names bytes that are gone. A packed one loses
		// its chunk list.
		_, err := tx.ExecContext(ctx, `DELETE FROM nar_chunks WHERE nar_id IN (SELECT id FROM nars
			WHERE file_hash = ?1 AND missing = 1 AND blob_key <> ?2)`, n.FileHash, n.BlobKey)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO nars (file_hash, file_size, compression, nar_hash, nar_size, md5, blob_key, created_at)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
			ON CONFLICT (file_hash) DO UPDATE SET file_size = excluded.file_size,
				compression = excluded.compression, nar_hash = excluded.nar_hash, nar_size = excluded.nar_size,
				md5 = excluded.md5, blob_key = excluded.blob_key, created_at = excluded.created_at, missing = 0,
				packed_hash = '', packed_size = 0
			WHERE nars.missing = 1 AND nars.blob_key <> excluded.blob_key`,
			n.FileHash, n.FileSize, n.Compression, n.NarHash, n.NarSize, n.MD5, n.BlobKey, n.CreatedAt.Unix())
		if err != nil {
			return err
		}
		stored, err = linkNar(ctx, tx, cacheID, n.FileHash, key, now().Unix())
		return err
	})
	if err != nil {
		return store.Nar{}, fmt.Errorf("add nar %s to cache %d: %w", n.FileHash, cacheID, translate(err))
	}
	return stored, nil
}

// LinkNar links the Nar with file hash fileHash to the cache under key, or
// renews its link, if the Nar exists and is not missing, and returns it;
// otherwise it returns store.ErrNotFound.
func (s *Store) LinkNar(ctx context.Context, cacheID int64, fileHash, key string) (store.Nar, error) {
	var stored store.Nar
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := cacheExists(ctx, tx, cacheID); err != nil {
			return err
		}
		var err error
		stored, err = linkNar(ctx, tx, cacheID, fileHash, key, now().Unix())
		return err
	})
	if err != nil {
		return store.Nar{}, fmt.Errorf("link nar %s to cache %d: %w", fileHash, cacheID, translate(err))
	}
	return stored, nil
}

// linkNar links the Nar with file hash fileHash, unless it is missing, to
// the cache under key or renews the time of its link to at (a unix
// second), and returns it.
func linkNar(ctx context.Context, tx *sql.Tx, cacheID int64, fileHash, key string, at int64) (store.Nar, error) {
	var stored store.Nar
	var id, created int64
	dest := append([]any{&id}, narDest(&stored, &created)...)
	err := tx.QueryRowContext(ctx, `SELECT n.id, `+narColumns+` FROM nars n WHERE n.file_hash = ? AND n.missing = 0`,
		fileHash).Scan(dest...)
	if err != nil {
		return store.Nar{}, err
	}
	stored.CreatedAt = fromUnix(created)
	// The conflict target keeps the first key of a relinked Nar while a
	// key taken by another Nar remains an error.
	_, err = tx.ExecContext(ctx, `
		INSERT INTO cache_nars (cache_id, nar_id, key, created_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (cache_id, nar_id) DO UPDATE SET created_at = excluded.created_at`, cacheID, id, key, at)
	return stored, err
}

// SetNarMissing sets the missing flag of the Nar with file hash fileHash
// if its blob key is blobKey, or returns store.ErrNotFound.
func (s *Store) SetNarMissing(ctx context.Context, fileHash, blobKey string, missing bool) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE nars SET missing = ? WHERE file_hash = ? AND blob_key = ?`,
			missing, fileHash, blobKey)
		if err != nil {
			return err
		}
		return checkRowAffected(res)
	})
	if err != nil {
		return fmt.Errorf("mark nar %s missing: %w", fileHash, translate(err))
	}
	return nil
}

// ListNars returns up to limit Nars linked to the cache (any cache if
// cacheID is 0) with file hashes after after, in file hash order.
func (s *Store) ListNars(ctx context.Context, cacheID int64, after string, limit int) ([]store.Nar, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+narColumns+` FROM nars n WHERE n.file_hash > ?1
		AND EXISTS (SELECT 1 FROM cache_nars cn WHERE cn.nar_id = n.id AND (?2 = 0 OR cn.cache_id = ?2))
		ORDER BY n.file_hash LIMIT ?3`, after, cacheID, limit)
	if err != nil {
		return nil, fmt.Errorf("list nars of cache %d: %w", cacheID, err)
	}
	list, err := scanNars(rows)
	if err != nil {
		return nil, fmt.Errorf("list nars of cache %d: %w", cacheID, err)
	}
	return list, nil
}

// UnlinkNar removes the link of the Nar with file hash fileHash to the
// cache and the narinfos of the cache that serve it, in one transaction,
// and returns the hashes of those narinfos in order. It returns
// store.ErrNotFound if there was no such link.
func (s *Store) UnlinkNar(ctx context.Context, cacheID int64, fileHash string) ([]string, error) {
	var hashes []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		hashes = nil
		var narID int64
		err := tx.QueryRowContext(ctx, `SELECT n.id FROM nars n
			JOIN cache_nars cn ON cn.nar_id = n.id AND cn.cache_id = ?
			WHERE n.file_hash = ?`, cacheID, fileHash).Scan(&narID)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx,
			`DELETE FROM narinfos WHERE nar_id = ? AND cache_id = ? RETURNING hash`, narID, cacheID)
		if err != nil {
			return err
		}
		if hashes, err = scanStrings(rows); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM cache_nars WHERE cache_id = ? AND nar_id = ?`, cacheID, narID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("unlink nar %s from cache %d: %w", fileHash, cacheID, translate(err))
	}
	slices.Sort(hashes)
	return hashes, nil
}

// scanStrings reads and closes rows of one text column.
func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var l []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		l = append(l, v)
	}
	return l, rows.Err()
}

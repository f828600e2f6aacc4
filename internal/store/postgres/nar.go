package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

const (
	narColumns = `n.file_hash, n.file_size, n.compression, n.nar_hash, n.nar_size, n.md5, n.blob_key, n.created_at, n.missing,
		n.packed_hash, n.packed_size`

	narSQL = `SELECT ` + narColumns + ` FROM nars n WHERE n.file_hash = $1`

	// cacheNarSQL finds the Nar by its unique file hash, then the link by
	// the primary key of cache_nars; the time is the link's.
	cacheNarSQL = `SELECT n.file_hash, n.file_size, n.compression, n.nar_hash, n.nar_size, n.md5, n.blob_key, cn.created_at,
		n.missing, n.packed_hash, n.packed_size FROM nars n JOIN cache_nars cn ON cn.nar_id = n.id AND cn.cache_id = $1
		WHERE n.file_hash = $2`
)

// narDest returns the scan destinations of narColumns for n, with the
// creation time going to created.
func narDest(n *store.Nar, created *time.Time) []any {
	return []any{&n.FileHash, &n.FileSize, &n.Compression, &n.NarHash, &n.NarSize, &n.MD5, &n.BlobKey, created, &n.Missing,
		&n.PackedHash, &n.PackedSize}
}

// scanNar reads a row of narColumns.
func scanNar(row pgx.CollectableRow) (store.Nar, error) {
	var n store.Nar
	err := row.Scan(narDest(&n, &n.CreatedAt)...)
	n.CreatedAt = n.CreatedAt.UTC()
	return n, err
}

// GetNar returns the Nar whose file hash is fileHash, or store.ErrNotFound.
func (s *Store) GetNar(ctx context.Context, fileHash string) (store.Nar, error) {
	n, err := one(ctx, s, scanNar, narSQL, fileHash)
	if err != nil {
		return store.Nar{}, fmt.Errorf("get nar %s: %w", fileHash, translate(err))
	}
	return n, nil
}

// CacheNar returns the Nar whose file hash is fileHash if it is linked to
// the cache, or store.ErrNotFound.
func (s *Store) CacheNar(ctx context.Context, cacheID int64, fileHash string) (store.Nar, error) {
	n, err := one(ctx, s, scanNar, cacheNarSQL, cacheID, fileHash)
	if err != nil {
		return store.Nar{}, fmt.Errorf("get nar %s of cache %d: %w", fileHash, cacheID, translate(err))
	}
	return n, nil
}

// ClaimNar keeps the Nar from UnusedNars until ttl from now by the
// server's clock, unless it is kept longer already, and returns it, or
// store.ErrNotFound if there is none or it is missing. The update locks the
// row: UnusedNars, which locks what it removes, either removed the record
// before or waits for the claim and sees it.
func (s *Store) ClaimNar(ctx context.Context, fileHash string, ttl time.Duration) (store.Nar, error) {
	n, err := one(ctx, s, scanNar, `UPDATE nars n
		SET claimed_until = greatest(n.claimed_until, clock_timestamp() + $2::bigint * interval '1 microsecond')
		WHERE n.file_hash = $1 AND NOT n.missing RETURNING `+narColumns, fileHash, ttl.Microseconds())
	if err != nil {
		return store.Nar{}, fmt.Errorf("claim nar %s: %w", fileHash, translate(err))
	}
	return n, nil
}

// AddNar records n unless a Nar with its file hash exists (replacing a
// missing one that has another blob key), links the Nar to the cache under
// key or renews its link, and returns it. A zero n.CreatedAt is
// set to the current time. It returns store.ErrNotFound if the cache does
// not exist (the link's foreign key says so) or the missing Nar has n's
// blob key, and store.ErrExists if another Nar of the cache is linked
// under key.
//
// The row of the Nar is locked by the upsert: UnusedNars either removed it
// before (the upsert then inserts it again) or waits and finds it linked.
func (s *Store) AddNar(ctx context.Context, cacheID int64, n store.Nar, key string) (store.Nar, error) {
	n.CreatedAt = orNow(n.CreatedAt)
	var stored store.Nar
	err := s.tx(ctx, func(tx pgx.Tx) error {
		// A packed missing record being replaced loses its chunk list.
		_, err := tx.Exec(ctx, `DELETE FROM nar_chunks WHERE nar_id IN (SELECT id FROM nars
			WHERE file_hash = $1 AND missing AND blob_key <> $2)`, n.FileHash, n.BlobKey)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO nars (file_hash, file_size, compression, nar_hash, nar_size, md5, blob_key, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (file_hash) DO UPDATE SET file_size = excluded.file_size,
				compression = excluded.compression, nar_hash = excluded.nar_hash, nar_size = excluded.nar_size,
				md5 = excluded.md5, blob_key = excluded.blob_key, created_at = excluded.created_at, missing = false,
				packed_hash = '', packed_size = 0
			WHERE nars.missing AND nars.blob_key <> excluded.blob_key`,
			n.FileHash, n.FileSize, n.Compression, n.NarHash, n.NarSize, n.MD5, n.BlobKey, n.CreatedAt)
		if err != nil {
			return err
		}
		stored, err = linkNar(ctx, tx, cacheID, n.FileHash, key, now())
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
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		stored, err = linkNar(ctx, tx, cacheID, fileHash, key, now())
		return err
	})
	if err != nil {
		return store.Nar{}, fmt.Errorf("link nar %s to cache %d: %w", fileHash, cacheID, translate(err))
	}
	return stored, nil
}

// linkNar links the Nar with file hash fileHash, unless it is missing, to
// the cache under key or renews the time of its link to at, and returns
// it. The Nar is read with a key share lock, which keeps UnusedNars from
// removing it until the link is committed.
func linkNar(ctx context.Context, tx pgx.Tx, cacheID int64, fileHash, key string, at time.Time) (store.Nar, error) {
	var stored store.Nar
	var id int64
	err := tx.QueryRow(ctx, `SELECT n.id, `+narColumns+` FROM nars n WHERE n.file_hash = $1 AND NOT n.missing
		FOR KEY SHARE`, fileHash).Scan(append([]any{&id}, narDest(&stored, &stored.CreatedAt)...)...)
	if err != nil {
		return store.Nar{}, err
	}
	stored.CreatedAt = stored.CreatedAt.UTC()
	// The conflict target keeps the first key of a relinked Nar while a
	// key taken by another Nar remains an error.
	_, err = tx.Exec(ctx, `
		INSERT INTO cache_nars (cache_id, nar_id, key, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (cache_id, nar_id) DO UPDATE SET created_at = excluded.created_at`, cacheID, id, key, at)
	return stored, err
}

// SetNarMissing sets the missing flag of the Nar with file hash fileHash
// if its blob key is blobKey, or returns store.ErrNotFound.
func (s *Store) SetNarMissing(ctx context.Context, fileHash, blobKey string, missing bool) error {
	n, err := s.exec(ctx, `UPDATE nars SET missing = $3 WHERE file_hash = $1 AND blob_key = $2`,
		fileHash, blobKey, missing)
	if err == nil {
		err = checkRowAffected(n)
	}
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
	list, err := collect(ctx, s, scanNar, `SELECT `+narColumns+` FROM nars n WHERE n.file_hash > $1
		AND EXISTS (SELECT 1 FROM cache_nars cn WHERE cn.nar_id = n.id AND ($2 = 0 OR cn.cache_id = $2))
		ORDER BY n.file_hash LIMIT $3`, after, cacheID, limit)
	if err != nil {
		return nil, fmt.Errorf("list nars of cache %d: %w", cacheID, translate(err))
	}
	return list, nil
}

// UnlinkNar removes the link of the Nar with file hash fileHash to the
// cache and the narinfos of the cache that serve it, in one transaction,
// and returns the hashes of those narinfos in order. It returns
// store.ErrNotFound if there was no such link.
//
// The link is locked first: a narinfo being added for it holds a key share
// lock on it until it commits, so the delete that follows sees every
// narinfo that will ever serve the link, and reports them all.
func (s *Store) UnlinkNar(ctx context.Context, cacheID int64, fileHash string) ([]string, error) {
	var hashes []string
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var narID int64
		err := tx.QueryRow(ctx, `SELECT cn.nar_id FROM cache_nars cn JOIN nars n ON n.id = cn.nar_id
			WHERE cn.cache_id = $1 AND n.file_hash = $2 FOR UPDATE OF cn`, cacheID, fileHash).Scan(&narID)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `DELETE FROM narinfos WHERE nar_id = $1 AND cache_id = $2 RETURNING hash`,
			narID, cacheID)
		if err != nil {
			return err
		}
		if hashes, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, `DELETE FROM cache_nars WHERE cache_id = $1 AND nar_id = $2`, cacheID, narID); err != nil {
			return err
		}
		if len(hashes) == 0 {
			return nil
		}
		return s.notify(ctx, tx)
	})
	if err != nil {
		return nil, fmt.Errorf("unlink nar %s from cache %d: %w", fileHash, cacheID, translate(err))
	}
	slices.Sort(hashes)
	return hashes, nil
}

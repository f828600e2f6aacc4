package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

const (
	narColumns = `n.file_hash, n.file_size, n.compression, n.nar_hash, n.nar_size, n.md5, n.blob_key, n.created_at`

	narSQL = `SELECT ` + narColumns + ` FROM nars n WHERE n.file_hash = $1`

	// cacheNarSQL finds the Nar by its unique file hash, then the link by
	// the primary key of cache_nars; the time is the link's.
	cacheNarSQL = `SELECT n.file_hash, n.file_size, n.compression, n.nar_hash, n.nar_size, n.md5, n.blob_key, cn.created_at
		FROM nars n JOIN cache_nars cn ON cn.nar_id = n.id AND cn.cache_id = $1
		WHERE n.file_hash = $2`
)

// narDest returns the scan destinations of narColumns for n, with the
// creation time going to created.
func narDest(n *store.Nar, created *time.Time) []any {
	return []any{&n.FileHash, &n.FileSize, &n.Compression, &n.NarHash, &n.NarSize, &n.MD5, &n.BlobKey, created}
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

// AddNar records n unless a Nar with its file hash exists, links that Nar to
// the cache under key unless it is linked already, and returns it. A zero
// n.CreatedAt is set to the current time. It returns store.ErrNotFound if
// the cache does not exist (the link's foreign key says so) and
// store.ErrExists if another Nar of the cache is linked under key.
//
// The Nar is read with a key share lock, which keeps UnusedNars from
// removing it until the link is committed; should UnusedNars have removed
// it since the insert found it, it is inserted again.
func (s *Store) AddNar(ctx context.Context, cacheID int64, n store.Nar, key string) (store.Nar, error) {
	n.CreatedAt = orNow(n.CreatedAt)
	var stored store.Nar
	err := s.tx(ctx, func(tx pgx.Tx) error {
		id, err := lockNar(ctx, tx, n, &stored)
		if err != nil {
			return err
		}
		// The conflict target keeps the first key of a relinked Nar while a
		// key taken by another Nar remains an error.
		_, err = tx.Exec(ctx, `
			INSERT INTO cache_nars (cache_id, nar_id, key, created_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (cache_id, nar_id) DO NOTHING`, cacheID, id, key, now())
		return err
	})
	if err != nil {
		return store.Nar{}, fmt.Errorf("add nar %s to cache %d: %w", n.FileHash, cacheID, translate(err))
	}
	return stored, nil
}

// lockNar records n unless a Nar with its file hash exists, reads that Nar
// into stored with a key share lock and returns its ID.
func lockNar(ctx context.Context, tx pgx.Tx, n store.Nar, stored *store.Nar) (int64, error) {
	for attempt := 1; ; attempt++ {
		_, err := tx.Exec(ctx, `
			INSERT INTO nars (file_hash, file_size, compression, nar_hash, nar_size, md5, blob_key, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (file_hash) DO NOTHING`,
			n.FileHash, n.FileSize, n.Compression, n.NarHash, n.NarSize, n.MD5, n.BlobKey, n.CreatedAt)
		if err != nil {
			return 0, err
		}
		// A statement of its own, so that it sees a Nar another transaction
		// committed while the insert waited for it.
		var id int64
		err = tx.QueryRow(ctx, `SELECT n.id, `+narColumns+` FROM nars n WHERE n.file_hash = $1 FOR KEY SHARE`,
			n.FileHash).Scan(append([]any{&id}, narDest(stored, &stored.CreatedAt)...)...)
		if errors.Is(err, pgx.ErrNoRows) && attempt < maxAttempts {
			continue // removed by UnusedNars since the insert
		}
		stored.CreatedAt = stored.CreatedAt.UTC()
		return id, err
	}
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

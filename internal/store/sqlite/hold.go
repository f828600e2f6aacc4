package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

const heldColumns = `cache_id, hash, file_hash, body, created_at`

// scanHeld reads a row of heldColumns.
func scanHeld(sc scanner) (store.HeldNarInfo, error) {
	var h store.HeldNarInfo
	var created int64
	err := sc.Scan(&h.CacheID, &h.Hash, &h.FileHash, &h.Body, &created)
	h.CreatedAt = fromUnix(created)
	return h, err
}

// scanHelds reads and closes rows of heldColumns.
func scanHelds(rows *sql.Rows) ([]store.HeldNarInfo, error) {
	defer rows.Close()
	var list []store.HeldNarInfo
	for rows.Next() {
		h, err := scanHeld(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, h)
	}
	return list, rows.Err()
}

// HoldNarInfo records h, replacing any held narinfo of the same cache and
// hash. A zero h.CreatedAt is set to the current time. It returns
// store.ErrNotFound if the cache does not exist.
func (s *Store) HoldNarInfo(ctx context.Context, h store.HeldNarInfo) error {
	created := orNow(h.CreatedAt).Unix()
	body := h.Body
	if body == nil {
		body = []byte{} // nil would be NULL
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := cacheExists(ctx, tx, h.CacheID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `
			INSERT INTO held_narinfos (`+heldColumns+`) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (cache_id, hash) DO UPDATE SET
				file_hash = excluded.file_hash, body = excluded.body, created_at = excluded.created_at`,
			h.CacheID, h.Hash, h.FileHash, body, created)
		return err
	})
	if err != nil {
		return fmt.Errorf("hold narinfo %s of cache %d: %w", h.Hash, h.CacheID, translate(err))
	}
	return nil
}

// heldForSQL finds held narinfos by their index on (cache_id, file_hash);
// ordering them in SQL would have SQLite prefer the primary key, which
// reads every held narinfo of the cache.
const heldForSQL = `SELECT ` + heldColumns + ` FROM held_narinfos WHERE cache_id = ? AND file_hash = ?`

// HeldFor returns the narinfos of the cache that wait for the NAR with file
// hash fileHash, ordered by hash.
func (s *Store) HeldFor(ctx context.Context, cacheID int64, fileHash string) ([]store.HeldNarInfo, error) {
	rows, err := s.r.QueryContext(ctx, heldForSQL, cacheID, fileHash)
	if err != nil {
		return nil, fmt.Errorf("narinfos of cache %d held for %s: %w", cacheID, fileHash, err)
	}
	list, err := scanHelds(rows)
	if err != nil {
		return nil, fmt.Errorf("narinfos of cache %d held for %s: %w", cacheID, fileHash, err)
	}
	sortHeld(list)
	return list, nil
}

// ReleaseHeld removes the held narinfo of hash in the cache, if there is
// one.
func (s *Store) ReleaseHeld(ctx context.Context, cacheID int64, hash string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM held_narinfos WHERE cache_id = ? AND hash = ?`, cacheID, hash)
		return err
	})
	if err != nil {
		return fmt.Errorf("release narinfo %s of cache %d: %w", hash, cacheID, err)
	}
	return nil
}

// ExpireHeld removes the narinfos held since before t, in every cache, and
// returns them ordered by cache and hash. A record kept to the second is
// before t if its second starts before t.
func (s *Store) ExpireHeld(ctx context.Context, before time.Time) ([]store.HeldNarInfo, error) {
	cutoff := before.Unix()
	if before.Nanosecond() > 0 {
		cutoff++
	}
	var list []store.HeldNarInfo
	err := s.write(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx,
			`DELETE FROM held_narinfos WHERE created_at < ? RETURNING `+heldColumns, cutoff)
		if err != nil {
			return err
		}
		list, err = scanHelds(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("expire narinfos held before %v: %w", before, err)
	}
	sortHeld(list)
	return list, nil
}

// sortHeld orders list by cache and hash.
func sortHeld(list []store.HeldNarInfo) {
	slices.SortFunc(list, func(a, b store.HeldNarInfo) int {
		return cmp.Or(cmp.Compare(a.CacheID, b.CacheID), strings.Compare(a.Hash, b.Hash))
	})
}

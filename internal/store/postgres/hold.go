package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

const heldColumns = `cache_id, hash, file_hash, body, created_at`

// scanHeld reads a row of heldColumns.
func scanHeld(row pgx.CollectableRow) (store.HeldNarInfo, error) {
	var h store.HeldNarInfo
	err := row.Scan(&h.CacheID, &h.Hash, &h.FileHash, &h.Body, &h.CreatedAt)
	h.CreatedAt = h.CreatedAt.UTC()
	return h, err
}

// HoldNarInfo records h, replacing any held narinfo of the same cache and
// hash. A zero h.CreatedAt is set to the current time. It returns
// store.ErrNotFound if the cache does not exist (the foreign key says so).
func (s *Store) HoldNarInfo(ctx context.Context, h store.HeldNarInfo) error {
	body := h.Body
	if body == nil {
		body = []byte{} // nil would be NULL
	}
	_, err := s.exec(ctx, `
		INSERT INTO held_narinfos (`+heldColumns+`) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (cache_id, hash) DO UPDATE SET
			file_hash = excluded.file_hash, body = excluded.body, created_at = excluded.created_at`,
		h.CacheID, h.Hash, h.FileHash, body, orNow(h.CreatedAt))
	if err != nil {
		return fmt.Errorf("hold narinfo %s of cache %d: %w", h.Hash, h.CacheID, translate(err))
	}
	return nil
}

// HeldFor returns the narinfos of the cache that wait for the NAR with file
// hash fileHash, ordered by hash.
func (s *Store) HeldFor(ctx context.Context, cacheID int64, fileHash string) ([]store.HeldNarInfo, error) {
	list, err := collect(ctx, s, scanHeld, `SELECT `+heldColumns+` FROM held_narinfos
		WHERE cache_id = $1 AND file_hash = $2 ORDER BY hash`, cacheID, fileHash)
	if err != nil {
		return nil, fmt.Errorf("narinfos of cache %d held for %s: %w", cacheID, fileHash, translate(err))
	}
	return list, nil
}

// ReleaseHeld removes the held narinfo of hash in the cache, if there is
// one.
func (s *Store) ReleaseHeld(ctx context.Context, cacheID int64, hash string) error {
	_, err := s.exec(ctx, `DELETE FROM held_narinfos WHERE cache_id = $1 AND hash = $2`, cacheID, hash)
	if err != nil {
		return fmt.Errorf("release narinfo %s of cache %d: %w", hash, cacheID, translate(err))
	}
	return nil
}

// ExpireHeld removes the narinfos held since before t, in every cache, and
// returns them ordered by cache and hash. A record kept to the second is
// before t if its second starts before t.
func (s *Store) ExpireHeld(ctx context.Context, before time.Time) ([]store.HeldNarInfo, error) {
	cutoff := time.Unix(before.Unix(), 0).UTC()
	if before.Nanosecond() > 0 {
		cutoff = cutoff.Add(time.Second)
	}
	list, err := collect(ctx, s, scanHeld, `
		WITH gone AS (DELETE FROM held_narinfos WHERE created_at < $1 RETURNING `+heldColumns+`)
		SELECT `+heldColumns+` FROM gone ORDER BY cache_id, hash`, cutoff)
	if err != nil {
		return nil, fmt.Errorf("expire narinfos held before %v: %w", before, translate(err))
	}
	return list, nil
}

package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/larder-cache/larder/internal/store"
)

// PutFile records f, replacing any record with the same cache and key. A
// zero f.CreatedAt is set to the current time. It returns
// store.ErrNotFound if the cache does not exist.
func (s *Store) PutFile(ctx context.Context, f store.File) error {
	created := orNow(f.CreatedAt).Unix()
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := cacheName(ctx, tx, f.CacheID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `
			INSERT INTO files (cache_id, key, content_type, size, sha256, blob_key, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (cache_id, key) DO UPDATE SET
				content_type = excluded.content_type, size = excluded.size,
				sha256 = excluded.sha256, blob_key = excluded.blob_key,
				created_at = excluded.created_at`,
			f.CacheID, f.Key, f.ContentType, f.Size, f.SHA256, f.BlobKey, created)
		return err
	})
	if err != nil {
		return fmt.Errorf("put file %s of cache %d: %w", f.Key, f.CacheID, translate(err))
	}
	return nil
}

// GetFile returns the record of key in the cache, or store.ErrNotFound.
func (s *Store) GetFile(ctx context.Context, cacheID int64, key string) (store.File, error) {
	f := store.File{CacheID: cacheID, Key: key}
	var created int64
	err := s.r.QueryRowContext(ctx, `
		SELECT content_type, size, sha256, blob_key, created_at FROM files
		WHERE cache_id = ? AND key = ?`, cacheID, key,
	).Scan(&f.ContentType, &f.Size, &f.SHA256, &f.BlobKey, &created)
	if err != nil {
		return store.File{}, fmt.Errorf("get file %s of cache %d: %w", key, cacheID, translate(err))
	}
	f.CreatedAt = fromUnix(created)
	return f, nil
}

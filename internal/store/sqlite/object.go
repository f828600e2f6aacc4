package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/larder-cache/larder/internal/store"
)

// getObjectSQL finds an object by the primary key of objects.
const getObjectSQL = `SELECT content_type, size, sha256, md5, etag, metadata, blob_key, created_at
	FROM objects WHERE cache_id = ? AND key = ?`

// PutObject records o, replacing any record with the same cache and key. A
// zero o.CreatedAt is set to the current time. It returns
// store.ErrNotFound if the cache does not exist, and an error if the
// metadata is not valid UTF-8.
func (s *Store) PutObject(ctx context.Context, o store.Object) error {
	created := orNow(o.CreatedAt).Unix()
	meta, err := encodeMap(o.Metadata)
	if err != nil {
		return fmt.Errorf("put object %s of cache %d: encode metadata: %w", o.Key, o.CacheID, err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := cacheExists(ctx, tx, o.CacheID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `
			INSERT INTO objects (cache_id, key, content_type, size, sha256, md5, etag, metadata, blob_key, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (cache_id, key) DO UPDATE SET
				content_type = excluded.content_type, size = excluded.size,
				sha256 = excluded.sha256, md5 = excluded.md5, etag = excluded.etag,
				metadata = excluded.metadata, blob_key = excluded.blob_key,
				created_at = excluded.created_at`,
			o.CacheID, o.Key, o.ContentType, o.Size, o.SHA256, o.MD5, o.ETag, meta, o.BlobKey, created)
		return err
	})
	if err != nil {
		return fmt.Errorf("put object %s of cache %d: %w", o.Key, o.CacheID, translate(err))
	}
	return nil
}

// GetObject returns the record of key in the cache, or store.ErrNotFound.
func (s *Store) GetObject(ctx context.Context, cacheID int64, key string) (store.Object, error) {
	o := store.Object{CacheID: cacheID, Key: key}
	var meta []byte
	var created int64
	err := s.getObject.QueryRowContext(ctx, cacheID, key).Scan(
		&o.ContentType, &o.Size, &o.SHA256, &o.MD5, &o.ETag, &meta, &o.BlobKey, &created)
	if err != nil {
		return store.Object{}, fmt.Errorf("get object %s of cache %d: %w", key, cacheID, translate(err))
	}
	o.CreatedAt = fromUnix(created)
	if o.Metadata, err = decodeMap(meta); err != nil {
		return store.Object{}, fmt.Errorf("get object %s of cache %d: decode metadata: %w", key, cacheID, err)
	}
	return o, nil
}

// DeleteObject removes the record of key in the cache, or returns
// store.ErrNotFound.
func (s *Store) DeleteObject(ctx context.Context, cacheID int64, key string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM objects WHERE cache_id = ? AND key = ?`, cacheID, key)
		if err != nil {
			return err
		}
		return checkRowAffected(res)
	})
	if err != nil {
		return fmt.Errorf("delete object %s of cache %d: %w", key, cacheID, translate(err))
	}
	return nil
}

package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

// getObjectSQL finds an object by the primary key of objects.
const getObjectSQL = `SELECT cache_id, key, content_type, size, sha256, md5, etag, metadata, blob_key, created_at
	FROM objects WHERE cache_id = $1 AND key = $2`

// scanObject reads a row of getObjectSQL.
func scanObject(row pgx.CollectableRow) (store.Object, error) {
	var o store.Object
	err := row.Scan(&o.CacheID, &o.Key, &o.ContentType, &o.Size, &o.SHA256, &o.MD5, &o.ETag, &o.Metadata,
		&o.BlobKey, &o.CreatedAt)
	o.Metadata, o.CreatedAt = normMap(o.Metadata), o.CreatedAt.UTC()
	return o, err
}

// PutObject records o, replacing any record with the same cache and key. A
// zero o.CreatedAt is set to the current time. It returns
// store.ErrNotFound if the cache does not exist (the foreign key says so),
// and an error if the metadata is not valid UTF-8.
func (s *Store) PutObject(ctx context.Context, o store.Object) error {
	meta, err := encodeMap(o.Metadata)
	if err != nil {
		return fmt.Errorf("put object %s of cache %d: encode metadata: %w", o.Key, o.CacheID, err)
	}
	_, err = s.exec(ctx, `
		INSERT INTO objects (cache_id, key, content_type, size, sha256, md5, etag, metadata, blob_key, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (cache_id, key) DO UPDATE SET
			content_type = excluded.content_type, size = excluded.size,
			sha256 = excluded.sha256, md5 = excluded.md5, etag = excluded.etag,
			metadata = excluded.metadata, blob_key = excluded.blob_key,
			created_at = excluded.created_at`,
		o.CacheID, o.Key, o.ContentType, o.Size, o.SHA256, o.MD5, o.ETag, meta, o.BlobKey, orNow(o.CreatedAt))
	if err != nil {
		return fmt.Errorf("put object %s of cache %d: %w", o.Key, o.CacheID, translate(err))
	}
	return nil
}

// GetObject returns the record of key in the cache, or store.ErrNotFound.
func (s *Store) GetObject(ctx context.Context, cacheID int64, key string) (store.Object, error) {
	o, err := one(ctx, s, scanObject, getObjectSQL, cacheID, key)
	if err != nil {
		return store.Object{}, fmt.Errorf("get object %s of cache %d: %w", key, cacheID, translate(err))
	}
	return o, nil
}

// DeleteObject removes the record of key in the cache, or returns
// store.ErrNotFound.
func (s *Store) DeleteObject(ctx context.Context, cacheID int64, key string) error {
	n, err := s.exec(ctx, `DELETE FROM objects WHERE cache_id = $1 AND key = $2`, cacheID, key)
	if err == nil {
		err = checkRowAffected(n)
	}
	if err != nil {
		return fmt.Errorf("delete object %s of cache %d: %w", key, cacheID, translate(err))
	}
	return nil
}

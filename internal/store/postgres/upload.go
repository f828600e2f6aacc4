package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

const (
	uploadColumns = `id, cache_id, key, content_type, metadata, created_at`
	partColumns   = `upload_id, number, size, md5, blob_key, created_at`
)

// scanUpload reads a row of uploadColumns.
func scanUpload(row pgx.CollectableRow) (store.Upload, error) {
	var u store.Upload
	err := row.Scan(&u.ID, &u.CacheID, &u.Key, &u.ContentType, &u.Metadata, &u.CreatedAt)
	u.Metadata, u.CreatedAt = normMap(u.Metadata), u.CreatedAt.UTC()
	return u, err
}

// CreateUpload records u. A zero u.CreatedAt is set to the current time.
// It returns store.ErrNotFound if the cache does not exist (the foreign key
// says so), store.ErrExists if the ID is taken, and an error if the
// metadata is not valid UTF-8.
func (s *Store) CreateUpload(ctx context.Context, u store.Upload) error {
	meta, err := encodeMap(u.Metadata)
	if err != nil {
		return fmt.Errorf("create upload %s: encode metadata: %w", u.ID, err)
	}
	_, err = s.exec(ctx, `INSERT INTO uploads (`+uploadColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`,
		u.ID, u.CacheID, u.Key, u.ContentType, meta, orNow(u.CreatedAt))
	if err != nil {
		return fmt.Errorf("create upload %s: %w", u.ID, translate(err))
	}
	return nil
}

// GetUpload returns the upload with the given ID, or store.ErrNotFound.
func (s *Store) GetUpload(ctx context.Context, id string) (store.Upload, error) {
	u, err := one(ctx, s, scanUpload, `SELECT `+uploadColumns+` FROM uploads WHERE id = $1`, id)
	if err != nil {
		return store.Upload{}, fmt.Errorf("get upload %s: %w", id, translate(err))
	}
	return u, nil
}

// ListUploads returns the uploads of the cache whose keys start with
// prefix, ordered by key, creation and ID. Like ListKeys, it reads the
// range of keys that start with prefix.
func (s *Store) ListUploads(ctx context.Context, cacheID int64, prefix string) ([]store.Upload, error) {
	sql := `SELECT ` + uploadColumns + ` FROM uploads WHERE cache_id = $1 AND key >= $2`
	args := []any{cacheID, prefix}
	if end, ok := prefixEnd(prefix); ok {
		sql, args = sql+` AND key < $3`, append(args, end)
	}
	list, err := collect(ctx, s, scanUpload, sql+` ORDER BY key, created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list uploads of cache %d: %w", cacheID, translate(err))
	}
	for i, u := range list {
		if !strings.HasPrefix(u.Key, prefix) {
			return list[:i], nil
		}
	}
	return list, nil
}

// scanPart reads a row of partColumns.
func scanPart(row pgx.CollectableRow) (store.Part, error) {
	var p store.Part
	err := row.Scan(&p.UploadID, &p.Number, &p.Size, &p.MD5, &p.BlobKey, &p.CreatedAt)
	p.CreatedAt = p.CreatedAt.UTC()
	return p, err
}

// lockUpload locks the row of the upload with the given ID FOR strength
// ("UPDATE" or "NO KEY UPDATE") until tx ends, or returns
// store.ErrNotFound. Either keeps other writers of the upload's parts and
// its deletion waiting; NO KEY UPDATE lets the foreign key checks of parts
// being inserted through.
func lockUpload(ctx context.Context, tx pgx.Tx, id string, strength string) error {
	var found int
	err := tx.QueryRow(ctx, `SELECT 1 FROM uploads WHERE id = $1 FOR `+strength, id).Scan(&found)
	if err != nil {
		return fmt.Errorf("upload %s: %w", id, translate(err))
	}
	return nil
}

// PutPart records p, replacing a part with the same number, and returns the
// replaced part, if any. A zero p.CreatedAt is set to the current time. It
// returns store.ErrNotFound if the upload does not exist. The puts of one
// upload's parts run one after the other, so that each replaced part is
// returned to exactly one of them.
func (s *Store) PutPart(ctx context.Context, p store.Part) (*store.Part, error) {
	p.CreatedAt = orNow(p.CreatedAt)
	var old *store.Part
	err := s.tx(ctx, func(tx pgx.Tx) error {
		old = nil
		if err := lockUpload(ctx, tx, p.UploadID, "NO KEY UPDATE"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+partColumns+` FROM parts WHERE upload_id = $1 AND number = $2`,
			p.UploadID, p.Number)
		if err != nil {
			return err
		}
		prev, err := pgx.CollectExactlyOneRow(rows, scanPart)
		switch {
		case err == nil:
			old = &prev
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO parts (`+partColumns+`) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (upload_id, number) DO UPDATE SET
				size = excluded.size, md5 = excluded.md5, blob_key = excluded.blob_key,
				created_at = excluded.created_at`,
			p.UploadID, p.Number, p.Size, p.MD5, p.BlobKey, p.CreatedAt)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("put part %d of upload %s: %w", p.Number, p.UploadID, translate(err))
	}
	return old, nil
}

// ListParts returns the parts of the upload ordered by number, or
// store.ErrNotFound if the upload does not exist. One query reads the
// upload and its parts, so that both come from one snapshot.
func (s *Store) ListParts(ctx context.Context, uploadID string) ([]store.Part, error) {
	type row struct {
		part  store.Part
		found bool // a row of a part, not of the upload alone
	}
	rows, err := collect(ctx, s, func(r pgx.CollectableRow) (row, error) {
		var number *int32
		var p store.Part
		err := r.Scan(&p.UploadID, &number, &p.Size, &p.MD5, &p.BlobKey, &p.CreatedAt)
		if number != nil {
			p.Number, p.CreatedAt = int(*number), p.CreatedAt.UTC()
		}
		return row{p, number != nil}, err
	}, `SELECT u.id, p.number, coalesce(p.size, 0), coalesce(p.md5, ''), coalesce(p.blob_key, ''),
			coalesce(p.created_at, 'epoch')
		FROM uploads u LEFT JOIN parts p ON p.upload_id = u.id
		WHERE u.id = $1 ORDER BY p.number`, uploadID)
	if err == nil && len(rows) == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("list parts of upload %s: %w", uploadID, translate(err))
	}
	var list []store.Part
	for _, r := range rows {
		if r.found {
			list = append(list, r.part)
		}
	}
	return list, nil
}

// DeleteUpload removes the upload and its parts and returns the parts
// ordered by number, or store.ErrNotFound if the upload does not exist.
// The upload is locked first, so that no part is added between reading the
// parts and deleting them.
func (s *Store) DeleteUpload(ctx context.Context, uploadID string) ([]store.Part, error) {
	var parts []store.Part
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := lockUpload(ctx, tx, uploadID, "UPDATE"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			WITH gone AS (DELETE FROM parts WHERE upload_id = $1 RETURNING `+partColumns+`)
			SELECT `+partColumns+` FROM gone ORDER BY number`, uploadID)
		if err != nil {
			return err
		}
		if parts, err = pgx.CollectRows(rows, scanPart); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM uploads WHERE id = $1`, uploadID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete upload %s: %w", uploadID, translate(err))
	}
	return parts, nil
}

package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/larder-cache/larder/internal/store"
)

const (
	uploadColumns = `id, cache_id, key, content_type, metadata, created_at`
	partColumns   = `upload_id, number, size, md5, blob_key, created_at`
)

// scanUpload reads a row of uploadColumns.
func scanUpload(sc scanner) (store.Upload, error) {
	var u store.Upload
	var meta []byte
	var created int64
	if err := sc.Scan(&u.ID, &u.CacheID, &u.Key, &u.ContentType, &meta, &created); err != nil {
		return store.Upload{}, err
	}
	u.CreatedAt = fromUnix(created)
	var err error
	if u.Metadata, err = decodeMap(meta); err != nil {
		return store.Upload{}, fmt.Errorf("decode metadata: %w", err)
	}
	return u, nil
}

// CreateUpload records u. A zero u.CreatedAt is set to the current time.
// It returns store.ErrNotFound if the cache does not exist, store.ErrExists
// if the ID is taken, and an error if the metadata is not valid UTF-8.
func (s *Store) CreateUpload(ctx context.Context, u store.Upload) error {
	created := orNow(u.CreatedAt).Unix()
	meta, err := encodeMap(u.Metadata)
	if err != nil {
		return fmt.Errorf("create upload %s: encode metadata: %w", u.ID, err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := cacheExists(ctx, tx, u.CacheID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO uploads (`+uploadColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
			u.ID, u.CacheID, u.Key, u.ContentType, meta, created)
		return err
	})
	if err != nil {
		return fmt.Errorf("create upload %s: %w", u.ID, translate(err))
	}
	return nil
}

// GetUpload returns the upload with the given ID, or store.ErrNotFound.
func (s *Store) GetUpload(ctx context.Context, id string) (store.Upload, error) {
	u, err := scanUpload(s.r.QueryRowContext(ctx, `SELECT `+uploadColumns+` FROM uploads WHERE id = ?`, id))
	if err != nil {
		return store.Upload{}, fmt.Errorf("get upload %s: %w", id, translate(err))
	}
	return u, nil
}

// ListUploads returns the uploads of the cache whose keys start with
// prefix, ordered by key, creation and ID. Like ListKeys, it reads from
// prefix on and stops at the first key that does not start with it.
func (s *Store) ListUploads(ctx context.Context, cacheID int64, prefix string) ([]store.Upload, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+uploadColumns+` FROM uploads
		WHERE cache_id = ? AND key >= ? ORDER BY key, created_at, id`, cacheID, prefix)
	if err != nil {
		return nil, fmt.Errorf("list uploads of cache %d: %w", cacheID, err)
	}
	defer rows.Close()
	var list []store.Upload
	for rows.Next() {
		u, err := scanUpload(rows)
		if err != nil {
			return nil, fmt.Errorf("list uploads of cache %d: %w", cacheID, err)
		}
		if !strings.HasPrefix(u.Key, prefix) {
			break
		}
		list = append(list, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list uploads of cache %d: %w", cacheID, err)
	}
	return list, nil
}

// scanPart reads a row of partColumns.
func scanPart(sc scanner) (store.Part, error) {
	var p store.Part
	var created int64
	err := sc.Scan(&p.UploadID, &p.Number, &p.Size, &p.MD5, &p.BlobKey, &created)
	p.CreatedAt = fromUnix(created)
	return p, err
}

// scanParts reads and closes rows of partColumns and returns them ordered
// by number.
func scanParts(rows *sql.Rows) ([]store.Part, error) {
	defer rows.Close()
	var list []store.Part
	for rows.Next() {
		p, err := scanPart(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(list, func(a, b store.Part) int { return cmp.Compare(a.Number, b.Number) })
	return list, nil
}

// uploadExists returns store.ErrNotFound unless the upload exists.
func uploadExists(ctx context.Context, tx *sql.Tx, id string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM uploads WHERE id = ?`, id).Scan(&one)
	if err != nil {
		return fmt.Errorf("upload %s: %w", id, translate(err))
	}
	return nil
}

// PutPart records p, replacing a part with the same number, and returns the
// replaced part, if any. A zero p.CreatedAt is set to the current time. It
// returns store.ErrNotFound if the upload does not exist.
func (s *Store) PutPart(ctx context.Context, p store.Part) (*store.Part, error) {
	p.CreatedAt = orNow(p.CreatedAt)
	var old *store.Part
	err := s.write(ctx, func(tx *sql.Tx) error {
		old = nil
		if err := uploadExists(ctx, tx, p.UploadID); err != nil {
			return err
		}
		prev, err := scanPart(tx.QueryRowContext(ctx, `SELECT `+partColumns+` FROM parts
			WHERE upload_id = ? AND number = ?`, p.UploadID, p.Number))
		switch {
		case err == nil:
			old = &prev
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO parts (`+partColumns+`) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (upload_id, number) DO UPDATE SET
				size = excluded.size, md5 = excluded.md5, blob_key = excluded.blob_key,
				created_at = excluded.created_at`,
			p.UploadID, p.Number, p.Size, p.MD5, p.BlobKey, p.CreatedAt.Unix())
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
	rows, err := s.r.QueryContext(ctx, `
		SELECT u.id, p.number, p.size, p.md5, p.blob_key, p.created_at
		FROM uploads u LEFT JOIN parts p ON p.upload_id = u.id
		WHERE u.id = ? ORDER BY p.number`, uploadID)
	if err != nil {
		return nil, fmt.Errorf("list parts of upload %s: %w", uploadID, err)
	}
	defer rows.Close()
	found := false
	var list []store.Part
	for rows.Next() {
		found = true
		var id string
		var number, size, created sql.NullInt64
		var md5, blobKey sql.NullString
		if err := rows.Scan(&id, &number, &size, &md5, &blobKey, &created); err != nil {
			return nil, fmt.Errorf("list parts of upload %s: %w", uploadID, err)
		}
		if number.Valid {
			list = append(list, store.Part{UploadID: id, Number: int(number.Int64), Size: size.Int64,
				MD5: md5.String, BlobKey: blobKey.String, CreatedAt: fromUnix(created.Int64)})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list parts of upload %s: %w", uploadID, err)
	}
	if !found {
		return nil, fmt.Errorf("list parts of upload %s: %w", uploadID, store.ErrNotFound)
	}
	return list, nil
}

// DeleteUpload removes the upload and its parts and returns the parts
// ordered by number, or store.ErrNotFound if the upload does not exist.
func (s *Store) DeleteUpload(ctx context.Context, uploadID string) ([]store.Part, error) {
	var parts []store.Part
	err := s.write(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `DELETE FROM parts WHERE upload_id = ? RETURNING `+partColumns, uploadID)
		if err != nil {
			return err
		}
		if parts, err = scanParts(rows); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM uploads WHERE id = ?`, uploadID)
		if err != nil {
			return err
		}
		return checkRowAffected(res)
	})
	if err != nil {
		return nil, fmt.Errorf("delete upload %s: %w", uploadID, translate(err))
	}
	return parts, nil
}

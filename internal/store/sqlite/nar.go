package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/larder-cache/larder/internal/store"
)

const (
	narColumns = `n.file_hash, n.file_size, n.compression, n.nar_hash, n.nar_size, n.blob_key, n.created_at`

	narSQL = `SELECT ` + narColumns + ` FROM nars n WHERE n.file_hash = ?`

	// cacheNarSQL finds the Nar by its unique file hash, then the link by
	// the primary key of cache_nars.
	cacheNarSQL = `SELECT ` + narColumns + ` FROM nars n
		JOIN cache_nars cn ON cn.nar_id = n.id AND cn.cache_id = ?
		WHERE n.file_hash = ?`

	// getNarInfoSQL finds the narinfo by its unique (cache_id, hash), then
	// its Nar by primary key.
	getNarInfoSQL = `SELECT ni.seq, ni.store_path, ni.nar_hash, ni.nar_size, ni.refs, ni.deriver, ni.system, ni.ca,
		ni.sigs, ni.created_at, ` + narColumns + `
		FROM narinfos ni JOIN nars n ON n.id = ni.nar_id
		WHERE ni.cache_id = ? AND ni.hash = ?`
)

// narDest returns the scan destinations of narColumns for n, with the
// creation time going to created.
func narDest(n *store.Nar, created *int64) []any {
	return []any{&n.FileHash, &n.FileSize, &n.Compression, &n.NarHash, &n.NarSize, &n.BlobKey, created}
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

// AddNar records n unless a Nar with its file hash exists, links that Nar to
// the cache and returns it. A zero n.CreatedAt is set to the current time.
func (s *Store) AddNar(ctx context.Context, cacheID int64, n store.Nar) (store.Nar, error) {
	n.CreatedAt = orNow(n.CreatedAt)
	var stored store.Nar
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := cacheName(ctx, tx, cacheID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `
			INSERT INTO nars (file_hash, file_size, compression, nar_hash, nar_size, blob_key, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (file_hash) DO NOTHING`,
			n.FileHash, n.FileSize, n.Compression, n.NarHash, n.NarSize, n.BlobKey, n.CreatedAt.Unix())
		if err != nil {
			return err
		}
		var id, created int64
		dest := append([]any{&id}, narDest(&stored, &created)...)
		err = tx.QueryRowContext(ctx, `SELECT n.id, `+narColumns+` FROM nars n WHERE n.file_hash = ?`,
			n.FileHash).Scan(dest...)
		if err != nil {
			return err
		}
		stored.CreatedAt = fromUnix(created)
		_, err = tx.ExecContext(ctx, `
			INSERT INTO cache_nars (cache_id, nar_id, created_at) VALUES (?, ?, ?)
			ON CONFLICT DO NOTHING`, cacheID, id, now().Unix())
		return err
	})
	if err != nil {
		return store.Nar{}, fmt.Errorf("add nar %s to cache %d: %w", n.FileHash, cacheID, translate(err))
	}
	return stored, nil
}

// scanNarInfo reads a row of getNarInfoSQL into a narinfo of hash in the
// cache and its Nar.
func scanNarInfo(sc scanner, cacheID int64, hash string) (store.NarInfo, store.Nar, error) {
	ni := store.NarInfo{CacheID: cacheID, Hash: hash}
	var n store.Nar
	var refs, sigs []byte
	var created, narCreated int64
	dest := append([]any{&ni.Seq, &ni.StorePath, &ni.NarHash, &ni.NarSize, &refs, &ni.Deriver, &ni.System, &ni.CA,
		&sigs, &created}, narDest(&n, &narCreated)...)
	if err := sc.Scan(dest...); err != nil {
		return store.NarInfo{}, store.Nar{}, err
	}
	ni.CreatedAt, n.CreatedAt = fromUnix(created), fromUnix(narCreated)
	ni.FileHash = n.FileHash
	var err error
	if ni.References, err = decodeList(refs); err != nil {
		return store.NarInfo{}, store.Nar{}, fmt.Errorf("decode references: %w", err)
	}
	if ni.Sigs, err = decodeList(sigs); err != nil {
		return store.NarInfo{}, store.Nar{}, fmt.Errorf("decode sigs: %w", err)
	}
	return ni, n, nil
}

// GetNarInfo returns the narinfo of hash in the cache and the Nar it
// serves, or store.ErrNotFound.
func (s *Store) GetNarInfo(ctx context.Context, cacheID int64, hash string) (store.NarInfo, store.Nar, error) {
	ni, n, err := scanNarInfo(s.getNarInfo.QueryRowContext(ctx, cacheID, hash), cacheID, hash)
	if err != nil {
		return store.NarInfo{}, store.Nar{}, fmt.Errorf("get narinfo %s of cache %d: %w", hash, cacheID, translate(err))
	}
	return ni, n, nil
}

// errMergeFailed marks the error of a merge, which PutNarInfo returns
// unchanged.
type errMergeFailed struct{ err error }

func (e errMergeFailed) Error() string { return e.err.Error() }

// PutNarInfo reads the narinfo of (ni.CacheID, ni.Hash), merges it and
// writes the result, all in one IMMEDIATE transaction, so concurrent merges
// of the same narinfo, in this process or another, run one after the
// other. merge runs while the write lock is held: it must be quick and must
// not call the Store. The merged record must keep ni's CacheID and Hash; a
// zero CreatedAt is set to the current time.
func (s *Store) PutNarInfo(ctx context.Context, ni store.NarInfo, merge func(old *store.NarInfo) (store.NarInfo, error)) (store.NarInfo, error) {
	var out store.NarInfo
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = putNarInfo(ctx, tx, ni, merge)
		return err
	})
	if me, ok := errors.AsType[errMergeFailed](err); ok {
		return store.NarInfo{}, me.err
	}
	if err != nil {
		return store.NarInfo{}, fmt.Errorf("put narinfo %s of cache %d: %w", ni.Hash, ni.CacheID, translate(err))
	}
	return out, nil
}

// putNarInfo does the work of PutNarInfo in tx.
func putNarInfo(ctx context.Context, tx *sql.Tx, ni store.NarInfo, merge func(old *store.NarInfo) (store.NarInfo, error)) (store.NarInfo, error) {
	var old *store.NarInfo
	cur, _, err := scanNarInfo(tx.QueryRowContext(ctx, getNarInfoSQL, ni.CacheID, ni.Hash), ni.CacheID, ni.Hash)
	switch {
	case err == nil:
		old = &cur
	case !errors.Is(err, sql.ErrNoRows):
		return store.NarInfo{}, fmt.Errorf("read current record: %w", err)
	}
	m, err := merge(old)
	if err != nil {
		return store.NarInfo{}, errMergeFailed{err}
	}
	if m.CacheID != ni.CacheID || m.Hash != ni.Hash {
		return store.NarInfo{}, fmt.Errorf("merge returned the narinfo %s of cache %d", m.Hash, m.CacheID)
	}
	var narID int64
	err = tx.QueryRowContext(ctx, `SELECT n.id FROM nars n
		JOIN cache_nars cn ON cn.nar_id = n.id AND cn.cache_id = ?
		WHERE n.file_hash = ?`, m.CacheID, m.FileHash).Scan(&narID)
	if err != nil {
		return store.NarInfo{}, fmt.Errorf("nar %s: %w", m.FileHash, translate(err))
	}
	m.CreatedAt = orNow(m.CreatedAt)
	m.References, m.Sigs = normList(m.References), normList(m.Sigs)
	refs, err := encodeList(m.References)
	if err != nil {
		return store.NarInfo{}, fmt.Errorf("encode references: %w", err)
	}
	sigs, err := encodeList(m.Sigs)
	if err != nil {
		return store.NarInfo{}, fmt.Errorf("encode sigs: %w", err)
	}
	if old == nil {
		err = tx.QueryRowContext(ctx, `
			INSERT INTO narinfos (cache_id, hash, store_path, nar_id, nar_hash, nar_size, refs, deriver, system, ca, sigs, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
			m.CacheID, m.Hash, m.StorePath, narID, m.NarHash, m.NarSize, refs, m.Deriver, m.System, m.CA, sigs,
			m.CreatedAt.Unix()).Scan(&m.Seq)
	} else {
		m.Seq = old.Seq
		_, err = tx.ExecContext(ctx, `
			UPDATE narinfos SET store_path = ?, nar_id = ?, nar_hash = ?, nar_size = ?, refs = ?,
				deriver = ?, system = ?, ca = ?, sigs = ?, created_at = ?
			WHERE seq = ?`,
			m.StorePath, narID, m.NarHash, m.NarSize, refs, m.Deriver, m.System, m.CA, sigs, m.CreatedAt.Unix(), m.Seq)
	}
	return m, err
}

// ListNarInfoKeys returns up to limit narinfo keys with Seq greater than
// after, in Seq order, across all caches.
func (s *Store) ListNarInfoKeys(ctx context.Context, after int64, limit int) ([]store.NarInfoKey, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx,
		`SELECT seq, cache_id, hash FROM narinfos WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list narinfo keys after %d: %w", after, err)
	}
	defer rows.Close()
	keys := make([]store.NarInfoKey, 0, min(limit, 1024))
	for rows.Next() {
		var k store.NarInfoKey
		if err := rows.Scan(&k.Seq, &k.CacheID, &k.Hash); err != nil {
			return nil, fmt.Errorf("list narinfo keys after %d: %w", after, err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list narinfo keys after %d: %w", after, err)
	}
	return keys, nil
}

// encodeList returns l as a JSON array, which keeps any valid UTF-8 string
// intact. Other strings are refused: JSON would change them.
func encodeList(l []string) (string, error) {
	for _, e := range l {
		if !utf8.ValidString(e) {
			return "", fmt.Errorf("%q is not valid UTF-8", e)
		}
	}
	if len(l) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(l)
	return string(b), err
}

// decodeList returns the list encoded by encodeList; empty is nil.
func decodeList(b []byte) ([]string, error) {
	if l, ok := decodePlainList(b); ok {
		return l, nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, err
	}
	return normList(l), nil
}

// decodePlainList decodes, without the cost of encoding/json, a JSON array
// of strings none of which has an escape, as the references and signatures
// of narinfos are. It reports false for any other input.
func decodePlainList(b []byte) ([]string, bool) {
	if len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return nil, false
	}
	body := b[1 : len(b)-1]
	if len(body) == 0 {
		return nil, true
	}
	l := make([]string, 0, bytes.Count(body, []byte(`","`))+1)
	for {
		if len(body) < 2 || body[0] != '"' {
			return nil, false
		}
		end := bytes.IndexByte(body[1:], '"') + 1
		if end == 0 || !plainString(body[1:end]) {
			return nil, false
		}
		l = append(l, string(body[1:end]))
		body = body[end+1:]
		if len(body) == 0 {
			return l, true
		}
		if body[0] != ',' {
			return nil, false
		}
		body = body[1:]
	}
}

// plainString reports whether s is the content of a JSON string as it is,
// without escapes: valid UTF-8 with no backslash or control character.
func plainString(s []byte) bool {
	for _, c := range s {
		if c == '\\' || c < 0x20 {
			return false
		}
	}
	return utf8.Valid(s)
}

// normList returns l, or nil if it is empty.
func normList(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}

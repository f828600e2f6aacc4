package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/larder-cache/larder/internal/store"
)

// scanNarInfo reads a row of getNarInfoSQL into a narinfo of hash in the
// cache and its Nar.
func scanNarInfo(sc scanner, cacheID int64, hash string) (store.NarInfo, store.Nar, error) {
	ni := store.NarInfo{CacheID: cacheID, Hash: hash}
	var n store.Nar
	var refs, sigs []byte
	var created, narCreated int64
	dest := append([]any{&ni.Seq, &ni.Key, &ni.StorePath, &ni.NarHash, &ni.NarSize, &refs, &ni.Deriver, &ni.System, &ni.CA,
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
		WHERE n.file_hash = ? AND n.missing = 0`, m.CacheID, m.FileHash).Scan(&narID)
	if err != nil {
		return store.NarInfo{}, fmt.Errorf("nar %s: %w", m.FileHash, translate(err))
	}
	m.CreatedAt = orNow(m.CreatedAt)
	m.References, m.Sigs = normList(m.References), normList(m.Sigs)
	if old != nil {
		m.Seq = old.Seq
	}
	if err := writeNarInfo(ctx, tx, &m, narID, old == nil); err != nil {
		return store.NarInfo{}, err
	}
	if old == nil || !slices.Equal(old.References, m.References) {
		if err := writeRefs(ctx, tx, m, old != nil); err != nil {
			return store.NarInfo{}, fmt.Errorf("write references: %w", err)
		}
	}
	return m, nil
}

// writeNarInfo inserts m, a new narinfo serving the Nar narID, setting its
// Seq, or updates the narinfo with m's Seq.
func writeNarInfo(ctx context.Context, tx *sql.Tx, m *store.NarInfo, narID int64, insert bool) error {
	refs, err := encodeList(m.References)
	if err != nil {
		return fmt.Errorf("encode references: %w", err)
	}
	sigs, err := encodeList(m.Sigs)
	if err != nil {
		return fmt.Errorf("encode sigs: %w", err)
	}
	if insert {
		return tx.QueryRowContext(ctx, `
			INSERT INTO narinfos (cache_id, hash, key, store_path, nar_id, nar_hash, nar_size, refs, deriver, system, ca, sigs, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
			m.CacheID, m.Hash, m.Key, m.StorePath, narID, m.NarHash, m.NarSize, refs, m.Deriver, m.System, m.CA, sigs,
			m.CreatedAt.Unix()).Scan(&m.Seq)
	}
	_, err = tx.ExecContext(ctx, `
		UPDATE narinfos SET key = ?, store_path = ?, nar_id = ?, nar_hash = ?, nar_size = ?, refs = ?,
			deriver = ?, system = ?, ca = ?, sigs = ?, created_at = ?
		WHERE seq = ?`,
		m.Key, m.StorePath, narID, m.NarHash, m.NarSize, refs, m.Deriver, m.System, m.CA, sigs, m.CreatedAt.Unix(), m.Seq)
	return err
}

// writeRefs writes the rows of narinfo_refs of m, replacing those of the
// narinfo's earlier version if replace. A reference is a store path base
// name, "<hash>-<name>": its first 32 characters are the hash of the path
// it names. A reference to the path itself is left out.
func writeRefs(ctx context.Context, tx *sql.Tx, m store.NarInfo, replace bool) error {
	if replace {
		_, err := tx.ExecContext(ctx, `DELETE FROM narinfo_refs WHERE cache_id = ? AND hash = ?`, m.CacheID, m.Hash)
		if err != nil {
			return err
		}
	}
	if len(m.References) == 0 {
		return nil
	}
	refs, err := encodeList(m.References)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT OR IGNORE INTO narinfo_refs (cache_id, hash, ref_hash)
		SELECT ?1, ?2, substr(value, 1, 32) FROM json_each(?3) WHERE substr(value, 1, 32) <> ?2`,
		m.CacheID, m.Hash, refs)
	return err
}

// DeleteNarInfo removes the narinfo of hash in the cache, or returns
// store.ErrNotFound.
func (s *Store) DeleteNarInfo(ctx context.Context, cacheID int64, hash string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM narinfos WHERE cache_id = ? AND hash = ?`, cacheID, hash)
		if err != nil {
			return err
		}
		return checkRowAffected(res)
	})
	if err != nil {
		return fmt.Errorf("delete narinfo %s of cache %d: %w", hash, cacheID, translate(err))
	}
	return nil
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

// PresentNarInfos returns those of hashes that the cache has a narinfo of
// whose Nar is not missing, in one query over a JSON array of them.
func (s *Store) PresentNarInfos(ctx context.Context, cacheID int64, hashes []string) ([]string, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	list, err := encodeList(hashes)
	if err != nil {
		return nil, fmt.Errorf("present narinfos of cache %d: %w", cacheID, err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT ni.hash FROM json_each(?2) k
		JOIN narinfos ni ON ni.cache_id = ?1 AND ni.hash = k.value
		JOIN nars n ON n.id = ni.nar_id AND n.missing = 0`, cacheID, list)
	if err != nil {
		return nil, fmt.Errorf("present narinfos of cache %d: %w", cacheID, err)
	}
	present, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("present narinfos of cache %d: %w", cacheID, err)
	}
	return present, nil
}

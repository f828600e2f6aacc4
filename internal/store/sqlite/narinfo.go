package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// narInfoDest returns the scan destinations of narInfoColumns for ni, with
// the times, the upstream and its check going to the others.
func narInfoDest(ni *store.NarInfo, refs, sigs *[]byte, created *int64, upstream *sql.NullString, checked *sql.NullInt64) []any {
	return []any{&ni.Seq, &ni.Key, &ni.StorePath, &ni.NarHash, &ni.NarSize, refs, &ni.Deriver, &ni.System, &ni.CA,
		sigs, created, upstream, checked}
}

// decodeNarInfo fills in the fields of ni that narInfoDest scanned apart.
func decodeNarInfo(ni *store.NarInfo, refs, sigs []byte, created int64, upstream sql.NullString, checked sql.NullInt64) error {
	ni.CreatedAt = fromUnix(created)
	ni.Upstream = upstream.String
	if checked.Valid {
		ni.CheckedAt = fromUnix(checked.Int64)
	}
	var err error
	if ni.References, err = decodeList(refs); err != nil {
		return fmt.Errorf("decode references: %w", err)
	}
	if ni.Sigs, err = decodeList(sigs); err != nil {
		return fmt.Errorf("decode sigs: %w", err)
	}
	return nil
}

// scanNarInfo reads a row of getNarInfoSQL into a narinfo of hash in the
// cache and its Nar.
func scanNarInfo(sc scanner, cacheID int64, hash string) (store.NarInfo, store.Nar, error) {
	ni := store.NarInfo{CacheID: cacheID, Hash: hash}
	var n store.Nar
	var refs, sigs []byte
	var created, narCreated int64
	var upstream sql.NullString
	var checked sql.NullInt64
	dest := append(narInfoDest(&ni, &refs, &sigs, &created, &upstream, &checked), narDest(&n, &narCreated)...)
	if err := sc.Scan(dest...); err != nil {
		return store.NarInfo{}, store.Nar{}, err
	}
	if err := decodeNarInfo(&ni, refs, sigs, created, upstream, checked); err != nil {
		return store.NarInfo{}, store.Nar{}, err
	}
	if ni.Upstream != "" {
		return ni, store.Nar{}, nil
	}
	n.CreatedAt = fromUnix(narCreated)
	ni.FileHash = n.FileHash
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
	var narID sql.NullInt64
	if m.Upstream == "" {
		err = tx.QueryRowContext(ctx, `SELECT n.id FROM nars n
			JOIN cache_nars cn ON cn.nar_id = n.id AND cn.cache_id = ?
			WHERE n.file_hash = ? AND n.missing = 0`, m.CacheID, m.FileHash).Scan(&narID)
		if err != nil {
			return store.NarInfo{}, fmt.Errorf("nar %s: %w", m.FileHash, translate(err))
		}
		m.CheckedAt = time.Time{}
	} else {
		if m.FileHash != "" {
			return store.NarInfo{}, fmt.Errorf("the upstream-only narinfo %s names the NAR file %s", m.Hash, m.FileHash)
		}
		if err := cacheExists(ctx, tx, m.CacheID); err != nil {
			return store.NarInfo{}, err
		}
		m.CheckedAt = orNow(m.CheckedAt)
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

// writeNarInfo inserts m, a new narinfo serving the Nar narID (none if it
// is upstream-only), setting its Seq, or updates the narinfo with m's Seq.
func writeNarInfo(ctx context.Context, tx *sql.Tx, m *store.NarInfo, narID sql.NullInt64, insert bool) error {
	refs, err := encodeList(m.References)
	if err != nil {
		return fmt.Errorf("encode references: %w", err)
	}
	sigs, err := encodeList(m.Sigs)
	if err != nil {
		return fmt.Errorf("encode sigs: %w", err)
	}
	upstream, checked := sql.NullString{}, sql.NullInt64{}
	if m.Upstream != "" {
		upstream = sql.NullString{String: m.Upstream, Valid: true}
		checked = sql.NullInt64{Int64: m.CheckedAt.Unix(), Valid: true}
	}
	if insert {
		return tx.QueryRowContext(ctx, `
			INSERT INTO narinfos (cache_id, hash, key, store_path, nar_id, nar_hash, nar_size, refs, deriver, system, ca,
				sigs, created_at, upstream, checked_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
			m.CacheID, m.Hash, m.Key, m.StorePath, narID, m.NarHash, m.NarSize, refs, m.Deriver, m.System, m.CA, sigs,
			m.CreatedAt.Unix(), upstream, checked).Scan(&m.Seq)
	}
	_, err = tx.ExecContext(ctx, `
		UPDATE narinfos SET key = ?, store_path = ?, nar_id = ?, nar_hash = ?, nar_size = ?, refs = ?,
			deriver = ?, system = ?, ca = ?, sigs = ?, created_at = ?, upstream = ?, checked_at = ?
		WHERE seq = ?`,
		m.Key, m.StorePath, narID, m.NarHash, m.NarSize, refs, m.Deriver, m.System, m.CA, sigs, m.CreatedAt.Unix(),
		upstream, checked, m.Seq)
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

// PresentNarInfos returns those of hashes that the cache has an
// upstream-only narinfo of or a narinfo whose Nar is not missing, with
// the upstream-only ones apart, in one query over a JSON array of them.
func (s *Store) PresentNarInfos(ctx context.Context, cacheID int64, hashes []string) (present, upstream []string, err error) {
	if len(hashes) == 0 {
		return nil, nil, nil
	}
	list, err := encodeList(hashes)
	if err != nil {
		return nil, nil, fmt.Errorf("present narinfos of cache %d: %w", cacheID, err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT ni.hash, ni.nar_id IS NULL FROM json_each(?2) k
		JOIN narinfos ni ON ni.cache_id = ?1 AND ni.hash = k.value
		LEFT JOIN nars n ON n.id = ni.nar_id
		WHERE ni.nar_id IS NULL OR n.missing = 0`, cacheID, list)
	if err != nil {
		return nil, nil, fmt.Errorf("present narinfos of cache %d: %w", cacheID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var h string
		var up bool
		if err := rows.Scan(&h, &up); err != nil {
			return nil, nil, fmt.Errorf("present narinfos of cache %d: %w", cacheID, err)
		}
		present = append(present, h)
		if up {
			upstream = append(upstream, h)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("present narinfos of cache %d: %w", cacheID, err)
	}
	return present, upstream, nil
}

// UpstreamNarInfos returns up to limit upstream-only narinfos checked
// before before, least recently checked first, on the partial index of
// their check times.
func (s *Store) UpstreamNarInfos(ctx context.Context, before time.Time, limit int) ([]store.NarInfo, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT ni.cache_id, ni.hash, `+narInfoColumns+` FROM narinfos ni
		WHERE ni.nar_id IS NULL AND ni.checked_at < ? ORDER BY ni.checked_at, ni.seq LIMIT ?`,
		secondsBefore(before), limit)
	if err != nil {
		return nil, fmt.Errorf("upstream-only narinfos checked before %v: %w", before, err)
	}
	defer rows.Close()
	var list []store.NarInfo
	for rows.Next() {
		var ni store.NarInfo
		var refs, sigs []byte
		var created int64
		var upstream sql.NullString
		var checked sql.NullInt64
		dest := append([]any{&ni.CacheID, &ni.Hash}, narInfoDest(&ni, &refs, &sigs, &created, &upstream, &checked)...)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("upstream-only narinfos: %w", err)
		}
		if err := decodeNarInfo(&ni, refs, sigs, created, upstream, checked); err != nil {
			return nil, fmt.Errorf("upstream-only narinfo %s: %w", ni.Hash, err)
		}
		list = append(list, ni)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("upstream-only narinfos: %w", err)
	}
	return list, nil
}

// DropUpstreamNarInfo removes the narinfo of hash in the cache if it is
// upstream-only, or returns store.ErrNotFound.
func (s *Store) DropUpstreamNarInfo(ctx context.Context, cacheID int64, hash string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM narinfos WHERE cache_id = ? AND hash = ? AND nar_id IS NULL`, cacheID, hash)
		if err != nil {
			return err
		}
		return checkRowAffected(res)
	})
	if err != nil {
		return fmt.Errorf("drop upstream-only narinfo %s of cache %d: %w", hash, cacheID, translate(err))
	}
	return nil
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

// narInfoColumns are the columns of a narinfo ni.
const narInfoColumns = `ni.seq, ni.cache_id, ni.hash, ni.key, ni.store_path, ni.nar_hash, ni.nar_size,
	ni.refs, ni.deriver, ni.system, ni.ca, ni.sigs, ni.created_at, ni.upstream, ni.checked_at`

// getNarInfoSQL finds the narinfo by its unique (cache_id, hash), then its
// Nar, if it has one, by primary key; an upstream-only narinfo reads the
// zero Nar.
const getNarInfoSQL = `SELECT ` + narInfoColumns + `, coalesce(n.file_hash, ''), coalesce(n.file_size, 0),
	coalesce(n.compression, ''), coalesce(n.nar_hash, ''), coalesce(n.nar_size, 0), coalesce(n.md5, ''),
	coalesce(n.blob_key, ''), coalesce(n.created_at, 'epoch'), coalesce(n.missing, false),
	coalesce(n.packed_hash, ''), coalesce(n.packed_size, 0)
	FROM narinfos ni LEFT JOIN nars n ON n.id = ni.nar_id
	WHERE ni.cache_id = $1 AND ni.hash = $2`

// narInfoRow is a narinfo with the Nar it serves, as getNarInfoSQL reads
// them.
type narInfoRow struct {
	ni store.NarInfo
	n  store.Nar
}

// narInfoDest returns the scan destinations of narInfoColumns for ni, with
// the upstream and its check time going to the others.
func narInfoDest(ni *store.NarInfo, upstream **string, checked **time.Time) []any {
	return []any{&ni.Seq, &ni.CacheID, &ni.Hash, &ni.Key, &ni.StorePath, &ni.NarHash, &ni.NarSize,
		&ni.References, &ni.Deriver, &ni.System, &ni.CA, &ni.Sigs, &ni.CreatedAt, upstream, checked}
}

// normNarInfo fills in and normalises the fields of ni that narInfoDest
// scanned.
func normNarInfo(ni *store.NarInfo, upstream *string, checked *time.Time) {
	ni.CreatedAt = ni.CreatedAt.UTC()
	if upstream != nil {
		ni.Upstream = *upstream
	}
	if checked != nil {
		ni.CheckedAt = checked.UTC()
	}
	ni.References, ni.Sigs = normList(ni.References), normList(ni.Sigs)
}

// scanNarInfo reads a row of getNarInfoSQL.
func scanNarInfo(row pgx.CollectableRow) (narInfoRow, error) {
	var r narInfoRow
	ni, n := &r.ni, &r.n
	var upstream *string
	var checked *time.Time
	dest := append(narInfoDest(ni, &upstream, &checked), narDest(n, &n.CreatedAt)...)
	if err := row.Scan(dest...); err != nil {
		return narInfoRow{}, err
	}
	normNarInfo(ni, upstream, checked)
	if ni.Upstream != "" {
		r.n = store.Nar{}
		return r, nil
	}
	n.CreatedAt = n.CreatedAt.UTC()
	ni.FileHash = n.FileHash
	return r, nil
}

// GetNarInfo returns the narinfo of hash in the cache and the Nar it
// serves, or store.ErrNotFound.
func (s *Store) GetNarInfo(ctx context.Context, cacheID int64, hash string) (store.NarInfo, store.Nar, error) {
	r, err := one(ctx, s, scanNarInfo, getNarInfoSQL, cacheID, hash)
	if err != nil {
		return store.NarInfo{}, store.Nar{}, fmt.Errorf("get narinfo %s of cache %d: %w", hash, cacheID, translate(err))
	}
	return r.ni, r.n, nil
}

// errMergeFailed marks the error of a merge, which PutNarInfo returns
// unchanged.
type errMergeFailed struct{ err error }

func (e errMergeFailed) Error() string { return e.err.Error() }

// PutNarInfo reads the narinfo of (ni.CacheID, ni.Hash), merges it and
// writes the result, in one transaction. merge runs while the transaction
// holds locks: it must be quick and must not call the Store; it may be
// called again if the transaction is retried. The merged record must keep
// ni's CacheID and Hash; a zero CreatedAt is set to the current time.
//
// An existing narinfo is read FOR UPDATE, so that concurrent merges of it,
// in this process or another, run one after the other. A new narinfo takes
// its Seq from the single row of narinfo_seq, incremented in the inserting
// transaction: the row stays locked until that transaction ends, so the
// next insert gets the next Seq only after this one has committed, and a
// reader paging by Seq never sees a Seq before a lower one it could still
// miss. (A sequence would not do: transactions that draw from it commit in
// any order.) This serialises the adding of narinfos, across all
// processes, for the few statements from the increment to the commit.
// Taking the counter before the second look for the narinfo also makes
// concurrent puts of one new narinfo merge one after the other rather than
// collide.
func (s *Store) PutNarInfo(ctx context.Context, ni store.NarInfo, merge func(old *store.NarInfo) (store.NarInfo, error)) (store.NarInfo, error) {
	var out store.NarInfo
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		if out, err = s.putNarInfo(ctx, tx, ni, merge); err != nil {
			return err
		}
		return s.notify(ctx, tx)
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
func (s *Store) putNarInfo(ctx context.Context, tx pgx.Tx, ni store.NarInfo, merge func(old *store.NarInfo) (store.NarInfo, error)) (store.NarInfo, error) {
	old, err := currentNarInfo(ctx, tx, ni)
	if err != nil {
		return store.NarInfo{}, err
	}
	var seq int64
	if old == nil {
		if err := tx.QueryRow(ctx, `UPDATE narinfo_seq SET last = last + 1 RETURNING last`).Scan(&seq); err != nil {
			return store.NarInfo{}, fmt.Errorf("take seq: %w", err)
		}
		// An insert of the same narinfo may have committed while this one
		// waited for the counter. The Seq taken is then left unused.
		if old, err = currentNarInfo(ctx, tx, ni); err != nil {
			return store.NarInfo{}, err
		}
	}
	m, err := merge(old)
	if err != nil {
		return store.NarInfo{}, errMergeFailed{err}
	}
	if m.CacheID != ni.CacheID || m.Hash != ni.Hash {
		return store.NarInfo{}, fmt.Errorf("merge returned the narinfo %s of cache %d", m.Hash, m.CacheID)
	}
	if m.Upstream == "" {
		m.CheckedAt = time.Time{}
	} else {
		if m.FileHash != "" {
			return store.NarInfo{}, fmt.Errorf("the upstream-only narinfo %s names the NAR file %s", m.Hash, m.FileHash)
		}
		m.CheckedAt = orNow(m.CheckedAt)
	}
	m.CreatedAt = orNow(m.CreatedAt)
	m.References, m.Sigs = normList(m.References), normList(m.Sigs)
	if old == nil {
		m.Seq = seq
	} else {
		m.Seq = old.Seq
	}
	if err := writeNarInfo(ctx, tx, m, old == nil); err != nil {
		return store.NarInfo{}, err
	}
	if old == nil || !slices.Equal(old.References, m.References) {
		if err := writeRefs(ctx, tx, m, old != nil); err != nil {
			return store.NarInfo{}, fmt.Errorf("write references: %w", err)
		}
	}
	return m, nil
}

// writeRefs writes the rows of narinfo_refs of m, replacing those of the
// narinfo's earlier version if replace. A reference is a store path base
// name, "<hash>-<name>": its first 32 characters are the hash of the path
// it names. A reference to the path itself is left out.
func writeRefs(ctx context.Context, tx pgx.Tx, m store.NarInfo, replace bool) error {
	if replace {
		_, err := tx.Exec(ctx, `DELETE FROM narinfo_refs WHERE cache_id = $1 AND hash = $2`, m.CacheID, m.Hash)
		if err != nil {
			return err
		}
	}
	if len(m.References) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO narinfo_refs (cache_id, hash, ref_hash)
		SELECT DISTINCT $1::bigint, $2::text, left(r, 32) FROM unnest($3::text[]) AS r
		WHERE left(r, 32) <> $2::text`, m.CacheID, m.Hash, m.References)
	return err
}

// currentNarInfo reads and locks the narinfo of (ni.CacheID, ni.Hash), or
// returns nil if there is none.
func currentNarInfo(ctx context.Context, tx pgx.Tx, ni store.NarInfo) (*store.NarInfo, error) {
	rows, err := tx.Query(ctx, getNarInfoSQL+` FOR UPDATE OF ni`, ni.CacheID, ni.Hash)
	if err != nil {
		return nil, fmt.Errorf("read current record: %w", err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, scanNarInfo)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read current record: %w", err)
	}
	return &r.ni, nil
}

// writeNarInfo inserts m, a new narinfo, or updates the narinfo with m's
// Seq. The Nar a narinfo that is not upstream-only names must be linked to
// its cache: the select finds the link, and the foreign key keeps it until
// the transaction ends. An upstream-only narinfo needs its cache, which
// the foreign key of an insert checks; the row of an update holds it.
func writeNarInfo(ctx context.Context, tx pgx.Tx, m store.NarInfo, insert bool) error {
	var narID *int64
	var upstream *string
	var checked *time.Time
	if m.Upstream == "" {
		narID = new(int64)
		err := tx.QueryRow(ctx, `SELECT n.id FROM nars n
			JOIN cache_nars cn ON cn.nar_id = n.id AND cn.cache_id = $1
			WHERE n.file_hash = $2 AND NOT n.missing`, m.CacheID, m.FileHash).Scan(narID)
		if err != nil {
			return fmt.Errorf("nar %s: %w", m.FileHash, translate(err))
		}
	} else {
		upstream, checked = &m.Upstream, &m.CheckedAt
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM caches WHERE id = $1`, m.CacheID).Scan(&one); err != nil {
			return fmt.Errorf("cache %d: %w", m.CacheID, translate(err))
		}
	}
	refs, sigs := orEmpty(m.References), orEmpty(m.Sigs)
	var err error
	if insert {
		_, err = tx.Exec(ctx, `
			INSERT INTO narinfos (seq, cache_id, hash, key, store_path, nar_id, nar_hash, nar_size, refs, deriver,
				system, ca, sigs, created_at, upstream, checked_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
			m.Seq, m.CacheID, m.Hash, m.Key, m.StorePath, narID, m.NarHash, m.NarSize, refs, m.Deriver,
			m.System, m.CA, sigs, m.CreatedAt, upstream, checked)
	} else {
		_, err = tx.Exec(ctx, `
			UPDATE narinfos SET key = $2, store_path = $3, nar_id = $4, nar_hash = $5, nar_size = $6, refs = $7,
				deriver = $8, system = $9, ca = $10, sigs = $11, created_at = $12, upstream = $13, checked_at = $14
			WHERE seq = $1`,
			m.Seq, m.Key, m.StorePath, narID, m.NarHash, m.NarSize, refs, m.Deriver, m.System, m.CA, sigs, m.CreatedAt,
			upstream, checked)
	}
	return err
}

// DeleteNarInfo removes the narinfo of hash in the cache, or returns
// store.ErrNotFound.
func (s *Store) DeleteNarInfo(ctx context.Context, cacheID int64, hash string) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM narinfos WHERE cache_id = $1 AND hash = $2`, cacheID, hash)
		if err != nil {
			return err
		}
		if err := checkRowAffected(tag.RowsAffected()); err != nil {
			return err
		}
		return s.notify(ctx, tx)
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
	keys, err := collect(ctx, s, func(row pgx.CollectableRow) (store.NarInfoKey, error) {
		var k store.NarInfoKey
		err := row.Scan(&k.Seq, &k.CacheID, &k.Hash)
		return k, err
	}, `SELECT seq, cache_id, hash FROM narinfos WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list narinfo keys after %d: %w", after, translate(err))
	}
	return keys, nil
}

// PresentNarInfos returns those of hashes that the cache has an
// upstream-only narinfo of or a narinfo whose Nar is not missing, with
// the upstream-only ones apart, in one query over an array of them.
func (s *Store) PresentNarInfos(ctx context.Context, cacheID int64, hashes []string) (present, upstream []string, err error) {
	if len(hashes) == 0 {
		return nil, nil, nil
	}
	type row struct {
		hash     string
		upstream bool
	}
	rows, err := collect(ctx, s, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.hash, &x.upstream)
		return x, err
	}, `SELECT DISTINCT ni.hash, ni.nar_id IS NULL FROM narinfos ni
		LEFT JOIN nars n ON n.id = ni.nar_id
		WHERE ni.cache_id = $1 AND ni.hash = ANY($2::text[]) AND (ni.nar_id IS NULL OR NOT n.missing)`, cacheID, hashes)
	if err != nil {
		return nil, nil, fmt.Errorf("present narinfos of cache %d: %w", cacheID, translate(err))
	}
	for _, r := range rows {
		present = append(present, r.hash)
		if r.upstream {
			upstream = append(upstream, r.hash)
		}
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
	list, err := collect(ctx, s, func(row pgx.CollectableRow) (store.NarInfo, error) {
		var ni store.NarInfo
		var upstream *string
		var checked *time.Time
		if err := row.Scan(narInfoDest(&ni, &upstream, &checked)...); err != nil {
			return store.NarInfo{}, err
		}
		normNarInfo(&ni, upstream, checked)
		return ni, nil
	}, `SELECT `+narInfoColumns+` FROM narinfos ni
		WHERE ni.nar_id IS NULL AND ni.checked_at < $1 ORDER BY ni.checked_at, ni.seq LIMIT $2`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("upstream-only narinfos checked before %v: %w", before, translate(err))
	}
	return list, nil
}

// DropUpstreamNarInfo removes the narinfo of hash in the cache if it is
// upstream-only, or returns store.ErrNotFound.
func (s *Store) DropUpstreamNarInfo(ctx context.Context, cacheID int64, hash string) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM narinfos WHERE cache_id = $1 AND hash = $2 AND nar_id IS NULL`, cacheID, hash)
		if err != nil {
			return err
		}
		if err := checkRowAffected(tag.RowsAffected()); err != nil {
			return err
		}
		return s.notify(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("drop upstream-only narinfo %s of cache %d: %w", hash, cacheID, translate(err))
	}
	return nil
}

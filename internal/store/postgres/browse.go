package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

// browseColumns are the columns scanBrowsed reads, of narinfos ni joined
// with the nars n they serve.
const browseColumns = `ni.seq, ni.cache_id, ni.hash, ni.key, ni.store_path, ni.nar_hash, ni.nar_size,
	ni.refs, ni.deriver, ni.system, ni.ca, ni.sigs, ni.created_at, n.file_hash`

// nameExpr is the name of a narinfo's store path, lower-cased, as the
// index narinfos_name keeps it: a query uses the index only if it says
// exactly this.
const nameExpr = `(lower(substr(ni.store_path, strpos(ni.store_path, ni.hash COLLATE "C") + 33)) COLLATE "C")`

// scanBrowsed reads a row of browseColumns.
func scanBrowsed(row pgx.CollectableRow) (store.NarInfo, error) {
	var ni store.NarInfo
	err := row.Scan(&ni.Seq, &ni.CacheID, &ni.Hash, &ni.Key, &ni.StorePath, &ni.NarHash, &ni.NarSize,
		&ni.References, &ni.Deriver, &ni.System, &ni.CA, &ni.Sigs, &ni.CreatedAt, &ni.FileHash)
	ni.CreatedAt = ni.CreatedAt.UTC()
	ni.References, ni.Sigs = normList(ni.References), normList(ni.Sigs)
	return ni, err
}

// RecentNarInfos returns up to limit narinfos of the cache, newest first,
// on the index (cache_id, created_at).
func (s *Store) RecentNarInfos(ctx context.Context, cacheID int64, limit int) ([]store.NarInfo, error) {
	if limit < 1 {
		return nil, nil
	}
	l, err := collect(ctx, s, scanBrowsed, `SELECT `+browseColumns+` FROM narinfos ni JOIN nars n ON n.id = ni.nar_id
		WHERE ni.cache_id = $1 ORDER BY ni.created_at DESC, ni.seq DESC LIMIT $2`, cacheID, limit)
	if err != nil {
		return nil, fmt.Errorf("recent narinfos of cache %d: %w", cacheID, translate(err))
	}
	return l, nil
}

// nameBound returns the least string above every string that starts with
// prefix, byte by byte: prefix followed by the highest code point, whose
// UTF-8 encoding sorts after that of any other.
func nameBound(prefix string) string { return prefix + "\U0010FFFF" }

// FindNarInfos returns the narinfos of the cache whose hash or name starts
// with prefix, each found by a range scan of its index.
func (s *Store) FindNarInfos(ctx context.Context, cacheID int64, prefix string, limit int) ([]store.NarInfo, error) {
	if limit < 1 || prefix == "" || strings.ContainsRune(prefix, 0) {
		return nil, nil // PostgreSQL's text holds no NUL: nothing starts with one
	}
	p := strings.ToLower(prefix)
	byHash, err := collect(ctx, s, scanBrowsed, `SELECT `+browseColumns+` FROM narinfos ni JOIN nars n ON n.id = ni.nar_id
		WHERE ni.cache_id = $1 AND ni.hash >= $2 AND ni.hash < $3 ORDER BY ni.hash LIMIT $4`,
		cacheID, p, nameBound(p), limit)
	if err != nil {
		return nil, fmt.Errorf("find narinfos of cache %d: %w", cacheID, translate(err))
	}
	byName, err := collect(ctx, s, scanBrowsed, `SELECT `+browseColumns+` FROM narinfos ni JOIN nars n ON n.id = ni.nar_id
		WHERE ni.cache_id = $1 AND `+nameExpr+` >= $2 AND `+nameExpr+` < $3 ORDER BY `+nameExpr+`, ni.hash LIMIT $4`,
		cacheID, p, nameBound(p), limit)
	if err != nil {
		return nil, fmt.Errorf("find narinfos of cache %d: %w", cacheID, translate(err))
	}
	return mergeFound(byName, byHash), nil
}

// mergeFound returns the narinfos of both lists, each once, ordered by name
// and then hash.
func mergeFound(a, b []store.NarInfo) []store.NarInfo {
	seen := make(map[string]bool, len(a)+len(b))
	var out []store.NarInfo
	for _, ni := range slices.Concat(a, b) {
		if !seen[ni.Hash] {
			seen[ni.Hash] = true
			out = append(out, ni)
		}
	}
	slices.SortFunc(out, func(x, y store.NarInfo) int {
		return cmp.Or(cmp.Compare(pathName(x), pathName(y)), cmp.Compare(x.Hash, y.Hash))
	})
	return out
}

// pathName returns what follows "<hash>-" in the store path of ni,
// lower-cased, as nameExpr does.
func pathName(ni store.NarInfo) string {
	i := strings.Index(ni.StorePath, ni.Hash)
	if i < 0 || i+33 > len(ni.StorePath) {
		return ""
	}
	return strings.ToLower(ni.StorePath[i+33:])
}

// NarInfos returns the narinfos of the cache with the given hashes, in one
// query over an array of them.
func (s *Store) NarInfos(ctx context.Context, cacheID int64, hashes []string) ([]store.NarInfo, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	l, err := collect(ctx, s, scanBrowsed, `SELECT `+browseColumns+` FROM (SELECT DISTINCT unnest($2::text[]) AS hash) k
		JOIN narinfos ni ON ni.cache_id = $1 AND ni.hash = k.hash JOIN nars n ON n.id = ni.nar_id`, cacheID, hashes)
	if err != nil {
		return nil, fmt.Errorf("narinfos of cache %d: %w", cacheID, translate(err))
	}
	return l, nil
}

// Referrers returns up to limit narinfos of the cache that reference hash,
// found on the index narinfo_refs_ref_hash.
func (s *Store) Referrers(ctx context.Context, cacheID int64, hash string, limit int) ([]store.NarInfo, error) {
	if limit < 1 {
		return nil, nil
	}
	l, err := collect(ctx, s, scanBrowsed, `SELECT `+browseColumns+` FROM narinfo_refs r
		JOIN narinfos ni ON ni.cache_id = r.cache_id AND ni.hash = r.hash JOIN nars n ON n.id = ni.nar_id
		WHERE r.cache_id = $1 AND r.ref_hash = $2 ORDER BY ni.store_path COLLATE "C" LIMIT $3`, cacheID, hash, limit)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s in cache %d: %w", hash, cacheID, translate(err))
	}
	return l, nil
}

// closureSizeSQL follows the references of the roots ($2) within the
// cache $1 through narinfo_refs, each path once, and sizes the narinfos of
// the cache it reaches.
const closureSizeSQL = `WITH RECURSIVE closure (hash) AS (
		SELECT unnest($2::text[]) COLLATE "C"
		UNION
		SELECT r.ref_hash FROM closure c JOIN narinfo_refs r ON r.cache_id = $1 AND r.hash = c.hash
	),
	members AS (
		SELECT ni.nar_size, ni.nar_id FROM closure c JOIN narinfos ni ON ni.cache_id = $1 AND ni.hash = c.hash
	)
	SELECT (SELECT count(*) FROM members), (SELECT coalesce(sum(nar_size), 0)::bigint FROM members),
		(SELECT coalesce(sum(file_size), 0)::bigint FROM nars WHERE id IN (SELECT nar_id FROM members))`

// Closure returns the size of the closure of the hashes within the cache.
func (s *Store) Closure(ctx context.Context, cacheID int64, hashes []string) (store.ClosureSize, error) {
	var c store.ClosureSize
	if len(hashes) == 0 {
		return c, nil
	}
	err := s.do(ctx, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, closureSizeSQL, cacheID, hashes).Scan(&c.Paths, &c.NarBytes, &c.FileBytes)
	})
	if err != nil {
		return store.ClosureSize{}, fmt.Errorf("closure in cache %d: %w", cacheID, translate(err))
	}
	return c, nil
}

// LastRead returns when the narinfo of hash was last read, or the zero
// time.
func (s *Store) LastRead(ctx context.Context, cacheID int64, hash string) (time.Time, error) {
	at, err := one(ctx, s, pgx.RowTo[*time.Time], `SELECT last_access FROM narinfos WHERE cache_id = $1 AND hash = $2`, cacheID, hash)
	if err != nil {
		return time.Time{}, fmt.Errorf("last read of %s in cache %d: %w", hash, cacheID, translate(err))
	}
	if at == nil {
		return time.Time{}, nil
	}
	return at.UTC(), nil
}

package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// browseColumns are the columns scanBrowsed reads, of narinfos ni joined
// with the nars n they serve.
const browseColumns = `ni.hash, ni.seq, ni.key, ni.store_path, ni.nar_hash, ni.nar_size, ni.refs, ni.deriver,
	ni.system, ni.ca, ni.sigs, ni.created_at, n.file_hash`

// nameExpr is the name of a narinfo's store path, lower-cased, as the
// index narinfos_name keeps it: a query uses the index only if it says
// exactly this.
const nameExpr = `lower(substr(ni.store_path, instr(ni.store_path, ni.hash) + 33))`

// The queries of the dashboard that take a range of an index.
const (
	recentSQL = `SELECT ` + browseColumns + ` FROM narinfos ni JOIN nars n ON n.id = ni.nar_id
		WHERE ni.cache_id = ? ORDER BY ni.created_at DESC, ni.seq DESC LIMIT ?`
	findByHashSQL = `SELECT ` + browseColumns + ` FROM narinfos ni JOIN nars n ON n.id = ni.nar_id
		WHERE ni.cache_id = ? AND ni.hash >= ? AND ni.hash < ? ORDER BY ni.hash LIMIT ?`
	findByNameSQL = `SELECT ` + browseColumns + ` FROM narinfos ni JOIN nars n ON n.id = ni.nar_id
		WHERE ni.cache_id = ? AND ` + nameExpr + ` >= ? AND ` + nameExpr + ` < ? ORDER BY ` + nameExpr + `, ni.hash LIMIT ?`
	// referrersSQL sorts what it finds: the referrers of one path.
	referrersSQL = `SELECT ` + browseColumns + ` FROM narinfo_refs r
		JOIN narinfos ni ON ni.cache_id = r.cache_id AND ni.hash = r.hash JOIN nars n ON n.id = ni.nar_id
		WHERE r.cache_id = ? AND r.ref_hash = ? ORDER BY ni.store_path LIMIT ?`
)

// scanBrowsed reads the narinfos of rows of browseColumns in the cache.
func scanBrowsed(rows *sql.Rows, cacheID int64) ([]store.NarInfo, error) {
	defer rows.Close()
	var out []store.NarInfo
	for rows.Next() {
		ni := store.NarInfo{CacheID: cacheID}
		var refs, sigs []byte
		var created int64
		if err := rows.Scan(&ni.Hash, &ni.Seq, &ni.Key, &ni.StorePath, &ni.NarHash, &ni.NarSize, &refs, &ni.Deriver,
			&ni.System, &ni.CA, &sigs, &created, &ni.FileHash); err != nil {
			return nil, err
		}
		ni.CreatedAt = fromUnix(created)
		var err error
		if ni.References, err = decodeList(refs); err != nil {
			return nil, fmt.Errorf("decode references: %w", err)
		}
		if ni.Sigs, err = decodeList(sigs); err != nil {
			return nil, fmt.Errorf("decode sigs: %w", err)
		}
		out = append(out, ni)
	}
	return out, rows.Err()
}

// browse runs a query of browseColumns on the read pool.
func (s *Store) browse(ctx context.Context, cacheID int64, query string, args ...any) ([]store.NarInfo, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return scanBrowsed(rows, cacheID)
}

// RecentNarInfos returns up to limit narinfos of the cache, newest first,
// on the index (cache_id, created_at).
func (s *Store) RecentNarInfos(ctx context.Context, cacheID int64, limit int) ([]store.NarInfo, error) {
	if limit < 1 {
		return nil, nil
	}
	l, err := s.browse(ctx, cacheID, recentSQL, cacheID, limit)
	if err != nil {
		return nil, fmt.Errorf("recent narinfos of cache %d: %w", cacheID, err)
	}
	return l, nil
}

// nameBound returns the least string above every string that starts with
// prefix, in byte order, for a range scan: prefix followed by the highest
// code point, whose UTF-8 encoding sorts after that of any other.
func nameBound(prefix string) string { return prefix + "\U0010FFFF" }

// FindNarInfos returns the narinfos of the cache whose hash or name starts
// with prefix, each found by a range scan of its index.
func (s *Store) FindNarInfos(ctx context.Context, cacheID int64, prefix string, limit int) ([]store.NarInfo, error) {
	if limit < 1 || prefix == "" {
		return nil, nil
	}
	p := strings.ToLower(prefix)
	byHash, err := s.browse(ctx, cacheID, findByHashSQL,
		cacheID, p, nameBound(p), limit)
	if err != nil {
		return nil, fmt.Errorf("find narinfos of cache %d: %w", cacheID, err)
	}
	byName, err := s.browse(ctx, cacheID, findByNameSQL,
		cacheID, p, nameBound(p), limit)
	if err != nil {
		return nil, fmt.Errorf("find narinfos of cache %d: %w", cacheID, err)
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
// query over a JSON array of them.
func (s *Store) NarInfos(ctx context.Context, cacheID int64, hashes []string) ([]store.NarInfo, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	list, err := encodeList(hashes)
	if err != nil {
		return nil, fmt.Errorf("narinfos of cache %d: %w", cacheID, err)
	}
	l, err := s.browse(ctx, cacheID, `SELECT `+browseColumns+` FROM (SELECT DISTINCT value FROM json_each(?2)) k
		JOIN narinfos ni ON ni.cache_id = ?1 AND ni.hash = k.value JOIN nars n ON n.id = ni.nar_id`, cacheID, list)
	if err != nil {
		return nil, fmt.Errorf("narinfos of cache %d: %w", cacheID, err)
	}
	return l, nil
}

// Referrers returns up to limit narinfos of the cache that reference hash,
// found on the index narinfo_refs_ref_hash.
func (s *Store) Referrers(ctx context.Context, cacheID int64, hash string, limit int) ([]store.NarInfo, error) {
	if limit < 1 {
		return nil, nil
	}
	l, err := s.browse(ctx, cacheID, referrersSQL, cacheID, hash, limit)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s in cache %d: %w", hash, cacheID, err)
	}
	return l, nil
}

// closureSizeSQL follows the references of the roots (a JSON array, ?2)
// within the cache ?1 through narinfo_refs, each path once, and sizes the
// narinfos of the cache it reaches.
const closureSizeSQL = `WITH RECURSIVE closure (hash) AS (
		SELECT value FROM json_each(?2)
		UNION
		SELECT r.ref_hash FROM closure c JOIN narinfo_refs r ON r.cache_id = ?1 AND r.hash = c.hash
	),
	members AS (
		SELECT ni.nar_size, ni.nar_id FROM closure c JOIN narinfos ni ON ni.cache_id = ?1 AND ni.hash = c.hash
	)
	SELECT (SELECT count(*) FROM members), (SELECT coalesce(sum(nar_size), 0) FROM members),
		(SELECT coalesce(sum(file_size), 0) FROM nars WHERE id IN (SELECT nar_id FROM members))`

// Closure returns the size of the closure of the hashes within the cache.
func (s *Store) Closure(ctx context.Context, cacheID int64, hashes []string) (store.ClosureSize, error) {
	var c store.ClosureSize
	if len(hashes) == 0 {
		return c, nil
	}
	list, err := encodeList(hashes)
	if err != nil {
		return c, fmt.Errorf("closure in cache %d: %w", cacheID, err)
	}
	if err := s.r.QueryRowContext(ctx, closureSizeSQL, cacheID, list).Scan(&c.Paths, &c.NarBytes, &c.FileBytes); err != nil {
		return store.ClosureSize{}, fmt.Errorf("closure in cache %d: %w", cacheID, err)
	}
	return c, nil
}

// LastRead returns when the narinfo of hash was last read, or the zero
// time.
func (s *Store) LastRead(ctx context.Context, cacheID int64, hash string) (time.Time, error) {
	var at sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT last_access FROM narinfos WHERE cache_id = ? AND hash = ?`, cacheID, hash).Scan(&at)
	if err != nil {
		return time.Time{}, fmt.Errorf("last read of %s in cache %d: %w", hash, cacheID, translate(err))
	}
	if !at.Valid {
		return time.Time{}, nil
	}
	return fromUnix(at.Int64), nil
}

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/larder-cache/larder/internal/store"
)

// listKeysSQL returns the query of ListKeys for the keys of cache ?1 that
// compare with op (">=" or ">") to ?2, up to ?3 of them. Each arm of the
// UNION ALL is a range scan of a unique (cache_id, key) index, which
// yields its rows in key order, so SQLite merges the three streams instead
// of sorting and stops after ?3 rows. Keys compare with the BINARY
// collation, byte by byte. The kind number, constant in each arm, breaks
// ties between kinds. Upstream-only narinfos, which serve no file, are
// left out.
func listKeysSQL(op string) string {
	return fmt.Sprintf(`
	SELECT key, %[2]d, hash, 0, '', created_at FROM narinfos
		WHERE cache_id = ?1 AND key %[1]s ?2 AND nar_id IS NOT NULL
	UNION ALL
	SELECT cn.key, %[3]d, '', n.file_size, n.md5, cn.created_at
		FROM cache_nars cn JOIN nars n ON n.id = cn.nar_id
		WHERE cn.cache_id = ?1 AND cn.key %[1]s ?2
	UNION ALL
	SELECT key, %[4]d, '', size, etag, created_at FROM objects
		WHERE cache_id = ?1 AND key %[1]s ?2
	ORDER BY 1, 2 LIMIT ?3`, op, store.EntryNarInfo, store.EntryNar, store.EntryObject)
}

// ListKeys returns up to limit entries of the cache, ordered by key, whose
// keys start with prefix and sort after after.
//
// The query has a lower bound only: keys at or after prefix, or after
// after if that is not below prefix (every key after it then starts with
// prefix or sorts after all that do). The rows come in key order, so
// reading stops at the first key past those that start with prefix; the
// driver steps the query row by row, so what lies beyond is never read.
func (s *Store) ListKeys(ctx context.Context, cacheID int64, prefix, after string, limit int) ([]store.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	stmt, bound := s.listKeysFrom, prefix
	if after >= prefix {
		stmt, bound = s.listKeysAfter, after
	}
	rows, err := stmt.QueryContext(ctx, cacheID, bound, limit)
	if err != nil {
		return nil, fmt.Errorf("list keys of cache %d: %w", cacheID, err)
	}
	defer rows.Close()
	list, err := scanEntries(rows, prefix, limit)
	if err != nil {
		return nil, fmt.Errorf("list keys of cache %d: %w", cacheID, err)
	}
	return list, nil
}

// scanEntries reads the rows of listKeysSQL up to the first whose key does
// not start with prefix.
func scanEntries(rows *sql.Rows, prefix string, limit int) ([]store.Entry, error) {
	list := make([]store.Entry, 0, min(limit, 1024))
	for rows.Next() {
		var e store.Entry
		var modified int64
		if err := rows.Scan(&e.Key, &e.Kind, &e.Hash, &e.Size, &e.ETag, &modified); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(e.Key, prefix) {
			break
		}
		e.Modified = fromUnix(modified)
		list = append(list, e)
	}
	return list, rows.Err()
}

package postgres

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

// listKeysSQL returns the query of ListKeys for the keys of cache $1 that
// compare with op (">=" or ">") to $2, up to $3 of them, and, if bounded,
// sort before $4. Each arm of the UNION ALL is a range scan of a unique
// (cache_id, key) index, which yields its rows in key order, limited to $3
// rows; the server merges the three streams (Merge Append) instead of
// sorting them, and stops after $3 rows. Keys compare with their columns'
// "C" collation, byte by byte. The kind number, constant in each arm,
// breaks ties between kinds. Upstream-only narinfos, which serve no file,
// are left out.
//
// The ORDER BY and LIMIT of each arm are needed: without them PostgreSQL
// does not see that an index on (cache_id, key) scanned for one cache_id
// yields keys in order, and sorts every key of the cache. The columns of
// the arms have the same types and collations, so that the union is one
// append of the three.
func listKeysSQL(op string, bounded bool) string {
	cond := func(column string) string {
		c := column + " " + op + " $2"
		if bounded {
			c += " AND " + column + " < $4"
		}
		return c
	}
	return fmt.Sprintf(`
	SELECT * FROM (
		(SELECT key, %[1]d AS kind, hash, 0::bigint AS size, ''::text AS etag, created_at FROM narinfos
			WHERE cache_id = $1 AND %[4]s AND nar_id IS NOT NULL ORDER BY key LIMIT $3)
		UNION ALL
		(SELECT cn.key, %[2]d, ''::text COLLATE "C", n.file_size, n.md5, cn.created_at
			FROM cache_nars cn JOIN nars n ON n.id = cn.nar_id
			WHERE cn.cache_id = $1 AND %[5]s ORDER BY cn.key LIMIT $3)
		UNION ALL
		(SELECT key, %[3]d, ''::text COLLATE "C", size, etag, created_at FROM objects
			WHERE cache_id = $1 AND %[4]s ORDER BY key LIMIT $3)
	) entries ORDER BY key, kind LIMIT $3`, store.EntryNarInfo, store.EntryNar, store.EntryObject,
		cond("key"), cond("cn.key"))
}

// The queries of ListKeys, by the operator of their lower bound and
// whether they have an upper one.
var (
	listKeysFrom         = listKeysSQL(">=", false)
	listKeysAfter        = listKeysSQL(">", false)
	listKeysFromBounded  = listKeysSQL(">=", true)
	listKeysAfterBounded = listKeysSQL(">", true)
)

// ListKeys returns up to limit entries of the cache, ordered by key, whose
// keys start with prefix and sort after after.
//
// The query's lower bound is prefix, or after if that is not below prefix
// (every key after it then starts with prefix or sorts after all that do).
// Its upper bound, if there is one, is the least string after all those
// that start with prefix, so that the index scans stop at the end of the
// prefix's range.
func (s *Store) ListKeys(ctx context.Context, cacheID int64, prefix, after string, limit int) ([]store.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	bound, inclusive := prefix, true
	if after >= prefix {
		bound, inclusive = after, false
	}
	end, bounded := prefixEnd(prefix)
	args := []any{cacheID, bound, limit}
	var sql string
	switch {
	case inclusive && bounded:
		sql, args = listKeysFromBounded, append(args, end)
	case bounded:
		sql, args = listKeysAfterBounded, append(args, end)
	case inclusive:
		sql = listKeysFrom
	default:
		sql = listKeysAfter
	}
	list, err := collect(ctx, s, scanEntry, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list keys of cache %d: %w", cacheID, translate(err))
	}
	// The bounds are exact for prefixes that are valid UTF-8; this keeps
	// the contract for others too.
	for i, e := range list {
		if !strings.HasPrefix(e.Key, prefix) {
			return list[:i], nil
		}
	}
	return list, nil
}

// scanEntry reads a row of listKeysSQL.
func scanEntry(row pgx.CollectableRow) (store.Entry, error) {
	var e store.Entry
	err := row.Scan(&e.Key, &e.Kind, &e.Hash, &e.Size, &e.ETag, &e.Modified)
	e.Modified = e.Modified.UTC()
	return e, err
}

// prefixEnd returns the least string that sorts, byte by byte, after every
// string that starts with prefix, and false if there is none: if prefix is
// empty, made of U+10FFFF only, or not valid UTF-8. UTF-8 orders code
// points as their numbers, so the answer is prefix up to its last code
// point below U+10FFFF, with that code point incremented (skipping the
// surrogates, which UTF-8 cannot encode).
func prefixEnd(prefix string) (string, bool) {
	if !utf8.ValidString(prefix) {
		return "", false
	}
	for p := prefix; p != ""; {
		r, size := utf8.DecodeLastRuneInString(p)
		p = p[:len(p)-size]
		if r == utf8.MaxRune {
			continue
		}
		r++
		if r == 0xD800 {
			r = 0xE000
		}
		return p + string(r), true
	}
	return "", false
}

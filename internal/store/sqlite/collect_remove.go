package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
)

// removeNarInfos removes the narinfos of the cache outside the kept set in
// batches, each a range of hashes holding collectBatch of them when it was
// chosen; it adds their hashes and freed bytes to the result.
func (c *collection) removeNarInfos(ctx context.Context) error {
	cursor := ""
	for {
		if c.plan.Flush != nil {
			if err := c.plan.Flush(ctx); err != nil {
				return fmt.Errorf("flush before a batch: %w", err)
			}
		}
		var end sql.NullString
		var n int
		err := c.conn.QueryRowContext(ctx, `SELECT max(hash), count(*) FROM (
			SELECT ni.hash FROM narinfos ni WHERE ni.cache_id = ?1 AND ni.hash > ?4 AND `+removable+`
			ORDER BY ni.hash LIMIT ?5)`, c.plan.CacheID, c.maxSeq, c.cutoff, cursor, c.batch).Scan(&end, &n)
		if err != nil {
			return fmt.Errorf("choose narinfos to remove: %w", err)
		}
		if n == 0 {
			return nil
		}
		if err := c.removeBatch(ctx, cursor, end.String); err != nil {
			return err
		}
		if n < c.batch {
			return nil
		}
		cursor = end.String
	}
}

// removeBatch removes, in one IMMEDIATE transaction, the removable
// narinfos with hashes after from and up to to, once the closure of what
// was committed or pinned since the last batch is in the kept set.
func (c *collection) removeBatch(ctx context.Context, from, to string) error {
	tx, err := c.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var top int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM narinfos`).Scan(&top); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, closureSQL(lateSeed, true), c.plan.CacheID, c.topSeq, c.start); err != nil {
		return fmt.Errorf("keep what was added since the start: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `DELETE FROM narinfos AS ni
		WHERE ni.cache_id = ?1 AND ni.hash > ?4 AND ni.hash <= ?5 AND `+removable+`
		RETURNING hash, nar_id`, c.plan.CacheID, c.maxSeq, c.cutoff, from, to)
	if err != nil {
		return fmt.Errorf("remove narinfos: %w", err)
	}
	removed, ids, err := scanRemoved(rows)
	if err != nil {
		return fmt.Errorf("remove narinfos: %w", err)
	}
	var freed int64
	err = tx.QueryRowContext(ctx, `SELECT coalesce(sum(n.file_size), 0) FROM nars n
		WHERE n.id IN (SELECT value FROM json_each(?2))
		AND NOT EXISTS (SELECT 1 FROM narinfos ni WHERE ni.nar_id = n.id AND ni.cache_id = ?1)`,
		c.plan.CacheID, intList(ids)).Scan(&freed)
	if err != nil {
		return fmt.Errorf("size of freed nars: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	c.topSeq = max(c.topSeq, top)
	c.res.RemovedBytes += freed
	return c.removed(ctx, removed)
}

// scanRemoved reads and closes rows of hashes and NAR IDs of removed
// narinfos, and returns both; upstream-only narinfos have no NAR ID.
func scanRemoved(rows *sql.Rows) (hashes []string, ids []int64, err error) {
	defer rows.Close()
	for rows.Next() {
		var h string
		var id sql.NullInt64
		if err := rows.Scan(&h, &id); err != nil {
			return nil, nil, err
		}
		hashes = append(hashes, h)
		if id.Valid {
			ids = append(ids, id.Int64)
		}
	}
	return hashes, ids, rows.Err()
}

// intList returns ids as a JSON array.
func intList(ids []int64) string {
	b := []byte{'['}
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
}

// unlinkNars removes, in batches, the NAR links of the cache made before
// LinkedBefore that no narinfo of the cache serves.
func (c *collection) unlinkNars(ctx context.Context) error {
	var cursor int64
	for {
		n, last, err := c.unlinkBatch(ctx, cursor)
		if err != nil {
			return fmt.Errorf("unlink nars: %w", err)
		}
		c.res.Unlinked += n
		if n < c.batch {
			return nil
		}
		cursor = last
	}
}

// unlinkBatch removes, in one IMMEDIATE transaction, up to collectBatch of
// the links unlinkNars removes, with NAR IDs above after, and returns how
// many it removed and the greatest NAR ID among them.
func (c *collection) unlinkBatch(ctx context.Context, after int64) (n int, last int64, err error) {
	tx, err := c.conn.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `DELETE FROM cache_nars WHERE cache_id = ?1 AND nar_id IN (
			SELECT cn.nar_id FROM cache_nars cn WHERE cn.cache_id = ?1 AND cn.nar_id > ?2 AND cn.created_at < ?3
			AND NOT EXISTS (SELECT 1 FROM narinfos ni WHERE ni.nar_id = cn.nar_id AND ni.cache_id = ?1)
			ORDER BY cn.nar_id LIMIT ?4)
		RETURNING nar_id`, c.plan.CacheID, after, secondsBefore(c.plan.LinkedBefore), c.batch)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return 0, 0, err
		}
		n, last = n+1, max(last, id)
	}
	if err := rows.Err(); err != nil {
		return 0, 0, err
	}
	rows.Close()
	return n, last, tx.Commit()
}

// dryRun fills the result with what removeNarInfos and unlinkNars would
// remove, changing nothing.
func (c *collection) dryRun(ctx context.Context) error {
	args := []any{c.plan.CacheID, c.maxSeq, c.cutoff, secondsBefore(c.plan.LinkedBefore)}
	rows, err := c.conn.QueryContext(ctx, `SELECT ni.hash FROM narinfos ni
		WHERE ni.cache_id = ?1 AND `+removable+` ORDER BY ni.hash`, args[:3]...)
	if err != nil {
		return err
	}
	if err := c.pageRemoved(ctx, rows); err != nil {
		return err
	}
	return c.conn.QueryRowContext(ctx, `SELECT
		(SELECT coalesce(sum(n.file_size), 0) FROM nars n
			WHERE n.id IN (SELECT ni.nar_id FROM narinfos ni WHERE ni.cache_id = ?1 AND `+removable+`)
			AND NOT EXISTS (SELECT 1 FROM narinfos ni WHERE ni.nar_id = n.id AND ni.cache_id = ?1
				AND NOT (`+removable+`))),
		(SELECT count(*) FROM cache_nars cn WHERE cn.cache_id = ?1 AND cn.created_at < ?4
			AND NOT EXISTS (SELECT 1 FROM narinfos ni WHERE ni.nar_id = cn.nar_id AND ni.cache_id = ?1
				AND NOT (`+removable+`)))`,
		args...).Scan(&c.res.RemovedBytes, &c.res.Unlinked)
}

// finish records the end of the collection as the cache's LastGC.
func (c *collection) finish(ctx context.Context) error {
	tx, err := c.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE caches SET last_gc = ? WHERE id = ?`, now().Unix(), c.plan.CacheID)
	if err != nil {
		return err
	}
	if err := checkRowAffected(res); err != nil {
		return err
	}
	return tx.Commit()
}

// removed counts the hashes of removed narinfos and hands them to the
// plan's OnRemove, or adds them to the result.
func (c *collection) removed(ctx context.Context, hashes []string) error {
	if len(hashes) == 0 {
		return nil
	}
	c.res.RemovedPaths += int64(len(hashes))
	if c.plan.OnRemove != nil {
		return c.plan.OnRemove(ctx, hashes)
	}
	c.res.Removed = append(c.res.Removed, hashes...)
	return nil
}

// pageRemoved reads and closes rows of hashes a dry run would remove,
// handing them to removed a batch at a time.
func (c *collection) pageRemoved(ctx context.Context, rows *sql.Rows) error {
	defer rows.Close()
	var page []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return err
		}
		if page = append(page, h); len(page) == c.batch {
			if err := c.removed(ctx, page); err != nil {
				return err
			}
			page = nil
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return c.removed(ctx, page)
}

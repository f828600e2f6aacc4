package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// batch runs fn in a transaction on the collection's connection, again
// if the server rolled it back to resolve a conflict with another.
func (c *collection) batch(ctx context.Context, fn func(tx pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, c.conn, fn)
		if err == nil || attempt == maxAttempts || ctx.Err() != nil || !retryable(err) {
			return err
		}
	}
}

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
		var end *string
		var n int
		err := c.conn.QueryRow(ctx, `SELECT max(hash), count(*) FROM (
			SELECT ni.hash FROM narinfos ni WHERE ni.cache_id = $1 AND ni.hash > $4 AND `+removable+`
			ORDER BY ni.hash LIMIT $5) w`, c.plan.CacheID, c.maxSeq, c.cutoff, cursor, c.size).Scan(&end, &n)
		if err != nil {
			return fmt.Errorf("choose narinfos to remove: %w", err)
		}
		if n == 0 {
			return nil
		}
		var removed []string
		var freed, top int64
		err = c.batch(ctx, func(tx pgx.Tx) error {
			var err error
			removed, freed, top, err = c.removeBatch(ctx, tx, cursor, *end)
			return err
		})
		if err != nil {
			return err
		}
		// The kept set is a table of the transaction: what it added stays
		// only now.
		c.topSeq = top
		c.res.RemovedBytes += freed
		if err := c.removed(ctx, removed); err != nil {
			return err
		}
		if n < c.size {
			return nil
		}
		cursor = *end
	}
}

// removeBatch removes in tx the removable narinfos with hashes after from
// and up to to, once no narinfo is being added and the closure of what
// was committed or pinned since the last batch is in the kept set. It
// returns the hashes removed, the bytes of the NAR files no narinfo of the
// cache serves any more, and the greatest Seq whose closure is now kept.
func (c *collection) removeBatch(ctx context.Context, tx pgx.Tx, from, to string) (
	hashes []string, freed, top int64, err error) {
	if err := tx.QueryRow(ctx, `SELECT last FROM narinfo_seq FOR SHARE`).Scan(&top); err != nil {
		return nil, 0, 0, fmt.Errorf("hold off new narinfos: %w", err)
	}
	if _, err := tx.Exec(ctx, closureSQL(lateSeed, true), c.plan.CacheID, c.topSeq, c.start); err != nil {
		return nil, 0, 0, fmt.Errorf("keep what was added since the start: %w", err)
	}
	rows, err := tx.Query(ctx, `DELETE FROM narinfos ni
		WHERE ni.cache_id = $1 AND ni.hash > $4 AND ni.hash <= $5 AND `+removable+`
		RETURNING ni.hash, ni.nar_id`, c.plan.CacheID, c.maxSeq, c.cutoff, from, to)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("remove narinfos: %w", err)
	}
	var ids []int64
	var h string
	var id *int64 // nil: upstream-only
	_, err = pgx.ForEachRow(rows, []any{&h, &id}, func() error {
		hashes = append(hashes, h)
		if id != nil {
			ids = append(ids, *id)
		}
		return nil
	})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("remove narinfos: %w", err)
	}
	if len(hashes) == 0 {
		return nil, 0, top, nil
	}
	err = tx.QueryRow(ctx, `SELECT coalesce(sum(n.file_size), 0)::bigint FROM nars n WHERE n.id = ANY($2)
		AND NOT EXISTS (SELECT 1 FROM narinfos ni WHERE ni.nar_id = n.id AND ni.cache_id = $1)`,
		c.plan.CacheID, ids).Scan(&freed)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("size of freed nars: %w", err)
	}
	return hashes, freed, top, c.s.notify(ctx, tx)
}

// unlinkNars removes, in batches, the NAR links of the cache made before
// LinkedBefore that no narinfo of the cache serves.
func (c *collection) unlinkNars(ctx context.Context) error {
	var cursor int64
	for {
		var n, chosen int
		var last int64
		err := c.batch(ctx, func(tx pgx.Tx) error {
			var err error
			n, chosen, last, err = c.unlinkBatch(ctx, tx, cursor)
			return err
		})
		if err != nil {
			return fmt.Errorf("unlink nars: %w", err)
		}
		c.res.Unlinked += n
		if chosen < c.size {
			return nil
		}
		cursor = last
	}
}

// unlinkBatch removes in tx up to collectBatch of the links unlinkNars
// removes, with NAR IDs above after. It locks them first, skipping those a
// transaction adding a narinfo for holds, then checks them again in a
// statement of its own: a narinfo committed in between is seen, and none
// can be added once they are locked. It returns how many links it removed
// and chose, and the greatest NAR ID it chose.
func (c *collection) unlinkBatch(ctx context.Context, tx pgx.Tx, after int64) (n, chosen int, last int64, err error) {
	rows, err := tx.Query(ctx, `SELECT cn.nar_id FROM cache_nars cn
		WHERE cn.cache_id = $1 AND cn.nar_id > $2 AND cn.created_at < $3
		AND NOT EXISTS (SELECT 1 FROM narinfos ni WHERE ni.nar_id = cn.nar_id AND ni.cache_id = $1 OFFSET 0)
		ORDER BY cn.nar_id LIMIT $4 FOR UPDATE SKIP LOCKED`,
		c.plan.CacheID, after, secondsBefore(c.plan.LinkedBefore), c.size)
	if err != nil {
		return 0, 0, 0, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(ids) == 0 {
		return 0, 0, 0, err
	}
	tag, err := tx.Exec(ctx, `DELETE FROM cache_nars cn WHERE cn.cache_id = $1 AND cn.nar_id = ANY($2)
		AND NOT EXISTS (SELECT 1 FROM narinfos ni WHERE ni.nar_id = cn.nar_id AND ni.cache_id = $1 OFFSET 0)`,
		c.plan.CacheID, ids)
	if err != nil {
		return 0, 0, 0, err
	}
	return int(tag.RowsAffected()), len(ids), ids[len(ids)-1], nil
}

// dryRun fills the result with what removeNarInfos and unlinkNars would
// remove, changing nothing.
func (c *collection) dryRun(ctx context.Context) error {
	args := []any{c.plan.CacheID, c.maxSeq, c.cutoff, secondsBefore(c.plan.LinkedBefore)}
	rows, err := c.conn.Query(ctx, `SELECT ni.hash FROM narinfos ni
		WHERE ni.cache_id = $1 AND `+removable+` ORDER BY ni.hash`, args[:3]...)
	if err != nil {
		return err
	}
	var page []string
	var h string
	_, err = pgx.ForEachRow(rows, []any{&h}, func() error {
		if page = append(page, h); len(page) < c.size {
			return nil
		}
		err := c.removed(ctx, page)
		page = nil
		return err
	})
	if err == nil {
		err = c.removed(ctx, page)
	}
	if err != nil {
		return err
	}
	return c.conn.QueryRow(ctx, `SELECT
		(SELECT coalesce(sum(n.file_size), 0)::bigint FROM nars n
			WHERE n.id IN (SELECT ni.nar_id FROM narinfos ni WHERE ni.cache_id = $1 AND `+removable+`)
			AND NOT EXISTS (SELECT 1 FROM narinfos ni WHERE ni.nar_id = n.id AND ni.cache_id = $1
				AND NOT (`+removable+`))),
		(SELECT count(*) FROM cache_nars cn WHERE cn.cache_id = $1 AND cn.created_at < $4
			AND NOT EXISTS (SELECT 1 FROM narinfos ni WHERE ni.nar_id = cn.nar_id AND ni.cache_id = $1
				AND NOT (`+removable+`)))`,
		args...).Scan(&c.res.RemovedBytes, &c.res.Unlinked)
}

// finish records the end of the collection as the cache's LastGC.
func (c *collection) finish(ctx context.Context) error {
	return c.batch(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE caches SET last_gc = $2 WHERE id = $1`, c.plan.CacheID, now())
		if err != nil {
			return err
		}
		if err := checkRowAffected(tag.RowsAffected()); err != nil {
			return err
		}
		return c.s.notify(ctx, tx)
	})
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

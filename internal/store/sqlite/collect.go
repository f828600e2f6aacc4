package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"

	"github.com/larder-cache/larder/internal/store"
)

// defaultCollectBatch is how many narinfos or NAR links Collect removes in
// one transaction: few enough that a push waits for the write lock only
// briefly.
const defaultCollectBatch = 2000

// lastUse is the time a narinfo ni was last used: the later of its
// creation and its last read.
const lastUse = `max(ni.created_at, coalesce(ni.last_access, ni.created_at))`

// removable says of a narinfo ni of cache ?1 that a collection which
// started when the greatest Seq was ?2 removes it: it is not in the kept
// set, it was committed before the start and it was last used (created or
// read) before ?3, the collection's cutoff: the start of its window of
// use, or its start if the quota dropped roots.
const removable = `ni.seq <= ?2 AND ` + lastUse + ` < ?3
	AND NOT EXISTS (SELECT 1 FROM temp.gc_kept k WHERE k.hash = ni.hash)`

// scratchSQL makes the scratch tables of a collection in the temporary
// database of its connection: the kept set, the pinned hashes, and the
// roots other than pins numbered from the most recently used.
const scratchSQL = `
DROP TABLE IF EXISTS temp.gc_kept;
DROP TABLE IF EXISTS temp.gc_pinned;
DROP TABLE IF EXISTS temp.gc_roots;
CREATE TEMP TABLE gc_kept (hash TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TEMP TABLE gc_pinned (hash TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TEMP TABLE gc_roots (pos INTEGER PRIMARY KEY, hash TEXT NOT NULL);`

// closureSQL returns the statement that adds to the kept set the closure
// of the narinfos of cache ?1 that seed selects (a SELECT of hashes, or a
// UNION of them). The recursive step looks the references of each queued
// hash up by the primary key of narinfo_refs, which leads with (cache_id,
// hash): CROSS JOIN keeps the queued row the outer loop, which SQLite,
// knowing nothing of its size, might otherwise make the inner one;
// UNION drops what is queued already, in the temporary database, so the
// closure is computed on disk as much as in memory. References to hashes
// the cache does not hold join nothing further. With prune, the step skips
// hashes in the kept set already, whose closure is kept too.
func closureSQL(seed string, prune bool) string {
	skip := ""
	if prune {
		skip = ` WHERE NOT EXISTS (SELECT 1 FROM temp.gc_kept k WHERE k.hash = r.ref_hash)`
	}
	return `INSERT OR IGNORE INTO temp.gc_kept (hash)
	WITH RECURSIVE closure (hash) AS (
		` + seed + `
		UNION
		SELECT r.ref_hash FROM closure c CROSS JOIN narinfo_refs r ON r.cache_id = ?1 AND r.hash = c.hash` + skip + `
	)
	SELECT hash FROM closure`
}

const (
	// rootsSeed selects the roots of cache ?1 used at or after ?2, and the
	// pins.
	rootsSeed = `SELECT ni.hash FROM narinfos ni WHERE ni.cache_id = ?1 AND ` + lastUse + ` >= ?2
		UNION SELECT hash FROM temp.gc_pinned`
	// prefixSeed selects the ?2 most recently used roots other than pins,
	// and the pins.
	prefixSeed = `SELECT hash FROM temp.gc_roots WHERE pos <= ?2 UNION SELECT hash FROM temp.gc_pinned`
	// lateSeed selects what was committed to cache ?1 after Seq ?2 and the
	// pins made at or after ?3. The unary + keeps SQLite from the cache's
	// index, so that it reads the few rows after ?2 by primary key.
	lateSeed = `SELECT hash FROM narinfos WHERE seq > ?2 AND +cache_id = ?1
		UNION SELECT hash FROM pins WHERE cache_id = ?1 AND created_at >= ?3`
)

// collection is one run of Collect, on a connection of its own.
type collection struct {
	conn   *sql.Conn
	plan   store.CollectPlan
	batch  int
	start  int64 // unix seconds when it started
	cutoff int64 // a narinfo last used before it may be removed (see removable)
	maxSeq int64 // the greatest Seq when it started
	topSeq int64 // the greatest Seq whose narinfo's closure is kept
	res    store.CollectResult
}

// Collect removes the narinfos of the cache outside the closure of the
// plan's roots, and the NAR links no remaining narinfo serves, and records
// the cache's LastGC (unless a dry run). See collection for how.
func (s *Store) Collect(ctx context.Context, plan store.CollectPlan) (store.CollectResult, error) {
	res, err := s.collect(ctx, plan)
	if err != nil {
		return store.CollectResult{}, fmt.Errorf("collect cache %d: %w", plan.CacheID, translate(err))
	}
	return res, nil
}

// collect does the work of Collect.
//
// The kept set is a table in the temporary database of the collection's
// connection, filled by a recursive query (see closureSQL), so that
// neither it nor the narinfos pass through this program. The narinfos
// outside it are then removed in batches of collectBatch, in hash order,
// each in an IMMEDIATE transaction, which first adds to the kept set the
// closure of what was committed or pinned since the last batch: writes are
// serialised, so nothing committed during the collection loses a path of
// its closure. A batch also keeps what was read since the start.
func (s *Store) collect(ctx context.Context, plan store.CollectPlan) (store.CollectResult, error) {
	conn, err := s.g.Conn(ctx)
	if err != nil {
		return store.CollectResult{}, err
	}
	defer conn.Close()
	c := &collection{conn: conn, plan: plan, batch: max(1, s.collectBatch)}
	if err := c.begin(ctx); err != nil {
		return store.CollectResult{}, err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS temp.gc_kept;
		DROP TABLE IF EXISTS temp.gc_pinned; DROP TABLE IF EXISTS temp.gc_roots`)
	if err := c.keep(ctx); err != nil {
		return store.CollectResult{}, err
	}
	c.cutoff = c.start
	if !plan.UsedSince.IsZero() && c.res.DroppedRoots == 0 {
		// Without dropped roots, only what was last used before the
		// window is removable: a read recorded late (by another
		// replica) still saves a path used within it.
		c.cutoff = min(c.start, secondsBefore(plan.UsedSince))
	}
	if s.collectHook != nil {
		s.collectHook()
	}
	if plan.DryRun {
		return c.res, c.dryRun(ctx)
	}
	if err := c.removeNarInfos(ctx); err != nil {
		return store.CollectResult{}, err
	}
	if err := c.unlinkNars(ctx); err != nil {
		return store.CollectResult{}, err
	}
	slices.Sort(c.res.Removed)
	return c.res, c.finish(ctx)
}

// begin checks that the cache exists, notes the start and the greatest
// Seq, and makes the scratch tables with the pinned hashes.
func (c *collection) begin(ctx context.Context) error {
	var one int
	err := c.conn.QueryRowContext(ctx, `SELECT 1 FROM caches WHERE id = ?`, c.plan.CacheID).Scan(&one)
	if err != nil {
		return err
	}
	c.start = now().Unix()
	if err := c.conn.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM narinfos`).Scan(&c.maxSeq); err != nil {
		return err
	}
	c.topSeq = c.maxSeq
	if _, err := c.conn.ExecContext(ctx, scratchSQL); err != nil {
		return fmt.Errorf("make scratch tables: %w", err)
	}
	pinned, err := encodeList(c.plan.Pinned)
	if err != nil {
		return fmt.Errorf("pinned: %w", err)
	}
	_, err = c.conn.ExecContext(ctx, `INSERT OR IGNORE INTO temp.gc_pinned SELECT value FROM json_each(?)`, pinned)
	return err
}

// keep fills the kept set: the closure of the roots, or, if its NAR bytes
// exceed MaxSize, of the pins and as many of the most recently used other
// roots as fit.
func (c *collection) keep(ctx context.Context) error {
	since := int64(math.MinInt64)
	if !c.plan.UsedSince.IsZero() {
		since = secondsBefore(c.plan.UsedSince)
	}
	if err := c.closure(ctx, rootsSeed, since); err != nil {
		return err
	}
	paths, bytes, err := c.keptUsage(ctx)
	if err != nil {
		return err
	}
	if c.plan.MaxSize > 0 && bytes > c.plan.MaxSize {
		if paths, bytes, err = c.fit(ctx, since); err != nil {
			return err
		}
	}
	c.res.KeptPaths, c.res.KeptBytes = paths, bytes
	return nil
}

// closure empties the kept set and fills it with the closure of seed,
// whose parameter ?2 is arg.
func (c *collection) closure(ctx context.Context, seed string, arg int64) error {
	if _, err := c.conn.ExecContext(ctx, `DELETE FROM temp.gc_kept`); err != nil {
		return err
	}
	if _, err := c.conn.ExecContext(ctx, closureSQL(seed, false), c.plan.CacheID, arg); err != nil {
		return fmt.Errorf("compute closure: %w", err)
	}
	return nil
}

// keptUsage returns the number of narinfos of the kept set and the bytes
// of the NAR files they serve, each once.
func (c *collection) keptUsage(ctx context.Context) (paths, bytes int64, err error) {
	err = c.conn.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM temp.gc_kept k JOIN narinfos ni ON ni.cache_id = ?1 AND ni.hash = k.hash),
		(SELECT coalesce(sum(n.file_size), 0) FROM nars n WHERE n.id IN (
			SELECT ni.nar_id FROM temp.gc_kept k JOIN narinfos ni ON ni.cache_id = ?1 AND ni.hash = k.hash))`,
		c.plan.CacheID).Scan(&paths, &bytes)
	return paths, bytes, err
}

// fit fills the kept set with the closure of the pins and of the longest
// run of the most recently used other roots whose closure fits MaxSize,
// found by store.FitRoots, and
// returns its usage. If the pins alone exceed MaxSize, only they are kept.
func (c *collection) fit(ctx context.Context, since int64) (paths, bytes int64, err error) {
	var roots int64
	_, err = c.conn.ExecContext(ctx, `INSERT INTO temp.gc_roots (pos, hash)
		SELECT row_number() OVER (ORDER BY `+lastUse+` DESC, ni.hash), ni.hash FROM narinfos ni
		WHERE ni.cache_id = ?1 AND `+lastUse+` >= ?2 AND ni.hash NOT IN (SELECT hash FROM temp.gc_pinned)`,
		c.plan.CacheID, since)
	if err == nil {
		err = c.conn.QueryRowContext(ctx, `SELECT count(*) FROM temp.gc_roots`).Scan(&roots)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("order roots: %w", err)
	}
	u, dropped, over, err := store.FitRoots(roots, c.plan.MaxSize, func(n int64) (store.Usage, error) {
		paths, bytes, err := c.prefix(ctx, n)
		return store.Usage{Paths: paths, Bytes: bytes}, err
	})
	c.res.DroppedRoots, c.res.OverQuota = int(dropped), over
	return u.Paths, u.Bytes, err
}

// prefix fills the kept set with the closure of the pins and the first n
// roots other than pins, and returns its usage.
func (c *collection) prefix(ctx context.Context, n int64) (paths, bytes int64, err error) {
	if err := c.closure(ctx, prefixSeed, n); err != nil {
		return 0, 0, err
	}
	return c.keptUsage(ctx)
}

package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

// defaultCollectBatch is how many narinfos or NAR links Collect removes in
// one transaction: few enough that the pushes it holds off wait briefly.
const defaultCollectBatch = 2000

// lastUse is the time a narinfo ni was last used: the later of its
// creation and its last read (greatest ignores a NULL).
const lastUse = `greatest(ni.created_at, ni.last_access)`

// removable says of a narinfo ni of cache $1 that a collection which
// started when the greatest Seq was $2 removes it: it is not in the kept
// set, it was committed before the start and it was last used (created or
// read) before $3, the collection's cutoff: the start of its window of
// use, or its start if the quota dropped roots.
//
// Here and in the batches, OFFSET 0 keeps the server from turning NOT
// EXISTS into an anti join, which it may make a hash join reading a whole
// table (the more so as its statistics lag behind the removals), where an
// index probe for each row of a short, ordered range is wanted.
const removable = `ni.seq <= $2 AND ` + lastUse + ` < $3
	AND NOT EXISTS (SELECT 1 FROM pg_temp.gc_kept k WHERE k.hash = ni.hash OFFSET 0)`

// scratchSQL makes the scratch tables of a collection, temporary tables of
// its connection: the kept set, the pinned hashes, and the roots other than
// pins numbered from the most recently used. Custom plans, made for the
// parameters of each statement, see how few rows a range of Seqs holds;
// the estimates of recursive queries are large enough to have the server
// compile them, which only takes time.
const scratchSQL = `
SET plan_cache_mode = force_custom_plan;
SET jit = off;
DROP TABLE IF EXISTS pg_temp.gc_kept, pg_temp.gc_pinned, pg_temp.gc_roots;
CREATE TEMP TABLE gc_kept (hash text COLLATE "C" PRIMARY KEY);
CREATE TEMP TABLE gc_pinned (hash text COLLATE "C" PRIMARY KEY);
CREATE TEMP TABLE gc_roots (pos bigint PRIMARY KEY, hash text COLLATE "C" NOT NULL);`

// dropScratchSQL undoes scratchSQL.
const dropScratchSQL = `DROP TABLE IF EXISTS pg_temp.gc_kept, pg_temp.gc_pinned, pg_temp.gc_roots;
RESET plan_cache_mode;
RESET jit;`

// closureSQL returns the statement that adds to the kept set the closure
// of the narinfos of cache $1 that seed selects (a SELECT of hashes, or a
// UNION of them). The recursive step looks the references of each hash up
// by the primary key of narinfo_refs, which leads with (cache_id, hash): a
// lateral subquery that OFFSET 0 keeps from being merged into a join,
// which the server could otherwise make a hash join reading every
// reference of the cache at each step. UNION drops what was queued
// already. References to hashes the cache does not hold join nothing
// further. With prune, the step skips hashes in the kept set already,
// whose closure is kept too.
func closureSQL(seed string, prune bool) string {
	skip := ""
	if prune {
		skip = ` AND NOT EXISTS (SELECT 1 FROM pg_temp.gc_kept k WHERE k.hash = r.ref_hash)`
	}
	return `INSERT INTO pg_temp.gc_kept (hash)
	WITH RECURSIVE closure (hash) AS (
		` + seed + `
		UNION
		SELECT r.ref_hash FROM closure c CROSS JOIN LATERAL (
			SELECT r.ref_hash FROM narinfo_refs r WHERE r.cache_id = $1 AND r.hash = c.hash` + skip + ` OFFSET 0) r
	)
	SELECT hash FROM closure
	ON CONFLICT DO NOTHING`
}

const (
	// rootsSeed selects the roots of cache $1 used at or after $2, and the
	// pins.
	rootsSeed = `SELECT ni.hash FROM narinfos ni WHERE ni.cache_id = $1 AND ` + lastUse + ` >= $2
		UNION SELECT hash FROM pg_temp.gc_pinned`
	// prefixSeed selects the $2 most recently used roots other than pins,
	// and the pins.
	prefixSeed = `SELECT hash FROM pg_temp.gc_roots WHERE pos <= $2 UNION SELECT hash FROM pg_temp.gc_pinned`
	// lateSeed selects what was committed to cache $1 after Seq $2 and the
	// pins made at or after $3. Adding 0 to cache_id keeps the server from
	// the cache's index, so that it reads the few rows after $2 by primary
	// key.
	lateSeed = `SELECT hash FROM narinfos WHERE seq > $2 AND cache_id + 0 = $1
		UNION SELECT hash FROM pins WHERE cache_id = $1 AND created_at >= $3`
)

// collection is one run of Collect, on a connection of its own.
type collection struct {
	s      *Store
	conn   *pgx.Conn
	plan   store.CollectPlan
	size   int       // how many narinfos or links a batch removes
	start  time.Time // when it started
	cutoff time.Time // a narinfo last used before it may be removed (see removable)
	maxSeq int64     // the greatest Seq when it started
	topSeq int64     // the greatest Seq whose narinfo's closure is kept
	res    store.CollectResult
}

// Collect removes the narinfos of the cache outside the closure of the
// plan's roots, and the NAR links no remaining narinfo serves, and records
// the cache's LastGC (unless a dry run). See collect for how.
func (s *Store) Collect(ctx context.Context, plan store.CollectPlan) (store.CollectResult, error) {
	var res store.CollectResult
	err := s.session(ctx, func(conn *pgx.Conn) error {
		var err error
		res, err = s.collect(ctx, conn, plan)
		return err
	})
	if err != nil {
		return store.CollectResult{}, fmt.Errorf("collect cache %d: %w", plan.CacheID, translate(err))
	}
	return res, nil
}

// collect does the work of Collect on conn.
//
// The kept set is a temporary table, filled by a recursive query (see
// closureSQL), so that neither it nor the narinfos pass through this
// program. The narinfos outside it are then removed in batches of
// collectBatch, in hash order, each in a transaction that first takes a
// share lock on the row of narinfo_seq: it waits for the transactions
// adding narinfos, which hold the row, and holds off new ones until it
// commits. It then adds to the kept set the closure of what was committed
// or pinned since the last batch, so that nothing committed during the
// collection loses a path of its closure. A batch also keeps what was read
// since the start.
func (s *Store) collect(ctx context.Context, conn *pgx.Conn, plan store.CollectPlan) (store.CollectResult, error) {
	c := &collection{s: s, conn: conn, plan: plan, size: max(1, s.collectBatch)}
	if err := c.begin(ctx); err != nil {
		return store.CollectResult{}, err
	}
	defer conn.Exec(context.WithoutCancel(ctx), dropScratchSQL)
	if err := c.keep(ctx); err != nil {
		return store.CollectResult{}, err
	}
	c.cutoff = c.start
	if !plan.UsedSince.IsZero() && c.res.DroppedRoots == 0 && plan.UsedSince.Before(c.start) {
		// Without dropped roots, only what was last used before the
		// window is removable: a read recorded late (by another
		// replica) still saves a path used within it.
		c.cutoff = plan.UsedSince
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
	err := c.conn.QueryRow(ctx, `SELECT 1 FROM caches WHERE id = $1`, c.plan.CacheID).Scan(&one)
	if err != nil {
		return err
	}
	c.start = now()
	if err := c.conn.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM narinfos`).Scan(&c.maxSeq); err != nil {
		return err
	}
	c.topSeq = c.maxSeq
	if _, err := c.conn.Exec(ctx, scratchSQL); err != nil {
		return fmt.Errorf("make scratch tables: %w", err)
	}
	_, err = c.conn.Exec(ctx, `INSERT INTO pg_temp.gc_pinned SELECT DISTINCT unnest($1::text[])`, orEmpty(c.plan.Pinned))
	return err
}

// keep fills the kept set: the closure of the roots, or, if its NAR bytes
// exceed MaxSize, of the pins and as many of the most recently used other
// roots as fit.
func (c *collection) keep(ctx context.Context) error {
	if err := c.closure(ctx, rootsSeed, c.plan.UsedSince); err != nil {
		return err
	}
	paths, bytes, err := c.keptUsage(ctx)
	if err != nil {
		return err
	}
	if c.plan.MaxSize > 0 && bytes > c.plan.MaxSize {
		if paths, bytes, err = c.fit(ctx); err != nil {
			return err
		}
	}
	c.res.KeptPaths, c.res.KeptBytes = paths, bytes
	return nil
}

// closure empties the kept set and fills it with the closure of seed,
// whose parameter $2 is arg, then has the server sample it.
func (c *collection) closure(ctx context.Context, seed string, arg any) error {
	if _, err := c.conn.Exec(ctx, `TRUNCATE pg_temp.gc_kept`); err != nil {
		return err
	}
	if _, err := c.conn.Exec(ctx, closureSQL(seed, false), c.plan.CacheID, arg); err != nil {
		return fmt.Errorf("compute closure: %w", err)
	}
	_, err := c.conn.Exec(ctx, `ANALYZE pg_temp.gc_kept`)
	return err
}

// keptUsage returns the number of narinfos of the kept set and the bytes
// of the NAR files they serve, each once.
func (c *collection) keptUsage(ctx context.Context) (paths, bytes int64, err error) {
	err = c.conn.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM pg_temp.gc_kept k JOIN narinfos ni ON ni.cache_id = $1 AND ni.hash = k.hash),
		(SELECT coalesce(sum(n.file_size), 0)::bigint FROM nars n WHERE n.id IN (
			SELECT ni.nar_id FROM pg_temp.gc_kept k JOIN narinfos ni ON ni.cache_id = $1 AND ni.hash = k.hash))`,
		c.plan.CacheID).Scan(&paths, &bytes)
	return paths, bytes, err
}

// fit fills the kept set with the closure of the pins and of the longest
// run of the most recently used other roots whose closure fits MaxSize,
// found by store.FitRoots, and
// returns its usage. If the pins alone exceed MaxSize, only they are kept.
func (c *collection) fit(ctx context.Context) (paths, bytes int64, err error) {
	var roots int64
	err = c.conn.QueryRow(ctx, `WITH numbered AS (INSERT INTO pg_temp.gc_roots (pos, hash)
		SELECT row_number() OVER (ORDER BY `+lastUse+` DESC, ni.hash), ni.hash FROM narinfos ni
		WHERE ni.cache_id = $1 AND `+lastUse+` >= $2
		AND NOT EXISTS (SELECT 1 FROM pg_temp.gc_pinned p WHERE p.hash = ni.hash) RETURNING 1)
		SELECT count(*) FROM numbered`, c.plan.CacheID, c.plan.UsedSince).Scan(&roots)
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

package postgres

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/storetest"
	"github.com/larder-cache/larder/internal/testserver"
)

// scaleEnv names the environment variable that, set to 1, runs
// TestCollectScale.
const scaleEnv = "LARDER_GC_SCALE"

// scaleNarInfos is how many narinfos TestCollectScale collects.
const scaleNarInfos = 1_000_000

// fillScale adds to s a cache of n narinfos, each serving a NAR of its
// own of 1000 bytes, in blocks of 100: each narinfo but the first of its
// block refers to the one before it and to two others before it in the
// block, at random. All were created in 2020; the last narinfo of every
// tenth block was read now. It returns the cache.
func fillScale(t *testing.T, s *Store, n int) store.Cache {
	c := createCache(t, s, "scale")
	created := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	const series = ` FROM generate_series(0, $1 - 1) AS s (i)`
	err := s.tx(t.Context(), func(tx pgx.Tx) error {
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO nars (file_hash, file_size, compression, nar_hash, nar_size, md5, blob_key, created_at)
				SELECT lpad(i::text, 52, '0'), 1000, 'zstd', lpad(i::text, 52, '0'), 5000, '', 'nar/' || i, $2` +
				series, []any{n, created}},
			{`INSERT INTO cache_nars (cache_id, nar_id, key, created_at)
				SELECT $1, id, 'nar/' || file_hash, $2 FROM nars`, []any{c.ID, created}},
			{`INSERT INTO narinfos (seq, cache_id, hash, key, store_path, nar_id, nar_hash, nar_size, refs,
					deriver, system, ca, sigs, created_at, last_access)
				SELECT i + 1, $2, lpad(i::text, 32, '0'), lpad(i::text, 32, '0') || '.narinfo',
					'/nix/store/' || lpad(i::text, 32, '0') || '-p', n.id, '', 5000,
					CASE WHEN i % 100 = 0 THEN '{}'::text[] ELSE ARRAY[lpad((i - 1)::text, 32, '0') || '-p',
						lpad((i - 1 - floor(random() * (i % 100))::int)::text, 32, '0') || '-p',
						lpad((i - 1 - floor(random() * (i % 100))::int)::text, 32, '0') || '-p'] END,
					'', 'x86_64-linux', '', '{}', $3, CASE WHEN i % 1000 = 99 THEN $4::timestamptz END` + series + `
				JOIN nars n ON n.file_hash = lpad(i::text, 52, '0')`, []any{n, c.ID, created, time.Now()}},
			{`INSERT INTO narinfo_refs (cache_id, hash, ref_hash)
				SELECT DISTINCT ni.cache_id, ni.hash, left(r.ref, 32) FROM narinfos ni, unnest(ni.refs) AS r (ref)
				WHERE ni.cache_id = $1 AND left(r.ref, 32) <> ni.hash`, []any{c.ID}},
			{`UPDATE narinfo_seq SET last = $1`, []any{n}},
		} {
			if _, err := tx.Exec(t.Context(), q.sql, q.args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		_, err = s.exec(t.Context(), `ANALYZE`)
	}
	if err != nil {
		t.Fatalf("fill %d narinfos: %v", n, err)
	}
	return c
}

// TestCollectScale collects a cache of scaleNarInfos narinfos keeping a
// tenth of them, and reports how long it took and how much memory this
// process used.
func TestCollectScale(t *testing.T) {
	if os.Getenv(scaleEnv) != "1" {
		t.Skipf("set %s=1 to collect %d narinfos", scaleEnv, scaleNarInfos)
	}
	s := openStore(t, testserver.Postgres(t))
	start := time.Now()
	c := fillScale(t, s, scaleNarInfos)
	t.Logf("filled %d narinfos in %v", scaleNarInfos, time.Since(start))
	start = time.Now()
	paths, bytes, err := s.Usage(t.Context(), c.ID)
	if err != nil || paths != scaleNarInfos || bytes != 1000*scaleNarInfos {
		t.Fatalf("usage: %d paths, %d bytes, %v", paths, bytes, err)
	}
	t.Logf("usage of %d narinfos in %v", paths, time.Since(start))
	var res store.CollectResult
	var kept time.Duration
	handed := 0
	start = time.Now()
	s.collectHook = func() { kept = time.Since(start) }
	peak := storetest.MeasurePeak(func() {
		// The removed hashes are counted as they come, as the server
		// handles them, so that the collection runs in bounded memory.
		res, err = s.Collect(t.Context(), store.CollectPlan{CacheID: c.ID, UsedSince: time.Now().Add(-time.Hour),
			LinkedBefore: time.Now().Add(time.Hour), OnRemove: func(_ context.Context, hashes []string) error {
				handed += len(hashes)
				return nil
			}})
	})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("collected in %v (kept set in %v): kept %d paths (%d bytes), removed %d (%d bytes), unlinked %d; "+
		"peak Go heap %d MiB, peak RSS %d MiB", took, kept, res.KeptPaths, res.KeptBytes, res.RemovedPaths,
		res.RemovedBytes, res.Unlinked, peak.Heap>>20, peak.RSS>>20)
	want := int64(scaleNarInfos / 10)
	if res.KeptPaths != want || res.RemovedPaths != scaleNarInfos-want || handed != int(res.RemovedPaths) ||
		res.Unlinked != int(res.RemovedPaths) {
		t.Fatalf("collect: %d kept, %d removed (%d handed over), %d unlinked; want %d kept", res.KeptPaths,
			res.RemovedPaths, handed, res.Unlinked, want)
	}
	if paths, _, err := s.Usage(t.Context(), c.ID); err != nil || paths != want {
		t.Fatalf("usage after collect: %d paths, %v", paths, err)
	}
}

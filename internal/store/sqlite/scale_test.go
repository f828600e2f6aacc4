package sqlite

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/storetest"
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
	ctx := context.Background()
	created := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	const series = `WITH RECURSIVE s (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < ?2 - 1) `
	err := s.write(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{
			series + `INSERT INTO nars (id, file_hash, file_size, compression, nar_hash, nar_size, md5, blob_key, created_at)
				SELECT i + 1, printf('%052d', i), 1000, 'zstd', printf('%052d', i), 5000, '', 'nar/' || i, ?3 FROM s`,
			series + `INSERT INTO cache_nars (cache_id, nar_id, key, created_at) SELECT ?1, i + 1, 'nar/' || i, ?3 FROM s`,
			series + `INSERT INTO narinfos (seq, cache_id, hash, key, store_path, nar_id, nar_hash, nar_size, refs,
					deriver, system, ca, sigs, created_at, last_access)
				SELECT i + 1, ?1, printf('%032d', i), printf('%032d.narinfo', i), printf('/nix/store/%032d-p', i), i + 1,
					'', 5000, CASE WHEN i % 100 = 0 THEN '[]' ELSE json_array(printf('%032d-p', i - 1),
						printf('%032d-p', i - 1 - abs(random()) % (i % 100)),
						printf('%032d-p', i - 1 - abs(random()) % (i % 100))) END,
					'', 'x86_64-linux', '', '[]', ?3,
					CASE WHEN i % 1000 = 99 THEN ?4 END
				FROM s`,
			`INSERT OR IGNORE INTO narinfo_refs (cache_id, hash, ref_hash)
				SELECT ni.cache_id, ni.hash, substr(r.value, 1, 32) FROM narinfos ni, json_each(ni.refs) r
				WHERE ni.cache_id = ?1 AND substr(r.value, 1, 32) <> ni.hash`,
		} {
			if _, err := tx.ExecContext(ctx, q, c.ID, n, created, time.Now().Unix()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("fill %d narinfos: %v", n, err)
	}
	return c
}

// TestCollectScale collects a cache of scaleNarInfos narinfos keeping a
// tenth of them, and reports how long it took and how much memory this
// process, which runs SQLite, used.
func TestCollectScale(t *testing.T) {
	if os.Getenv(scaleEnv) != "1" {
		t.Skipf("set %s=1 to collect %d narinfos", scaleEnv, scaleNarInfos)
	}
	s, _ := openTemp(t)
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

//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"
	_ "modernc.org/sqlite"
)

// growthMeasures fills caches of each size with generated narinfos and
// measures larder's start-up time, resident memory, and narinfo hit and
// miss throughput and latency at that size, and then the start-up after a
// clean stop, from the presence snapshot that stop wrote.
func growthMeasures(ctx context.Context, o options, r *report) error {
	for _, n := range o.sizes {
		fmt.Printf("growth: %d paths…\n", n)
		if err := checkFree(o.work, n); err != nil {
			return err
		}
		data := filepath.Join(o.work, fmt.Sprintf("growth-%d", n))
		l, _, err := startLarder(ctx, o.larder, data) // sets up the data directory and the cache main
		if err != nil {
			return err
		}
		l.stop()
		began := time.Now()
		hits, err := fillNarInfos(ctx, filepath.Join(data, "larder.db"), n)
		if err != nil {
			return fmt.Errorf("fill %d narinfos: %w", n, err)
		}
		fmt.Printf("  filled in %s\n", time.Since(began).Round(time.Second))
		l, startup, err := startLarder(ctx, o.larder, data)
		if err != nil {
			return err
		}
		g := growthRow{paths: n, startup: startup, rss: l.rss()}
		var misses []string
		for range 2000 {
			b := make([]byte, 20)
			_, _ = rand.Read(b)
			misses = append(misses, "/main/"+nixbase32.EncodeToString(b)+".narinfo")
		}
		d := time.Duration(o.seconds) * time.Second
		if g.hit, err = runWrk(ctx, o.work, l.URL, hits, 32, d); err == nil {
			g.miss, err = runWrk(ctx, o.work, l.URL, misses, 32, d)
		}
		if err == nil && (g.hit.non2xx > 0 || g.miss.non2xx != g.miss.requests) {
			err = fmt.Errorf("at %d paths: %d of %d hits and %d of %d misses answered wrongly", n,
				g.hit.non2xx, g.hit.requests, g.miss.requests-g.miss.non2xx, g.miss.requests)
		}
		g.rss = max(g.rss, l.rss())
		l.stop()
		if err == nil {
			g.restart, g.restartRSS, err = restartLarder(ctx, o.larder, data, hits)
		}
		if err != nil {
			return err
		}
		fmt.Printf("  start-up %s (from the snapshot %s), RSS %d MiB (from the snapshot %d MiB), hits %.0f/s p99 %.2f ms, misses %.0f/s p99 %.2f ms\n",
			startup.Round(time.Millisecond), g.restart.Round(time.Millisecond), g.rss>>20, g.restartRSS>>20, g.hit.rps, g.hit.p99, g.miss.rps, g.miss.p99)
		r.growth = append(r.growth, g)
		_ = os.RemoveAll(data) // room for the next, larger size
	}
	return nil
}

// restartLarder starts the server on data again, which its last clean stop
// left a presence snapshot in, returns how long it took to answer, and
// checks that it serves the hits, and returns its resident memory then.
func restartLarder(ctx context.Context, bin, data string, hits []string) (time.Duration, int64, error) {
	l, took, err := startLarder(ctx, bin, data)
	if err != nil {
		return 0, 0, err
	}
	defer l.stop()
	for _, h := range hits[:min(len(hits), 100)] {
		resp, err := http.Get(l.URL + h)
		if err != nil {
			return 0, 0, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, 0, fmt.Errorf("after a restart, %s answered %s", h, resp.Status)
		}
	}
	return took, l.rss(), nil
}

// growthBytesPerPath is about the disk a generated path takes while a
// cache is filled: its narinfo and NAR records, their indexes and the WAL
// (a fill to 10M paths ran out of 21 GB).
const growthBytesPerPath = 3 << 10

// checkFree reports an error if dir's file system has less room than a
// fill to n paths needs, before minutes are spent on it.
func checkFree(dir string, n int) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return nil // cannot tell: try
	}
	free, need := int64(st.Bavail)*st.Bsize, int64(n)*growthBytesPerPath
	if free >= need {
		return nil
	}
	return fmt.Errorf("growth to %d paths needs about %.0f GB free in %s, and %.1f GB are: free some "+
		"(nix-store --gc removes the data sets of earlier runs) or leave that size out with --growth",
		n, float64(need)/1e9, dir, float64(free)/1e9)
}

// fillNarInfos adds n narinfos with random hashes, each serving a NAR of
// its own, to the cache main of the SQLite database at path, and returns
// the request paths of 2000 of them.
func fillNarInfos(ctx context.Context, path string, n int) ([]string, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var cache, base, narBase int64
	if err := db.QueryRowContext(ctx, `SELECT id FROM caches WHERE name = 'main'`).Scan(&cache); err != nil {
		return nil, err
	}
	if err := db.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0), (SELECT coalesce(max(id), 0) FROM nars) FROM narinfos`).Scan(&base, &narBase); err != nil {
		return nil, err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	now := time.Now().Unix()
	// Hashes are random: 32 hex digits with e (not a nix32 digit) as z.
	const rows = `WITH RECURSIVE s (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < ?2 - 1) `
	for _, q := range []string{
		`CREATE TEMP TABLE gen (i INTEGER PRIMARY KEY, h TEXT NOT NULL)`,
		rows + `INSERT INTO temp.gen SELECT i, replace(lower(hex(randomblob(16))), 'e', 'z') FROM s`,
		`INSERT INTO nars (id, file_hash, file_size, compression, nar_hash, nar_size, md5, blob_key, created_at)
			SELECT ?4 + i + 1, printf('%052d', ?4 + i), 1000, 'zstd', printf('%052d', ?4 + i), 5000, '', 'nar/gen/blob', ?3 FROM temp.gen`,
		`INSERT INTO cache_nars (cache_id, nar_id, key, created_at)
			SELECT ?1, ?4 + i + 1, 'nar/' || printf('%052d', ?4 + i) || '.nar.zst', ?3 FROM temp.gen`,
		`INSERT INTO narinfos (seq, cache_id, hash, key, store_path, nar_id, nar_hash, nar_size, refs,
				deriver, system, ca, sigs, created_at, last_access)
			SELECT ?5 + i + 1, ?1, h, h || '.narinfo', '/nix/store/' || h || '-generated', ?4 + i + 1,
				printf('%052d', ?4 + i), 5000, '[]', '', 'x86_64-linux', '', '[]', ?3, NULL FROM temp.gen`,
	} {
		if _, err := tx.ExecContext(ctx, q, cache, n, now, narBase, base); err != nil {
			return nil, fmt.Errorf("%.60s…: %w", q, err)
		}
	}
	step := max(1, n/2000)
	rs, err := tx.QueryContext(ctx, `SELECT h FROM temp.gen WHERE i % ?1 = 0`, step)
	if err != nil {
		return nil, err
	}
	var hits []string
	for rs.Next() {
		var h string
		if err := rs.Scan(&h); err != nil {
			return nil, err
		}
		hits = append(hits, "/main/"+h+".narinfo")
	}
	rs.Close()
	if _, err := tx.ExecContext(ctx, `DROP TABLE temp.gen`); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	// Every generated NAR names one blob, which must be there: larder
	// serves a narinfo only while its NAR file's blob is.
	blob := filepath.Join(filepath.Dir(path), "blobs", "nar", "gen", "blob")
	if err := os.MkdirAll(filepath.Dir(blob), 0o750); err != nil {
		return nil, err
	}
	return hits, os.WriteFile(blob, make([]byte, 1000), 0o640)
}

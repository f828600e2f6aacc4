package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// benchNarInfos is how many narinfos the lookup benchmarks search.
const benchNarInfos = 100_000

// fillNarInfos adds to s a cache holding n narinfos, each with its own Nar,
// in one transaction, and returns the cache ID and the narinfo hashes.
func fillNarInfos(tb testing.TB, s *Store, n int) (int64, []string) {
	tb.Helper()
	ctx := context.Background()
	c := createCache(tb, s, "bench")
	hashes := make([]string, n)
	err := s.write(ctx, func(tx *sql.Tx) error {
		nar, err := tx.PrepareContext(ctx, `INSERT INTO nars
			(file_hash, file_size, compression, nar_hash, nar_size, md5, blob_key, created_at)
			VALUES (?, 1000, 'zstd', ?, 5000, ?, ?, ?) RETURNING id`)
		if err != nil {
			return err
		}
		link, err := tx.PrepareContext(ctx, `INSERT INTO cache_nars (cache_id, nar_id, key, created_at)
			VALUES (?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		info, err := tx.PrepareContext(ctx, `INSERT INTO narinfos
			(cache_id, hash, key, store_path, nar_id, nar_hash, nar_size, refs, deriver, system, ca, sigs, created_at)
			VALUES (?, ?, ?, ?, ?, '', 0, ?, ?, 'x86_64-linux', '', ?, ?)`)
		if err != nil {
			return err
		}
		at := time.Now().Unix()
		for i := range n {
			fh := fmt.Sprintf("%052d", i)
			hashes[i] = fmt.Sprintf("%032d", i)
			var id int64
			md5 := fmt.Sprintf("%032x", i)
			if err := nar.QueryRowContext(ctx, fh, fh, md5, "nar/"+fh+".nar.zst", at).Scan(&id); err != nil {
				return err
			}
			if _, err := link.ExecContext(ctx, c.ID, id, "nar/"+fh+".nar.zst", at); err != nil {
				return err
			}
			refs := fmt.Sprintf(`["%s-glibc-2.40","%s-hello-2.12"]`, fmt.Sprintf("%032d", i+1), hashes[i])
			sigs := `["cache.nixos.org-1:` + fmt.Sprintf("%086d", i) + `=="]`
			_, err := info.ExecContext(ctx, c.ID, hashes[i], hashes[i]+".narinfo", "/nix/store/"+hashes[i]+"-hello-2.12",
				id, refs, hashes[i]+"-hello-2.12.drv", sigs, at)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("fill %d narinfos: %v", n, err)
	}
	return c.ID, hashes
}

func BenchmarkGetNarInfo(b *testing.B) {
	s, _ := openTemp(b)
	cacheID, hashes := fillNarInfos(b, s, benchNarInfos)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		h := hashes[(i*7919)%len(hashes)]
		i++
		if _, _, err := s.GetNarInfo(ctx, cacheID, h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetNarInfoMiss(b *testing.B) {
	s, _ := openTemp(b)
	cacheID, _ := fillNarInfos(b, s, benchNarInfos)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		h := fmt.Sprintf("m%031d", i%benchNarInfos)
		i++
		if _, _, err := s.GetNarInfo(ctx, cacheID, h); err == nil {
			b.Fatal("found a narinfo that is not there")
		}
	}
}

func BenchmarkGetNarInfoParallel(b *testing.B) {
	s, _ := openTemp(b)
	cacheID, hashes := fillNarInfos(b, s, benchNarInfos)
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			h := hashes[(i*7919)%len(hashes)]
			i++
			if _, _, err := s.GetNarInfo(ctx, cacheID, h); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkPutNarInfo(b *testing.B) {
	s, _ := openTemp(b)
	cacheID, hashes := fillNarInfos(b, s, 1000)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		h := hashes[i%len(hashes)]
		i++
		_, err := s.PutNarInfo(ctx, store.NarInfo{CacheID: cacheID, Hash: h},
			func(old *store.NarInfo) (store.NarInfo, error) {
				next := *old
				next.Sigs = append(next.Sigs[:1:1], fmt.Sprint("bench-1:", i))
				return next, nil
			})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListKeys lists pages of 1000 keys of a cache of 100,000 narinfos
// and their NARs.
func BenchmarkListKeys(b *testing.B) {
	s, _ := openTemp(b)
	cacheID, hashes := fillNarInfos(b, s, benchNarInfos)
	ctx := context.Background()
	const page = 1000
	for _, bc := range []struct {
		name   string
		prefix string
		after  func(i int) string
	}{
		{"first", "", func(int) string { return "" }},
		{"middle", "", func(i int) string { return hashes[(i*7919)%len(hashes)] + ".narinfo" }},
		{"nar prefix", "nar/", func(i int) string { return fmt.Sprintf("nar/%052d", (i*7919)%benchNarInfos) }},
		{"prefix of nothing", "log/", func(int) string { return "" }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				list, err := s.ListKeys(ctx, cacheID, bc.prefix, bc.after(i), page)
				i++
				if err != nil {
					b.Fatal(err)
				}
				if len(list) == 0 && bc.prefix != "log/" {
					b.Fatal("empty page")
				}
			}
		})
	}
}

// BenchmarkLookupAccessKey looks up S3 keys among 10,000 of them and as
// many HTTP tokens.
func BenchmarkLookupAccessKey(b *testing.B) {
	s, _ := openTemp(b)
	ctx := context.Background()
	const n = 10_000
	err := s.write(ctx, func(tx *sql.Tx) error {
		for i := range n {
			_, err := tx.ExecContext(ctx, `INSERT INTO tokens
				(hash, access_key_id, secret, scope, perm, description, created_at)
				VALUES (?, NULL, '', '*', 'read', '', 0), (NULL, ?, ?, 'main', 'write', '', 0)`,
				fmt.Sprintf("%064d", i), fmt.Sprintf("LK%018d", i), fmt.Sprintf("%040d", i))
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("LK%018d", (i*7919)%n)
		i++
		if _, err := s.LookupAccessKey(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

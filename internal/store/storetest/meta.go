package storetest

import (
	"bytes"
	"cmp"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// TestMetaStore runs the store.MetaStore conformance suite. newStore is
// called once for each subtest and must return an empty store, independent
// of any other it returned; it arranges its own cleanup, such as Close, with
// t.Cleanup.
func TestMetaStore(t *testing.T, newStore func(t *testing.T) store.MetaStore) {
	groups := [][]metaTest{cacheTests, tokenTests, narTests, unlinkTests, narInfoTests, objectTests,
		listTests, holdTests, uploadTests, partTests, deleteCacheTests, gcTests, orphanTests, pinTests, collectTests,
		browseTests, historyTests, sessionTests, upstreamTests, chunkTests, chunkGCTests}
	for _, g := range groups {
		for _, tc := range g {
			t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
		}
	}
}

// metaTest is one subtest of the MetaStore suite.
type metaTest struct {
	name string
	fn   func(*testing.T, store.MetaStore)
}

// createCache adds a cache called name and fails t on error.
func createCache(t *testing.T, s store.MetaStore, name string) store.Cache {
	t.Helper()
	c, err := s.CreateCache(t.Context(), store.Cache{
		Name:      name,
		Priority:  40,
		SecretKey: name + "-1:c2VjcmV0",
		PublicKey: name + "-1:cHVibGlj",
	})
	mustOK(t, "create cache "+name, err)
	return c
}

// fileHash returns a 52-character nix32-looking file hash made from seed.
func fileHash(seed string) string { return padHash(seed, 52) }

// storeHash returns a 32-character store path hash made from seed.
func storeHash(seed string) string { return padHash(seed, 32) }

// padHash returns seed, dashes turned to zeros, padded with leading zeros to
// n characters.
func padHash(seed string, n int) string {
	seed = strings.ReplaceAll(seed, "-", "0")
	return strings.Repeat("0", max(0, n-len(seed))) + seed
}

// newNar returns a Nar record made from seed, created at a fixed time.
func newNar(seed string) store.Nar {
	h := fileHash(seed)
	return store.Nar{
		FileHash:    h,
		FileSize:    int64(1000 + len(seed)),
		Compression: "zstd",
		NarHash:     fileHash("n" + seed),
		NarSize:     int64(5000 + len(seed)),
		MD5:         padHash("md5-"+seed, 32),
		BlobKey:     "nar/" + h + ".nar.zst",
		CreatedAt:   time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
	}
}

// narKey returns the key the Nix layout lists n under.
func narKey(n store.Nar) string { return "nar/" + n.FileHash + ".nar.zst" }

// addNar records n in the cache under narKey(n) and fails t on error.
func addNar(t *testing.T, s store.MetaStore, cacheID int64, n store.Nar) store.Nar {
	t.Helper()
	return addNarAt(t, s, cacheID, n, narKey(n))
}

// addNarAt records n in the cache under key and fails t on error.
func addNarAt(t *testing.T, s store.MetaStore, cacheID int64, n store.Nar, key string) store.Nar {
	t.Helper()
	got, err := s.AddNar(t.Context(), cacheID, n, key)
	mustOK(t, "add nar "+n.FileHash, err)
	return got
}

// newNarInfo returns a narinfo of the store path named by seed in the cache,
// serving the Nar with file hash fh.
func newNarInfo(cacheID int64, seed, fh string) store.NarInfo {
	h := storeHash(seed)
	return store.NarInfo{
		CacheID:    cacheID,
		Hash:       h,
		Key:        h + ".narinfo",
		StorePath:  "/nix/store/" + h + "-" + seed,
		FileHash:   fh,
		NarHash:    padHash("nar-"+seed, 52),
		NarSize:    int64(100 + len(seed)),
		References: []string{h + "-" + seed, storeHash("dep") + "-dep"},
		Deriver:    storeHash("drv") + "-" + seed + ".drv",
		System:     "x86_64-linux",
		CA:         "",
		Sigs:       []string{"upstream-1:c2ln"},
		CreatedAt:  time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC),
	}
}

// replaceWith returns a merge that ignores the current record and stores ni.
func replaceWith(ni store.NarInfo) func(*store.NarInfo) (store.NarInfo, error) {
	return func(*store.NarInfo) (store.NarInfo, error) { return ni, nil }
}

// putNarInfo writes ni over whatever is there and fails t on error.
func putNarInfo(t *testing.T, s store.MetaStore, ni store.NarInfo) store.NarInfo {
	t.Helper()
	got, err := s.PutNarInfo(t.Context(), ni, replaceWith(ni))
	mustOK(t, "put narinfo "+ni.Hash, err)
	return got
}

// normNar returns n with its time normalised for comparison.
func normNar(n store.Nar) store.Nar {
	n.CreatedAt = sec(n.CreatedAt)
	return n
}

// mustNar fails t unless got equals want, times to the second.
func mustNar(t *testing.T, what string, got, want store.Nar) {
	t.Helper()
	mustUTC(t, what, got.CreatedAt)
	if normNar(got) != normNar(want) {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

// mustLinked fails t unless got, a Nar read through CacheNar, equals want
// but for CreatedAt, which is when it was linked to the cache: recent.
func mustLinked(t *testing.T, what string, got, want store.Nar) {
	t.Helper()
	mustUTC(t, what, got.CreatedAt)
	if time.Since(got.CreatedAt) > time.Minute || time.Until(got.CreatedAt) > time.Second {
		t.Fatalf("%s: linked at %v, not just now", what, got.CreatedAt)
	}
	got.CreatedAt = want.CreatedAt
	mustNar(t, what, got, want)
}

// mustNarInfo fails t unless got equals want, times to the second and
// empty slices equal to nil ones. Seq is compared only when want has one.
func mustNarInfo(t *testing.T, what string, got, want store.NarInfo) {
	t.Helper()
	mustUTC(t, what, got.CreatedAt)
	mustUTC(t, what, got.CheckedAt)
	if want.Seq == 0 {
		want.Seq = got.Seq
	}
	same := got.Seq == want.Seq && got.CacheID == want.CacheID &&
		got.Hash == want.Hash && got.Key == want.Key && got.StorePath == want.StorePath &&
		got.FileHash == want.FileHash && got.NarHash == want.NarHash &&
		got.NarSize == want.NarSize && got.Deriver == want.Deriver &&
		got.System == want.System && got.CA == want.CA &&
		sec(got.CreatedAt) == sec(want.CreatedAt) &&
		got.Upstream == want.Upstream && sec(got.CheckedAt) == sec(want.CheckedAt) &&
		slices.Equal(got.References, want.References) &&
		slices.Equal(got.Sigs, want.Sigs)
	if !same {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

// mustObject fails t unless got equals want, times to the second and
// empty maps equal to nil ones.
func mustObject(t *testing.T, what string, got, want store.Object) {
	t.Helper()
	mustUTC(t, what, got.CreatedAt)
	same := got.CacheID == want.CacheID && got.Key == want.Key &&
		got.ContentType == want.ContentType && got.Size == want.Size &&
		got.SHA256 == want.SHA256 && got.MD5 == want.MD5 && got.ETag == want.ETag &&
		maps.Equal(got.Metadata, want.Metadata) && got.BlobKey == want.BlobKey &&
		sec(got.CreatedAt) == sec(want.CreatedAt)
	if !same {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

// mustHeld fails t unless got holds the same narinfos as want, in any
// order, times to the second and empty bodies equal to nil ones.
func mustHeld(t *testing.T, what string, got, want []store.HeldNarInfo) {
	t.Helper()
	byKey := func(a, b store.HeldNarInfo) int {
		return cmp.Or(cmp.Compare(a.CacheID, b.CacheID), strings.Compare(a.Hash, b.Hash))
	}
	got, want = slices.SortedFunc(slices.Values(got), byKey), slices.SortedFunc(slices.Values(want), byKey)
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		g, w := got[i], want[i]
		mustUTC(t, what, g.CreatedAt)
		same = g.CacheID == w.CacheID && g.Hash == w.Hash && g.FileHash == w.FileHash &&
			bytes.Equal(g.Body, w.Body) && sec(g.CreatedAt) == sec(w.CreatedAt)
	}
	if !same {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

// mustNarInfoKeys fails t unless ListNarInfoKeys after 0 returns exactly
// want, in order; Seq is compared only where want has one.
func mustNarInfoKeys(t *testing.T, s store.MetaStore, want []store.NarInfoKey) {
	t.Helper()
	got, err := s.ListNarInfoKeys(t.Context(), 0, 1000)
	mustOK(t, "list narinfo keys", err)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		w := want[i]
		if w.Seq == 0 {
			w.Seq = got[i].Seq
		}
		ok = got[i] == w
	}
	if !ok {
		t.Fatalf("list narinfo keys: got %+v, want %+v", got, want)
	}
}

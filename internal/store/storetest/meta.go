package storetest

import (
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
	groups := [][]metaTest{cacheTests, tokenTests, narTests, narInfoTests, fileTests}
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
		BlobKey:     "nar/" + h + ".nar.zst",
		CreatedAt:   time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
	}
}

// addNar records n in the cache and fails t on error.
func addNar(t *testing.T, s store.MetaStore, cacheID int64, n store.Nar) store.Nar {
	t.Helper()
	got, err := s.AddNar(t.Context(), cacheID, n)
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

// mustNarInfo fails t unless got equals want, times to the second and
// empty slices equal to nil ones. Seq is compared only when want has one.
func mustNarInfo(t *testing.T, what string, got, want store.NarInfo) {
	t.Helper()
	mustUTC(t, what, got.CreatedAt)
	if want.Seq == 0 {
		want.Seq = got.Seq
	}
	same := got.Seq == want.Seq && got.CacheID == want.CacheID &&
		got.Hash == want.Hash && got.StorePath == want.StorePath &&
		got.FileHash == want.FileHash && got.NarHash == want.NarHash &&
		got.NarSize == want.NarSize && got.Deriver == want.Deriver &&
		got.System == want.System && got.CA == want.CA &&
		sec(got.CreatedAt) == sec(want.CreatedAt) &&
		slices.Equal(got.References, want.References) &&
		slices.Equal(got.Sigs, want.Sigs)
	if !same {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

// normFile returns f with its time normalised for comparison.
func normFile(f store.File) store.File {
	f.CreatedAt = sec(f.CreatedAt)
	return f
}

// mustFile fails t unless got equals want, times to the second.
func mustFile(t *testing.T, what string, got, want store.File) {
	t.Helper()
	mustUTC(t, what, got.CreatedAt)
	if normFile(got) != normFile(want) {
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

package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// narTests check the Nar part of the NarStore contract.
var narTests = []metaTest{
	{"NarAddGet", testNarAddGet},
	{"NarCreatedAtAssigned", testNarCreatedAtAssigned},
	{"NarAddIdempotent", testNarAddIdempotent},
	{"NarAddConcurrent", testNarAddConcurrent},
	{"NarLinksPerCache", testNarLinksPerCache},
	{"NarUnknownCache", testNarUnknownCache},
	{"NarMissing", testNarMissing},
	{"NarKeyPerCache", testNarKeyPerCache},
	{"NarRelinkKeepsKey", testNarRelinkKeepsKey},
	{"NarKeyTaken", testNarKeyTaken},
	{"NarRelinkRenewsLink", testNarRelinkRenewsLink},
	{"NarLink", testNarLink},
	{"NarSetMissing", testNarSetMissing},
	{"NarMissingReplaced", testNarMissingReplaced},
	{"NarList", testNarList},
}

func testNarAddGet(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	n := newNar("one")
	got := addNar(t, s, c.ID, n)
	mustNar(t, "add nar", got, n)
	g, err := s.GetNar(t.Context(), n.FileHash)
	mustOK(t, "get nar", err)
	mustNar(t, "get nar", g, n)
	g, err = s.CacheNar(t.Context(), c.ID, n.FileHash)
	mustOK(t, "cache nar", err)
	mustLinked(t, "cache nar", g, n)
}

func testNarCreatedAtAssigned(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	n := newNar("zero-time")
	n.CreatedAt = time.Time{}
	before := time.Now()
	got := addNar(t, s, c.ID, n)
	mustRecent(t, "add nar with zero CreatedAt", got.CreatedAt, before)
	g, err := s.GetNar(t.Context(), n.FileHash)
	mustOK(t, "get nar", err)
	mustNar(t, "get nar", g, got)
}

func testNarAddIdempotent(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	first := newNar("one")
	addNar(t, s, c.ID, first)
	later := first
	later.FileSize, later.Compression, later.NarHash = 1, "xz", fileHash("other")
	later.MD5, later.BlobKey, later.CreatedAt = padHash("other", 32), "nar/other", first.CreatedAt.Add(time.Hour)
	for _, n := range []store.Nar{first, later, first} {
		mustNar(t, "add nar again", addNar(t, s, c.ID, n), first)
	}
	g, err := s.GetNar(t.Context(), first.FileHash)
	mustOK(t, "get nar", err)
	mustNar(t, "get nar after adding it again", g, first)
}

func testNarAddConcurrent(t *testing.T, s store.MetaStore) {
	caches := make([]store.Cache, 8)
	for i := range caches {
		caches[i] = createCache(t, s, fmt.Sprint("c", i))
	}
	var wg sync.WaitGroup
	got := make([]store.Nar, len(caches))
	errs := make([]error, len(caches))
	for i, c := range caches {
		wg.Go(func() {
			n := newNar("shared")
			n.BlobKey = fmt.Sprint("nar/copy", i)
			got[i], errs[i] = s.AddNar(t.Context(), c.ID, n, narKey(n))
		})
	}
	wg.Wait()
	for i, c := range caches {
		mustOK(t, "concurrent add nar", errs[i])
		mustNar(t, "concurrent add nar", got[i], got[0])
		g, err := s.CacheNar(t.Context(), c.ID, got[0].FileHash)
		mustOK(t, "cache nar after concurrent adds", err)
		mustLinked(t, "cache nar after concurrent adds", g, got[0])
	}
}

func testNarLinksPerCache(t *testing.T, s store.MetaStore) {
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	n := newNar("one")
	addNar(t, s, a.ID, n)
	_, err := s.CacheNar(t.Context(), b.ID, n.FileHash)
	mustNotFound(t, "cache nar in a cache it is not linked to", err)
	g, err := s.GetNar(t.Context(), n.FileHash)
	mustOK(t, "get nar", err)
	mustNar(t, "get nar", g, n)
	other := n
	other.BlobKey = "nar/elsewhere"
	mustNar(t, "add nar to a second cache", addNar(t, s, b.ID, other), n)
	for _, c := range []store.Cache{a, b} {
		g, err := s.CacheNar(t.Context(), c.ID, n.FileHash)
		mustOK(t, "cache nar in "+c.Name, err)
		mustLinked(t, "cache nar in "+c.Name, g, n)
	}
}

func testNarUnknownCache(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "gone")
	mustOK(t, "delete cache", s.DeleteCache(t.Context(), "gone"))
	n := newNar("orphan")
	for _, id := range []int64{c.ID, c.ID + 1000, 0} {
		_, err := s.AddNar(t.Context(), id, n, narKey(n))
		mustNotFound(t, fmt.Sprintf("add nar to cache %d", id), err)
	}
	_, err := s.GetNar(t.Context(), n.FileHash)
	mustNotFound(t, "get nar refused for an unknown cache", err)
}

func testNarMissing(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	_, err := s.GetNar(t.Context(), fileHash("missing"))
	mustNotFound(t, "get missing nar", err)
	_, err = s.CacheNar(t.Context(), c.ID, fileHash("missing"))
	mustNotFound(t, "cache nar missing", err)
	_, err = s.CacheNar(t.Context(), c.ID+1000, fileHash("missing"))
	mustNotFound(t, "cache nar in an unknown cache", err)
}

// listAll returns every entry of the cache whose key starts with prefix.
func listAll(t *testing.T, s store.MetaStore, cacheID int64, prefix string) []store.Entry {
	t.Helper()
	list, err := s.ListKeys(t.Context(), cacheID, prefix, "", 100000)
	mustOK(t, "list keys", err)
	return list
}

// entryKeys returns the keys of list.
func entryKeys(list []store.Entry) []string {
	keys := make([]string, len(list))
	for i, e := range list {
		keys[i] = e.Key
	}
	return keys
}

// mustKeys fails t unless the keys of the cache are exactly want, in order.
func mustKeys(t *testing.T, what string, s store.MetaStore, cacheID int64, want ...string) {
	t.Helper()
	if got := entryKeys(listAll(t, s, cacheID, "")); !slices.Equal(got, want) {
		t.Fatalf("%s: keys %q, want %q", what, got, want)
	}
}

// narEntry returns the entry ListKeys gives for n linked under key at
// modified.
func narEntry(n store.Nar, key string, modified time.Time) store.Entry {
	return store.Entry{Key: key, Kind: store.EntryNar, Size: n.FileSize, ETag: n.MD5, Modified: modified}
}

func testNarKeyPerCache(t *testing.T, s store.MetaStore) {
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	n := newNar("one")
	before := time.Now()
	addNarAt(t, s, a.ID, n, "nar/in-a.nar.zst")
	addNarAt(t, s, b.ID, n, "nar/in-b.nar")
	for _, c := range []struct {
		id  int64
		key string
	}{{a.ID, "nar/in-a.nar.zst"}, {b.ID, "nar/in-b.nar"}} {
		list := listAll(t, s, c.id, "")
		if len(list) != 1 {
			t.Fatalf("list keys of cache %d: %+v, want one NAR", c.id, list)
		}
		mustRecent(t, "list keys: Modified of a NAR link", list[0].Modified, before)
		if want := narEntry(n, c.key, list[0].Modified); list[0] != want {
			t.Fatalf("list keys of cache %d: %+v, want %+v", c.id, list[0], want)
		}
	}
}

func testNarRelinkKeepsKey(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	n := newNar("one")
	addNarAt(t, s, c.ID, n, "nar/first.nar.zst")
	mustNar(t, "relink under another key", addNarAt(t, s, c.ID, n, "nar/second.nar.zst"), n)
	mustKeys(t, "keys after relinking", s, c.ID, "nar/first.nar.zst")
	// The second key was not taken: another Nar may use it.
	other := addNarAt(t, s, c.ID, newNar("two"), "nar/second.nar.zst")
	mustKeys(t, "keys after linking another nar", s, c.ID, "nar/first.nar.zst", "nar/second.nar.zst")
	g, err := s.CacheNar(t.Context(), c.ID, other.FileHash)
	mustOK(t, "cache nar", err)
	mustLinked(t, "cache nar", g, other)
}

func testNarKeyTaken(t *testing.T, s store.MetaStore) {
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	n := addNarAt(t, s, a.ID, newNar("one"), "nar/x.nar")
	intruder := newNar("two")
	_, err := s.AddNar(t.Context(), a.ID, intruder, "nar/x.nar")
	mustExists(t, "add another nar under a taken key", err)
	_, err = s.GetNar(t.Context(), intruder.FileHash)
	mustNotFound(t, "get nar refused for a taken key", err)
	_, err = s.CacheNar(t.Context(), a.ID, intruder.FileHash)
	mustNotFound(t, "cache nar refused for a taken key", err)
	g, err := s.CacheNar(t.Context(), a.ID, n.FileHash)
	mustOK(t, "cache nar holding the key", err)
	mustLinked(t, "cache nar holding the key", g, n)
	// Keys are per cache.
	addNarAt(t, s, b.ID, intruder, "nar/x.nar")
	mustKeys(t, "keys of b", s, b.ID, "nar/x.nar")
	if list := listAll(t, s, a.ID, ""); len(list) != 1 || list[0].ETag != n.MD5 {
		t.Fatalf("keys of a: %+v, want the first nar's only", list)
	}
}

// unlinkTests check UnlinkNar.
var unlinkTests = []metaTest{
	{"NarUnlink", testNarUnlink},
	{"NarUnlinkWithoutNarInfos", testNarUnlinkWithoutNarInfos},
	{"NarUnlinkMissing", testNarUnlinkMissing},
	{"NarRelinkAfterUnlink", testNarRelinkAfterUnlink},
}

func testNarUnlink(t *testing.T, s store.MetaStore) {
	a, n, _ := narInfoFixture(t, s)
	b := createCache(t, s, "b")
	n2 := addNar(t, s, a.ID, newNar("two"))
	p1 := putNarInfo(t, s, newNarInfo(a.ID, "p1", n.FileHash))
	p2 := putNarInfo(t, s, newNarInfo(a.ID, "p2", n.FileHash))
	p3 := putNarInfo(t, s, newNarInfo(a.ID, "p3", n2.FileHash))
	addNar(t, s, b.ID, n)
	inB := putNarInfo(t, s, newNarInfo(b.ID, "p1", n.FileHash))

	gone, err := s.UnlinkNar(t.Context(), a.ID, n.FileHash)
	mustOK(t, "unlink nar", err)
	slices.Sort(gone)
	if want := []string{p1.Hash, p2.Hash}; !slices.Equal(gone, want) {
		t.Fatalf("unlink nar: withdrew %q, want %q", gone, want)
	}
	for _, ni := range []store.NarInfo{p1, p2} {
		_, _, err := s.GetNarInfo(t.Context(), a.ID, ni.Hash)
		mustNotFound(t, "get narinfo of an unlinked nar", err)
	}
	_, err = s.CacheNar(t.Context(), a.ID, n.FileHash)
	mustNotFound(t, "cache nar after unlinking it", err)
	g, err := s.GetNar(t.Context(), n.FileHash)
	mustOK(t, "get nar after unlinking it", err)
	mustNar(t, "get nar after unlinking it", g, n)
	gni, _ := getNarInfo(t, s, a.ID, p3.Hash)
	mustNarInfo(t, "narinfo of another nar", gni, p3)
	mustKeys(t, "keys after unlinking", s, a.ID, p3.Key, narKey(n2))

	g, err = s.CacheNar(t.Context(), b.ID, n.FileHash)
	mustOK(t, "cache nar in another cache", err)
	mustLinked(t, "cache nar in another cache", g, n)
	gni, _ = getNarInfo(t, s, b.ID, inB.Hash)
	mustNarInfo(t, "narinfo in another cache", gni, inB)
	mustNarInfoKeys(t, s, []store.NarInfoKey{{Seq: p3.Seq, CacheID: a.ID, Hash: p3.Hash},
		{Seq: inB.Seq, CacheID: b.ID, Hash: inB.Hash}})

	_, err = s.UnlinkNar(t.Context(), a.ID, n.FileHash)
	mustNotFound(t, "unlink nar twice", err)
}

func testNarUnlinkWithoutNarInfos(t *testing.T, s store.MetaStore) {
	c, n, _ := narInfoFixture(t, s)
	gone, err := s.UnlinkNar(t.Context(), c.ID, n.FileHash)
	mustOK(t, "unlink nar served by no narinfo", err)
	if len(gone) != 0 {
		t.Fatalf("unlink nar served by no narinfo: withdrew %q", gone)
	}
	mustKeys(t, "keys after unlinking", s, c.ID)
}

func testNarUnlinkMissing(t *testing.T, s store.MetaStore) {
	a, n, ni := narInfoFixture(t, s)
	b := createCache(t, s, "b")
	putNarInfo(t, s, ni)
	_, err := s.UnlinkNar(t.Context(), a.ID, fileHash("missing"))
	mustNotFound(t, "unlink unknown nar", err)
	_, err = s.UnlinkNar(t.Context(), b.ID, n.FileHash)
	mustNotFound(t, "unlink nar from a cache it is not linked to", err)
	_, err = s.UnlinkNar(t.Context(), a.ID+1000, n.FileHash)
	mustNotFound(t, "unlink nar from an unknown cache", err)
	g, err := s.CacheNar(t.Context(), a.ID, n.FileHash)
	mustOK(t, "cache nar after refused unlinks", err)
	mustLinked(t, "cache nar after refused unlinks", g, n)
	getNarInfo(t, s, a.ID, ni.Hash)
}

func testNarRelinkAfterUnlink(t *testing.T, s store.MetaStore) {
	c, n, ni := narInfoFixture(t, s)
	putNarInfo(t, s, ni)
	_, err := s.UnlinkNar(t.Context(), c.ID, n.FileHash)
	mustOK(t, "unlink nar", err)
	mustNar(t, "relink nar", addNarAt(t, s, c.ID, n, "nar/again.nar.zst"), n)
	mustKeys(t, "keys after relinking", s, c.ID, "nar/again.nar.zst")
	_, _, err = s.GetNarInfo(t.Context(), c.ID, ni.Hash)
	mustNotFound(t, "narinfo withdrawn with the link after relinking", err)
}

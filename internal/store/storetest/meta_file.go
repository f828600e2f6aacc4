package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// fileTests check the FileStore contract and what DeleteCache removes.
var fileTests = []metaTest{
	{"FilePutGet", testFilePutGet},
	{"FilePutReplaces", testFilePutReplaces},
	{"FileCreatedAtAssigned", testFileCreatedAtAssigned},
	{"FileGetMissing", testFileGetMissing},
	{"FileUnknownCache", testFileUnknownCache},
	{"DeleteCacheRemovesItsRecords", testDeleteCacheRemoves},
}

// newFile returns the record of a file under key in the cache.
func newFile(cacheID int64, key string) store.File {
	return store.File{
		CacheID:     cacheID,
		Key:         key,
		ContentType: "text/plain; charset=utf-8",
		Size:        int64(100 + len(key)),
		SHA256:      fmt.Sprintf("%064x", key),
		BlobKey:     fmt.Sprintf("file/%d/%x", cacheID, key),
		CreatedAt:   time.Date(2024, 8, 9, 10, 11, 12, 0, time.UTC),
	}
}

// putFile records f and fails t on error.
func putFile(t *testing.T, s store.MetaStore, f store.File) {
	t.Helper()
	mustOK(t, "put file "+f.Key, s.PutFile(t.Context(), f))
}

// getFile reads the record of key in the cache and fails t on error.
func getFile(t *testing.T, s store.MetaStore, cacheID int64, key string) store.File {
	t.Helper()
	f, err := s.GetFile(t.Context(), cacheID, key)
	mustOK(t, "get file "+key, err)
	return f
}

func testFilePutGet(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	for _, key := range []string{"log/abc-hello.drv", "ls/" + storeHash("x") + ".ls",
		"realisations/sha256:00ff!out.doi", "debuginfo/0123abcd"} {
		f := newFile(c.ID, key)
		putFile(t, s, f)
		mustFile(t, "get file "+key, getFile(t, s, c.ID, key), f)
	}
}

func testFilePutReplaces(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	f := newFile(c.ID, "log/x.drv")
	putFile(t, s, f)
	g := f
	g.ContentType, g.Size, g.SHA256 = "application/x-bzip2", 7, fmt.Sprintf("%064x", "other")
	g.BlobKey, g.CreatedAt = "file/other", f.CreatedAt.Add(time.Hour)
	putFile(t, s, g)
	mustFile(t, "get replaced file", getFile(t, s, c.ID, f.Key), g)
}

func testFileCreatedAtAssigned(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	f := newFile(c.ID, "log/zero.drv")
	f.CreatedAt = time.Time{}
	before := time.Now()
	putFile(t, s, f)
	got := getFile(t, s, c.ID, f.Key)
	mustRecent(t, "put file with zero CreatedAt", got.CreatedAt, before)
	f.CreatedAt = got.CreatedAt
	mustFile(t, "get file", got, f)
}

func testFileGetMissing(t *testing.T, s store.MetaStore) {
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	_, err := s.GetFile(t.Context(), a.ID, "log/missing")
	mustNotFound(t, "get missing file", err)
	fa := newFile(a.ID, "log/shared")
	putFile(t, s, fa)
	_, err = s.GetFile(t.Context(), b.ID, fa.Key)
	mustNotFound(t, "get file of another cache", err)
	_, err = s.GetFile(t.Context(), a.ID+1000, fa.Key)
	mustNotFound(t, "get file in an unknown cache", err)
	fb := newFile(b.ID, fa.Key)
	fb.Size = 1
	putFile(t, s, fb)
	mustFile(t, "get file in a", getFile(t, s, a.ID, fa.Key), fa)
	mustFile(t, "get file in b", getFile(t, s, b.ID, fa.Key), fb)
}

func testFileUnknownCache(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "gone")
	mustOK(t, "delete cache", s.DeleteCache(t.Context(), "gone"))
	for _, id := range []int64{c.ID, c.ID + 1000, 0} {
		err := s.PutFile(t.Context(), newFile(id, "log/x"))
		mustNotFound(t, fmt.Sprintf("put file in cache %d", id), err)
		_, err = s.GetFile(t.Context(), id, "log/x")
		mustNotFound(t, "get file refused for an unknown cache", err)
	}
}

// cacheRecords is what deleteCacheFixture stored in one cache.
type cacheRecords struct {
	cache    store.Cache
	own      store.Nar // linked to this cache only
	narInfos []store.NarInfo
	file     store.File
	token    store.Token
}

// deleteCacheFixture fills caches a and b, each with its own Nar, a Nar
// linked to both, narinfos of both Nars, a file and a token.
func deleteCacheFixture(t *testing.T, s store.MetaStore) (shared store.Nar, a, b cacheRecords) {
	t.Helper()
	shared = newNar("shared")
	fill := func(name string) cacheRecords {
		r := cacheRecords{cache: createCache(t, s, name)}
		id := r.cache.ID
		addNar(t, s, id, shared)
		r.own = addNar(t, s, id, newNar("own-"+name))
		r.narInfos = []store.NarInfo{
			putNarInfo(t, s, newNarInfo(id, "shared", shared.FileHash)),
			putNarInfo(t, s, newNarInfo(id, "own-"+name, r.own.FileHash)),
		}
		r.file = newFile(id, "log/"+name)
		putFile(t, s, r.file)
		r.token = createToken(t, s, newToken(name, id, store.PermWrite))
		r.token.CacheName = name
		return r
	}
	return shared, fill("a"), fill("b")
}

func testDeleteCacheRemoves(t *testing.T, s store.MetaStore) {
	shared, a, b := deleteCacheFixture(t, s)
	mustOK(t, "delete cache a", s.DeleteCache(t.Context(), "a"))
	ctx, aID := t.Context(), a.cache.ID
	for _, ni := range a.narInfos {
		_, _, err := s.GetNarInfo(ctx, aID, ni.Hash)
		mustNotFound(t, "get narinfo of deleted cache", err)
	}
	_, err := s.GetFile(ctx, aID, a.file.Key)
	mustNotFound(t, "get file of deleted cache", err)
	for _, n := range []store.Nar{shared, a.own} {
		_, err = s.CacheNar(ctx, aID, n.FileHash)
		mustNotFound(t, "cache nar of deleted cache", err)
		g, err := s.GetNar(ctx, n.FileHash)
		mustOK(t, "get nar of deleted cache", err)
		mustNar(t, "get nar of deleted cache", g, n)
	}
	_, err = s.LookupToken(ctx, a.token.Hash)
	mustNotFound(t, "lookup token of deleted cache", err)

	bID := b.cache.ID
	var keys []store.NarInfoKey
	for _, ni := range b.narInfos {
		gni, _ := getNarInfo(t, s, bID, ni.Hash)
		mustNarInfo(t, "get narinfo of kept cache", gni, ni)
		keys = append(keys, store.NarInfoKey{Seq: ni.Seq, CacheID: bID, Hash: ni.Hash})
	}
	mustNarInfoKeys(t, s, keys)
	mustFile(t, "get file of kept cache", getFile(t, s, bID, b.file.Key), b.file)
	for _, n := range []store.Nar{shared, b.own} {
		g, err := s.CacheNar(ctx, bID, n.FileHash)
		mustOK(t, "cache nar of kept cache", err)
		mustNar(t, "cache nar of kept cache", g, n)
	}
	mustToken(t, "lookup token of kept cache", lookupToken(t, s, b.token.Hash), b.token)

	// A new cache of the same name starts empty.
	again := createCache(t, s, "a")
	_, err = s.CacheNar(ctx, again.ID, a.own.FileHash)
	mustNotFound(t, "cache nar in the re-created cache", err)
	_, _, err = s.GetNarInfo(ctx, again.ID, a.narInfos[0].Hash)
	mustNotFound(t, "get narinfo in the re-created cache", err)
	_, err = s.GetFile(ctx, again.ID, a.file.Key)
	mustNotFound(t, "get file in the re-created cache", err)
}

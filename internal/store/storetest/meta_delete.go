package storetest

import (
	"testing"

	"github.com/larder-cache/larder/internal/store"
)

// deleteCacheTests check what DeleteCache removes and what it keeps.
var deleteCacheTests = []metaTest{
	{"DeleteCacheRemovesItsRecords", testDeleteCacheRemoves},
}

// cacheRecords is what deleteCacheFixture stored in one cache.
type cacheRecords struct {
	cache    store.Cache
	own      store.Nar // linked to this cache only
	narInfos []store.NarInfo
	object   store.Object
	held     store.HeldNarInfo
	upload   store.Upload
	part     store.Part
	tokens   []store.Token // scoped to the cache's name
	keys     []string      // what ListKeys lists
}

// deleteCacheFixture fills caches a and b, each with its own Nar, a Nar
// linked to both, narinfos of both Nars, an object, a held narinfo, an
// upload with a part, an HTTP token and an S3 key; it also makes tokens
// whose scopes match a without being its name.
func deleteCacheFixture(t *testing.T, s store.MetaStore) (shared store.Nar, a, b cacheRecords, others []store.Token) {
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
		r.object = newObject(id, "log/"+name)
		putObject(t, s, r.object)
		r.held = newHeld(id, "held-"+name, fileHash("later"))
		holdNarInfo(t, s, r.held)
		r.upload = newUpload("upload-"+name, id, "big/"+name)
		createUpload(t, s, r.upload)
		r.part = newPart(r.upload.ID, 1)
		putPart(t, s, r.part)
		r.tokens = []store.Token{createToken(t, s, newToken(name, name, store.PermWrite)),
			createToken(t, s, newAccessKey(name, name, store.PermWrite))}
		r.keys = entryKeys(listAll(t, s, id, ""))
		if len(r.keys) != 5 {
			t.Fatalf("keys of cache %s: %q, want 5", name, r.keys)
		}
		return r
	}
	a, b = fill("a"), fill("b")
	for _, scope := range []string{"*", "a*", "?"} {
		others = append(others, createToken(t, s, newToken("scope "+scope, scope, store.PermRead)))
	}
	return shared, a, b, others
}

func testDeleteCacheRemoves(t *testing.T, s store.MetaStore) {
	shared, a, b, others := deleteCacheFixture(t, s)
	mustOK(t, "delete cache a", s.DeleteCache(t.Context(), "a"))
	mustCacheEmpty(t, s, a)
	for _, n := range []store.Nar{shared, a.own} {
		g, err := s.GetNar(t.Context(), n.FileHash)
		mustOK(t, "get nar of deleted cache", err)
		mustNar(t, "get nar of deleted cache", g, n)
	}

	bID := b.cache.ID
	var keys []store.NarInfoKey
	for _, ni := range b.narInfos {
		gni, _ := getNarInfo(t, s, bID, ni.Hash)
		mustNarInfo(t, "get narinfo of kept cache", gni, ni)
		keys = append(keys, store.NarInfoKey{Seq: ni.Seq, CacheID: bID, Hash: ni.Hash})
	}
	mustNarInfoKeys(t, s, keys)
	mustObject(t, "get object of kept cache", getObject(t, s, bID, b.object.Key), b.object)
	for _, n := range []store.Nar{shared, b.own} {
		g, err := s.CacheNar(t.Context(), bID, n.FileHash)
		mustOK(t, "cache nar of kept cache", err)
		mustLinked(t, "cache nar of kept cache", g, n)
	}
	mustKeys(t, "keys of kept cache", s, bID, b.keys...)
	mustHeld(t, "held narinfos of kept cache", heldFor(t, s, bID, b.held.FileHash), []store.HeldNarInfo{b.held})
	mustUpload(t, "upload of kept cache", getUpload(t, s, b.upload.ID), b.upload)
	mustParts(t, "parts of kept cache", listParts(t, s, b.upload.ID), []store.Part{b.part})
	mustTokens(t, "tokens after deleting a", s, append(b.tokens, others...))

	// A new cache of the same name starts empty.
	again := createCache(t, s, "a")
	a.cache.ID = again.ID
	mustCacheEmpty(t, s, a)
}

// mustCacheEmpty fails t unless the cache r.cache.ID has none of the
// records of r and the tokens of r are gone.
func mustCacheEmpty(t *testing.T, s store.MetaStore, r cacheRecords) {
	t.Helper()
	ctx, id := t.Context(), r.cache.ID
	for _, ni := range r.narInfos {
		_, _, err := s.GetNarInfo(ctx, id, ni.Hash)
		mustNotFound(t, "get narinfo of deleted cache", err)
	}
	_, err := s.GetObject(ctx, id, r.object.Key)
	mustNotFound(t, "get object of deleted cache", err)
	for _, fh := range []string{r.narInfos[0].FileHash, r.own.FileHash} {
		_, err = s.CacheNar(ctx, id, fh)
		mustNotFound(t, "cache nar of deleted cache", err)
	}
	mustKeys(t, "keys of deleted cache", s, id)
	mustHeld(t, "held narinfos of deleted cache", heldFor(t, s, id, r.held.FileHash), nil)
	_, err = s.GetUpload(ctx, r.upload.ID)
	mustNotFound(t, "get upload of deleted cache", err)
	_, err = s.ListParts(ctx, r.upload.ID)
	mustNotFound(t, "list parts of upload of deleted cache", err)
	if l, err := s.ListUploads(ctx, id, ""); err != nil || len(l) != 0 {
		t.Fatalf("list uploads of deleted cache: %+v, %v", l, err)
	}
	_, err = s.LookupToken(ctx, r.tokens[0].Hash)
	mustNotFound(t, "lookup token of deleted cache", err)
	_, err = s.LookupAccessKey(ctx, r.tokens[1].AccessKeyID)
	mustNotFound(t, "lookup access key of deleted cache", err)
}

package storetest

import (
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// cacheTests check the CacheStore contract.
var cacheTests = []metaTest{
	{"CacheCreateGet", testCacheCreateGet},
	{"CacheCreateAssigns", testCacheCreateAssigns},
	{"CacheCreateDuplicate", testCacheCreateDuplicate},
	{"CacheCreateConcurrent", testCacheCreateConcurrent},
	{"CacheGetMissing", testCacheGetMissing},
	{"CacheList", testCacheList},
	{"CacheDelete", testCacheDelete},
	{"CacheIDsNeverReused", testCacheIDsNeverReused},
}

// normCache returns c with its times normalised for comparison.
func normCache(c store.Cache) store.Cache {
	c.CreatedAt, c.LastGC = sec(c.CreatedAt), sec(c.LastGC)
	return c
}

// mustCache fails t unless got equals want, times to the second.
func mustCache(t *testing.T, what string, got, want store.Cache) {
	t.Helper()
	mustUTC(t, what, got.CreatedAt)
	mustUTC(t, what, got.LastGC)
	g, w := normCache(got), normCache(want)
	same := sameUpstreams(g.Upstream, w.Upstream)
	g.Upstream, w.Upstream = store.UpstreamConfig{}, store.UpstreamConfig{}
	if !same || !reflect.DeepEqual(g, w) {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

// sameUpstreams reports whether two upstream configurations are the same,
// empty and nil lists being equal.
func sameUpstreams(a, b store.UpstreamConfig) bool {
	return a.Skip == b.Skip && a.PullThrough == b.PullThrough &&
		slices.EqualFunc(a.Upstreams, b.Upstreams, func(x, y store.Upstream) bool {
			return x.URL == y.URL && slices.Equal(x.Keys, y.Keys)
		})
}

func testCacheCreateGet(t *testing.T, s store.MetaStore) {
	in := store.Cache{
		Name:      "main",
		Private:   true,
		Priority:  30,
		SecretKey: "main-1:c2VjcmV0IGtleQ==",
		PublicKey: "main-1:cHVibGljIGtleQ==",
	}
	before := time.Now()
	c, err := s.CreateCache(t.Context(), in)
	mustOK(t, "create cache", err)
	if c.ID <= 0 {
		t.Fatalf("create cache: ID %d, want a positive one", c.ID)
	}
	mustRecent(t, "create cache: CreatedAt", c.CreatedAt, before)
	in.ID, in.CreatedAt = c.ID, c.CreatedAt
	mustCache(t, "create cache", c, in)
	got, err := s.GetCache(t.Context(), "main")
	mustOK(t, "get cache", err)
	mustCache(t, "get cache", got, c)

	pub, err := s.CreateCache(t.Context(), store.Cache{Name: "public", Priority: -5})
	mustOK(t, "create cache public", err)
	got, err = s.GetCache(t.Context(), "public")
	mustOK(t, "get cache public", err)
	mustCache(t, "get cache public", got, pub)
	if got.Private || got.Priority != -5 || got.SecretKey != "" {
		t.Fatalf("get cache public: got %+v", got)
	}
	if pub.ID == c.ID {
		t.Fatalf("two caches share ID %d", c.ID)
	}
}

func testCacheCreateAssigns(t *testing.T, s store.MetaStore) {
	before := time.Now()
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	c, err := s.CreateCache(t.Context(), store.Cache{ID: 4242, Name: "a", CreatedAt: old})
	mustOK(t, "create cache", err)
	if c.ID == 4242 {
		t.Errorf("create cache: kept the ID handed over")
	}
	mustRecent(t, "create cache: CreatedAt", c.CreatedAt, before)
}

func testCacheCreateDuplicate(t *testing.T, s store.MetaStore) {
	first := createCache(t, s, "dup")
	_, err := s.CreateCache(t.Context(), store.Cache{Name: "dup", Private: true})
	mustExists(t, "create cache with a taken name", err)
	got, err := s.GetCache(t.Context(), "dup")
	mustOK(t, "get cache", err)
	mustCache(t, "cache after a duplicate create", got, first)
	list, err := s.ListCaches(t.Context())
	mustOK(t, "list caches", err)
	if len(list) != 1 {
		t.Fatalf("list caches: %d caches, want 1", len(list))
	}
}

func testCacheCreateConcurrent(t *testing.T, s store.MetaStore) {
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.CreateCache(t.Context(), store.Cache{Name: "race"})
		})
	}
	wg.Wait()
	created := 0
	for _, err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, store.ErrExists):
			t.Fatalf("concurrent create cache: %v", err)
		}
	}
	if created != 1 {
		t.Fatalf("concurrent create cache: %d succeeded, want 1", created)
	}
}

func testCacheGetMissing(t *testing.T, s store.MetaStore) {
	_, err := s.GetCache(t.Context(), "missing")
	mustNotFound(t, "get missing cache", err)
	createCache(t, s, "present")
	_, err = s.GetCache(t.Context(), "presen")
	mustNotFound(t, "get cache by a prefix of a name", err)
}

func testCacheList(t *testing.T, s store.MetaStore) {
	list, err := s.ListCaches(t.Context())
	mustOK(t, "list caches of an empty store", err)
	if len(list) != 0 {
		t.Fatalf("list caches of an empty store: %+v", list)
	}
	byName := map[string]store.Cache{}
	for _, name := range []string{"main", "b", "z-last", "a", "a-1", "m0"} {
		byName[name] = createCache(t, s, name)
	}
	list, err = s.ListCaches(t.Context())
	mustOK(t, "list caches", err)
	var names []string
	for _, c := range list {
		names = append(names, c.Name)
		mustCache(t, "list caches: "+c.Name, c, byName[c.Name])
	}
	want := []string{"a", "a-1", "b", "m0", "main", "z-last"}
	if !slices.Equal(names, want) {
		t.Fatalf("list caches: got %q, want %q", names, want)
	}
}

func testCacheDelete(t *testing.T, s store.MetaStore) {
	mustNotFound(t, "delete missing cache", s.DeleteCache(t.Context(), "missing"))
	createCache(t, s, "gone")
	keep := createCache(t, s, "kept")
	mustOK(t, "delete cache", s.DeleteCache(t.Context(), "gone"))
	_, err := s.GetCache(t.Context(), "gone")
	mustNotFound(t, "get deleted cache", err)
	mustNotFound(t, "delete cache twice", s.DeleteCache(t.Context(), "gone"))
	list, err := s.ListCaches(t.Context())
	mustOK(t, "list caches", err)
	if len(list) != 1 {
		t.Fatalf("list caches after delete: %+v", list)
	}
	mustCache(t, "list caches after delete", list[0], keep)
}

func testCacheIDsNeverReused(t *testing.T, s store.MetaStore) {
	a1 := createCache(t, s, "a")
	mustOK(t, "delete a", s.DeleteCache(t.Context(), "a"))
	a2 := createCache(t, s, "a")
	if a2.ID <= a1.ID {
		t.Fatalf("re-created cache got ID %d, want more than %d", a2.ID, a1.ID)
	}
	b := createCache(t, s, "b")
	mustOK(t, "delete b", s.DeleteCache(t.Context(), "b"))
	c := createCache(t, s, "c")
	if c.ID <= b.ID || c.ID <= a2.ID {
		t.Fatalf("cache after deleting the newest got ID %d, want more than %d", c.ID, b.ID)
	}
}

package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// browseTests check the BrowseStore contract.
var browseTests = []metaTest{
	{"RecentNarInfos", testRecentNarInfos},
	{"FindNarInfos", testFindNarInfos},
	{"FindNarInfosLiteral", testFindNarInfosLiteral},
	{"NarInfosBatch", testNarInfosBatch},
	{"Referrers", testReferrers},
	{"ClosureSize", testClosureSize},
	{"LastRead", testLastRead},
}

// storePaths returns the store paths of l, in order.
func storePaths(l []store.NarInfo) []string {
	var out []string
	for _, ni := range l {
		out = append(out, ni.StorePath)
	}
	return out
}

// mustPaths fails t unless l holds the store paths of the paths named by
// seeds, in that order.
func mustPaths(t *testing.T, what string, l []store.NarInfo, seeds ...string) {
	t.Helper()
	var want []string
	for _, seed := range seeds {
		want = append(want, "/nix/store/"+ref(seed))
	}
	if got := storePaths(l); !slices.Equal(got, want) {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

func testRecentNarInfos(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	base := time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC)
	a := addPath(t, s, c.ID, "a", 10, base, "b")
	addPath(t, s, c.ID, "b", 10, base.Add(-time.Hour))
	addPath(t, s, c.ID, "c", 10, base.Add(time.Hour))
	addPath(t, s, c.ID, "d", 10, base.Add(time.Hour)) // same time as c, later Seq
	addPath(t, s, other.ID, "e", 10, base.Add(2*time.Hour))

	got, err := s.RecentNarInfos(t.Context(), c.ID, 3)
	mustOK(t, "recent narinfos", err)
	mustPaths(t, "recent narinfos", got, "d", "c", "a")
	mustNarInfo(t, "a recent narinfo", got[2], a)
	got, err = s.RecentNarInfos(t.Context(), c.ID, 100)
	mustOK(t, "recent narinfos", err)
	mustPaths(t, "all recent narinfos", got, "d", "c", "a", "b")
	for _, limit := range []int{0, -1} {
		got, err = s.RecentNarInfos(t.Context(), c.ID, limit)
		mustOK(t, "recent narinfos", err)
		if len(got) != 0 {
			t.Fatalf("recent narinfos with limit %d: %q", limit, storePaths(got))
		}
	}
	got, err = s.RecentNarInfos(t.Context(), 424242, 10)
	mustOK(t, "recent narinfos of an unknown cache", err)
	if len(got) != 0 {
		t.Fatalf("recent narinfos of an unknown cache: %q", storePaths(got))
	}
}

func testFindNarInfos(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	for _, seed := range []string{"hello-2.12", "Hello-World", "help", "world"} {
		addPath(t, s, c.ID, seed, 10, old)
	}
	addPath(t, s, other.ID, "hello-other", 10, old)

	find := func(prefix string, limit int) []store.NarInfo {
		t.Helper()
		l, err := s.FindNarInfos(t.Context(), c.ID, prefix, limit)
		mustOK(t, "find "+prefix, err)
		return l
	}
	mustPaths(t, "find hel", find("hel", 10), "hello-2.12", "Hello-World", "help")
	mustPaths(t, "find HELLO", find("HELLO", 10), "hello-2.12", "Hello-World")
	mustPaths(t, "find hello-w", find("hello-w", 10), "Hello-World")
	mustPaths(t, "find hel, two of each kind", find("hel", 2), "hello-2.12", "Hello-World")
	mustPaths(t, "find wor", find("wor", 10), "world")
	mustPaths(t, "find by hash", find(storeHash("help")[:30], 10), "help")
	mustPaths(t, "find by whole hash", find(storeHash("world"), 10), "world")
	mustPaths(t, "find by hash, upper case", find("0000000000000000000000HELLO", 10), "hello-2.12")
	// A prefix of every hash here (they start with zeros) finds each path
	// once however both ways find it.
	mustPaths(t, "find 0", find("0", 10), "hello-2.12", "Hello-World", "help", "world")
	if l := find("", 10); len(l) != 0 {
		t.Fatalf("find an empty prefix: %q", storePaths(l))
	}
	if l := find("hel", 0); len(l) != 0 {
		t.Fatalf("find with limit 0: %q", storePaths(l))
	}
	if l := find("nothing", 10); len(l) != 0 {
		t.Fatalf("find nothing: %q", storePaths(l))
	}
	found := find("help", 10)
	if len(found) != 1 {
		t.Fatalf("find help: %q", storePaths(found))
	}
	want := newNarInfo(c.ID, "help", found[0].FileHash)
	want.References, want.CreatedAt = nil, old
	mustNarInfo(t, "found narinfo", found[0], want)
}

func testFindNarInfosLiteral(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	for _, seed := range []string{"a_b", "axb", "a%c", "abc"} {
		addPath(t, s, c.ID, seed, 10, old)
	}
	for prefix, want := range map[string][]string{
		"a_": {"a_b"}, "a%": {"a%c"}, "%": nil, "_": nil, "a": {"a%c", "a_b", "abc", "axb"},
		"a'": nil, `a\`: nil, "a\x00": nil, "é": nil,
	} {
		l, err := s.FindNarInfos(t.Context(), c.ID, prefix, 10)
		mustOK(t, "find "+prefix, err)
		mustPaths(t, "find "+prefix, l, want...)
	}
}

func testNarInfosBatch(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	a := addPath(t, s, c.ID, "a", 10, old)
	b := addPath(t, s, c.ID, "b", 10, old, "a")
	addPath(t, s, other.ID, "c", 10, old)
	got, err := s.NarInfos(t.Context(), c.ID, []string{b.Hash, storeHash("c"), a.Hash, storeHash("unknown"), a.Hash})
	mustOK(t, "narinfos", err)
	slices.SortFunc(got, func(x, y store.NarInfo) int { return compareStrings(x.Hash, y.Hash) })
	if len(got) != 2 {
		t.Fatalf("narinfos: got %q, want a and b", storePaths(got))
	}
	mustNarInfo(t, "narinfo a", got[0], a)
	mustNarInfo(t, "narinfo b", got[1], b)
	got, err = s.NarInfos(t.Context(), c.ID, nil)
	mustOK(t, "narinfos of no hashes", err)
	if len(got) != 0 {
		t.Fatalf("narinfos of no hashes: %q", storePaths(got))
	}
}

// compareStrings is strings.Compare, for sorting.
func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testReferrers(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	addPath(t, s, c.ID, "lib", 10, old, "lib") // a reference to itself
	addPath(t, s, c.ID, "zapp", 10, old, "lib", "tool")
	addPath(t, s, c.ID, "app", 10, old, "lib")
	addPath(t, s, c.ID, "tool", 10, old)
	addPath(t, s, other.ID, "other-app", 10, old, "lib")

	got, err := s.Referrers(t.Context(), c.ID, storeHash("lib"), 10)
	mustOK(t, "referrers", err)
	mustPaths(t, "referrers of lib", got, "app", "zapp")
	got, err = s.Referrers(t.Context(), c.ID, storeHash("lib"), 1)
	mustOK(t, "referrers", err)
	mustPaths(t, "first referrer of lib", got, "app")
	got, err = s.Referrers(t.Context(), c.ID, storeHash("app"), 10)
	mustOK(t, "referrers", err)
	mustPaths(t, "referrers of app", got)
	got, err = s.Referrers(t.Context(), c.ID, storeHash("absent"), 10)
	mustOK(t, "referrers", err)
	mustPaths(t, "referrers of a path the cache lacks", got)
	// A referrer to a path the cache does not hold is found all the same.
	addPath(t, s, c.ID, "uses-upstream", 10, old, "upstream")
	got, err = s.Referrers(t.Context(), c.ID, storeHash("upstream"), 10)
	mustOK(t, "referrers", err)
	mustPaths(t, "referrers of an upstream path", got, "uses-upstream")
}

func testClosureSize(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	// app -> lib -> libc -> (upstream, not held); app -> data; lib2 serves
	// the same NAR file as lib.
	libc := addPath(t, s, c.ID, "libc", 100, old, "upstream", "libc")
	lib := addPath(t, s, c.ID, "lib", 200, old, "libc")
	data := addPath(t, s, c.ID, "data", 400, old)
	app := addPath(t, s, c.ID, "app", 800, old, "lib", "data")
	libNar, err := s.CacheNar(t.Context(), c.ID, lib.FileHash)
	mustOK(t, "cache nar", err)
	lib2 := addPathOf(t, s, c.ID, "lib2", libNar, old, "libc")
	addPath(t, s, other.ID, "data", 400, old)

	closure := func(seeds ...string) store.ClosureSize {
		t.Helper()
		var hs []string
		for _, seed := range seeds {
			hs = append(hs, storeHash(seed))
		}
		cs, err := s.Closure(t.Context(), c.ID, hs)
		mustOK(t, "closure", err)
		return cs
	}
	size := func(files int64, nis ...store.NarInfo) store.ClosureSize {
		cs := store.ClosureSize{Paths: int64(len(nis)), FileBytes: files}
		for _, ni := range nis {
			cs.NarBytes += ni.NarSize
		}
		return cs
	}
	for _, tc := range []struct {
		roots []string
		want  store.ClosureSize
	}{
		{[]string{"app"}, size(800+200+400+100, app, lib, data, libc)},
		{[]string{"lib"}, size(200+100, lib, libc)},
		{[]string{"lib", "lib2"}, size(200+100, lib, lib2, libc)},
		{[]string{"libc", "absent"}, size(100, libc)},
		{[]string{"app", "lib", "app"}, size(800+200+400+100, app, lib, data, libc)},
		{[]string{"absent"}, store.ClosureSize{}},
		{nil, store.ClosureSize{}},
	} {
		if got := closure(tc.roots...); got != tc.want {
			t.Errorf("closure of %q: got %+v, want %+v", tc.roots, got, tc.want)
		}
	}
	cs, err := s.Closure(t.Context(), other.ID, []string{storeHash("app")})
	mustOK(t, "closure in another cache", err)
	if cs != (store.ClosureSize{}) {
		t.Errorf("closure of app in a cache without it: %+v", cs)
	}
}

func testLastRead(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	a := addPath(t, s, c.ID, "a", 10, old)
	got, err := s.LastRead(t.Context(), c.ID, a.Hash)
	mustOK(t, "last read", err)
	if !got.IsZero() {
		t.Fatalf("last read of a path never read: %v", got)
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	mustOK(t, "touch", s.Touch(t.Context(), c.ID, []string{a.Hash}, at))
	got, err = s.LastRead(t.Context(), c.ID, a.Hash)
	mustOK(t, "last read", err)
	mustUTC(t, "last read", got)
	if !got.Equal(at) {
		t.Fatalf("last read: got %v, want %v", got, at)
	}
	_, err = s.LastRead(t.Context(), c.ID, storeHash("absent"))
	mustNotFound(t, "last read of an unknown path", err)
	_, err = s.LastRead(t.Context(), 424242, a.Hash)
	mustNotFound(t, "last read in an unknown cache", err)
}

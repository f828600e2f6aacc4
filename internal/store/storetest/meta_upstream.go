package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// upstreamTests check what the contracts say of upstreams: the upstream
// configuration of caches and upstream-only narinfos.
var upstreamTests = []metaTest{
	{"UpstreamConfig", testUpstreamConfig},
	{"UpstreamConfigMissingCache", testUpstreamConfigMissingCache},
	{"UpstreamOnlyNarInfo", testUpstreamOnlyNarInfo},
	{"UpstreamOnlyRefused", testUpstreamOnlyRefused},
	{"UpstreamOnlyToStored", testUpstreamOnlyToStored},
	{"UpstreamOnlyPresent", testUpstreamOnlyPresent},
	{"UpstreamOnlyList", testUpstreamOnlyList},
	{"UpstreamNarInfos", testUpstreamNarInfos},
	{"UpstreamDrop", testUpstreamDrop},
	{"UpstreamUsageAndDelete", testUpstreamUsageAndDelete},
	{"UpstreamCollect", testUpstreamCollect},
	{"UpstreamCollectQuota", testUpstreamCollectQuota},
}

// someUpstreams is an upstream configuration with two upstreams.
var someUpstreams = store.UpstreamConfig{
	Upstreams: []store.Upstream{
		{URL: "https://cache.example.org", Keys: []string{"cache.example.org-1:cHVibGlj", "cache.example.org-2:bmV3"}},
		{URL: "http://127.0.0.1:8081/main", Keys: []string{"main.other-1:a2V5"}},
	},
	Skip: true,
}

func testUpstreamConfig(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	in := store.Cache{Name: "main", Priority: 40, SecretKey: "main-1:c2VjcmV0", PublicKey: "main-1:cHVibGlj",
		Upstream: someUpstreams}
	c, err := s.CreateCache(ctx, in)
	mustOK(t, "create cache with upstreams", err)
	plain := createCache(t, s, "plain")
	got, err := s.GetCache(ctx, "main")
	mustOK(t, "get cache", err)
	mustCache(t, "cache created with upstreams", got, c)
	if !sameUpstreams(got.Upstream, someUpstreams) {
		t.Fatalf("upstreams as created: %+v, want %+v", got.Upstream, someUpstreams)
	}
	next := store.UpstreamConfig{Upstreams: someUpstreams.Upstreams[1:], PullThrough: true}
	mustOK(t, "set upstreams", s.SetUpstream(ctx, c.ID, next))
	got, err = s.GetCache(ctx, "main")
	mustOK(t, "get cache", err)
	if !sameUpstreams(got.Upstream, next) {
		t.Fatalf("upstreams once set: %+v, want %+v", got.Upstream, next)
	}
	c.Upstream = next
	mustCache(t, "cache once its upstreams are set", got, c)
	// Other caches are left alone, and the list shows the same.
	list, err := s.ListCaches(ctx)
	mustOK(t, "list caches", err)
	if len(list) != 2 {
		t.Fatalf("list caches: %d caches, want 2", len(list))
	}
	mustCache(t, "listed cache with upstreams", list[0], c)
	mustCache(t, "listed cache without upstreams", list[1], plain)
	mustOK(t, "clear upstreams", s.SetUpstream(ctx, c.ID, store.UpstreamConfig{}))
	got, err = s.GetCache(ctx, "main")
	mustOK(t, "get cache", err)
	if !sameUpstreams(got.Upstream, store.UpstreamConfig{}) {
		t.Fatalf("upstreams once cleared: %+v, want none", got.Upstream)
	}
}

func testUpstreamConfigMissingCache(t *testing.T, s store.MetaStore) {
	createCache(t, s, "main")
	mustNotFound(t, "set upstreams of an unknown cache", s.SetUpstream(t.Context(), 424242, someUpstreams))
}

// newUpstreamOnly returns an upstream-only narinfo of the store path named
// by seed in the cache, referring to the paths named by refs.
func newUpstreamOnly(cacheID int64, seed string, checked time.Time, refs ...string) store.NarInfo {
	ni := newNarInfo(cacheID, seed, "")
	ni.Upstream, ni.CheckedAt = "https://cache.example.org", checked
	ni.References = nil
	for _, r := range refs {
		ni.References = append(ni.References, ref(r))
	}
	return ni
}

func testUpstreamOnlyNarInfo(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	ni := newUpstreamOnly(c.ID, "up", time.Date(2024, 5, 6, 7, 8, 11, 0, time.UTC), "dep")
	got := putNarInfo(t, s, ni)
	mustNarInfo(t, "put upstream-only narinfo", got, ni)
	gni, gn := getNarInfo(t, s, c.ID, ni.Hash)
	mustNarInfo(t, "get upstream-only narinfo", gni, got)
	if gn != (store.Nar{}) {
		t.Fatalf("get upstream-only narinfo: Nar %+v, want the zero Nar", gn)
	}
	mustNarInfoKeys(t, s, []store.NarInfoKey{{Seq: got.Seq, CacheID: c.ID, Hash: ni.Hash}})
	// A zero CheckedAt is the time of the call.
	before := time.Now()
	now := newUpstreamOnly(c.ID, "now", time.Time{})
	got = putNarInfo(t, s, now)
	mustRecent(t, "CheckedAt of an upstream-only narinfo put without one", got.CheckedAt, before)
	gni, _ = getNarInfo(t, s, c.ID, now.Hash)
	mustNarInfo(t, "get upstream-only narinfo put without CheckedAt", gni, got)
	// Updated, it keeps its Seq.
	upd := gni
	upd.CheckedAt = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	upd.Sigs = append(upd.Sigs, "other-1:c2ln")
	got, err := s.PutNarInfo(ctx, upd, replaceWith(upd))
	mustOK(t, "update upstream-only narinfo", err)
	mustNarInfo(t, "updated upstream-only narinfo", got, upd)
	gni, _ = getNarInfo(t, s, c.ID, now.Hash)
	mustNarInfo(t, "get updated upstream-only narinfo", gni, upd)
}

func testUpstreamOnlyRefused(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	n := addNar(t, s, c.ID, newNar("one"))
	bad := newUpstreamOnly(c.ID, "bad", old)
	bad.FileHash = n.FileHash
	if _, err := s.PutNarInfo(ctx, bad, replaceWith(bad)); err == nil {
		t.Fatalf("put an upstream-only narinfo that names a NAR file: no error")
	}
	_, _, err := s.GetNarInfo(ctx, c.ID, bad.Hash)
	mustNotFound(t, "get a refused upstream-only narinfo", err)
	gone := newUpstreamOnly(c.ID+1000, "gone", old)
	_, err = s.PutNarInfo(ctx, gone, replaceWith(gone))
	mustNotFound(t, "put an upstream-only narinfo in an unknown cache", err)
	mustNarInfoKeys(t, s, nil)
}

func testUpstreamOnlyToStored(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	n := addNar(t, s, c.ID, newNar("one"))
	up := putNarInfo(t, s, newUpstreamOnly(c.ID, "p", old, "dep"))
	// Stored once its NAR is: it keeps its Seq, and has no CheckedAt.
	stored := newNarInfo(c.ID, "p", n.FileHash)
	got, err := s.PutNarInfo(ctx, stored, func(cur *store.NarInfo) (store.NarInfo, error) {
		if cur == nil || cur.Upstream == "" {
			return store.NarInfo{}, fmt.Errorf("merge got %+v, want the upstream-only narinfo", cur)
		}
		return stored, nil
	})
	mustOK(t, "store an upstream-only narinfo", err)
	want := stored
	want.Seq = up.Seq
	mustNarInfo(t, "stored narinfo", got, want)
	gni, gn := getNarInfo(t, s, c.ID, stored.Hash)
	mustNarInfo(t, "get stored narinfo", gni, want)
	mustNar(t, "get stored narinfo: nar", gn, n)
	// And back: upstream-only again, it serves no Nar.
	back := newUpstreamOnly(c.ID, "p", old)
	got = putNarInfo(t, s, back)
	back.Seq = up.Seq
	mustNarInfo(t, "upstream-only again", got, back)
	gni, gn = getNarInfo(t, s, c.ID, stored.Hash)
	mustNarInfo(t, "get narinfo upstream-only again", gni, back)
	if gn != (store.Nar{}) {
		t.Fatalf("narinfo upstream-only again: Nar %+v, want the zero Nar", gn)
	}
	// Unlinking the Nar it served before leaves it.
	if _, err := s.UnlinkNar(ctx, c.ID, n.FileHash); err != nil {
		t.Fatalf("unlink nar: %v", err)
	}
	getNarInfo(t, s, c.ID, stored.Hash)
}

func testUpstreamOnlyPresent(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	n := addNar(t, s, c.ID, newNar("one"))
	lost := addNar(t, s, c.ID, newNar("lost"))
	putNarInfo(t, s, newNarInfo(c.ID, "stored", n.FileHash))
	putNarInfo(t, s, newNarInfo(c.ID, "lost", lost.FileHash))
	putNarInfo(t, s, newUpstreamOnly(c.ID, "up1", old))
	putNarInfo(t, s, newUpstreamOnly(c.ID, "up2", old))
	putNarInfo(t, s, newUpstreamOnly(other.ID, "elsewhere", old))
	mustOK(t, "set missing", s.SetNarMissing(ctx, lost.FileHash, lost.BlobKey, true))
	ask := hashes("stored", "lost", "up1", "up2", "elsewhere", "none", "up1")
	present, up, err := s.PresentNarInfos(ctx, c.ID, ask)
	mustOK(t, "present narinfos", err)
	mustHashes(t, "present narinfos", present, hashes("stored", "up1", "up2"))
	mustHashes(t, "present narinfos: upstream-only", up, hashes("up1", "up2"))
}

func testUpstreamOnlyList(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	n := addNar(t, s, c.ID, newNar("one"))
	stored := putNarInfo(t, s, newNarInfo(c.ID, "stored", n.FileHash))
	putNarInfo(t, s, newUpstreamOnly(c.ID, "up", old))
	list, err := s.ListKeys(t.Context(), c.ID, "", "", 100)
	mustOK(t, "list keys", err)
	var keys []string
	for _, e := range list {
		keys = append(keys, e.Key)
	}
	want := []string{stored.Key, narKey(n)}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Fatalf("list keys of a cache with an upstream-only narinfo: %q, want %q", keys, want)
	}
}

func testUpstreamNarInfos(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	n := addNar(t, s, c.ID, newNar("one"))
	putNarInfo(t, s, newNarInfo(c.ID, "stored", n.FileHash))
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	b := putNarInfo(t, s, newUpstreamOnly(c.ID, "b", base.Add(2*time.Hour)))
	a := putNarInfo(t, s, newUpstreamOnly(other.ID, "a", base.Add(time.Hour)))
	d := putNarInfo(t, s, newUpstreamOnly(c.ID, "d", base.Add(3*time.Hour)))
	putNarInfo(t, s, newUpstreamOnly(c.ID, "late", base.Add(10*time.Hour)))
	got, err := s.UpstreamNarInfos(ctx, base.Add(5*time.Hour), 10)
	mustOK(t, "upstream-only narinfos", err)
	want := []store.NarInfo{a, b, d}
	if len(got) != len(want) {
		t.Fatalf("upstream-only narinfos checked before a time: %d, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		mustNarInfo(t, fmt.Sprint("upstream-only narinfo ", i), got[i], want[i])
	}
	got, err = s.UpstreamNarInfos(ctx, base.Add(5*time.Hour), 2)
	mustOK(t, "upstream-only narinfos, limited", err)
	if len(got) != 2 || got[0].Hash != a.Hash || got[1].Hash != b.Hash {
		t.Fatalf("two least recently checked upstream-only narinfos: %+v, want a and b", got)
	}
	got, err = s.UpstreamNarInfos(ctx, base.Add(time.Hour), 10)
	mustOK(t, "upstream-only narinfos checked before the first", err)
	if len(got) != 0 {
		t.Fatalf("upstream-only narinfos checked before the first check: %+v, want none", got)
	}
}

func testUpstreamDrop(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	n := addNar(t, s, c.ID, newNar("one"))
	stored := putNarInfo(t, s, newNarInfo(c.ID, "stored", n.FileHash))
	up := putNarInfo(t, s, newUpstreamOnly(c.ID, "up", old))
	there := putNarInfo(t, s, newUpstreamOnly(other.ID, "up", old))
	mustOK(t, "drop upstream-only narinfo", s.DropUpstreamNarInfo(ctx, c.ID, up.Hash))
	_, _, err := s.GetNarInfo(ctx, c.ID, up.Hash)
	mustNotFound(t, "get dropped upstream-only narinfo", err)
	mustNotFound(t, "drop it again", s.DropUpstreamNarInfo(ctx, c.ID, up.Hash))
	mustNotFound(t, "drop a stored narinfo", s.DropUpstreamNarInfo(ctx, c.ID, stored.Hash))
	gni, _ := getNarInfo(t, s, c.ID, stored.Hash)
	mustNarInfo(t, "stored narinfo after a refused drop", gni, stored)
	gni, _ = getNarInfo(t, s, other.ID, there.Hash)
	mustNarInfo(t, "the same path in another cache", gni, there)
	mustNarInfoKeys(t, s, []store.NarInfoKey{{CacheID: c.ID, Hash: stored.Hash}, {CacheID: other.ID, Hash: there.Hash}})
}

func testUpstreamUsageAndDelete(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	addPath(t, s, c.ID, "a", 100, old)
	putNarInfo(t, s, newUpstreamOnly(c.ID, "up1", old))
	putNarInfo(t, s, newUpstreamOnly(c.ID, "up2", old))
	mustUsage(t, s, c.ID, 3, 100)
	mustOK(t, "delete cache", s.DeleteCache(ctx, "main"))
	c = createCache(t, s, "main")
	mustUsage(t, s, c.ID, 0, 0)
	got, err := s.UpstreamNarInfos(ctx, time.Now().Add(time.Hour), 10)
	mustOK(t, "upstream-only narinfos after the cache is deleted", err)
	if len(got) != 0 {
		t.Fatalf("upstream-only narinfos of a deleted cache: %+v, want none", got)
	}
}

// testUpstreamCollect: upstream-only narinfos are in closures like the
// others, and removed with the roots that kept them.
func testUpstreamCollect(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	recent := time.Now().Add(-time.Hour)
	// r (a root) refers to u1, upstream-only, which refers to u2,
	// upstream-only, which refers to d, stored. o, old, refers to u3; u4
	// is old and stands alone; u5 is upstream-only and a root itself.
	addPath(t, s, c.ID, "d", 4, old)
	putNarInfo(t, s, withCreated(newUpstreamOnly(c.ID, "u2", old, "d"), old))
	putNarInfo(t, s, withCreated(newUpstreamOnly(c.ID, "u1", old, "u2"), old))
	addPath(t, s, c.ID, "r", 1, recent, "u1")
	addPath(t, s, c.ID, "o", 8, old, "u3")
	putNarInfo(t, s, withCreated(newUpstreamOnly(c.ID, "u3", old), old))
	putNarInfo(t, s, withCreated(newUpstreamOnly(c.ID, "u4", old), old))
	putNarInfo(t, s, withCreated(newUpstreamOnly(c.ID, "u5", old), recent))
	seeds := []string{"d", "u1", "u2", "r", "o", "u3", "u4", "u5"}
	res := collect(t, s, retentionPlan(c.ID))
	mustPresent(t, s, c.ID, seeds, "r", "u1", "u2", "d", "u5")
	want := store.CollectResult{KeptPaths: 5, KeptBytes: 5, Removed: hashes("o", "u3", "u4"), RemovedBytes: 8}
	mustResult(t, "collect", res, want)
	mustUsage(t, s, c.ID, 5, 5)
	// Once r is too old too, its closure goes with it.
	res = collect(t, s, store.CollectPlan{CacheID: c.ID, UsedSince: time.Now().Add(-time.Minute)})
	mustPresent(t, s, c.ID, seeds)
	mustResult(t, "collect once the root is old", res, store.CollectResult{
		Removed: hashes("r", "u1", "u2", "d", "u5"), RemovedBytes: 5})
}

// testUpstreamCollectQuota: upstream-only narinfos take no room.
func testUpstreamCollectQuota(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	day := func(i int) time.Time { return time.Now().Add(-time.Duration(10-i) * time.Hour) }
	addPath(t, s, c.ID, "a", 10, day(1), "ua")
	putNarInfo(t, s, withCreated(newUpstreamOnly(c.ID, "ua", old), day(1)))
	addPath(t, s, c.ID, "b", 10, day(2), "ub")
	putNarInfo(t, s, withCreated(newUpstreamOnly(c.ID, "ub", old), day(2)))
	plan := store.CollectPlan{CacheID: c.ID, UsedSince: time.Now().Add(-24 * time.Hour), MaxSize: 15}
	res := collect(t, s, plan)
	mustPresent(t, s, c.ID, []string{"a", "ua", "b", "ub"}, "b", "ub")
	mustResult(t, "collect to a quota", res, store.CollectResult{KeptPaths: 2, KeptBytes: 10,
		Removed: hashes("a", "ua"), RemovedBytes: 10, DroppedRoots: 2})
}

// withCreated returns ni created at t.
func withCreated(ni store.NarInfo, t time.Time) store.NarInfo {
	ni.CreatedAt = t
	return ni
}

package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// gcTests check the policy, usage, NAR, upload and lease parts of the
// GCStore contract.
var gcTests = []metaTest{
	{"PolicyRoundTrip", testPolicyRoundTrip},
	{"PolicySetMissing", testPolicySetMissing},
	{"TouchKeepsLaterTime", testTouchKeepsLaterTime},
	{"TouchIgnoresUnknown", testTouchIgnoresUnknown},
	{"TouchNars", testTouchNars},
	{"Usage", testUsage},
	{"UsageMissing", testUsageMissing},
	{"UnusedNars", testUnusedNars},
	{"UnusedNarsBoundary", testUnusedNarsBoundary},
	{"UnusedNarsClaimed", testUnusedNarsClaimed},
	{"StaleUploads", testStaleUploads},
	{"Lease", testLease},
	{"LeaseExpires", testLeaseExpires},
}

func testPolicyRoundTrip(t *testing.T, s store.MetaStore) {
	p := store.Policy{Retention: 30 * 24 * time.Hour, MaxSize: 50 << 30}
	c, err := s.CreateCache(t.Context(), store.Cache{Name: "main", Policy: p, LastGC: time.Now()})
	mustOK(t, "create cache with a policy", err)
	if c.Policy != p || !c.LastGC.IsZero() {
		t.Fatalf("create cache: policy %+v, LastGC %v; want %+v and zero", c.Policy, c.LastGC, p)
	}
	got, err := s.GetCache(t.Context(), "main")
	mustOK(t, "get cache", err)
	mustCache(t, "get cache with a policy", got, c)
	other := createCache(t, s, "other")
	if other.Policy != (store.Policy{}) {
		t.Fatalf("create cache without a policy: %+v", other.Policy)
	}

	p2 := store.Policy{Retention: 90 * time.Minute, MaxSize: 1}
	mustOK(t, "set policy", s.SetPolicy(t.Context(), c.ID, p2))
	c.Policy = p2
	list, err := s.ListCaches(t.Context())
	mustOK(t, "list caches", err)
	if len(list) != 2 {
		t.Fatalf("list caches: %+v", list)
	}
	mustCache(t, "list caches after set policy", list[0], c)
	mustCache(t, "other cache after set policy", list[1], other)
	mustOK(t, "clear policy", s.SetPolicy(t.Context(), c.ID, store.Policy{}))
	got, err = s.GetCache(t.Context(), "main")
	mustOK(t, "get cache", err)
	if got.Policy != (store.Policy{}) {
		t.Fatalf("get cache after clearing its policy: %+v", got.Policy)
	}
}

func testPolicySetMissing(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "gone")
	mustOK(t, "delete cache", s.DeleteCache(t.Context(), "gone"))
	mustNotFound(t, "set policy of a deleted cache", s.SetPolicy(t.Context(), c.ID, store.Policy{MaxSize: 1}))
	mustNotFound(t, "set policy of an unknown cache", s.SetPolicy(t.Context(), 424242, store.Policy{}))
}

// old is when the old paths of the collection tests were created.
var old = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// addPath records, in the cache, a Nar of size bytes made from seed and a
// narinfo of the store path named by seed serving it, created at created,
// referencing the paths named by refs.
func addPath(t *testing.T, s store.MetaStore, cacheID int64, seed string, size int64, created time.Time,
	refs ...string) store.NarInfo {
	t.Helper()
	n := newNar(seed)
	n.FileSize = size
	return addPathOf(t, s, cacheID, seed, addNar(t, s, cacheID, n), created, refs...)
}

// addPathOf records a narinfo of the store path named by seed serving n,
// which the cache holds, created at created, referencing the paths named by
// refs.
func addPathOf(t *testing.T, s store.MetaStore, cacheID int64, seed string, n store.Nar, created time.Time,
	refs ...string) store.NarInfo {
	t.Helper()
	ni := newNarInfo(cacheID, seed, n.FileHash)
	ni.References, ni.CreatedAt = nil, created
	for _, r := range refs {
		ni.References = append(ni.References, ref(r))
	}
	return putNarInfo(t, s, ni)
}

// ref returns the reference to the store path named by seed: its base name.
func ref(seed string) string { return storeHash(seed) + "-" + seed }

// hashes returns the store path hashes of the paths named by seeds, sorted.
func hashes(seeds ...string) []string {
	var l []string
	for _, seed := range seeds {
		l = append(l, storeHash(seed))
	}
	slices.Sort(l)
	return l
}

// dryRemoved returns, sorted, the hashes a dry run of Collect of the cache
// with the given UsedSince would remove.
func dryRemoved(t *testing.T, s store.MetaStore, cacheID int64, usedSince time.Time) []string {
	t.Helper()
	res, err := s.Collect(t.Context(), store.CollectPlan{CacheID: cacheID, UsedSince: usedSince, DryRun: true})
	mustOK(t, "dry run", err)
	return slices.Sorted(slices.Values(res.Removed))
}

// mustHashes fails t unless got and want hold the same hashes, in any
// order.
func mustHashes(t *testing.T, what string, got, want []string) {
	t.Helper()
	got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

func testTouchKeepsLaterTime(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	for _, seed := range []string{"a", "b", "c"} {
		addPath(t, s, c.ID, seed, 10, old)
	}
	addPath(t, s, other.ID, "b", 10, old)
	now := time.Now().UTC()
	mustOK(t, "touch a", s.Touch(ctx, c.ID, hashes("a"), now.Add(-time.Hour)))
	mustOK(t, "touch a earlier and b", s.Touch(ctx, c.ID, hashes("a", "b"), now.Add(-3*time.Hour)))
	mustOK(t, "touch b of another cache", s.Touch(ctx, other.ID, hashes("b"), now))
	mustOK(t, "touch nothing", s.Touch(ctx, c.ID, nil, now))
	mustHashes(t, "removed with a's later read", dryRemoved(t, s, c.ID, now.Add(-2*time.Hour)), hashes("b", "c"))
	mustHashes(t, "removed with both reads", dryRemoved(t, s, c.ID, now.Add(-4*time.Hour)), hashes("c"))
	mustHashes(t, "removed after the reads", dryRemoved(t, s, c.ID, now.Add(-time.Minute)), hashes("a", "b", "c"))
	mustHashes(t, "removed from the other cache", dryRemoved(t, s, other.ID, now.Add(-time.Minute)), nil)
}

func testTouchIgnoresUnknown(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	addPath(t, s, c.ID, "a", 10, old)
	now := time.Now().UTC()
	mustOK(t, "touch unknown and known", s.Touch(ctx, c.ID, hashes("unknown", "a"), now))
	mustOK(t, "touch in an unknown cache", s.Touch(ctx, 424242, hashes("a"), now))
	mustHashes(t, "removed after the touch", dryRemoved(t, s, c.ID, now.Add(-time.Minute)), nil)
	if _, _, err := s.GetNarInfo(ctx, c.ID, storeHash("unknown")); err == nil {
		t.Fatalf("touch made a narinfo")
	}
}

func testTouchNars(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	a := addPath(t, s, c.ID, "a", 10, old)
	addPath(t, s, c.ID, "b", 10, old)
	// a2 of main and o of other serve a's NAR file too.
	addPathOf(t, s, c.ID, "a2", narOf(t, s, a), old)
	addPathOf(t, s, other.ID, "o", addNar(t, s, other.ID, narOf(t, s, a)), old)
	now := time.Now().UTC()
	mustOK(t, "touch a's nar and an unknown one", s.TouchNars(ctx, c.ID, []string{a.FileHash, storeHash("none")}, now))
	mustOK(t, "touch nothing", s.TouchNars(ctx, c.ID, nil, now))
	mustHashes(t, "removed after reading a's NAR", dryRemoved(t, s, c.ID, now.Add(-time.Minute)), hashes("b"))
	mustHashes(t, "removed from the other cache", dryRemoved(t, s, other.ID, now.Add(-time.Minute)), hashes("o"))
}

// mustUsage fails t unless Usage of the cache is paths and bytes.
func mustUsage(t *testing.T, s store.MetaStore, cacheID int64, paths, bytes int64) {
	t.Helper()
	p, b, err := s.Usage(t.Context(), cacheID)
	mustOK(t, "usage", err)
	if p != paths || b != bytes {
		t.Fatalf("usage of cache %d: %d paths, %d bytes; want %d and %d", cacheID, p, b, paths, bytes)
	}
}

func testUsage(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	mustUsage(t, s, c.ID, 0, 0)
	shared := addPath(t, s, c.ID, "a", 100, old)
	n, err := s.GetNar(t.Context(), shared.FileHash)
	mustOK(t, "get nar", err)
	addPathOf(t, s, c.ID, "b", n, old)
	addPath(t, s, c.ID, "c", 50, old)
	lone := newNar("lone")
	lone.FileSize = 1000
	addNar(t, s, c.ID, lone) // linked, served by no narinfo
	addNar(t, s, other.ID, n)
	addPathOf(t, s, other.ID, "a", n, old)
	addPath(t, s, other.ID, "d", 7, old)
	mustUsage(t, s, c.ID, 3, 150)
	mustUsage(t, s, other.ID, 2, 107)
	_, err = s.UnlinkNar(t.Context(), c.ID, n.FileHash)
	mustOK(t, "unlink nar", err)
	mustUsage(t, s, c.ID, 1, 50)
	mustUsage(t, s, other.ID, 2, 107)
}

func testUsageMissing(t *testing.T, s store.MetaStore) {
	_, _, err := s.Usage(t.Context(), 424242)
	mustNotFound(t, "usage of an unknown cache", err)
}

// unusedFixture records Nars u1 (created in 2020), u2 (2021) and u3 (2030)
// that no cache links to any more and Nars l1 and l2 (2020) linked to main,
// and returns them by name.
func unusedFixture(t *testing.T, s store.MetaStore) map[string]store.Nar {
	main := createCache(t, s, "main")
	tmp := createCache(t, s, "tmp")
	nars := map[string]store.Nar{}
	for seed, year := range map[string]int{"u1": 2020, "u2": 2021, "u3": 2030, "l1": 2020, "l2": 2020} {
		n := newNar(seed)
		n.CreatedAt = time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
		nars[seed] = addNar(t, s, tmp.ID, n)
		if seed[0] == 'l' {
			addNar(t, s, main.ID, n)
		}
	}
	mustOK(t, "delete cache tmp", s.DeleteCache(t.Context(), "tmp"))
	return nars
}

// mustNars fails t unless got are the Nars of want, in order.
func mustNars(t *testing.T, what string, got []store.Nar, want ...store.Nar) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
	for i := range got {
		mustNar(t, fmt.Sprint(what, ": nar ", i), got[i], want[i])
	}
}

func testUnusedNars(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	nars := unusedFixture(t, s)
	before := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	list, err := s.UnusedNars(ctx, before, 10, true)
	mustOK(t, "unused nars, dry run", err)
	slices.SortFunc(list, func(a, b store.Nar) int { return a.CreatedAt.Compare(b.CreatedAt) })
	mustNars(t, "unused nars, dry run", list, nars["u1"], nars["u2"])
	for _, n := range nars {
		_, err := s.GetNar(ctx, n.FileHash)
		mustOK(t, "get nar after a dry run", err)
	}
	first, err := s.UnusedNars(ctx, before, 1, false)
	mustOK(t, "unused nars, limit 1", err)
	if len(first) != 1 {
		t.Fatalf("unused nars, limit 1: %+v", first)
	}
	rest, err := s.UnusedNars(ctx, before, 10, false)
	mustOK(t, "unused nars", err)
	got := append(first, rest...)
	slices.SortFunc(got, func(a, b store.Nar) int { return a.CreatedAt.Compare(b.CreatedAt) })
	mustNars(t, "unused nars removed", got, nars["u1"], nars["u2"])
	for seed, n := range nars {
		_, err := s.GetNar(ctx, n.FileHash)
		if seed == "u1" || seed == "u2" {
			mustNotFound(t, "get removed nar "+seed, err)
		} else {
			mustOK(t, "get kept nar "+seed, err)
		}
	}
	again, err := s.UnusedNars(ctx, before, 10, false)
	mustOK(t, "unused nars again", err)
	mustNars(t, "unused nars again", again)
	none, err := s.UnusedNars(ctx, time.Now().Add(100*365*24*time.Hour), 0, false)
	mustOK(t, "unused nars, limit 0", err)
	mustNars(t, "unused nars, limit 0", none)
}

func testUnusedNarsBoundary(t *testing.T, s store.MetaStore) {
	nars := unusedFixture(t, s)
	at := nars["u1"].CreatedAt
	list, err := s.UnusedNars(t.Context(), at, 10, true)
	mustOK(t, "unused nars created before the first", err)
	mustNars(t, "unused nars created before the first", list)
	list, err = s.UnusedNars(t.Context(), at.Add(time.Second/2), 10, true)
	mustOK(t, "unused nars created before just after the first", err)
	mustNars(t, "unused nars created before just after the first", list, nars["u1"])
}

func testUnusedNarsClaimed(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	nars := unusedFixture(t, s)
	u1, u2 := nars["u1"], nars["u2"]
	future := time.Now().Add(100 * 365 * 24 * time.Hour) // every unused Nar is old enough
	got, err := s.ClaimNar(ctx, u1.FileHash, time.Hour)
	mustOK(t, "claim nar", err)
	mustNar(t, "claim nar", got, u1)
	// A shorter claim does not cut a longer one short.
	_, err = s.ClaimNar(ctx, u1.FileHash, 0)
	mustOK(t, "claim nar briefly", err)
	_, err = s.ClaimNar(ctx, u2.FileHash, time.Second)
	mustOK(t, "claim another nar for a second", err)
	list, err := s.UnusedNars(ctx, future, 10, true)
	mustOK(t, "unused nars while claimed, dry run", err)
	mustNars(t, "unused nars while claimed, dry run", list, nars["u3"])
	list, err = s.UnusedNars(ctx, future, 10, false)
	mustOK(t, "unused nars while claimed", err)
	mustNars(t, "unused nars while claimed", list, nars["u3"])
	// Once the second is over (stores may round claims up to the second).
	time.Sleep(2100 * time.Millisecond)
	list, err = s.UnusedNars(ctx, future, 10, false)
	mustOK(t, "unused nars once a claim ended", err)
	mustNars(t, "unused nars once a claim ended", list, u2)
	_, err = s.ClaimNar(ctx, u2.FileHash, time.Hour)
	mustNotFound(t, "claim a removed nar", err)
	_, err = s.ClaimNar(ctx, fileHash("unknown"), time.Hour)
	mustNotFound(t, "claim an unknown nar", err)
	if _, err := s.GetNar(ctx, u1.FileHash); err != nil {
		t.Fatalf("the claimed nar was removed: %v", err)
	}
}

func testStaleUploads(t *testing.T, s store.MetaStore) {
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var ups []store.Upload
	for i, cacheID := range []int64{a.ID, b.ID, a.ID} {
		u := newUpload(fmt.Sprint("u", i), cacheID, fmt.Sprint("k", i))
		u.CreatedAt = base.Add(time.Duration(i) * time.Hour)
		createUpload(t, s, u)
		ups = append(ups, u)
	}
	list, err := s.StaleUploads(t.Context(), base.Add(2*time.Hour), 10)
	mustOK(t, "stale uploads", err)
	slices.SortFunc(list, func(x, y store.Upload) int { return x.CreatedAt.Compare(y.CreatedAt) })
	if len(list) != 2 {
		t.Fatalf("stale uploads: %+v, want the first two", list)
	}
	mustUpload(t, "stale upload 0", list[0], ups[0])
	mustUpload(t, "stale upload 1", list[1], ups[1])
	list, err = s.StaleUploads(t.Context(), base.Add(2*time.Hour), 1)
	mustOK(t, "stale uploads, limit 1", err)
	if len(list) != 1 || list[0].ID != ups[0].ID && list[0].ID != ups[1].ID {
		t.Fatalf("stale uploads, limit 1: %+v", list)
	}
	list, err = s.StaleUploads(t.Context(), base, 10)
	mustOK(t, "stale uploads before the first", err)
	if len(list) != 0 {
		t.Fatalf("stale uploads before the first: %+v", list)
	}
	// They are only returned.
	mustUpload(t, "upload after stale uploads", getUpload(t, s, ups[0].ID), ups[0])
}

// mustLease fails t unless TryLease of name for holder reports want.
func mustLease(t *testing.T, s store.MetaStore, name, holder string, ttl time.Duration, want bool) {
	t.Helper()
	got, err := s.TryLease(t.Context(), name, holder, ttl)
	mustOK(t, "try lease "+name+" for "+holder, err)
	if got != want {
		t.Fatalf("try lease %s for %s: %v, want %v", name, holder, got, want)
	}
}

func testLease(t *testing.T, s store.MetaStore) {
	mustHolder(t, s, "gc", "")
	mustLease(t, s, "gc", "h1", time.Hour, true)
	mustHolder(t, s, "gc", "h1")
	mustLease(t, s, "gc", "h2", time.Hour, false)
	mustLease(t, s, "gc", "h1", time.Hour, true) // renewed
	mustLease(t, s, "other", "h2", time.Hour, true)
	mustOK(t, "release by a non-holder", s.ReleaseLease(t.Context(), "gc", "h2"))
	mustLease(t, s, "gc", "h2", time.Hour, false)
	mustOK(t, "release by the holder", s.ReleaseLease(t.Context(), "gc", "h1"))
	mustLease(t, s, "gc", "h2", time.Hour, true)
	mustLease(t, s, "gc", "h1", time.Hour, false)
	mustOK(t, "release a lease never taken", s.ReleaseLease(t.Context(), "never", "h1"))
	mustLease(t, s, "other", "h1", time.Hour, false)
}

func testLeaseExpires(t *testing.T, s store.MetaStore) {
	mustLease(t, s, "gc", "h1", 200*time.Millisecond, true)
	mustLease(t, s, "gc", "h2", time.Hour, false)
	time.Sleep(400 * time.Millisecond)
	mustHolder(t, s, "gc", "")
	mustLease(t, s, "gc", "h2", time.Hour, true)
	mustLease(t, s, "gc", "h1", time.Hour, false)
}

// mustHolder fails t unless the named lease is held by holder ("": free).
func mustHolder(t *testing.T, s store.MetaStore, name, holder string) {
	t.Helper()
	got, err := s.LeaseHolder(t.Context(), name)
	mustOK(t, "lease holder", err)
	if got != holder {
		t.Fatalf("lease %s is held by %q, want %q", name, got, holder)
	}
}

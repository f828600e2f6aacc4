package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// collectTests check Collect.
var collectTests = []metaTest{
	{"CollectRetention", testCollectRetention},
	{"CollectWithinCache", testCollectWithinCache},
	{"CollectKeepsAll", testCollectKeepsAll},
	{"CollectQuota", testCollectQuota},
	{"CollectOverQuota", testCollectOverQuota},
	{"CollectLinks", testCollectLinks},
	{"CollectDryRun", testCollectDryRun},
	{"CollectLastGC", testCollectLastGC},
	{"CollectMissingCache", testCollectMissingCache},
	{"CollectLateRead", testCollectLateRead},
	{"CollectOnRemove", testCollectOnRemove},
}

// collect runs Collect with plan and fails t on error.
func collect(t *testing.T, s store.MetaStore, plan store.CollectPlan) store.CollectResult {
	t.Helper()
	res, err := s.Collect(t.Context(), plan)
	mustOK(t, "collect", err)
	return res
}

// mustPresent fails t unless the paths named by seeds are exactly those
// of the cache's narinfos among the paths named by all.
func mustPresent(t *testing.T, s store.MetaStore, cacheID int64, all []string, seeds ...string) {
	t.Helper()
	var got []string
	for _, seed := range all {
		if _, _, err := s.GetNarInfo(t.Context(), cacheID, storeHash(seed)); err == nil {
			got = append(got, seed)
		}
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(seeds))
	if !slices.Equal(got, want) {
		t.Fatalf("narinfos of cache %d: %q, want %q", cacheID, got, want)
	}
}

// retentionFixture fills cache main (returned) with paths created in
// 2020, but for n, created an hour ago: r, read an hour ago, refers to d1
// and to m, which the cache does not hold; d1 refers to itself and d2; o
// refers to d1 and x; y stands alone. x serves o's NAR, n d2's and y d1's.
// NAR sizes: r 1, d1 2, d2 4, o 8.
func retentionFixture(t *testing.T, s store.MetaStore) store.Cache {
	c := createCache(t, s, "main")
	addPath(t, s, c.ID, "d2", 4, old)
	d1 := addPath(t, s, c.ID, "d1", 2, old, "d1", "d2")
	r := addPath(t, s, c.ID, "r", 1, old, "d1", "m")
	o := addPath(t, s, c.ID, "o", 8, old, "d1", "x")
	d2, _ := getNarInfo(t, s, c.ID, storeHash("d2"))
	addPathOf(t, s, c.ID, "x", narOf(t, s, o), old)
	addPathOf(t, s, c.ID, "n", narOf(t, s, d2), time.Now().Add(-time.Hour))
	addPathOf(t, s, c.ID, "y", narOf(t, s, d1), old)
	mustOK(t, "touch r", s.Touch(t.Context(), c.ID, []string{r.Hash}, time.Now().Add(-time.Hour)))
	return c
}

// narOf returns the Nar ni serves.
func narOf(t *testing.T, s store.MetaStore, ni store.NarInfo) store.Nar {
	t.Helper()
	n, err := s.GetNar(t.Context(), ni.FileHash)
	mustOK(t, "get nar", err)
	return n
}

// retentionSeeds are the paths of retentionFixture.
var retentionSeeds = []string{"r", "d1", "d2", "o", "x", "n", "y", "m"}

// retentionPlan keeps what retentionFixture has used within a day.
func retentionPlan(cacheID int64) store.CollectPlan {
	return store.CollectPlan{CacheID: cacheID, UsedSince: time.Now().Add(-24 * time.Hour)}
}

func testCollectRetention(t *testing.T, s store.MetaStore) {
	c := retentionFixture(t, s)
	res := collect(t, s, retentionPlan(c.ID))
	mustPresent(t, s, c.ID, retentionSeeds, "r", "d1", "d2", "n")
	mustHashes(t, "removed", res.Removed, hashes("o", "x", "y"))
	want := store.CollectResult{KeptPaths: 4, KeptBytes: 7, Removed: res.Removed, RemovedBytes: 8}
	mustResult(t, "collect", res, want)
	mustUsage(t, s, c.ID, 4, 7)
	// A second collection finds nothing more to remove.
	res = collect(t, s, retentionPlan(c.ID))
	mustResult(t, "collect again", res, store.CollectResult{KeptPaths: 4, KeptBytes: 7})
}

// mustResult fails t unless got equals want, Removed compared as sets.
func mustResult(t *testing.T, what string, got, want store.CollectResult) {
	t.Helper()
	if got.RemovedPaths != int64(len(got.Removed)) {
		t.Fatalf("%s: RemovedPaths is %d, but %d hashes are listed", what, got.RemovedPaths, len(got.Removed))
	}
	g, w := got, want
	g.RemovedPaths, w.RemovedPaths = 0, 0
	g.Removed, w.Removed = slices.Sorted(slices.Values(g.Removed)), slices.Sorted(slices.Values(w.Removed))
	if fmt.Sprint(g) != fmt.Sprint(w) {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

// testCollectLateRead: a read recorded after the kept set was computed,
// but made within the window of use (as another replica's reads reach the
// store up to its flush interval late), saves the path; Flush is called
// before the removals to let such reads in.
func testCollectLateRead(t *testing.T, s store.MetaStore) {
	c := retentionFixture(t, s)
	plan := retentionPlan(c.ID)
	flushes := 0
	plan.Flush = func(ctx context.Context) error {
		flushes++
		if flushes > 1 {
			return nil
		}
		return s.Touch(ctx, c.ID, []string{storeHash("y")}, time.Now().Add(-2*time.Hour))
	}
	res := collect(t, s, plan)
	if flushes == 0 {
		t.Fatalf("Collect did not call Flush before removing")
	}
	mustHashes(t, "removed", res.Removed, hashes("o", "x"))
	mustPresent(t, s, c.ID, retentionSeeds, "r", "d1", "d2", "n", "y")
}

// testCollectOnRemove: with OnRemove, the removed hashes go to it, in a
// dry run as in a collection, and not into the result; an error from it
// stops the collection.
func testCollectOnRemove(t *testing.T, s store.MetaStore) {
	for _, dry := range []bool{true, false} {
		c := retentionFixture(t, s)
		plan := retentionPlan(c.ID)
		plan.DryRun = dry
		var got []string
		plan.OnRemove = func(_ context.Context, hashes []string) error {
			got = append(got, hashes...)
			return nil
		}
		res := collect(t, s, plan)
		mustHashes(t, fmt.Sprintf("handed to OnRemove (dry run %v)", dry), got, hashes("o", "x", "y"))
		if res.RemovedPaths != 3 || len(res.Removed) != 0 {
			t.Fatalf("dry run %v: RemovedPaths %d, Removed %q; want 3 and none", dry, res.RemovedPaths, res.Removed)
		}
		mustOK(t, "delete cache", s.DeleteCache(t.Context(), "main"))
	}
	c := retentionFixture(t, s)
	plan := retentionPlan(c.ID)
	plan.OnRemove = func(context.Context, []string) error { return errors.New("stop") }
	if _, err := s.Collect(t.Context(), plan); err == nil {
		t.Fatalf("Collect went on after OnRemove failed")
	}
}

func testCollectWithinCache(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	recent := time.Now().Add(-time.Hour)
	// r of main refers to h, which only other holds; h of other refers to
	// k, which main holds too.
	addPath(t, s, c.ID, "r", 1, recent, "h")
	addPath(t, s, c.ID, "k", 2, old)
	addPath(t, s, other.ID, "h", 3, old, "k")
	addPath(t, s, other.ID, "k", 2, old) // the NAR file of main's k
	addPath(t, s, other.ID, "g", 5, old)
	res := collect(t, s, retentionPlan(c.ID))
	mustHashes(t, "removed", res.Removed, hashes("k"))
	mustPresent(t, s, c.ID, []string{"r", "k", "h"}, "r")
	mustPresent(t, s, other.ID, []string{"h", "k", "g"}, "h", "k", "g")
	mustUsage(t, s, other.ID, 3, 10)
}

func testCollectKeepsAll(t *testing.T, s store.MetaStore) {
	c := retentionFixture(t, s)
	res := collect(t, s, store.CollectPlan{CacheID: c.ID})
	mustResult(t, "collect with every path a root", res, store.CollectResult{KeptPaths: 7, KeptBytes: 15})
	mustPresent(t, s, c.ID, retentionSeeds, "r", "d1", "d2", "o", "x", "n", "y")
}

// quotaFixture fills cache main with paths of 100 bytes each: a, b and c,
// read one, two and three hours ago, refer to s and to their own a1, b1
// and c1; p, pinned, refers to p1. All but a, b and c were created in
// 2020. It returns the cache and the paths.
func quotaFixture(t *testing.T, s store.MetaStore) (store.Cache, []string) {
	c := createCache(t, s, "main")
	for _, seed := range []string{"s", "a1", "b1", "c1", "p1"} {
		addPath(t, s, c.ID, seed, 100, old)
	}
	addPath(t, s, c.ID, "p", 100, old, "p1")
	now := time.Now()
	for i, seed := range []string{"a", "b", "c"} {
		addPath(t, s, c.ID, seed, 100, old, "s", seed+"1")
		at := now.Add(-time.Duration(i+1) * time.Hour)
		mustOK(t, "touch "+seed, s.Touch(t.Context(), c.ID, hashes(seed), at))
	}
	return c, []string{"s", "a1", "b1", "c1", "p1", "p", "a", "b", "c"}
}

// quotaPlan keeps what quotaFixture used within a day and p, in maxSize.
func quotaPlan(cacheID int64, maxSize int64, dryRun bool) store.CollectPlan {
	return store.CollectPlan{CacheID: cacheID, UsedSince: time.Now().Add(-24 * time.Hour),
		Pinned: hashes("p", "unknown"), MaxSize: maxSize, DryRun: dryRun}
}

func testCollectQuota(t *testing.T, s store.MetaStore) {
	c, all := quotaFixture(t, s)
	for _, tc := range []struct {
		maxSize int64
		want    store.CollectResult
	}{
		{0, store.CollectResult{KeptPaths: 9, KeptBytes: 900}},
		{900, store.CollectResult{KeptPaths: 9, KeptBytes: 900}},
		{899, store.CollectResult{KeptPaths: 7, KeptBytes: 700, RemovedBytes: 200, DroppedRoots: 1,
			Removed: hashes("c", "c1")}},
		{500, store.CollectResult{KeptPaths: 5, KeptBytes: 500, RemovedBytes: 400, DroppedRoots: 2,
			Removed: hashes("b", "b1", "c", "c1")}},
		{499, store.CollectResult{KeptPaths: 2, KeptBytes: 200, RemovedBytes: 700, DroppedRoots: 3,
			Removed: hashes("a", "a1", "b", "b1", "c", "c1", "s")}},
	} {
		res := collect(t, s, quotaPlan(c.ID, tc.maxSize, true))
		mustResult(t, fmt.Sprint("dry run with max size ", tc.maxSize), res, tc.want)
	}
	before := closureRefs(t, s, c.ID, all)
	res := collect(t, s, quotaPlan(c.ID, 750, false))
	mustResult(t, "collect with max size 750", res, store.CollectResult{KeptPaths: 7, KeptBytes: 700,
		RemovedBytes: 200, DroppedRoots: 1, Removed: hashes("c", "c1")})
	mustPresent(t, s, c.ID, all, "s", "a1", "b1", "p1", "p", "a", "b")
	mustClosed(t, s, c.ID, before)
}

// closureRefs returns, for each of the paths named by seeds the cache
// holds, the hashes of the paths it refers to that the cache holds.
func closureRefs(t *testing.T, s store.MetaStore, cacheID int64, seeds []string) map[string][]string {
	t.Helper()
	held := map[string]bool{}
	for _, seed := range seeds {
		if _, _, err := s.GetNarInfo(t.Context(), cacheID, storeHash(seed)); err == nil {
			held[storeHash(seed)] = true
		}
	}
	refs := map[string][]string{}
	for h := range held {
		ni, _ := getNarInfo(t, s, cacheID, h)
		for _, r := range ni.References {
			if rh, _, _ := strings.Cut(r, "-"); held[rh] {
				refs[h] = append(refs[h], rh)
			}
		}
	}
	return refs
}

// mustClosed fails t unless every path of refs the cache still holds
// still has the paths it referred to.
func mustClosed(t *testing.T, s store.MetaStore, cacheID int64, refs map[string][]string) {
	t.Helper()
	for h, deps := range refs {
		if _, _, err := s.GetNarInfo(t.Context(), cacheID, h); err != nil {
			continue
		}
		for _, d := range deps {
			if _, _, err := s.GetNarInfo(t.Context(), cacheID, d); err != nil {
				t.Fatalf("kept path %s lost its reference %s: %v", h, d, err)
			}
		}
	}
}

func testCollectOverQuota(t *testing.T, s store.MetaStore) {
	c, all := quotaFixture(t, s)
	res := collect(t, s, quotaPlan(c.ID, 150, false))
	mustResult(t, "collect with the pins over max size", res, store.CollectResult{KeptPaths: 2, KeptBytes: 200,
		RemovedBytes: 700, DroppedRoots: 3, OverQuota: true, Removed: hashes("a", "a1", "b", "b1", "c", "c1", "s")})
	mustPresent(t, s, c.ID, all, "p", "p1")
}

package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// linkTime returns when the Nar with file hash fh was linked to the cache.
func linkTime(t *testing.T, s store.MetaStore, cacheID int64, fh string) time.Time {
	t.Helper()
	n, err := s.CacheNar(t.Context(), cacheID, fh)
	mustOK(t, "cache nar", err)
	return n.CreatedAt
}

func testCollectLinks(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	k := addPath(t, s, c.ID, "k", 1, time.Now().Add(-time.Hour))
	g := addPath(t, s, c.ID, "g", 2, old)
	lone := addNar(t, s, c.ID, newNar("lone"))
	shared := addNar(t, s, c.ID, newNar("shared"))
	addNar(t, s, other.ID, shared)
	addPathOf(t, s, other.ID, "h", shared, old)
	first := linkTime(t, s, c.ID, g.FileHash)
	last := linkTime(t, s, c.ID, shared.FileHash)

	plan := retentionPlan(c.ID)
	plan.LinkedBefore = first
	res := collect(t, s, plan)
	mustResult(t, "collect keeping links made at LinkedBefore", res,
		store.CollectResult{KeptPaths: 1, KeptBytes: 1, Removed: hashes("g"), RemovedBytes: 2})
	for _, n := range []store.Nar{narOf(t, s, g), lone, shared} {
		_, err := s.CacheNar(ctx, c.ID, n.FileHash)
		mustOK(t, "link made at LinkedBefore", err)
	}

	plan.LinkedBefore = last.Add(time.Second)
	res = collect(t, s, plan)
	mustResult(t, "collect removing links", res, store.CollectResult{KeptPaths: 1, KeptBytes: 1, Unlinked: 3})
	for _, n := range []store.Nar{narOf(t, s, g), lone, shared} {
		_, err := s.CacheNar(ctx, c.ID, n.FileHash)
		mustNotFound(t, "link made before LinkedBefore", err)
		_, err = s.GetNar(ctx, n.FileHash)
		mustOK(t, "nar of a removed link", err)
	}
	_, err := s.CacheNar(ctx, c.ID, k.FileHash)
	mustOK(t, "link of a kept narinfo", err)
	_, err = s.CacheNar(ctx, other.ID, shared.FileHash)
	mustOK(t, "link of another cache", err)
	mustPresent(t, s, other.ID, []string{"h"}, "h")
}

// dump returns everything s shows through its methods, for comparing
// before and after a call that must change nothing.
func dump(t *testing.T, s store.MetaStore) string {
	t.Helper()
	ctx := t.Context()
	var b strings.Builder
	caches, err := s.ListCaches(ctx)
	mustOK(t, "dump: list caches", err)
	for _, c := range caches {
		fmt.Fprintf(&b, "cache %+v\n", c)
		entries, err := s.ListKeys(ctx, c.ID, "", "", 1<<20)
		mustOK(t, "dump: list keys", err)
		for _, e := range entries {
			fmt.Fprintf(&b, "  %+v\n", e)
			if e.Kind == store.EntryNarInfo {
				ni, n, err := s.GetNarInfo(ctx, c.ID, e.Hash)
				mustOK(t, "dump: get narinfo", err)
				fmt.Fprintf(&b, "    %+v\n    %+v\n", ni, n)
			}
		}
		paths, bytes, err := s.Usage(ctx, c.ID)
		mustOK(t, "dump: usage", err)
		pins, rules, err := s.ListPins(ctx, c.ID)
		mustOK(t, "dump: list pins", err)
		fmt.Fprintf(&b, "  usage %d %d\n  pins %+v %v\n", paths, bytes, pins, rules)
	}
	keys, err := s.ListNarInfoKeys(ctx, 0, 1<<20)
	mustOK(t, "dump: list narinfo keys", err)
	future := time.Now().Add(100 * 365 * 24 * time.Hour)
	unused, err := s.UnusedNars(ctx, future, 1<<20, true)
	mustOK(t, "dump: unused nars", err)
	uploads, err := s.StaleUploads(ctx, future, 1<<20)
	mustOK(t, "dump: stale uploads", err)
	fmt.Fprintf(&b, "keys %+v\nunused %+v\nuploads %+v\n", keys, unused, uploads)
	return b.String()
}

func testCollectDryRun(t *testing.T, s store.MetaStore) {
	c := retentionFixture(t, s)
	addNar(t, s, c.ID, newNar("lone"))
	addPin(t, s, newPin(c.ID, "app", "r", 1), store.PinRule{KeepRevisions: 1})
	before := dump(t, s)
	plan := retentionPlan(c.ID)
	plan.LinkedBefore = time.Now().Add(time.Hour)
	plan.DryRun = true
	quota := plan
	quota.MaxSize, quota.Pinned = 3, hashes("d1")
	over := collect(t, s, quota)
	mustResult(t, "dry run over quota", over, store.CollectResult{KeptPaths: 2, KeptBytes: 6, RemovedBytes: 9,
		Removed: hashes("r", "n", "o", "x", "y"), Unlinked: 3, DroppedRoots: 2, OverQuota: true})
	dry := collect(t, s, plan)
	want := store.CollectResult{KeptPaths: 4, KeptBytes: 7, Removed: hashes("o", "x", "y"), RemovedBytes: 8,
		Unlinked: 2}
	mustResult(t, "dry run", dry, want)
	if after := dump(t, s); after != before {
		t.Fatalf("dry runs changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	plan.DryRun = false
	mustResult(t, "collect after dry runs", collect(t, s, plan), want)
}

func testCollectLastGC(t *testing.T, s store.MetaStore) {
	c := retentionFixture(t, s)
	other := createCache(t, s, "other")
	plan := retentionPlan(c.ID)
	plan.DryRun = true
	collect(t, s, plan)
	got, err := s.GetCache(t.Context(), "main")
	mustOK(t, "get cache", err)
	if !got.LastGC.IsZero() {
		t.Fatalf("LastGC after a dry run: %v, want zero", got.LastGC)
	}
	before := time.Now()
	plan.DryRun = false
	collect(t, s, plan)
	got, err = s.GetCache(t.Context(), "main")
	mustOK(t, "get cache", err)
	mustRecent(t, "LastGC after a collection", got.LastGC, before)
	list, err := s.ListCaches(t.Context())
	mustOK(t, "list caches", err)
	mustCache(t, "list caches after a collection", list[0], got)
	mustCache(t, "other cache after a collection", list[1], other)
}

func testCollectMissingCache(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "gone")
	mustOK(t, "delete cache", s.DeleteCache(t.Context(), "gone"))
	for _, dry := range []bool{false, true} {
		_, err := s.Collect(t.Context(), store.CollectPlan{CacheID: c.ID, DryRun: dry})
		mustNotFound(t, "collect a deleted cache", err)
	}
}

// TestCollectWhileWriting checks that Collect keeps, with their closures,
// the narinfos committed, read or pinned while it runs. newStore returns
// an empty store, arranging its cleanup, and a function that sets a hook:
// a function the store calls once Collect has computed the kept set,
// before it removes anything. The store should remove in small batches.
func TestCollectWhileWriting(t *testing.T, newStore func(t *testing.T) (store.MetaStore, func(hook func()))) {
	s, setHook := newStore(t)
	ctx := t.Context()
	c := createCache(t, s, "main")
	all := []string{"r", "q", "q1", "q2", "t", "w", "w1", "n"}
	addPath(t, s, c.ID, "r", 1, time.Now().Add(-time.Hour))
	var garbage []string
	for i := range 10 {
		seed := fmt.Sprint("g", i)
		addPath(t, s, c.ID, seed, 1, old)
		garbage, all = append(garbage, seed), append(all, seed)
	}
	addPath(t, s, c.ID, "q2", 1, old)
	addPath(t, s, c.ID, "q1", 1, old, "q2")
	addPath(t, s, c.ID, "q", 1, old, "q1")
	addPath(t, s, c.ID, "t", 1, old)
	addPath(t, s, c.ID, "w1", 1, old)
	addPath(t, s, c.ID, "w", 1, old, "w1")
	calls := 0
	setHook(func() {
		calls++
		// A new path created long ago, referring to an old one, and an old
		// path read or pinned now.
		addPath(t, s, c.ID, "n", 1, old, "q")
		mustOK(t, "touch t", s.Touch(ctx, c.ID, hashes("t"), time.Now()))
		p := newPin(c.ID, "w", "w", 0)
		p.CreatedAt = time.Time{}
		addPin(t, s, p, store.PinRule{})
	})
	res := collect(t, s, retentionPlan(c.ID))
	if calls != 1 {
		t.Fatalf("hook called %d times, want 1", calls)
	}
	mustHashes(t, "removed", res.Removed, hashes(garbage...))
	mustPresent(t, s, c.ID, all, "r", "q", "q1", "q2", "t", "w", "w1", "n")
}

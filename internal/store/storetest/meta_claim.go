package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// linkedAt returns when the Nar with file hash fh was linked to the cache.
func linkedAt(t *testing.T, s store.MetaStore, cacheID int64, fh string) time.Time {
	t.Helper()
	n, err := s.CacheNar(t.Context(), cacheID, fh)
	mustOK(t, "cache nar", err)
	return n.CreatedAt
}

// testNarRelinkRenewsLink checks that linking a Nar again renews the time
// of its link, which keeps a collection from unlinking a NAR uploaded
// again just before its narinfo.
func testNarRelinkRenewsLink(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	n := newNar("one")
	addNar(t, s, c.ID, n)
	first := linkedAt(t, s, c.ID, n.FileHash)
	// Links are kept to the second: wait for the next one.
	time.Sleep(time.Until(first.Add(time.Second + 50*time.Millisecond)))
	addNar(t, s, c.ID, n)
	second := linkedAt(t, s, c.ID, n.FileHash)
	if !second.After(first) {
		t.Fatalf("relinking by AddNar kept the link time %v, want a later one", first)
	}
	time.Sleep(time.Until(second.Add(time.Second + 50*time.Millisecond)))
	_, err := s.LinkNar(ctx, c.ID, n.FileHash, narKey(n))
	mustOK(t, "link nar", err)
	if third := linkedAt(t, s, c.ID, n.FileHash); !third.After(second) {
		t.Fatalf("relinking by LinkNar kept the link time %v, want a later one", second)
	}
}

func testNarLink(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	n := newNar("one")
	addNar(t, s, a.ID, n)
	_, err := s.CacheNar(ctx, b.ID, n.FileHash)
	mustNotFound(t, "cache nar before linking", err)
	got, err := s.LinkNar(ctx, b.ID, n.FileHash, "nar/elsewhere.nar.zst")
	mustOK(t, "link nar", err)
	mustNar(t, "link nar", got, n)
	g, err := s.CacheNar(ctx, b.ID, n.FileHash)
	mustOK(t, "cache nar after linking", err)
	mustLinked(t, "cache nar after linking", g, n)
	mustKeys(t, "keys after linking", s, b.ID, "nar/elsewhere.nar.zst")
	_, err = s.LinkNar(ctx, b.ID, fileHash("unknown"), "nar/unknown.nar.zst")
	mustNotFound(t, "link an unknown nar", err)
	_, err = s.LinkNar(ctx, 424242, n.FileHash, narKey(n))
	mustNotFound(t, "link to an unknown cache", err)
	c := createCache(t, s, "c")
	addNarAt(t, s, c.ID, newNar("two"), "nar/taken.nar.zst")
	_, err = s.LinkNar(ctx, c.ID, n.FileHash, "nar/taken.nar.zst")
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("link under a key another nar has: %v, want ErrExists", err)
	}
}

func testNarSetMissing(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	n := newNar("one")
	addNar(t, s, c.ID, n)
	ni := putNarInfo(t, s, newNarInfo(c.ID, "p", n.FileHash))
	mustNotFound(t, "set missing with another blob key", s.SetNarMissing(ctx, n.FileHash, "nar/other", true))
	mustNotFound(t, "set missing of an unknown nar", s.SetNarMissing(ctx, fileHash("unknown"), n.BlobKey, true))
	mustOK(t, "set missing", s.SetNarMissing(ctx, n.FileHash, n.BlobKey, true))
	missing := n
	missing.Missing = true
	g, err := s.GetNar(ctx, n.FileHash)
	mustOK(t, "get missing nar", err)
	mustNar(t, "get missing nar", g, missing)
	g, err = s.CacheNar(ctx, c.ID, n.FileHash)
	mustOK(t, "cache nar of a missing nar", err)
	mustLinked(t, "cache nar of a missing nar", g, missing)
	_, gn, err := s.GetNarInfo(ctx, c.ID, ni.Hash)
	mustOK(t, "get narinfo of a missing nar", err)
	if !gn.Missing {
		t.Fatalf("get narinfo of a missing nar: its Nar is %+v, want Missing", gn)
	}
	_, err = s.ClaimNar(ctx, n.FileHash, time.Hour)
	mustNotFound(t, "claim a missing nar", err)
	_, err = s.LinkNar(ctx, c.ID, n.FileHash, narKey(n))
	mustNotFound(t, "link a missing nar", err)
	_, err = s.AddNar(ctx, c.ID, n, narKey(n))
	mustNotFound(t, "add a missing nar with its own blob key", err)
	upd := newNarInfo(c.ID, "q", n.FileHash)
	_, err = s.PutNarInfo(ctx, upd, replaceWith(upd))
	mustNotFound(t, "put a narinfo of a missing nar", err)
	mustOK(t, "clear missing", s.SetNarMissing(ctx, n.FileHash, n.BlobKey, false))
	g, err = s.GetNar(ctx, n.FileHash)
	mustOK(t, "get nar no longer missing", err)
	mustNar(t, "get nar no longer missing", g, n)
	putNarInfo(t, s, upd)
}

func testNarMissingReplaced(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	n := newNar("one")
	addNar(t, s, c.ID, n)
	ni := putNarInfo(t, s, newNarInfo(c.ID, "p", n.FileHash))
	mustOK(t, "set missing", s.SetNarMissing(ctx, n.FileHash, n.BlobKey, true))
	other := createCache(t, s, "other")
	repl := n
	repl.BlobKey, repl.MD5, repl.CreatedAt = "nar/copy-2", padHash("md5-copy", 32), n.CreatedAt.Add(time.Hour)
	got, err := s.AddNar(ctx, other.ID, repl, narKey(n))
	mustOK(t, "add a new copy of a missing nar", err)
	mustNar(t, "add a new copy of a missing nar", got, repl)
	g, err := s.GetNar(ctx, n.FileHash)
	mustOK(t, "get replaced nar", err)
	mustNar(t, "get replaced nar", g, repl)
	// The narinfo of the first cache is served again, by the new copy.
	rec, gn, err := s.GetNarInfo(ctx, c.ID, ni.Hash)
	mustOK(t, "get narinfo after the replacement", err)
	mustNarInfo(t, "get narinfo after the replacement", rec, ni)
	mustNar(t, "the narinfo's nar after the replacement", gn, repl)
	// A live record is not replaced.
	again := repl
	again.BlobKey = "nar/copy-3"
	got, err = s.AddNar(ctx, c.ID, again, narKey(n))
	mustOK(t, "add another copy", err)
	mustNar(t, "add another copy of a live nar", got, repl)
}

func testNarList(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	tmp := createCache(t, s, "tmp")
	var inA, all []store.Nar
	for i := range 5 {
		n := addNar(t, s, a.ID, newNar(fmt.Sprint("a", i)))
		inA, all = append(inA, n), append(all, n)
	}
	for i := range 3 {
		all = append(all, addNar(t, s, b.ID, newNar(fmt.Sprint("b", i))))
	}
	addNar(t, s, tmp.ID, newNar("unlinked"))
	mustOK(t, "delete cache tmp", s.DeleteCache(ctx, "tmp"))
	page := func(cacheID int64, limit int) []store.Nar {
		var out []store.Nar
		after := ""
		for {
			l, err := s.ListNars(ctx, cacheID, after, limit)
			mustOK(t, "list nars", err)
			if len(l) > limit {
				t.Fatalf("list nars: %d, more than the limit %d", len(l), limit)
			}
			out = append(out, l...)
			if len(l) < limit {
				return out
			}
			after = l[len(l)-1].FileHash
		}
	}
	mustNars(t, "list nars of a", page(a.ID, 2), inA...)
	mustNars(t, "list nars of every cache", page(0, 3), all...)
	l, err := s.ListNars(ctx, 424242, "", 10)
	mustOK(t, "list nars of an unknown cache", err)
	mustNars(t, "list nars of an unknown cache", l)
	l, err = s.ListNars(ctx, 0, "", 0)
	mustOK(t, "list no nars", err)
	mustNars(t, "list no nars", l)
}

// orphanTests check the part of the GCStore contract that accounts for
// blobs no record names.
var orphanTests = []metaTest{
	{"OrphanBlobs", testOrphanBlobs},
	{"OrphanBlobsDryRun", testOrphanBlobsDryRun},
	{"OrphanBlobsHeldLater", testOrphanBlobsHeldLater},
}

// orphanFixture records a Nar, an object and a part, each naming a blob,
// and returns their blob keys.
func orphanFixture(t *testing.T, s store.MetaStore) []string {
	ctx := t.Context()
	c := createCache(t, s, "main")
	n := addNar(t, s, c.ID, newNar("one"))
	o := store.Object{CacheID: c.ID, Key: "log/x", ContentType: "text/plain", Size: 1, BlobKey: "object/aa/held"}
	mustOK(t, "put object", s.PutObject(ctx, o))
	mustOK(t, "create upload", s.CreateUpload(ctx, store.Upload{ID: "up1", CacheID: c.ID, Key: "big"}))
	_, err := s.PutPart(ctx, store.Part{UploadID: "up1", Number: 1, Size: 1, MD5: padHash("m", 32), BlobKey: "upload/up1-1"})
	mustOK(t, "put part", err)
	return []string{n.BlobKey, o.BlobKey, "upload/up1-1"}
}

// orphans calls OrphanBlobs and returns its answer sorted.
func orphans(t *testing.T, s store.MetaStore, keys []string, at, before time.Time, dryRun bool) []string {
	t.Helper()
	got, err := s.OrphanBlobs(t.Context(), keys, at, before, dryRun)
	mustOK(t, "orphan blobs", err)
	slices.Sort(got)
	return got
}

func testOrphanBlobs(t *testing.T, s store.MetaStore) {
	held := orphanFixture(t, s)
	free := []string{"nar/aa/gone", "object/bb/gone", "upload/x-1-gone"}
	keys := slices.Concat(held, free)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Hour)
	mustKeysOf(t, "orphans seen first", orphans(t, s, keys, t0, t0, false))
	// Seen again an hour later: orphans since t0, so before any time after it.
	mustKeysOf(t, "orphans seen before t0", orphans(t, s, keys, t1, t0, false))
	mustKeysOf(t, "orphans seen before t0+1s", orphans(t, s, keys, t1, t0.Add(time.Second), false), free...)
	// The first sighting is kept.
	mustKeysOf(t, "orphans after a later sighting", orphans(t, s, free[:1], t1.Add(time.Hour), t0.Add(time.Second), false), free[0])
	mustKeysOf(t, "no keys", orphans(t, s, nil, t1, t1, false))
	// Blobs gone from the store are forgotten once a sweep prunes them:
	// free[1] and free[2] were last seen at t1, free[0] at t1+1h.
	mustOK(t, "prune orphans", s.PruneOrphans(t.Context(), t1.Add(time.Second)))
	mustKeysOf(t, "orphans after pruning", orphans(t, s, free, t1.Add(2*time.Hour), t0.Add(time.Second), false), free[0])
}

func testOrphanBlobsDryRun(t *testing.T, s store.MetaStore) {
	keys := []string{"object/cc/gone"}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	mustKeysOf(t, "dry run of a first sighting", orphans(t, s, keys, t0, t0.Add(time.Hour), true))
	// The dry run noted nothing: this is still the first sighting.
	mustKeysOf(t, "first sighting after a dry run", orphans(t, s, keys, t0.Add(time.Hour), t0.Add(time.Hour), false))
	mustKeysOf(t, "dry run of a known orphan", orphans(t, s, keys, t0.Add(2*time.Hour), t0.Add(2*time.Hour), true), keys...)
	mustKeysOf(t, "dry run again", orphans(t, s, keys, t0.Add(3*time.Hour), t0.Add(2*time.Hour), true), keys...)
}

func testOrphanBlobsHeldLater(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	key := "object/dd/late"
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	mustKeysOf(t, "first sighting", orphans(t, s, []string{key}, t0, t0, false))
	// A record comes to name the blob: it is no orphan any more, and its
	// first sighting is forgotten.
	o := store.Object{CacheID: c.ID, Key: "log/late", ContentType: "text/plain", Size: 1, BlobKey: key}
	mustOK(t, "put object", s.PutObject(ctx, o))
	mustKeysOf(t, "held later", orphans(t, s, []string{key}, t0.Add(time.Hour), t0.Add(time.Hour), false))
	mustOK(t, "delete object", s.DeleteObject(ctx, c.ID, "log/late"))
	mustKeysOf(t, "orphan again", orphans(t, s, []string{key}, t0.Add(2*time.Hour), t0.Add(2*time.Hour), false))
	mustKeysOf(t, "orphan since the second sighting", orphans(t, s, []string{key}, t0.Add(3*time.Hour), t0.Add(2*time.Hour).Add(time.Second), false), key)
}

// mustKeysOf fails t unless got holds the keys want, in any order.
func mustKeysOf(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	mustHashes(t, what, got, want)
}

func testNarInfoPresent(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c, n, _ := narInfoFixture(t, s)
	other := createCache(t, s, "other")
	lost := addNar(t, s, c.ID, newNar("lost"))
	var hashes, want []string
	for i := range 2000 {
		seed := fmt.Sprint("p", i)
		hashes = append(hashes, storeHash(seed))
		switch {
		case i%3 == 0:
			putNarInfo(t, s, newNarInfo(c.ID, seed, n.FileHash))
			want = append(want, storeHash(seed))
		case i%3 == 1 && i < 30:
			putNarInfo(t, s, newNarInfo(c.ID, seed, lost.FileHash))
		case i%3 == 2 && i < 30:
			addNar(t, s, other.ID, n)
			putNarInfo(t, s, newNarInfo(other.ID, seed, n.FileHash))
		}
	}
	mustOK(t, "set missing", s.SetNarMissing(ctx, lost.FileHash, lost.BlobKey, true))
	// Asked twice over, with hashes the cache does not have.
	got, up, err := s.PresentNarInfos(ctx, c.ID, append(hashes, hashes[:10]...))
	mustOK(t, "present narinfos", err)
	mustKeysOf(t, "present narinfos", got, want...)
	mustKeysOf(t, "present narinfos: upstream-only", up)
	got, up, err = s.PresentNarInfos(ctx, 424242, hashes)
	mustOK(t, "present narinfos of an unknown cache", err)
	mustKeysOf(t, "present narinfos of an unknown cache", append(got, up...))
	got, up, err = s.PresentNarInfos(ctx, c.ID, nil)
	mustOK(t, "present narinfos of no hashes", err)
	mustKeysOf(t, "present narinfos of no hashes", append(got, up...))
}

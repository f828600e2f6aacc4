package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// chunkGCTests check the removing parts of the ChunkStore contract:
// UnusedChunks, SparsePacks, MoveChunks, and what UnusedNars, AddNar and
// OrphanBlobs do to packed Nars, and lists too long for one statement.
var chunkGCTests = []metaTest{
	{"ChunkUnused", testChunkUnused},
	{"ChunkUnusedLimit", testChunkUnusedLimit},
	{"ChunkUnusedMissingNar", testChunkUnusedMissingNar},
	{"ChunkSparsePacks", testChunkSparsePacks},
	{"ChunkMove", testChunkMove},
	{"ChunkMoveNothing", testChunkMoveNothing},
	{"ChunkMoveUnknown", testChunkMoveUnknown},
	{"ChunkMissingReplaced", testChunkMissingReplaced},
	{"ChunkHugeList", testChunkHugeList},
	{"ChunkPackCreatedAt", testChunkPackCreatedAt},
	{"ChunkPackWhileCollecting", testChunkPackWhileCollecting},
	{"ChunkPackConcurrent", testChunkPackConcurrent},
	{"ChunkPackSameNarConcurrent", testChunkPackSameNarConcurrent},
}

// mustUnusedChunks fails t unless UnusedChunks with limit removes n chunks
// and the packs named by keys, in any order.
func mustUnusedChunks(t *testing.T, s store.MetaStore, limit, n int, keys ...string) {
	t.Helper()
	got, packs, err := s.UnusedChunks(t.Context(), limit)
	mustOK(t, "unused chunks", err)
	if got != n {
		t.Fatalf("unused chunks, limit %d: removed %d chunks, want %d", limit, got, n)
	}
	mustKeysOf(t, fmt.Sprintf("unused chunks, limit %d: packs", limit), packs, keys...)
}

// sharedFixture records in a new cache Nars a (chunks c1 c2) and b (c2
// c3), with c1 and c2 in pack p1 and c3 in p2, and returns the cache, the
// Nars and the chunks by seed.
func sharedFixture(t *testing.T, s store.MetaStore) (store.Cache, store.Nar, store.Nar, map[string]store.Chunk) {
	t.Helper()
	c := createCache(t, s, "main")
	a, b := addNar(t, s, c.ID, newNar("a")), addNar(t, s, c.ID, newNar("b"))
	p1, by, l1 := onePack("p1", "c1", "c2")
	a = packNar(t, s, a, packedOf(a, []string{"c1", "c2"}, l1, p1))
	p2 := testPack("p2", 100)
	by["c3"] = chunkIn("c3", p2, 0, 40)
	b = packNar(t, s, b, packedOf(b, []string{"c2", "c3"}, []store.Chunk{by["c3"]}, p2))
	return c, a, b, by
}

func testChunkUnused(t *testing.T, s store.MetaStore) {
	c, a, b, by := sharedFixture(t, s)
	mustUnusedChunks(t, s, 100, 0)
	mustHeldBlobs(t, s, "packs in use", "pack/p1", "pack/p2")
	// Unlinked, a still lists its chunks until UnusedNars removes it.
	_, err := s.UnlinkNar(t.Context(), c.ID, a.FileHash)
	mustOK(t, "unlink a", err)
	mustUnusedChunks(t, s, 100, 0)
	list, err := s.UnusedNars(t.Context(), time.Now().Add(100*365*24*time.Hour), 100, true)
	mustOK(t, "unused nars, dry run", err)
	mustNars(t, "unused nars, dry run", list, a)
	mustUnusedChunks(t, s, 100, 0)
	list, err = s.UnusedNars(t.Context(), time.Now().Add(100*365*24*time.Hour), 100, false)
	mustOK(t, "unused nars", err)
	mustNars(t, "unused nars", list, a)
	mustChunkStats(t, s, "once a is removed", store.ChunkStats{Chunks: 3, Packs: 2, PackBytes: 135, LiveBytes: 70, NarChunks: 2})
	// c1 goes; p1 stays, as c2 lies in it.
	mustUnusedChunks(t, s, 100, 1)
	mustChunkStats(t, s, "once c1 is removed", store.ChunkStats{Chunks: 2, Packs: 2, PackBytes: 135, LiveBytes: 60, NarChunks: 2})
	mustFound(t, s, "find the chunks", []string{"c1", "c2", "c3"}, by["c2"], by["c3"])
	mustNarChunks(t, s, b, chunksOf(by, "c2", "c3")...)
	mustHeldBlobs(t, s, "packs in use", "pack/p1", "pack/p2")
	mustUnusedChunks(t, s, 100, 0)
	dropNar(t, s, c.ID, b)
	mustChunkStats(t, s, "once b is removed", store.ChunkStats{Chunks: 2, Packs: 2, PackBytes: 135, LiveBytes: 60})
	mustUnusedChunks(t, s, 100, 2, "pack/p1", "pack/p2")
	mustChunkStats(t, s, "once every chunk is removed", store.ChunkStats{})
	mustOrphans(t, s, "removed packs", "pack/p1", "pack/p2")
	mustUnusedChunks(t, s, 100, 0)
}

func testChunkUnusedLimit(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	var seeds []string
	for i := range 5 {
		n := addNar(t, s, c.ID, newNar(fmt.Sprint("n", i)))
		// Each in a pack of its own, with three chunks of its own.
		seeds = []string{fmt.Sprint("x", i), fmt.Sprint("y", i), fmt.Sprint("z", i)}
		p, _, l := onePack(fmt.Sprint("p", i), seeds...)
		packNar(t, s, n, packedOf(n, seeds, l, p))
		dropNar(t, s, c.ID, n)
	}
	mustUnusedChunks(t, s, 0, 0)
	mustChunkStats(t, s, "after limit 0", store.ChunkStats{Chunks: 15, Packs: 5, PackBytes: 5 * 65, LiveBytes: 5 * 60})
	removed, packs := 0, []string{}
	for range 20 {
		n, keys, err := s.UnusedChunks(t.Context(), 2)
		mustOK(t, "unused chunks, limit 2", err)
		if n > 2 || len(keys) > 2 {
			t.Fatalf("unused chunks, limit 2: removed %d chunks and packs %q", n, keys)
		}
		removed, packs = removed+n, append(packs, keys...)
		if n == 0 && len(keys) == 0 {
			break
		}
	}
	if removed != 15 {
		t.Fatalf("unused chunks, limit 2: removed %d chunks in all, want 15", removed)
	}
	mustKeysOf(t, "unused chunks, limit 2: packs", packs, "pack/p0", "pack/p1", "pack/p2", "pack/p3", "pack/p4")
	mustChunkStats(t, s, "once every chunk is removed", store.ChunkStats{})
}

func testChunkUnusedMissingNar(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	_, a, b, by := sharedFixture(t, s)
	// A Missing Nar still lists its chunks.
	mustOK(t, "set a missing", s.SetNarMissing(ctx, a.FileHash, "", true))
	mustOK(t, "set b missing", s.SetNarMissing(ctx, b.FileHash, "", true))
	mustUnusedChunks(t, s, 100, 0)
	mustNarChunks(t, s, a, chunksOf(by, "c1", "c2")...)
	got, err := s.GetNar(ctx, a.FileHash)
	mustOK(t, "get a missing packed nar", err)
	a.Missing = true
	mustNar(t, "get a missing packed nar", got, a)
}

// sparsePack records a pack of size bytes named by seed, created at
// created, with chunks whose frames take the lengths given, listed by the
// Nar n, and returns its chunks.
func sparsePack(t *testing.T, s store.MetaStore, n store.Nar, seed string, size int64, created time.Time,
	lengths ...int64) []store.Chunk {
	t.Helper()
	p := store.Pack{Key: "pack/" + seed, Size: size, CreatedAt: created}
	var l []store.Chunk
	var seeds []string
	var off int64
	for i, length := range lengths {
		seeds = append(seeds, fmt.Sprint(seed, "-", i))
		l = append(l, chunkIn(seeds[i], p, off, length))
		off += length
	}
	packNar(t, s, n, packedOf(n, seeds, l, p))
	return l
}

func testChunkSparsePacks(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	t0 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	pack := func(seed string, size int64, created time.Time, lengths ...int64) {
		n := addNar(t, s, c.ID, newNar("n-"+seed))
		sparsePack(t, s, n, seed, size, created, lengths...)
	}
	pack("full", 100, t0, 60, 40)
	pack("half", 100, t0, 30, 20)
	pack("tenth", 1000, t0, 60, 40)
	pack("new", 1000, t0.Add(time.Hour), 1)
	pack("edge", 1000, t0.Add(time.Minute), 1)
	// A pack none of whose chunks lies in it: a chunk listed was stored.
	n := addNar(t, s, c.ID, newNar("n-empty"))
	empty := store.Pack{Key: "pack/empty", Size: 500, CreatedAt: t0}
	dup := chunkIn("full-0", empty, 0, 500)
	packNar(t, s, n, packedOf(n, []string{"full-0"}, []store.Chunk{dup}, empty))
	usage := func(seed string, size, live int64, chunks int, created time.Time) store.PackUsage {
		return store.PackUsage{Pack: store.Pack{Key: "pack/" + seed, Size: size, CreatedAt: created}, Live: live, Chunks: chunks}
	}
	sparse := func(what string, before time.Time, frac float64, limit int, want ...store.PackUsage) {
		t.Helper()
		got, err := s.SparsePacks(ctx, before, frac, limit)
		mustOK(t, what, err)
		if len(got) != len(want) {
			t.Fatalf("%s: got %+v, want %+v", what, got, want)
		}
		for i := range got {
			mustUTC(t, what, got[i].CreatedAt)
			if got[i] != want[i] {
				t.Fatalf("%s: pack %d is %+v, want %+v", what, i, got[i], want[i])
			}
		}
	}
	edge := t0.Add(time.Minute)
	sparse("sparse packs below 60%", edge, 0.6, 10,
		usage("empty", 500, 0, 0, t0), usage("tenth", 1000, 100, 2, t0), usage("half", 100, 50, 2, t0))
	sparse("sparse packs below 50%", edge, 0.5, 10, usage("empty", 500, 0, 0, t0), usage("tenth", 1000, 100, 2, t0))
	sparse("sparse packs below 10%", edge, 0.1, 10, usage("empty", 500, 0, 0, t0))
	sparse("sparse packs below 60%, limit 2", edge, 0.6, 2, usage("empty", 500, 0, 0, t0), usage("tenth", 1000, 100, 2, t0))
	sparse("sparse packs, limit 0", edge, 0.6, 0)
	sparse("sparse packs just after edge", edge.Add(time.Second/2), 0.01, 10,
		usage("empty", 500, 0, 0, t0), usage("edge", 1000, 1, 1, edge))
	sparse("sparse packs before any", t0, 1, 10)
	sparse("sparse packs below 101%", t0.Add(2*time.Hour), 1.01, 10,
		usage("empty", 500, 0, 0, t0), usage("edge", 1000, 1, 1, edge), usage("new", 1000, 1, 1, t0.Add(time.Hour)),
		usage("tenth", 1000, 100, 2, t0), usage("half", 100, 50, 2, t0), usage("full", 100, 100, 2, t0))
	sparse("sparse packs below 0", t0.Add(2*time.Hour), 0, 10)
}

// movedTo returns chunks as moved to the pack p, back to back from off.
func movedTo(p store.Pack, off int64, chunks ...store.Chunk) []store.Chunk {
	l := make([]store.Chunk, len(chunks))
	for i, c := range chunks {
		c.Pack, c.Offset = p.Key, off
		off += c.Length
		l[i] = c
	}
	return l
}

func testChunkMove(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	a, b := addNar(t, s, c.ID, newNar("a")), addNar(t, s, c.ID, newNar("b"))
	p1, by, l1 := onePack("p1", "c1", "c2", "c3")
	packNar(t, s, a, packedOf(a, []string{"c1", "c2", "c3", "c1"}, l1, p1))
	p9, by9, l9 := onePack("p9", "c9")
	packNar(t, s, b, packedOf(b, []string{"c9", "c2"}, l9, p9))
	// c1 and c3 move; c9 lies in another pack and stays there.
	p2 := store.Pack{Key: "pack/p2", Size: 60, CreatedAt: chunkTime.Add(time.Hour)}
	moved := movedTo(p2, 5, by["c3"], by["c1"], by9["c9"])
	removed, err := s.MoveChunks(ctx, p1.Key, p2, moved)
	mustOK(t, "move chunks", err)
	if removed {
		t.Fatal("move chunks: the pack they left was removed while c2 lies in it")
	}
	by["c3"], by["c1"] = moved[0], moved[1]
	mustNarChunks(t, s, a, chunksOf(by, "c1", "c2", "c3", "c1")...)
	mustNarChunks(t, s, b, by9["c9"], by["c2"])
	pc, err := s.PackChunks(ctx, p2.Key)
	mustOK(t, "chunks of p2", err)
	mustChunks(t, "chunks of p2", pc, moved[:2])
	mustChunkStats(t, s, "after a move", store.ChunkStats{Chunks: 4, Packs: 3, PackBytes: 65 + 15 + 60, LiveBytes: 70, NarChunks: 6})
	// The last chunk leaves p1, whose record goes; c1 does not lie in it
	// any more and stays where it is.
	p3 := store.Pack{Key: "pack/p3", Size: 100, CreatedAt: chunkTime.Add(2 * time.Hour)}
	moved3 := movedTo(p3, 0, by["c2"], l1[0])
	removed, err = s.MoveChunks(ctx, p1.Key, p3, moved3)
	mustOK(t, "move the last chunk", err)
	if !removed {
		t.Fatal("move the last chunk: the pack it left was not removed")
	}
	by["c2"] = moved3[0]
	mustNarChunks(t, s, a, chunksOf(by, "c1", "c2", "c3", "c1")...)
	mustNarChunks(t, s, b, by9["c9"], by["c2"])
	pc, err = s.PackChunks(ctx, p1.Key)
	mustOK(t, "chunks of the removed pack", err)
	mustChunks(t, "chunks of the removed pack", pc, nil)
	mustChunkStats(t, s, "after the last move",
		store.ChunkStats{Chunks: 4, Packs: 3, PackBytes: 15 + 60 + 100, LiveBytes: 70, NarChunks: 6})
	mustOrphans(t, s, "the pack moved from", p1.Key)
	mustHeldBlobs(t, s, "the packs moved to", p2.Key, p3.Key, p9.Key)
	mustUnusedChunks(t, s, 100, 0)
}

func testChunkMoveNothing(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	_, a, _, by := sharedFixture(t, s)
	// None of the chunks lies in p2 any more but c3: moving none of them
	// leaves it as it is, with a new empty record.
	empty := store.Pack{Key: "pack/empty", Size: 0, CreatedAt: chunkTime}
	removed, err := s.MoveChunks(ctx, "pack/p2", empty, nil)
	mustOK(t, "move no chunk", err)
	if removed {
		t.Fatal("move no chunk: the pack was removed while c3 lies in it")
	}
	p9 := store.Pack{Key: "pack/p9", Size: 40, CreatedAt: chunkTime}
	removed, err = s.MoveChunks(ctx, "pack/p2", p9, movedTo(p9, 0, by["c1"]))
	mustOK(t, "move a chunk of another pack", err)
	if removed {
		t.Fatal("move a chunk of another pack: the pack was removed while c3 lies in it")
	}
	mustNarChunks(t, s, a, chunksOf(by, "c1", "c2")...)
	mustChunkStats(t, s, "after moving nothing", store.ChunkStats{Chunks: 3, Packs: 4, PackBytes: 175, LiveBytes: 70, NarChunks: 4})
	mustHeldBlobs(t, s, "new empty records", "pack/empty", "pack/p9")
	mustUnusedChunks(t, s, 100, 0, "pack/empty", "pack/p9")
	mustChunkStats(t, s, "after unused chunks", store.ChunkStats{Chunks: 3, Packs: 2, PackBytes: 135, LiveBytes: 70, NarChunks: 4})
}

func testChunkMoveUnknown(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	sharedFixture(t, s)
	p9 := store.Pack{Key: "pack/p9", Size: 40, CreatedAt: chunkTime}
	_, err := s.MoveChunks(ctx, "pack/unknown", p9, nil)
	mustNotFound(t, "move chunks of an unknown pack", err)
	mustChunkStats(t, s, "after moving from an unknown pack",
		store.ChunkStats{Chunks: 3, Packs: 2, PackBytes: 135, LiveBytes: 70, NarChunks: 4})
	mustOrphans(t, s, "the pack moved to", p9.Key)
}

func testChunkMissingReplaced(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c, a, b, by := sharedFixture(t, s)
	mustOK(t, "set missing", s.SetNarMissing(ctx, a.FileHash, "", true))
	mustUnusedChunks(t, s, 100, 0)
	// A new upload of a's file replaces the record: whole again, with no
	// chunk list.
	fresh := newNar("a")
	fresh.BlobKey = "nar/again"
	got := addNar(t, s, c.ID, fresh)
	mustNar(t, "add a missing packed nar again", got, fresh)
	got, err := s.GetNar(ctx, a.FileHash)
	mustOK(t, "get the replaced nar", err)
	mustNar(t, "get the replaced nar", got, fresh)
	mustStillWhole(t, s, "the replaced nar", fresh)
	_, err = s.CachePackedNar(ctx, c.ID, a.PackedHash)
	mustNotFound(t, "packed nar of the replaced nar", err)
	whole, err := s.WholeNars(ctx, "", 0, 10)
	mustOK(t, "whole nars", err)
	mustNars(t, "whole nars", whole, fresh)
	mustChunkStats(t, s, "after the replacement", store.ChunkStats{Chunks: 3, Packs: 2, PackBytes: 135, LiveBytes: 70, NarChunks: 2})
	mustUnusedChunks(t, s, 100, 1)
	mustNarChunks(t, s, b, chunksOf(by, "c2", "c3")...)
	// It can be packed again.
	p := freshFor(fresh, "q1")
	p.New = append(p.New, chunkIn("c1", p.Packs[0], 45, 5))
	packNar(t, s, fresh, p)
	mustNarChunks(t, s, fresh, chunkIn("c1", p.Packs[0], 45, 5), chunkIn("c9", p.Packs[0], 0, 45))
}

// hugeChunks is how many chunks testChunkHugeList lists in one call: more
// than a statement of either store takes parameters.
const hugeChunks = 20000

func testChunkHugeList(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	a, b := addNar(t, s, c.ID, newNar("a")), addNar(t, s, c.ID, newNar("b"))
	p := testPack("huge", 2*hugeChunks+1)
	seeds := make([]string, hugeChunks)
	fresh := make([]store.Chunk, hugeChunks)
	for i := range seeds {
		seeds[i] = fmt.Sprint("h", i)
		fresh[i] = chunkIn(seeds[i], p, int64(2*i), 2)
	}
	packNar(t, s, a, packedOf(a, seeds, fresh, p))
	mustNarChunks(t, s, a, fresh...)
	// b lists each twice, reversed, and adds none.
	back := slices.Concat(seeds, seeds)
	slices.Reverse(back)
	packNar(t, s, b, packedOf(b, back, nil))
	want := slices.Concat(fresh, fresh)
	slices.Reverse(want)
	mustNarChunks(t, s, b, want...)
	mustFound(t, s, "find every chunk", seeds, fresh...)
	mustChunkStats(t, s, "after huge lists", store.ChunkStats{Chunks: hugeChunks, Packs: 1, PackBytes: 2*hugeChunks + 1,
		LiveBytes: 2 * hugeChunks, NarChunks: 3 * hugeChunks})
	p2 := testPack("huge2", 2*hugeChunks)
	moved := movedTo(p2, 0, fresh...)
	removed, err := s.MoveChunks(ctx, p.Key, p2, moved)
	mustOK(t, "move every chunk", err)
	if !removed {
		t.Fatal("move every chunk: the pack they left was not removed")
	}
	pc, err := s.PackChunks(ctx, p2.Key)
	mustOK(t, "chunks of the new pack", err)
	mustChunks(t, "chunks of the new pack", pc, moved)
	dropNar(t, s, c.ID, a)
	dropNar(t, s, c.ID, b)
	mustUnusedChunks(t, s, 2*hugeChunks, hugeChunks, p2.Key)
	mustChunkStats(t, s, "after removing every chunk", store.ChunkStats{})
}

func testChunkPackCreatedAt(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	n := addNar(t, s, c.ID, newNar("a"))
	p := store.Pack{Key: "pack/now", Size: 100}
	before := time.Now()
	packNar(t, s, n, packedOf(n, []string{"c1"}, []store.Chunk{chunkIn("c1", p, 0, 10)}, p))
	got, err := s.SparsePacks(t.Context(), time.Now().Add(time.Hour), 1, 10)
	mustOK(t, "sparse packs", err)
	if len(got) != 1 || got[0].Key != p.Key || got[0].Live != 10 || got[0].Chunks != 1 || got[0].Size != 100 {
		t.Fatalf("sparse packs: %+v", got)
	}
	mustRecent(t, "pack with a zero CreatedAt", got[0].CreatedAt, before)
}

// testChunkPackWhileCollecting packs Nars that reuse the one chunk the Nar
// packed before lists while that Nar and then its chunk are removed: each
// PackNar either records the Nar or, the chunk gone, fails with
// ErrChunkGone and records nothing.
func testChunkPackWhileCollecting(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	prev := addNar(t, s, c.ID, newNar("n-first"))
	p0 := testPack("first", 10)
	prev = packNar(t, s, prev, packedOf(prev, []string{"c1"}, []store.Chunk{chunkIn("c1", p0, 0, 10)}, p0))
	future := time.Now().Add(100 * 365 * 24 * time.Hour)
	gone := 0
	for i := range 30 {
		n := addNar(t, s, c.ID, newNar(fmt.Sprint("n", i)))
		found, err := s.FindChunks(ctx, []string{chunkHash("c1")})
		mustOK(t, "find c1", err)
		p := packedOf(n, []string{"c1"}, nil)
		if len(found) == 0 {
			pk := testPack(fmt.Sprint("p", i), 10)
			p.New, p.Packs = []store.Chunk{chunkIn("c1", pk, 0, 10)}, []store.Pack{pk}
		}
		done := make(chan error, 1)
		go func() {
			_, err := s.UnlinkNar(ctx, c.ID, prev.FileHash)
			if err == nil {
				_, err = s.UnusedNars(ctx, future, 10, false)
			}
			if err == nil {
				_, _, err = s.UnusedChunks(ctx, 10)
			}
			done <- err
		}()
		err = s.PackNar(ctx, p)
		mustOK(t, "collect the nar packed before", <-done)
		if errors.Is(err, store.ErrChunkGone) {
			gone++
			mustStillWhole(t, s, "after a pack of a collected chunk", n)
			prev = n
			continue
		}
		mustOK(t, "pack a nar while collecting", err)
		chunks, err := s.NarChunks(ctx, n.FileHash)
		mustOK(t, "chunks of the nar packed while collecting", err)
		if len(chunks) != 1 || chunks[0].Hash != chunkHash("c1") {
			t.Fatalf("chunks of the nar packed while collecting: %+v", chunks)
		}
		prev = n
	}
	t.Logf("%d of 30 packs found their chunk gone", gone)
}

// testChunkPackConcurrent packs Nars at once, each with the same new
// chunks in its own order and its own pack: each is recorded, and each
// chunk once, in one of the packs. Neither waits for the other forever.
func testChunkPackConcurrent(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	const nars, chunks = 8, 2000
	seeds := make([]string, chunks)
	for i := range seeds {
		seeds[i] = fmt.Sprint("c", i)
	}
	var ps []store.PackedNar
	for i := range nars {
		n := addNar(t, s, c.ID, newNar(fmt.Sprint("n", i)))
		order := slices.Clone(seeds)
		if i%2 == 1 { // so that inserts in the given order deadlock
			slices.Reverse(order)
		}
		p, _, l := onePack(fmt.Sprint("p", i), order...)
		ps = append(ps, packedOf(n, order, l, p))
	}
	var wg sync.WaitGroup
	errs := make([]error, nars)
	for i, p := range ps {
		wg.Go(func() { errs[i] = s.PackNar(ctx, p) })
	}
	wg.Wait()
	for i, err := range errs {
		mustOK(t, fmt.Sprint("pack nar ", i, " at once"), err)
	}
	found, err := s.FindChunks(ctx, ps[0].Chunks)
	mustOK(t, "find the chunks", err)
	if len(found) != chunks {
		t.Fatalf("find the chunks: found %d, want %d", len(found), chunks)
	}
	for i, p := range ps {
		got, err := s.NarChunks(ctx, p.FileHash)
		mustOK(t, fmt.Sprint("chunks of nar ", i), err)
		want := make([]store.Chunk, len(p.Chunks))
		for j, h := range p.Chunks {
			want[j] = found[h]
		}
		mustChunks(t, fmt.Sprint("chunks of nar ", i), got, want)
	}
	st, err := s.ChunkStats(ctx)
	mustOK(t, "chunk stats", err)
	if st.Chunks != chunks || st.Packs != nars || st.NarChunks != nars*chunks {
		t.Fatalf("chunk stats: %+v", st)
	}
}

// testChunkPackSameNarConcurrent packs one Nar twice at once: one is
// recorded, the other finds it packed already and records nothing.
func testChunkPackSameNarConcurrent(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	n := addNar(t, s, c.ID, newNar("a"))
	var ps []store.PackedNar
	for i := range 2 {
		p, _, l := onePack(fmt.Sprint("p", i), fmt.Sprint("x", i), "shared")
		ps = append(ps, packedOf(n, []string{fmt.Sprint("x", i), "shared"}, l, p))
	}
	var wg sync.WaitGroup
	errs := make([]error, len(ps))
	for i, p := range ps {
		wg.Go(func() { errs[i] = s.PackNar(ctx, p) })
	}
	wg.Wait()
	won := 0
	if errs[1] == nil {
		won = 1
	}
	mustOK(t, "pack the nar at once, the first", errs[won])
	mustNotFound(t, "pack the nar at once, the second", errs[1-won])
	_, by, _ := onePack(fmt.Sprint("p", won), fmt.Sprint("x", won), "shared")
	mustNarChunks(t, s, n, chunksOf(by, fmt.Sprint("x", won), "shared")...)
	mustChunkStats(t, s, "after packing the nar twice at once",
		store.ChunkStats{Chunks: 2, Packs: 1, PackBytes: 35, LiveBytes: 30, NarChunks: 2})
	mustOrphans(t, s, "the pack of the second", fmt.Sprint("pack/p", 1-won))
}

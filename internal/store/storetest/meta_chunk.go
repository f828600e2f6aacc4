package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// chunkTests check the recording and reading parts of the ChunkStore
// contract: PackNar, NarChunks, FindChunks, CachePackedNar and WholeNars.
var chunkTests = []metaTest{
	{"ChunkPackNar", testChunkPackNar},
	{"ChunkShared", testChunkShared},
	{"ChunkNewKeepsStored", testChunkNewKeepsStored},
	{"ChunkPackNarNotFound", testChunkPackNarNotFound},
	{"ChunkPackNarPackedTwice", testChunkPackNarPackedTwice},
	{"ChunkGone", testChunkGone},
	{"ChunkGoneAfterCollection", testChunkGoneAfterCollection},
	{"ChunkPackNarInvalid", testChunkPackNarInvalid},
	{"ChunkCachePackedNar", testChunkCachePackedNar},
	{"ChunkCachePackedNarShared", testChunkCachePackedNarShared},
	{"ChunkWholeNars", testChunkWholeNars},
	{"ChunkFind", testChunkFind},
}

// chunkTime is when the packs of the chunk tests were created.
var chunkTime = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// chunkHash returns a 64-character hex-looking chunk hash made from seed.
func chunkHash(seed string) string { return padHash(seed, 64) }

// testPack returns the record of a pack named by seed, of size bytes,
// created at chunkTime.
func testPack(seed string, size int64) store.Pack {
	return store.Pack{Key: "pack/" + seed, Size: size, CreatedAt: chunkTime}
}

// chunkIn returns the chunk named by seed whose frame of length bytes lies
// at off in the pack p.
func chunkIn(seed string, p store.Pack, off, length int64) store.Chunk {
	return store.Chunk{Hash: chunkHash(seed), Size: 3*length + 1, Pack: p.Key, Offset: off, Length: length}
}

// packedHash returns the packed hash made up for the Nar n.
func packedHash(n store.Nar) string { return "p" + n.FileHash[1:] }

// packedOf returns the record packing the Nar n into the chunks named by
// seeds, in order, with the new chunks and packs given.
func packedOf(n store.Nar, seeds []string, fresh []store.Chunk, packs ...store.Pack) store.PackedNar {
	list := make([]string, len(seeds))
	for i, seed := range seeds {
		list[i] = chunkHash(seed)
	}
	return store.PackedNar{FileHash: n.FileHash, BlobKey: n.BlobKey, PackedHash: packedHash(n),
		PackedSize: int64(10*len(seeds) + 7), Chunks: list, New: fresh, Packs: packs}
}

// packNar records p and fails t on error. It returns the Nar as packed.
func packNar(t *testing.T, s store.MetaStore, n store.Nar, p store.PackedNar) store.Nar {
	t.Helper()
	mustOK(t, "pack nar "+n.FileHash, s.PackNar(t.Context(), p))
	n.PackedHash, n.PackedSize, n.BlobKey = p.PackedHash, p.PackedSize, ""
	return n
}

// chunksOf returns the chunks of by named by seeds, in order.
func chunksOf(by map[string]store.Chunk, seeds ...string) []store.Chunk {
	l := make([]store.Chunk, len(seeds))
	for i, seed := range seeds {
		l[i] = by[seed]
	}
	return l
}

// mustChunks fails t unless got are the chunks want, in order.
func mustChunks(t *testing.T, what string, got, want []store.Chunk) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d chunks %+v, want %d %+v", what, len(got), got, len(want), want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: chunk %d is %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

// mustNarChunks fails t unless NarChunks of n returns want.
func mustNarChunks(t *testing.T, s store.MetaStore, n store.Nar, want ...store.Chunk) {
	t.Helper()
	got, err := s.NarChunks(t.Context(), n.FileHash)
	mustOK(t, "chunks of nar "+n.FileHash, err)
	mustChunks(t, "chunks of nar "+n.FileHash, got, want)
}

// mustChunkStats fails t unless ChunkStats returns want.
func mustChunkStats(t *testing.T, s store.MetaStore, what string, want store.ChunkStats) {
	t.Helper()
	got, err := s.ChunkStats(t.Context())
	mustOK(t, "chunk stats", err)
	if got != want {
		t.Fatalf("chunk stats %s: got %+v, want %+v", what, got, want)
	}
}

// mustStillWhole fails t unless the Nar n is as it was recorded: whole.
func mustStillWhole(t *testing.T, s store.MetaStore, what string, n store.Nar) {
	t.Helper()
	got, err := s.GetNar(t.Context(), n.FileHash)
	mustOK(t, what+": get nar", err)
	mustNar(t, what+": get nar", got, n)
	_, err = s.NarChunks(t.Context(), n.FileHash)
	mustNotFound(t, what+": chunks of the whole nar", err)
}

// mustFound fails t unless FindChunks of the chunks named by seeds returns
// exactly want, by hash.
func mustFound(t *testing.T, s store.MetaStore, what string, seeds []string, want ...store.Chunk) {
	t.Helper()
	hashes := make([]string, len(seeds))
	for i, seed := range seeds {
		hashes[i] = chunkHash(seed)
	}
	got, err := s.FindChunks(t.Context(), hashes)
	mustOK(t, what, err)
	if len(got) != len(want) {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
	for _, c := range want {
		if got[c.Hash] != c {
			t.Fatalf("%s: chunk %s is %+v, want %+v", what, c.Hash, got[c.Hash], c)
		}
	}
}

// onePack returns a pack named by seed holding chunks of 10, 20, 30, …
// bytes named by seeds, back to back, by seed.
func onePack(seed string, seeds ...string) (store.Pack, map[string]store.Chunk, []store.Chunk) {
	by := map[string]store.Chunk{}
	var l []store.Chunk
	var off int64
	for i, cs := range seeds {
		length := int64(10 * (i + 1))
		l = append(l, store.Chunk{Hash: chunkHash(cs), Size: 3*length + 1, Pack: "pack/" + seed, Offset: off, Length: length})
		by[cs] = l[len(l)-1]
		off += length
	}
	return testPack(seed, off+5), by, l
}

func testChunkPackNar(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	n := addNar(t, s, c.ID, newNar("one"))
	ni := putNarInfo(t, s, newNarInfo(c.ID, "one", n.FileHash))
	p, by, l := onePack("p1", "c1", "c2", "c3")
	// The new chunks in no particular order; the list with a repeat.
	fresh := []store.Chunk{l[2], l[0], l[1]}
	packed := packNar(t, s, n, packedOf(n, []string{"c1", "c2", "c1", "c3", "c1"}, fresh, p))
	got, err := s.CacheNar(ctx, c.ID, n.FileHash)
	mustOK(t, "cache nar once packed", err)
	mustLinked(t, "cache nar once packed", got, packed)
	if got.BlobKey != "" || got.PackedHash == "" || got.PackedSize != 57 {
		t.Fatalf("cache nar once packed: %+v", got)
	}
	got, err = s.GetNar(ctx, n.FileHash)
	mustOK(t, "get nar once packed", err)
	mustNar(t, "get nar once packed", got, packed)
	gotNI, gotN, err := s.GetNarInfo(ctx, c.ID, ni.Hash)
	mustOK(t, "get narinfo of the packed nar", err)
	mustNarInfo(t, "get narinfo of the packed nar", gotNI, ni)
	mustNar(t, "nar of the narinfo", gotN, packed)
	mustNarChunks(t, s, n, chunksOf(by, "c1", "c2", "c1", "c3", "c1")...)
	pc, err := s.PackChunks(ctx, p.Key)
	mustOK(t, "chunks of the pack", err)
	mustChunks(t, "chunks of the pack", pc, l)
	mustChunkStats(t, s, "after one pack", store.ChunkStats{Chunks: 3, Packs: 1, PackBytes: 65, LiveBytes: 60, NarChunks: 5})
	whole, err := s.WholeNars(ctx, "", 0, 10)
	mustOK(t, "whole nars", err)
	mustNars(t, "whole nars once the only one is packed", whole)
	_, err = s.NarChunks(ctx, fileHash("unknown"))
	mustNotFound(t, "chunks of an unknown nar", err)
	// Linking it to another cache, or adding it again, keeps it packed.
	other := createCache(t, s, "other")
	got, err = s.LinkNar(ctx, other.ID, n.FileHash, narKey(n))
	mustOK(t, "link the packed nar", err)
	mustNar(t, "link the packed nar", got, packed)
	got = addNar(t, s, other.ID, n)
	mustNar(t, "add the packed nar again", got, packed)
	mustNarChunks(t, s, n, chunksOf(by, "c1", "c2", "c1", "c3", "c1")...)
}

func testChunkShared(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	a, b := addNar(t, s, c.ID, newNar("a")), addNar(t, s, c.ID, newNar("b"))
	p1, by, l1 := onePack("p1", "c1", "c2")
	packNar(t, s, a, packedOf(a, []string{"c1", "c2"}, l1, p1))
	// b reuses c2, found stored, and adds c3 in a pack of its own.
	mustFound(t, s, "find the chunks of b", []string{"c2", "c3"}, by["c2"])
	p2 := testPack("p2", 100)
	c3 := chunkIn("c3", p2, 0, 40)
	by["c3"] = c3
	packNar(t, s, b, packedOf(b, []string{"c2", "c3", "c2"}, []store.Chunk{c3}, p2))
	mustNarChunks(t, s, a, chunksOf(by, "c1", "c2")...)
	mustNarChunks(t, s, b, chunksOf(by, "c2", "c3", "c2")...)
	mustChunkStats(t, s, "two nars sharing a chunk",
		store.ChunkStats{Chunks: 3, Packs: 2, PackBytes: 135, LiveBytes: 70, NarChunks: 5})
	pc, err := s.PackChunks(ctx, p2.Key)
	mustOK(t, "chunks of p2", err)
	mustChunks(t, "chunks of p2", pc, []store.Chunk{c3})
}

func testChunkNewKeepsStored(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	a, b := addNar(t, s, c.ID, newNar("a")), addNar(t, s, c.ID, newNar("b"))
	p1, by, l1 := onePack("p1", "c1", "c2")
	packNar(t, s, a, packedOf(a, []string{"c1", "c2"}, l1, p1))
	// b was cut while a was: its new chunks hold c1 again, elsewhere, and
	// c4 twice (as a careless caller might list it).
	p2 := testPack("p2", 500)
	again := chunkIn("c1", p2, 0, 99)
	c4 := chunkIn("c4", p2, 99, 33)
	c4dup := chunkIn("c4", p2, 99, 33)
	by["c4"] = c4
	packNar(t, s, b, packedOf(b, []string{"c1", "c4", "c2"}, []store.Chunk{again, c4, c4dup}, p2))
	mustNarChunks(t, s, b, chunksOf(by, "c1", "c4", "c2")...)
	mustFound(t, s, "find c1 and c4", []string{"c1", "c4"}, by["c1"], c4)
	pc, err := s.PackChunks(ctx, p2.Key)
	mustOK(t, "chunks of p2", err)
	mustChunks(t, "chunks of p2, without the unused frame", pc, []store.Chunk{c4})
	mustChunkStats(t, s, "after a new chunk already stored",
		store.ChunkStats{Chunks: 3, Packs: 2, PackBytes: 535, LiveBytes: 63, NarChunks: 5})
}

// fixtureTwoWhole records, in a new cache, a Nar packed with the chunks
// c1 and c2 and a whole one, and returns the packed one, the whole one and
// the chunks by seed.
func fixtureTwoWhole(t *testing.T, s store.MetaStore) (store.Nar, store.Nar, map[string]store.Chunk) {
	t.Helper()
	c := createCache(t, s, "main")
	a, b := addNar(t, s, c.ID, newNar("a")), addNar(t, s, c.ID, newNar("b"))
	p1, by, l1 := onePack("p1", "c1", "c2")
	return packNar(t, s, a, packedOf(a, []string{"c1", "c2"}, l1, p1)), b, by
}

// fixtureStats are the chunk stats of fixtureTwoWhole.
var fixtureStats = store.ChunkStats{Chunks: 2, Packs: 1, PackBytes: 35, LiveBytes: 30, NarChunks: 2}

// freshFor returns a PackedNar of n listing the stored chunk c1 and a new
// chunk c9 in a new pack named by seed.
func freshFor(n store.Nar, seed string) store.PackedNar {
	p := testPack(seed, 50)
	return packedOf(n, []string{"c1", "c9"}, []store.Chunk{chunkIn("c9", p, 0, 45)}, p)
}

func testChunkPackNarNotFound(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	_, b, _ := fixtureTwoWhole(t, s)
	unknown := newNar("unknown")
	mustNotFound(t, "pack an unknown nar", s.PackNar(ctx, freshFor(unknown, "q1")))
	p := freshFor(b, "q2")
	p.BlobKey = "nar/another-blob"
	mustNotFound(t, "pack a nar with another blob key", s.PackNar(ctx, p))
	p.BlobKey = ""
	mustNotFound(t, "pack a whole nar with an empty blob key", s.PackNar(ctx, p))
	mustOK(t, "set missing", s.SetNarMissing(ctx, b.FileHash, b.BlobKey, true))
	mustNotFound(t, "pack a missing nar", s.PackNar(ctx, freshFor(b, "q3")))
	mustChunkStats(t, s, "after failed packs", fixtureStats)
	mustFound(t, s, "find the chunk of the failed packs", []string{"c9"})
	b.Missing = true
	mustStillWhole(t, s, "after failed packs", b)
	mustOrphans(t, s, "the packs of failed packs", "pack/q1", "pack/q2", "pack/q3")
}

func testChunkPackNarPackedTwice(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	a, _, by := fixtureTwoWhole(t, s)
	whole := newNar("a")
	mustNotFound(t, "pack a packed nar with its old blob key", s.PackNar(ctx, freshFor(whole, "q1")))
	mustNotFound(t, "pack a packed nar with its empty blob key", s.PackNar(ctx, freshFor(a, "q2")))
	mustChunkStats(t, s, "after packing twice", fixtureStats)
	mustNarChunks(t, s, a, chunksOf(by, "c1", "c2")...)
	got, err := s.GetNar(ctx, a.FileHash)
	mustOK(t, "get nar packed twice", err)
	mustNar(t, "get nar packed twice", got, a)
}

// blobOrphans returns those of keys that OrphanBlobs takes for orphans:
// blobs no record holds.
func blobOrphans(t *testing.T, s store.MetaStore, keys ...string) []string {
	t.Helper()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	orphans(t, s, keys, t0, t0, false)
	return orphans(t, s, keys, t0.Add(time.Hour), t0.Add(time.Second), false)
}

// mustOrphans fails t unless no record holds any of keys.
func mustOrphans(t *testing.T, s store.MetaStore, what string, keys ...string) {
	t.Helper()
	mustKeysOf(t, what, blobOrphans(t, s, keys...), keys...)
}

// mustHeldBlobs fails t unless a record holds each of keys.
func mustHeldBlobs(t *testing.T, s store.MetaStore, what string, keys ...string) {
	t.Helper()
	mustKeysOf(t, what, blobOrphans(t, s, keys...))
}

// mustChunkGone fails t unless err is, or wraps, store.ErrChunkGone.
func mustChunkGone(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrChunkGone) {
		t.Fatalf("%s: got error %v, want one wrapping store.ErrChunkGone", what, err)
	}
}

func testChunkGone(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	_, b, _ := fixtureTwoWhole(t, s)
	p := freshFor(b, "q1")
	p.Chunks = append(p.Chunks, chunkHash("never-stored"))
	mustChunkGone(t, "pack a nar listing an unknown chunk", s.PackNar(ctx, p))
	p = freshFor(b, "q2")
	p.Chunks = []string{chunkHash("never-stored")}
	mustChunkGone(t, "pack a nar listing only an unknown chunk", s.PackNar(ctx, p))
	mustChunkStats(t, s, "after packs of gone chunks", fixtureStats)
	mustStillWhole(t, s, "after packs of gone chunks", b)
	mustFound(t, s, "find the new chunk of packs of gone chunks", []string{"c9"})
	mustOrphans(t, s, "the packs of packs of gone chunks", "pack/q1", "pack/q2")
}

// dropNar unlinks n from the cache and has UnusedNars remove it, failing t
// unless it does.
func dropNar(t *testing.T, s store.MetaStore, cacheID int64, n store.Nar) {
	t.Helper()
	ctx := t.Context()
	_, err := s.UnlinkNar(ctx, cacheID, n.FileHash)
	mustOK(t, "unlink nar "+n.FileHash, err)
	list, err := s.UnusedNars(ctx, time.Now().Add(100*365*24*time.Hour), 100, false)
	mustOK(t, "unused nars", err)
	if len(list) != 1 || list[0].FileHash != n.FileHash {
		t.Fatalf("unused nars: got %+v, want %s alone", list, n.FileHash)
	}
}

func testChunkGoneAfterCollection(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	a, b := addNar(t, s, c.ID, newNar("a")), addNar(t, s, c.ID, newNar("b"))
	p1, _, l1 := onePack("p1", "c1", "c2")
	packNar(t, s, a, packedOf(a, []string{"c1", "c2"}, l1, p1))
	// b is cut and finds c1 stored; a collection removes it meanwhile.
	mustFound(t, s, "find c1", []string{"c1"}, l1[0])
	dropNar(t, s, c.ID, a)
	n, packs, err := s.UnusedChunks(ctx, 100)
	mustOK(t, "unused chunks", err)
	if n != 2 || len(packs) != 1 || packs[0] != p1.Key {
		t.Fatalf("unused chunks: removed %d chunks and packs %q, want 2 and %q", n, packs, p1.Key)
	}
	mustChunkGone(t, "pack a nar listing a collected chunk", s.PackNar(ctx, freshFor(b, "q1")))
	mustChunkStats(t, s, "after a pack of a collected chunk", store.ChunkStats{})
	mustStillWhole(t, s, "after a pack of a collected chunk", b)
	// Stored again, it may be listed.
	p := freshFor(b, "q2")
	p.New = append(p.New, chunkIn("c1", p.Packs[0], 45, 5))
	packNar(t, s, b, p)
	mustNarChunks(t, s, b, chunkIn("c1", p.Packs[0], 45, 5), chunkIn("c9", p.Packs[0], 0, 45))
}

func testChunkPackNarInvalid(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	_, b, _ := fixtureTwoWhole(t, s)
	cases := map[string]func(*store.PackedNar){
		"no chunks":               func(p *store.PackedNar) { p.Chunks, p.New, p.Packs = nil, nil, nil },
		"an empty chunk list":     func(p *store.PackedNar) { p.Chunks = []string{} },
		"no packed hash":          func(p *store.PackedNar) { p.PackedHash = "" },
		"a chunk in another pack": func(p *store.PackedNar) { p.New[0].Pack = "pack/elsewhere" },
		"a pack recorded already": func(p *store.PackedNar) { p.Packs = append(p.Packs, testPack("p1", 35)) },
	}
	for what, spoil := range cases {
		p := freshFor(b, "q1")
		spoil(&p)
		err := s.PackNar(ctx, p)
		if err == nil || errors.Is(err, store.ErrChunkGone) {
			t.Fatalf("pack a nar with %s: got error %v, want another", what, err)
		}
		mustChunkStats(t, s, "after packing a nar with "+what, fixtureStats)
		mustStillWhole(t, s, "after packing a nar with "+what, b)
	}
	mustOrphans(t, s, "the pack of invalid packs", "pack/q1")
}

func testChunkCachePackedNar(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	a, b, _ := fixtureTwoWhole(t, s)
	main, err := s.GetCache(ctx, "main")
	mustOK(t, "get cache", err)
	other := createCache(t, s, "other")
	got, err := s.CachePackedNar(ctx, main.ID, a.PackedHash)
	mustOK(t, "cache packed nar", err)
	mustLinked(t, "cache packed nar", got, a)
	_, err = s.CachePackedNar(ctx, other.ID, a.PackedHash)
	mustNotFound(t, "packed nar of a cache it is not linked to", err)
	_, err = s.CachePackedNar(ctx, main.ID, a.FileHash)
	mustNotFound(t, "packed nar by its file hash", err)
	_, err = s.CachePackedNar(ctx, main.ID, packedHash(b))
	mustNotFound(t, "packed nar of a whole nar", err)
	_, err = s.CachePackedNar(ctx, main.ID, "")
	mustNotFound(t, "packed nar with no packed hash", err)
	_, err = s.CachePackedNar(ctx, 424242, a.PackedHash)
	mustNotFound(t, "packed nar of an unknown cache", err)
	_, err = s.LinkNar(ctx, other.ID, a.FileHash, "nar/elsewhere.nar.zst")
	mustOK(t, "link the packed nar to another cache", err)
	got, err = s.CachePackedNar(ctx, other.ID, a.PackedHash)
	mustOK(t, "cache packed nar once linked", err)
	mustLinked(t, "cache packed nar once linked", got, a)
	_, err = s.UnlinkNar(ctx, main.ID, a.FileHash)
	mustOK(t, "unlink the packed nar", err)
	_, err = s.CachePackedNar(ctx, main.ID, a.PackedHash)
	mustNotFound(t, "packed nar once unlinked", err)
	// Missing, it is found as CacheNar finds it.
	mustOK(t, "set missing", s.SetNarMissing(ctx, a.FileHash, "", true))
	got, err = s.CachePackedNar(ctx, other.ID, a.PackedHash)
	mustOK(t, "cache packed nar once missing", err)
	a.Missing = true
	mustLinked(t, "cache packed nar once missing", got, a)
}

func testChunkCachePackedNarShared(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	// The same NAR uploaded with two compressions: two files, one list of
	// chunks, so one packed file.
	xz, zst := newNar("same-xz"), newNar("same-zst")
	xz.Compression, xz.BlobKey = "xz", "nar/"+xz.FileHash+".nar.xz"
	xz.NarHash, xz.NarSize = zst.NarHash, zst.NarSize
	xz, zst = addNarAt(t, s, c.ID, xz, "nar/"+xz.FileHash+".nar.xz"), addNar(t, s, c.ID, zst)
	p1, _, l1 := onePack("p1", "c1", "c2")
	pz := packedOf(zst, []string{"c1", "c2"}, l1, p1)
	zst = packNar(t, s, zst, pz)
	px := packedOf(xz, []string{"c1", "c2"}, nil)
	px.PackedHash = pz.PackedHash
	xz = packNar(t, s, xz, px)
	first, second := zst, xz
	if xz.FileHash < zst.FileHash {
		first, second = xz, zst
	}
	got, err := s.CachePackedNar(ctx, c.ID, pz.PackedHash)
	mustOK(t, "cache packed nar shared by two nars", err)
	mustLinked(t, "cache packed nar shared by two nars", got, first)
	// One that is not Missing is preferred.
	mustOK(t, "set missing", s.SetNarMissing(ctx, first.FileHash, "", true))
	got, err = s.CachePackedNar(ctx, c.ID, pz.PackedHash)
	mustOK(t, "cache packed nar shared by two nars, one missing", err)
	mustLinked(t, "cache packed nar shared by two nars, one missing", got, second)
	_, err = s.UnlinkNar(ctx, c.ID, second.FileHash)
	mustOK(t, "unlink", err)
	got, err = s.CachePackedNar(ctx, c.ID, pz.PackedHash)
	mustOK(t, "cache packed nar shared by two nars, one missing, one unlinked", err)
	first.Missing = true
	mustLinked(t, "cache packed nar shared by two nars, one missing, one unlinked", got, first)
}

func testChunkWholeNars(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	nars := map[string]store.Nar{}
	for i, seed := range []string{"w1", "w2", "w3", "w4", "w5", "w6"} {
		n := newNar(seed)
		n.NarSize = int64(1000 * (i + 1))
		nars[seed] = addNar(t, s, c.ID, n)
	}
	p1, _, l1 := onePack("p1", "c1")
	packNar(t, s, nars["w2"], packedOf(nars["w2"], []string{"c1"}, l1, p1))
	mustOK(t, "set missing", s.SetNarMissing(ctx, nars["w4"].FileHash, nars["w4"].BlobKey, true))
	whole := func(what, after string, minSize int64, limit int, want ...string) {
		t.Helper()
		got, err := s.WholeNars(ctx, after, minSize, limit)
		mustOK(t, what, err)
		var l []store.Nar
		for _, seed := range want {
			l = append(l, nars[seed])
		}
		mustNars(t, what, got, l...)
	}
	whole("whole nars", "", 0, 10, "w1", "w3", "w5", "w6")
	whole("whole nars, first page", "", 0, 2, "w1", "w3")
	whole("whole nars, second page", nars["w3"].FileHash, 0, 2, "w5", "w6")
	whole("whole nars, last page", nars["w6"].FileHash, 0, 2)
	whole("whole nars after a packed one", nars["w2"].FileHash, 0, 1, "w3")
	whole("whole nars of at least 3000 bytes", "", 3000, 10, "w3", "w5", "w6")
	whole("whole nars of at least 3001 bytes", "", 3001, 10, "w5", "w6")
	whole("whole nars of at least 3001 bytes after w5", nars["w5"].FileHash, 3001, 10, "w6")
	whole("whole nars, limit 0", "", 0, 0)
	whole("whole nars bigger than any", "", 1<<40, 10)
}

func testChunkFind(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	_, _, by := fixtureTwoWhole(t, s)
	mustFound(t, s, "find no chunks", nil)
	mustFound(t, s, "find unknown chunks", []string{"x1", "x2"})
	mustFound(t, s, "find chunks, repeated and unknown", []string{"c2", "x1", "c2", "c1"}, by["c1"], by["c2"])
	got, err := s.FindChunks(ctx, []string{"", "'; DROP TABLE chunks; --", "\x00"})
	if err == nil && len(got) != 0 {
		t.Fatalf("find odd hashes: %+v", got)
	}
	mustChunkStats(t, s, "after finding odd hashes", fixtureStats)
	pc, err := s.PackChunks(ctx, "pack/unknown")
	mustOK(t, "chunks of an unknown pack", err)
	mustChunks(t, "chunks of an unknown pack", pc, nil)
}

package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// holdTests check the HoldStore contract.
var holdTests = []metaTest{
	{"HoldHeldFor", testHoldHeldFor},
	{"HoldReplaces", testHoldReplaces},
	{"HoldPerCache", testHoldPerCache},
	{"HoldCreatedAtAssigned", testHoldCreatedAtAssigned},
	{"HoldUnknownCache", testHoldUnknownCache},
	{"HoldRelease", testHoldRelease},
	{"HoldExpire", testHoldExpire},
}

// newHeld returns a held narinfo of the store path named by seed in the
// cache, waiting for the NAR with file hash fh.
func newHeld(cacheID int64, seed, fh string) store.HeldNarInfo {
	h := storeHash(seed)
	return store.HeldNarInfo{
		CacheID:   cacheID,
		Hash:      h,
		FileHash:  fh,
		Body:      []byte("StorePath: /nix/store/" + h + "-" + seed + "\nURL: nar/" + fh + ".nar\n"),
		CreatedAt: time.Date(2024, 9, 10, 11, 12, 13, 0, time.UTC),
	}
}

// holdNarInfo records h and fails t on error.
func holdNarInfo(t *testing.T, s store.MetaStore, h store.HeldNarInfo) {
	t.Helper()
	mustOK(t, "hold narinfo "+h.Hash, s.HoldNarInfo(t.Context(), h))
}

// heldFor returns the narinfos of the cache held for fh and fails t on
// error.
func heldFor(t *testing.T, s store.MetaStore, cacheID int64, fh string) []store.HeldNarInfo {
	t.Helper()
	list, err := s.HeldFor(t.Context(), cacheID, fh)
	mustOK(t, "held for "+fh, err)
	return list
}

func testHoldHeldFor(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	fh, other := fileHash("one"), fileHash("two")
	mustHeld(t, "held for in an empty cache", heldFor(t, s, c.ID, fh), nil)
	p1, p2, p3 := newHeld(c.ID, "p1", fh), newHeld(c.ID, "p2", fh), newHeld(c.ID, "p3", other)
	p2.Body = []byte{0, 1, 0x7f, 0x80, 0xfe, 0xff, '\n', 0}
	p3.Body = nil
	for _, h := range []store.HeldNarInfo{p2, p3, p1} {
		holdNarInfo(t, s, h)
	}
	mustHeld(t, "held for one", heldFor(t, s, c.ID, fh), []store.HeldNarInfo{p1, p2})
	mustHeld(t, "held for two", heldFor(t, s, c.ID, other), []store.HeldNarInfo{p3})
	mustHeld(t, "held for a third", heldFor(t, s, c.ID, fileHash("three")), nil)
	mustHeld(t, "held for in an unknown cache", heldFor(t, s, c.ID+1000, fh), nil)
	mustKeys(t, "held narinfos are not listed", s, c.ID)
	_, _, err := s.GetNarInfo(t.Context(), c.ID, p1.Hash)
	mustNotFound(t, "get narinfo of a held narinfo", err)
	mustNarInfoKeys(t, s, nil)
}

func testHoldReplaces(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	first := newHeld(c.ID, "p", fileHash("one"))
	holdNarInfo(t, s, first)
	second := newHeld(c.ID, "p", fileHash("two"))
	second.Body, second.CreatedAt = []byte("replaced"), first.CreatedAt.Add(time.Hour)
	holdNarInfo(t, s, second)
	mustHeld(t, "held for the first nar", heldFor(t, s, c.ID, first.FileHash), nil)
	mustHeld(t, "held for the second nar", heldFor(t, s, c.ID, second.FileHash), []store.HeldNarInfo{second})
	third := second
	third.Body = []byte("replaced again, same nar")
	holdNarInfo(t, s, third)
	mustHeld(t, "held after a second replace", heldFor(t, s, c.ID, second.FileHash), []store.HeldNarInfo{third})
}

func testHoldPerCache(t *testing.T, s store.MetaStore) {
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	fh := fileHash("one")
	ha, hb := newHeld(a.ID, "p", fh), newHeld(b.ID, "p", fh)
	hb.Body = []byte("in b")
	holdNarInfo(t, s, ha)
	holdNarInfo(t, s, hb)
	mustHeld(t, "held in a", heldFor(t, s, a.ID, fh), []store.HeldNarInfo{ha})
	mustHeld(t, "held in b", heldFor(t, s, b.ID, fh), []store.HeldNarInfo{hb})
	mustOK(t, "release in a", s.ReleaseHeld(t.Context(), a.ID, ha.Hash))
	mustHeld(t, "held in a after release", heldFor(t, s, a.ID, fh), nil)
	mustHeld(t, "held in b after release in a", heldFor(t, s, b.ID, fh), []store.HeldNarInfo{hb})
}

func testHoldCreatedAtAssigned(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	h := newHeld(c.ID, "p", fileHash("one"))
	h.CreatedAt = time.Time{}
	before := time.Now()
	holdNarInfo(t, s, h)
	got := heldFor(t, s, c.ID, h.FileHash)
	if len(got) != 1 {
		t.Fatalf("held for: %+v, want one", got)
	}
	mustRecent(t, "hold narinfo with zero CreatedAt", got[0].CreatedAt, before)
	h.CreatedAt = got[0].CreatedAt
	mustHeld(t, "held for", got, []store.HeldNarInfo{h})
}

func testHoldUnknownCache(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "gone")
	mustOK(t, "delete cache", s.DeleteCache(t.Context(), "gone"))
	for _, id := range []int64{c.ID, c.ID + 1000, 0} {
		h := newHeld(id, "p", fileHash("one"))
		mustNotFound(t, fmt.Sprintf("hold narinfo in cache %d", id), s.HoldNarInfo(t.Context(), h))
		mustHeld(t, "held for refused for an unknown cache", heldFor(t, s, id, h.FileHash), nil)
	}
	expired, err := s.ExpireHeld(t.Context(), time.Now().Add(time.Hour))
	mustOK(t, "expire held", err)
	mustHeld(t, "expire held after refused holds", expired, nil)
}

func testHoldRelease(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	fh := fileHash("one")
	gone, kept := newHeld(c.ID, "gone", fh), newHeld(c.ID, "kept", fh)
	holdNarInfo(t, s, gone)
	holdNarInfo(t, s, kept)
	mustOK(t, "release held narinfo", s.ReleaseHeld(t.Context(), c.ID, gone.Hash))
	mustHeld(t, "held after release", heldFor(t, s, c.ID, fh), []store.HeldNarInfo{kept})
	mustOK(t, "release held narinfo twice", s.ReleaseHeld(t.Context(), c.ID, gone.Hash))
	mustOK(t, "release narinfo never held", s.ReleaseHeld(t.Context(), c.ID, storeHash("never")))
	mustOK(t, "release in an unknown cache", s.ReleaseHeld(t.Context(), c.ID+1000, kept.Hash))
	mustHeld(t, "held after releases of others", heldFor(t, s, c.ID, fh), []store.HeldNarInfo{kept})
	holdNarInfo(t, s, gone)
	mustHeld(t, "held after holding again", heldFor(t, s, c.ID, fh), []store.HeldNarInfo{gone, kept})
}

func testHoldExpire(t *testing.T, s store.MetaStore) {
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	fh := fileHash("one")
	var held []store.HeldNarInfo
	for i, at := range []time.Duration{0, time.Minute, 2 * time.Minute, time.Minute} {
		h := newHeld([]int64{a.ID, b.ID}[i%2], fmt.Sprint("p", i), fh)
		h.CreatedAt = t0.Add(at)
		holdNarInfo(t, s, h)
		held = append(held, h)
	}
	expired, err := s.ExpireHeld(t.Context(), t0)
	mustOK(t, "expire held before the oldest", err)
	mustHeld(t, "expire held before the oldest", expired, nil)
	expired, err = s.ExpireHeld(t.Context(), t0.Add(time.Minute))
	mustOK(t, "expire held", err)
	mustHeld(t, "expire held", expired, held[:1])
	mustHeld(t, "held in a after expiry", heldFor(t, s, a.ID, fh), held[2:3])
	mustHeld(t, "held in b after expiry", heldFor(t, s, b.ID, fh), []store.HeldNarInfo{held[1], held[3]})
	// Records are kept to the second: one held at t0+1m is before t0+1m+1ns.
	expired, err = s.ExpireHeld(t.Context(), t0.Add(time.Minute+time.Nanosecond))
	mustOK(t, "expire held in between", err)
	mustHeld(t, "expire held in between", expired, []store.HeldNarInfo{held[1], held[3]})
	expired, err = s.ExpireHeld(t.Context(), time.Now().Add(time.Hour))
	mustOK(t, "expire all held", err)
	mustHeld(t, "expire all held", expired, held[2:3])
	mustHeld(t, "held in a after expiring all", heldFor(t, s, a.ID, fh), nil)
}

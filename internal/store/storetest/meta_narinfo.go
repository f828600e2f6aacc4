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

// narInfoTests check the NarInfo part of the NarStore contract.
var narInfoTests = []metaTest{
	{"NarInfoNew", testNarInfoNew},
	{"NarInfoUpdate", testNarInfoUpdate},
	{"NarInfoMergeErrorNew", testNarInfoMergeErrorNew},
	{"NarInfoMergeErrorUpdate", testNarInfoMergeErrorUpdate},
	{"NarInfoNarNotLinked", testNarInfoNarNotLinked},
	{"NarInfoGetMissing", testNarInfoGetMissing},
	{"NarInfoPerCache", testNarInfoPerCache},
	{"NarInfoSlices", testNarInfoSlices},
	{"NarInfoCreatedAt", testNarInfoCreatedAt},
	{"NarInfoSeq", testNarInfoSeq},
	{"NarInfoListKeys", testNarInfoListKeys},
	{"NarInfoConcurrentMerge", testNarInfoConcurrentMerge},
	{"NarInfoKey", testNarInfoKey},
	{"NarInfoKeyTaken", testNarInfoKeyTaken},
	{"NarInfoDelete", testNarInfoDelete},
	{"NarInfoDeleteMissing", testNarInfoDeleteMissing},
	{"NarInfoPresent", testNarInfoPresent},
}

// narInfoFixture makes a cache "main" with one linked Nar and returns both
// with a narinfo, not yet stored, that serves the Nar.
func narInfoFixture(t *testing.T, s store.MetaStore) (store.Cache, store.Nar, store.NarInfo) {
	t.Helper()
	c := createCache(t, s, "main")
	n := addNar(t, s, c.ID, newNar("one"))
	return c, n, newNarInfo(c.ID, "hello", n.FileHash)
}

// getNarInfo reads the narinfo of hash in the cache and fails t on error.
func getNarInfo(t *testing.T, s store.MetaStore, cacheID int64, hash string) (store.NarInfo, store.Nar) {
	t.Helper()
	ni, n, err := s.GetNarInfo(t.Context(), cacheID, hash)
	mustOK(t, "get narinfo "+hash, err)
	return ni, n
}

func testNarInfoNew(t *testing.T, s store.MetaStore) {
	c, n, ni := narInfoFixture(t, s)
	calls := 0
	got, err := s.PutNarInfo(t.Context(), ni, func(old *store.NarInfo) (store.NarInfo, error) {
		calls++
		if old != nil {
			t.Errorf("merge of a new narinfo: old is %+v, want nil", *old)
		}
		return ni, nil
	})
	mustOK(t, "put narinfo", err)
	if calls != 1 {
		t.Fatalf("put narinfo: merge called %d times, want 1", calls)
	}
	if got.Seq <= 0 {
		t.Fatalf("put narinfo: Seq %d, want a positive one", got.Seq)
	}
	mustNarInfo(t, "put narinfo", got, ni)
	gni, gn := getNarInfo(t, s, c.ID, ni.Hash)
	mustNarInfo(t, "get narinfo", gni, got)
	mustNar(t, "get narinfo: nar", gn, n)
}

func testNarInfoUpdate(t *testing.T, s store.MetaStore) {
	c, _, ni := narInfoFixture(t, s)
	first := putNarInfo(t, s, ni)
	n2 := addNar(t, s, c.ID, newNar("two"))
	calls := 0
	var seen store.NarInfo
	got, err := s.PutNarInfo(t.Context(), ni, func(old *store.NarInfo) (store.NarInfo, error) {
		calls++
		if old == nil {
			return store.NarInfo{}, errors.New("merge of an existing narinfo got nil")
		}
		seen = *old
		upd := *old
		upd.FileHash = n2.FileHash
		upd.Sigs = append(slices.Clone(old.Sigs), "second-1:c2ln")
		upd.Deriver = ""
		return upd, nil
	})
	mustOK(t, "update narinfo", err)
	if calls != 1 {
		t.Fatalf("update narinfo: merge called %d times, want 1", calls)
	}
	mustNarInfo(t, "merge: old record", seen, first)
	want := first
	want.FileHash, want.Deriver = n2.FileHash, ""
	want.Sigs = []string{"upstream-1:c2ln", "second-1:c2ln"}
	mustNarInfo(t, "update narinfo (keeps Seq)", got, want)
	gni, gn := getNarInfo(t, s, c.ID, ni.Hash)
	mustNarInfo(t, "get updated narinfo", gni, want)
	mustNar(t, "get updated narinfo: nar", gn, n2)
}

// failMerge is a merge that returns errBoom.
func failMerge(*store.NarInfo) (store.NarInfo, error) { return store.NarInfo{}, errBoom }

func testNarInfoMergeErrorNew(t *testing.T, s store.MetaStore) {
	c, _, ni := narInfoFixture(t, s)
	_, err := s.PutNarInfo(t.Context(), ni, failMerge)
	if err != errBoom {
		t.Fatalf("put narinfo with a failing merge: got error %v, want %v unchanged", err, errBoom)
	}
	_, _, err = s.GetNarInfo(t.Context(), c.ID, ni.Hash)
	mustNotFound(t, "get narinfo after a failed merge", err)
	mustNarInfoKeys(t, s, nil)
}

func testNarInfoMergeErrorUpdate(t *testing.T, s store.MetaStore) {
	c, _, ni := narInfoFixture(t, s)
	first := putNarInfo(t, s, ni)
	_, err := s.PutNarInfo(t.Context(), ni, failMerge)
	if err != errBoom {
		t.Fatalf("update narinfo with a failing merge: got error %v, want %v unchanged", err, errBoom)
	}
	gni, _ := getNarInfo(t, s, c.ID, ni.Hash)
	mustNarInfo(t, "narinfo after a failed merge", gni, first)
}

func testNarInfoNarNotLinked(t *testing.T, s store.MetaStore) {
	c, _, ni := narInfoFixture(t, s)
	other := createCache(t, s, "other")
	elsewhere := addNar(t, s, other.ID, newNar("elsewhere"))
	for _, fh := range []string{elsewhere.FileHash, fileHash("nowhere")} {
		bad := newNarInfo(c.ID, "new", fh)
		_, err := s.PutNarInfo(t.Context(), bad, replaceWith(bad))
		mustNotFound(t, "put narinfo of an unlinked nar", err)
		_, _, err = s.GetNarInfo(t.Context(), c.ID, bad.Hash)
		mustNotFound(t, "get narinfo refused for an unlinked nar", err)
	}
	first := putNarInfo(t, s, ni)
	upd := ni
	upd.FileHash = elsewhere.FileHash
	_, err := s.PutNarInfo(t.Context(), ni, replaceWith(upd))
	mustNotFound(t, "update narinfo to an unlinked nar", err)
	gni, _ := getNarInfo(t, s, c.ID, ni.Hash)
	mustNarInfo(t, "narinfo after a refused update", gni, first)
	gone := newNarInfo(c.ID+1000, "gone", ni.FileHash)
	_, err = s.PutNarInfo(t.Context(), gone, replaceWith(gone))
	mustNotFound(t, "put narinfo in an unknown cache", err)
	mustNarInfoKeys(t, s, []store.NarInfoKey{{Seq: first.Seq, CacheID: c.ID, Hash: ni.Hash}})
}

func testNarInfoGetMissing(t *testing.T, s store.MetaStore) {
	c, _, ni := narInfoFixture(t, s)
	other := createCache(t, s, "other")
	_, _, err := s.GetNarInfo(t.Context(), c.ID, ni.Hash)
	mustNotFound(t, "get missing narinfo", err)
	putNarInfo(t, s, ni)
	_, _, err = s.GetNarInfo(t.Context(), other.ID, ni.Hash)
	mustNotFound(t, "get narinfo of another cache", err)
	_, _, err = s.GetNarInfo(t.Context(), c.ID, storeHash("missing"))
	mustNotFound(t, "get narinfo of another hash", err)
	_, _, err = s.GetNarInfo(t.Context(), c.ID+1000, ni.Hash)
	mustNotFound(t, "get narinfo in an unknown cache", err)
}

func testNarInfoPerCache(t *testing.T, s store.MetaStore) {
	a, n, ni := narInfoFixture(t, s)
	b := createCache(t, s, "b")
	n2 := addNar(t, s, b.ID, newNar("two"))
	inA := putNarInfo(t, s, ni)
	nb := newNarInfo(b.ID, "hello", n2.FileHash)
	nb.Sigs = nil
	inB := putNarInfo(t, s, nb)
	if inA.Seq == inB.Seq {
		t.Fatalf("narinfos in two caches share Seq %d", inA.Seq)
	}
	gni, gn := getNarInfo(t, s, a.ID, ni.Hash)
	mustNarInfo(t, "get narinfo in a", gni, inA)
	mustNar(t, "get narinfo in a: nar", gn, n)
	gni, gn = getNarInfo(t, s, b.ID, ni.Hash)
	mustNarInfo(t, "get narinfo in b", gni, inB)
	mustNar(t, "get narinfo in b: nar", gn, n2)
}

func testNarInfoSlices(t *testing.T, s store.MetaStore) {
	c, _, _ := narInfoFixture(t, s)
	n := newNar("one")
	cases := [][]string{
		nil,
		{},
		{"one"},
		{"a", "b", "c", "d"},
		{"", "with space", "comma,semicolon;", `"quoted"`, "new\nline", "tab\t", "[]", "ünï"},
	}
	for i, refs := range cases {
		for j, sigs := range cases {
			ni := newNarInfo(c.ID, fmt.Sprint("p", i, "-", j), n.FileHash)
			ni.References, ni.Sigs = refs, sigs
			got := putNarInfo(t, s, ni)
			mustNarInfo(t, fmt.Sprint("put narinfo with slices ", i, j), got, ni)
			gni, _ := getNarInfo(t, s, c.ID, ni.Hash)
			mustNarInfo(t, fmt.Sprint("get narinfo with slices ", i, j), gni, got)
		}
	}
}

func testNarInfoCreatedAt(t *testing.T, s store.MetaStore) {
	c, _, ni := narInfoFixture(t, s)
	ni.CreatedAt = time.Date(2022, 3, 4, 5, 6, 7, 890, time.FixedZone("west", -5*3600))
	got := putNarInfo(t, s, ni)
	mustNarInfo(t, "put narinfo with CreatedAt", got, ni)
	zero := newNarInfo(c.ID, "zero", ni.FileHash)
	zero.CreatedAt = time.Time{}
	before := time.Now()
	got = putNarInfo(t, s, zero)
	mustRecent(t, "put narinfo with zero CreatedAt", got.CreatedAt, before)
	gni, _ := getNarInfo(t, s, c.ID, zero.Hash)
	mustNarInfo(t, "get narinfo with assigned CreatedAt", gni, got)
}

func testNarInfoSeq(t *testing.T, s store.MetaStore) {
	c, _, ni := narInfoFixture(t, s)
	var seqs []int64
	for _, seed := range []string{"x", "y", "z"} {
		seqs = append(seqs, putNarInfo(t, s, newNarInfo(c.ID, seed, ni.FileHash)).Seq)
	}
	upd := newNarInfo(c.ID, "x", ni.FileHash)
	upd.System = "aarch64-linux"
	if got := putNarInfo(t, s, upd); got.Seq != seqs[0] {
		t.Fatalf("update narinfo: Seq %d, want %d kept", got.Seq, seqs[0])
	}
	seqs = append(seqs, putNarInfo(t, s, newNarInfo(c.ID, "w", ni.FileHash)).Seq)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("Seq of new narinfos not increasing: %v", seqs)
		}
	}
	// Seq keeps increasing past records deleted with their cache.
	mustOK(t, "delete cache", s.DeleteCache(t.Context(), "main"))
	c2, _, ni2 := narInfoFixture(t, s)
	if got := putNarInfo(t, s, ni2); got.Seq <= seqs[len(seqs)-1] {
		t.Fatalf("narinfo in cache %d after a delete: Seq %d, want more than %d",
			c2.ID, got.Seq, seqs[len(seqs)-1])
	}
}

func testNarInfoListKeys(t *testing.T, s store.MetaStore) {
	keys, err := s.ListNarInfoKeys(t.Context(), 0, 10)
	mustOK(t, "list narinfo keys of an empty store", err)
	if len(keys) != 0 {
		t.Fatalf("list narinfo keys of an empty store: %+v", keys)
	}
	a, n, _ := narInfoFixture(t, s)
	b := createCache(t, s, "b")
	addNar(t, s, b.ID, n)
	var want []store.NarInfoKey
	for i := range 7 {
		c := []store.Cache{a, b}[i%2]
		ni := putNarInfo(t, s, newNarInfo(c.ID, fmt.Sprint("p", i), n.FileHash))
		want = append(want, store.NarInfoKey{Seq: ni.Seq, CacheID: c.ID, Hash: ni.Hash})
	}
	putNarInfo(t, s, newNarInfo(a.ID, "p2", n.FileHash)) // an update keeps its place
	mustNarInfoKeys(t, s, want)
	var got []store.NarInfoKey
	for after := int64(0); ; {
		page, err := s.ListNarInfoKeys(t.Context(), after, 3)
		mustOK(t, "list narinfo keys page", err)
		if len(page) > 3 {
			t.Fatalf("list narinfo keys with limit 3: %d keys", len(page))
		}
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		after = page[len(page)-1].Seq
	}
	if !slices.Equal(got, want) {
		t.Fatalf("list narinfo keys by pages: got %+v, want %+v", got, want)
	}
	page, err := s.ListNarInfoKeys(t.Context(), want[3].Seq, 100)
	mustOK(t, "list narinfo keys after the fourth", err)
	if !slices.Equal(page, want[4:]) {
		t.Fatalf("list narinfo keys after the fourth: got %+v, want %+v", page, want[4:])
	}
	page, err = s.ListNarInfoKeys(t.Context(), 0, 0)
	mustOK(t, "list narinfo keys with limit 0", err)
	if len(page) != 0 {
		t.Fatalf("list narinfo keys with limit 0: %+v", page)
	}
}

func testNarInfoConcurrentMerge(t *testing.T, s store.MetaStore) {
	c, _, ni := narInfoFixture(t, s)
	ni.Sigs = nil
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			sig := fmt.Sprintf("key-%d:c2ln", i)
			_, errs[i] = s.PutNarInfo(t.Context(), ni, func(old *store.NarInfo) (store.NarInfo, error) {
				next := ni
				if old != nil {
					next = *old
				}
				next.Sigs = append(slices.Clone(next.Sigs), sig)
				return next, nil
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		mustOK(t, fmt.Sprint("concurrent put narinfo ", i), err)
	}
	got, _ := getNarInfo(t, s, c.ID, ni.Hash)
	if len(got.Sigs) != writers {
		t.Fatalf("after %d concurrent merges: sigs %q", writers, got.Sigs)
	}
	for i := range writers {
		if sig := fmt.Sprintf("key-%d:c2ln", i); !slices.Contains(got.Sigs, sig) {
			t.Fatalf("after concurrent merges: %s missing from %q", sig, got.Sigs)
		}
	}
	keys, err := s.ListNarInfoKeys(t.Context(), 0, 100)
	mustOK(t, "list narinfo keys", err)
	if len(keys) != 1 {
		t.Fatalf("after concurrent merges: %d narinfo keys, want 1", len(keys))
	}
}

func testNarInfoKey(t *testing.T, s store.MetaStore) {
	c, n, ni := narInfoFixture(t, s)
	ni.Key = "custom/" + ni.Hash + ".narinfo"
	got := putNarInfo(t, s, ni)
	mustNarInfo(t, "put narinfo with a key", got, ni)
	gni, _ := getNarInfo(t, s, c.ID, ni.Hash)
	mustNarInfo(t, "get narinfo with a key", gni, got)
	mustKeys(t, "keys", s, c.ID, ni.Key, narKey(n))
	upd := ni
	upd.Key = ni.Hash + ".narinfo"
	got = putNarInfo(t, s, upd)
	mustNarInfo(t, "update narinfo key", got, upd)
	mustKeys(t, "keys after updating the key", s, c.ID, upd.Key, narKey(n))
}

func testNarInfoKeyTaken(t *testing.T, s store.MetaStore) {
	a, n, ni := narInfoFixture(t, s)
	b := createCache(t, s, "b")
	addNar(t, s, b.ID, n)
	first := putNarInfo(t, s, ni)
	clash := newNarInfo(a.ID, "other", n.FileHash)
	clash.Key = ni.Key
	_, err := s.PutNarInfo(t.Context(), clash, replaceWith(clash))
	mustExists(t, "put narinfo under a taken key", err)
	_, _, err = s.GetNarInfo(t.Context(), a.ID, clash.Hash)
	mustNotFound(t, "get narinfo refused for a taken key", err)
	second := putNarInfo(t, s, newNarInfo(a.ID, "other", n.FileHash))
	moved := second
	moved.Key = ni.Key
	_, err = s.PutNarInfo(t.Context(), moved, replaceWith(moved))
	mustExists(t, "update narinfo to a taken key", err)
	gni, _ := getNarInfo(t, s, a.ID, second.Hash)
	mustNarInfo(t, "narinfo after a refused update", gni, second)
	gni, _ = getNarInfo(t, s, a.ID, first.Hash)
	mustNarInfo(t, "narinfo holding the key", gni, first)
	clash.CacheID = b.ID
	putNarInfo(t, s, clash) // keys are per cache
}

func testNarInfoDelete(t *testing.T, s store.MetaStore) {
	a, n, ni := narInfoFixture(t, s)
	b := createCache(t, s, "b")
	addNar(t, s, b.ID, n)
	gone := putNarInfo(t, s, ni)
	kept := putNarInfo(t, s, newNarInfo(a.ID, "kept", n.FileHash))
	nb := newNarInfo(b.ID, "hello", n.FileHash)
	inB := putNarInfo(t, s, nb)
	mustOK(t, "delete narinfo", s.DeleteNarInfo(t.Context(), a.ID, ni.Hash))
	_, _, err := s.GetNarInfo(t.Context(), a.ID, ni.Hash)
	mustNotFound(t, "get deleted narinfo", err)
	gni, _ := getNarInfo(t, s, a.ID, kept.Hash)
	mustNarInfo(t, "get kept narinfo", gni, kept)
	gni, _ = getNarInfo(t, s, b.ID, inB.Hash)
	mustNarInfo(t, "get narinfo of the same hash in another cache", gni, inB)
	g, err := s.CacheNar(t.Context(), a.ID, n.FileHash)
	mustOK(t, "cache nar after deleting its narinfo", err)
	mustLinked(t, "cache nar after deleting its narinfo", g, n)
	mustKeys(t, "keys after deleting a narinfo", s, a.ID, kept.Key, narKey(n))
	mustNarInfoKeys(t, s, []store.NarInfoKey{{Seq: kept.Seq, CacheID: a.ID, Hash: kept.Hash},
		{Seq: inB.Seq, CacheID: b.ID, Hash: inB.Hash}})
	mustNotFound(t, "delete narinfo twice", s.DeleteNarInfo(t.Context(), a.ID, ni.Hash))

	// A narinfo put again is new: it gets a new Seq, past every earlier one.
	again := putNarInfo(t, s, ni)
	if again.Seq <= inB.Seq || again.Seq == gone.Seq {
		t.Fatalf("narinfo put after its delete: Seq %d, want more than %d", again.Seq, inB.Seq)
	}
}

func testNarInfoDeleteMissing(t *testing.T, s store.MetaStore) {
	a, _, ni := narInfoFixture(t, s)
	b := createCache(t, s, "b")
	mustNotFound(t, "delete missing narinfo", s.DeleteNarInfo(t.Context(), a.ID, ni.Hash))
	first := putNarInfo(t, s, ni)
	mustNotFound(t, "delete narinfo of another cache", s.DeleteNarInfo(t.Context(), b.ID, ni.Hash))
	mustNotFound(t, "delete narinfo in an unknown cache", s.DeleteNarInfo(t.Context(), a.ID+1000, ni.Hash))
	gni, _ := getNarInfo(t, s, a.ID, ni.Hash)
	mustNarInfo(t, "narinfo after refused deletes", gni, first)
}

package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// listTests check the ListStore contract.
var listTests = []metaTest{
	{"ListKeysEntries", testListKeysEntries},
	{"ListKeysByteOrder", testListKeysByteOrder},
	{"ListKeysPaging", testListKeysPaging},
	{"ListKeysPrefix", testListKeysPrefix},
	{"ListKeysAfter", testListKeysAfter},
	{"ListKeysEmpty", testListKeysEmpty},
	{"ListKeysOnlyListed", testListKeysOnlyListed},
}

// fixtureKeys are the keys listFixture stores, in no order. They mix ASCII
// punctuation around "/", upper case, spaces and characters of two, three
// and four bytes in UTF-8: U+FF61 sorts before U+1F600 in byte order but
// after it in UTF-16 order.
var fixtureKeys = []string{
	"nix-cache-info", "a", "a/b", "a-b", "a0", "a/b/c", "a b", "A", "B/x", "~tilde", "z",
	"log/x.drv", "log/y.drv", "log-z", "logs", "nar/0abc.nar.xz", "nar/1abc.nar.zst", "nar/1abc.nar",
	"é", "é/x", "e", "ez", "日本/語.txt", "\u00ff", "\uff61", "\U0001F600", "\U0001F600/x",
	"sub/deep/er/key", "sub/deep/key", "sub/", "sub",
}

// listFixture fills a cache with fixtureKeys, spread over the three kinds in
// turn, and returns the cache and the entries ListKeys must give, ordered.
// The entries of NAR links have a zero Modified, which mustEntries checks
// only for being recent.
func listFixture(t *testing.T, s store.MetaStore) (store.Cache, []store.Entry) {
	t.Helper()
	c := createCache(t, s, "main")
	keys := slices.Clone(fixtureKeys)
	slices.Sort(keys)
	var want []store.Entry
	for i, key := range keys {
		switch i % 3 {
		case 0:
			n := addNar(t, s, c.ID, newNar(fmt.Sprint("for-", i)))
			ni := newNarInfo(c.ID, fmt.Sprint("p", i), n.FileHash)
			ni.Key = key
			ni = putNarInfo(t, s, ni)
			// The Nar the narinfo serves is listed too, under its own key.
			want = append(want, narEntry(n, narKey(n), time.Time{}), store.Entry{Key: key,
				Kind: store.EntryNarInfo, Hash: ni.Hash, Modified: sec(ni.CreatedAt)})
		case 1:
			n := addNarAt(t, s, c.ID, newNar(fmt.Sprint("at-", i)), key)
			want = append(want, narEntry(n, key, time.Time{}))
		case 2:
			o := newObject(c.ID, key)
			o.CreatedAt = o.CreatedAt.Add(time.Duration(i) * time.Second)
			putObject(t, s, o)
			want = append(want, store.Entry{Key: key, Kind: store.EntryObject, Size: o.Size,
				ETag: o.ETag, Modified: o.CreatedAt})
		}
	}
	slices.SortFunc(want, func(a, b store.Entry) int { return strings.Compare(a.Key, b.Key) })
	return c, want
}

// mustEntries fails t unless got equals want, in order. Where a wanted
// entry has a zero Modified, the one got must be recent.
func mustEntries(t *testing.T, what string, got, want []store.Entry, before time.Time) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got keys %q, want %q", what, entryKeys(got), entryKeys(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		mustUTC(t, what, g.Modified)
		if w.Modified.IsZero() {
			mustRecent(t, what+": Modified", g.Modified, before)
			w.Modified = g.Modified
		}
		g.Modified, w.Modified = sec(g.Modified), sec(w.Modified)
		if g != w {
			t.Fatalf("%s: entry %d is %+v, want %+v", what, i, g, w)
		}
	}
}

// listPages lists the keys of the cache with prefix from after on, limit at
// a time, checking the size of each page, and returns all it saw.
func listPages(t *testing.T, s store.MetaStore, cacheID int64, prefix, after string, limit int) []store.Entry {
	t.Helper()
	var all []store.Entry
	for range 1000 {
		page, err := s.ListKeys(t.Context(), cacheID, prefix, after, limit)
		mustOK(t, "list keys", err)
		if len(page) > limit {
			t.Fatalf("list keys with limit %d: %d entries", limit, len(page))
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Key
	}
	t.Fatalf("list keys with prefix %q and limit %d: paging does not end", prefix, limit)
	return nil
}

// filterEntries returns the entries of list whose keys start with prefix
// and sort after after.
func filterEntries(list []store.Entry, prefix, after string) []store.Entry {
	var out []store.Entry
	for _, e := range list {
		if strings.HasPrefix(e.Key, prefix) && e.Key > after {
			out = append(out, e)
		}
	}
	return out
}

func testListKeysEntries(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	before := time.Now()
	n := addNar(t, s, c.ID, newNar("one"))
	ni := putNarInfo(t, s, newNarInfo(c.ID, "hello", n.FileHash))
	o := newObject(c.ID, "log/hello.drv")
	putObject(t, s, o)
	want := []store.Entry{
		{Key: ni.Key, Kind: store.EntryNarInfo, Hash: ni.Hash, Modified: ni.CreatedAt},
		{Key: o.Key, Kind: store.EntryObject, Size: o.Size, ETag: o.ETag, Modified: o.CreatedAt},
		narEntry(n, narKey(n), time.Time{}),
	}
	mustEntries(t, "list keys", listAll(t, s, c.ID, ""), want, before)
}

func testListKeysByteOrder(t *testing.T, s store.MetaStore) {
	before := time.Now()
	c, want := listFixture(t, s)
	got := listAll(t, s, c.ID, "")
	mustEntries(t, "list keys", got, want, before)
	if !slices.IsSortedFunc(got, func(a, b store.Entry) int { return strings.Compare(a.Key, b.Key) }) {
		t.Fatalf("list keys: not in byte order: %q", entryKeys(got))
	}
}

func testListKeysPaging(t *testing.T, s store.MetaStore) {
	before := time.Now()
	c, want := listFixture(t, s)
	for _, limit := range []int{1, 2, 3, 7, len(want) - 1, len(want), len(want) + 1, 1000} {
		got := listPages(t, s, c.ID, "", "", limit)
		mustEntries(t, fmt.Sprint("list keys by pages of ", limit), got, want, before)
	}
}

func testListKeysPrefix(t *testing.T, s store.MetaStore) {
	before := time.Now()
	c, all := listFixture(t, s)
	prefixes := []string{"", "a", "a/", "a/b", "a/b/c", "a/b/c/", "log", "log/", "nar/", "nar/1abc.nar",
		"sub", "sub/", "sub/deep/", "é", "e", "\U0001F600", "\uff61", "日本", "A", "~", "missing", "zz", "\U0001F601"}
	for _, prefix := range prefixes {
		want := filterEntries(all, prefix, "")
		mustEntries(t, fmt.Sprintf("list keys with prefix %q", prefix), listAll(t, s, c.ID, prefix), want, before)
		for _, limit := range []int{1, 2, 5} {
			got := listPages(t, s, c.ID, prefix, "", limit)
			mustEntries(t, fmt.Sprintf("list keys with prefix %q by pages of %d", prefix, limit), got, want, before)
		}
	}
}

func testListKeysAfter(t *testing.T, s store.MetaStore) {
	before := time.Now()
	c, all := listFixture(t, s)
	afters := []string{"", "0", "A", "a", "a/", "a/b", "a/bz", "log/x.drv", "lz", "sub", "sub/",
		"é", "\uff61", "\U0001F600", "\U0001F600/x", "\U0001F601", all[len(all)-1].Key}
	prefixes := []string{"", "a", "a/", "log/", "sub/", "é", "\U0001F600", "nar/"}
	for _, after := range afters {
		for _, prefix := range prefixes {
			want := filterEntries(all, prefix, after)
			what := fmt.Sprintf("list keys with prefix %q after %q", prefix, after)
			got, err := s.ListKeys(t.Context(), c.ID, prefix, after, 1000)
			mustOK(t, what, err)
			mustEntries(t, what, got, want, before)
			mustEntries(t, what+" by pages of 2", listPages(t, s, c.ID, prefix, after, 2), want, before)
		}
	}
}

func testListKeysEmpty(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	for _, id := range []int64{c.ID, c.ID + 1000, 0} {
		list, err := s.ListKeys(t.Context(), id, "", "", 1000)
		mustOK(t, fmt.Sprint("list keys of empty cache ", id), err)
		if len(list) != 0 {
			t.Fatalf("list keys of empty cache %d: %+v", id, list)
		}
	}
	o := newObject(c.ID, "k")
	putObject(t, s, o)
	list, err := s.ListKeys(t.Context(), c.ID, "", "", 0)
	mustOK(t, "list keys with limit 0", err)
	if len(list) != 0 {
		t.Fatalf("list keys with limit 0: %+v", list)
	}
}

func testListKeysOnlyListed(t *testing.T, s store.MetaStore) {
	before := time.Now()
	c, want := listFixture(t, s)
	other := createCache(t, s, "other")
	n := addNar(t, s, other.ID, newNar("elsewhere"))
	putNarInfo(t, s, newNarInfo(other.ID, "elsewhere", n.FileHash))
	for _, key := range []string{"a", "a/c", "other-only", "zzz"} {
		putObject(t, s, newObject(other.ID, key))
	}
	holdNarInfo(t, s, newHeld(c.ID, "held", fileHash("later")))
	createUpload(t, s, newUpload("up", c.ID, "a/uploading"))
	putPart(t, s, newPart("up", 1))
	mustEntries(t, "list keys", listAll(t, s, c.ID, ""), want, before)
	if got := entryKeys(listAll(t, s, other.ID, "")); len(got) != 6 {
		t.Fatalf("list keys of the other cache: %q, want 6", got)
	}
}

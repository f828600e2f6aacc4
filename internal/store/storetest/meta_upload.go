package storetest

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// uploadTests check the upload part of the UploadStore contract.
var uploadTests = []metaTest{
	{"UploadCreateGet", testUploadCreateGet},
	{"UploadCreatedAtAssigned", testUploadCreatedAtAssigned},
	{"UploadDuplicate", testUploadDuplicate},
	{"UploadUnknownCache", testUploadUnknownCache},
	{"UploadGetMissing", testUploadGetMissing},
	{"UploadList", testUploadList},
	{"UploadDelete", testUploadDelete},
}

// newUpload returns an upload with the given ID of key in the cache.
func newUpload(id string, cacheID int64, key string) store.Upload {
	return store.Upload{
		ID:          id,
		CacheID:     cacheID,
		Key:         key,
		ContentType: "application/octet-stream",
		Metadata:    map[string]string{"mtime": "1700000000"},
		CreatedAt:   time.Date(2024, 10, 11, 12, 13, 14, 0, time.UTC),
	}
}

// createUpload records u and fails t on error.
func createUpload(t *testing.T, s store.MetaStore, u store.Upload) {
	t.Helper()
	mustOK(t, "create upload "+u.ID, s.CreateUpload(t.Context(), u))
}

// getUpload reads the upload with the ID and fails t on error.
func getUpload(t *testing.T, s store.MetaStore, id string) store.Upload {
	t.Helper()
	u, err := s.GetUpload(t.Context(), id)
	mustOK(t, "get upload "+id, err)
	return u
}

// mustUpload fails t unless got equals want, times to the second and empty
// maps equal to nil ones.
func mustUpload(t *testing.T, what string, got, want store.Upload) {
	t.Helper()
	mustUTC(t, what, got.CreatedAt)
	same := got.ID == want.ID && got.CacheID == want.CacheID && got.Key == want.Key &&
		got.ContentType == want.ContentType && maps.Equal(got.Metadata, want.Metadata) &&
		sec(got.CreatedAt) == sec(want.CreatedAt)
	if !same {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

// mustUploads fails t unless ListUploads of the cache and prefix returns
// exactly want, in order.
func mustUploads(t *testing.T, s store.MetaStore, cacheID int64, prefix string, want ...store.Upload) {
	t.Helper()
	list, err := s.ListUploads(t.Context(), cacheID, prefix)
	mustOK(t, "list uploads", err)
	if len(list) != len(want) {
		t.Fatalf("list uploads of cache %d with prefix %q: %+v, want %+v", cacheID, prefix, list, want)
	}
	for i := range list {
		mustUpload(t, fmt.Sprintf("list uploads with prefix %q: upload %d", prefix, i), list[i], want[i])
	}
}

func testUploadCreateGet(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	for i, m := range []map[string]string{nil, {}, {"a": "", "ünï": "日本 \"q\"\n"}} {
		u := newUpload(fmt.Sprint("id-", i), c.ID, fmt.Sprint("dir/file ", i, ".bin"))
		u.Metadata = m
		createUpload(t, s, u)
		mustUpload(t, "get upload", getUpload(t, s, u.ID), u)
	}
	odd := newUpload("2~YWJj/ZGVm+Z2hp=", c.ID, "ünï/x")
	odd.ContentType = ""
	createUpload(t, s, odd)
	mustUpload(t, "get upload with an unusual ID", getUpload(t, s, odd.ID), odd)
}

func testUploadCreatedAtAssigned(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	u := newUpload("zero", c.ID, "k")
	u.CreatedAt = time.Time{}
	before := time.Now()
	createUpload(t, s, u)
	got := getUpload(t, s, u.ID)
	mustRecent(t, "create upload with zero CreatedAt", got.CreatedAt, before)
	u.CreatedAt = got.CreatedAt
	mustUpload(t, "get upload", got, u)
}

func testUploadDuplicate(t *testing.T, s store.MetaStore) {
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	first := newUpload("dup", a.ID, "k")
	createUpload(t, s, first)
	again := newUpload("dup", a.ID, "other")
	mustExists(t, "create upload with a taken ID", s.CreateUpload(t.Context(), again))
	again.CacheID = b.ID
	mustExists(t, "create upload with an ID taken in another cache", s.CreateUpload(t.Context(), again))
	mustUpload(t, "upload after duplicate creates", getUpload(t, s, first.ID), first)
	mustUploads(t, s, b.ID, "")
	// Two uploads of one key are two uploads.
	second := newUpload("second", a.ID, first.Key)
	second.CreatedAt = first.CreatedAt.Add(time.Second)
	createUpload(t, s, second)
	mustUploads(t, s, a.ID, "", first, second)
}

func testUploadUnknownCache(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "gone")
	mustOK(t, "delete cache", s.DeleteCache(t.Context(), "gone"))
	for _, id := range []int64{c.ID, c.ID + 1000, 0} {
		err := s.CreateUpload(t.Context(), newUpload(fmt.Sprint("u", id), id, "k"))
		mustNotFound(t, fmt.Sprintf("create upload in cache %d", id), err)
		_, err = s.GetUpload(t.Context(), fmt.Sprint("u", id))
		mustNotFound(t, "get upload refused for an unknown cache", err)
		mustUploads(t, s, id, "")
	}
}

func testUploadGetMissing(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	_, err := s.GetUpload(t.Context(), "missing")
	mustNotFound(t, "get missing upload", err)
	createUpload(t, s, newUpload("present", c.ID, "k"))
	for _, id := range []string{"presen", "present ", "PRESENT", ""} {
		_, err = s.GetUpload(t.Context(), id)
		mustNotFound(t, fmt.Sprintf("get upload %q", id), err)
	}
}

func testUploadList(t *testing.T, s store.MetaStore) {
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	mustUploads(t, s, a.ID, "")
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var all []store.Upload
	for i, k := range []struct {
		key string
		at  time.Duration
	}{
		{"dir/b", 0}, {"dir/a", 0}, {"dir/b", -time.Hour}, {"dir-x", 0}, {"dir/é", 0},
		{"dir/z", 0}, {"dir", 0}, {"other", 0}, {"Dir/a", 0}, {"dir/b", time.Hour},
	} {
		u := newUpload(fmt.Sprint("u", 9-i), a.ID, k.key)
		u.CreatedAt = t0.Add(k.at)
		createUpload(t, s, u)
		all = append(all, u)
	}
	createUpload(t, s, newUpload("in-b", b.ID, "dir/a"))
	slices.SortStableFunc(all, func(x, y store.Upload) int {
		return cmp.Or(cmp.Compare(x.Key, y.Key), x.CreatedAt.Compare(y.CreatedAt))
	})
	for _, prefix := range []string{"", "dir", "dir/", "dir/b", "dir/é", "d", "D", "o", "x", "dir/bb"} {
		var want []store.Upload
		for _, u := range all {
			if len(u.Key) >= len(prefix) && u.Key[:len(prefix)] == prefix {
				want = append(want, u)
			}
		}
		mustUploads(t, s, a.ID, prefix, want...)
	}
	mustUploads(t, s, a.ID+1000, "")
}

func testUploadDelete(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	gone, kept := newUpload("gone", c.ID, "k"), newUpload("kept", c.ID, "k")
	kept.CreatedAt = gone.CreatedAt.Add(time.Second)
	createUpload(t, s, gone)
	createUpload(t, s, kept)
	var goneParts []store.Part
	for _, n := range []int{2, 1, 3} {
		goneParts = append(goneParts, newPart(gone.ID, n))
		putPart(t, s, goneParts[len(goneParts)-1])
	}
	keptPart := newPart(kept.ID, 1)
	putPart(t, s, keptPart)
	parts, err := s.DeleteUpload(t.Context(), gone.ID)
	mustOK(t, "delete upload", err)
	mustParts(t, "delete upload", parts, goneParts)
	_, err = s.GetUpload(t.Context(), gone.ID)
	mustNotFound(t, "get deleted upload", err)
	_, err = s.ListParts(t.Context(), gone.ID)
	mustNotFound(t, "list parts of deleted upload", err)
	_, err = s.PutPart(t.Context(), newPart(gone.ID, 4))
	mustNotFound(t, "put part of deleted upload", err)
	_, err = s.DeleteUpload(t.Context(), gone.ID)
	mustNotFound(t, "delete upload twice", err)
	_, err = s.DeleteUpload(t.Context(), "never")
	mustNotFound(t, "delete unknown upload", err)
	mustUploads(t, s, c.ID, "", kept)
	mustParts(t, "parts of kept upload", listParts(t, s, kept.ID), []store.Part{keptPart})
	parts, err = s.DeleteUpload(t.Context(), kept.ID)
	mustOK(t, "delete upload", err)
	mustParts(t, "delete upload", parts, []store.Part{keptPart})
	empty := newUpload("empty", c.ID, "k")
	createUpload(t, s, empty)
	parts, err = s.DeleteUpload(t.Context(), empty.ID)
	mustOK(t, "delete upload without parts", err)
	mustParts(t, "delete upload without parts", parts, nil)
}

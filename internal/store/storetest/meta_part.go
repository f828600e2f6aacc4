package storetest

import (
	"cmp"
	"crypto/md5"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// partTests check the part part of the UploadStore contract.
var partTests = []metaTest{
	{"PartPutList", testPartPutList},
	{"PartReplace", testPartReplace},
	{"PartCreatedAtAssigned", testPartCreatedAtAssigned},
	{"PartUnknownUpload", testPartUnknownUpload},
	{"PartsPerUpload", testPartsPerUpload},
}

// newPart returns part number n of the upload.
func newPart(uploadID string, n int) store.Part {
	return store.Part{
		UploadID:  uploadID,
		Number:    n,
		Size:      int64(5<<20 + n),
		MD5:       fmt.Sprintf("%x", md5.Sum(fmt.Append(nil, uploadID, n))),
		BlobKey:   fmt.Sprintf("upload/%s/%d", uploadID, n),
		CreatedAt: time.Date(2024, 11, 12, 13, 14, 15, 0, time.UTC),
	}
}

// putPart records p as a new part and fails t on error or if PutPart
// reports a replaced part.
func putPart(t *testing.T, s store.MetaStore, p store.Part) {
	t.Helper()
	old, err := s.PutPart(t.Context(), p)
	mustOK(t, fmt.Sprint("put part ", p.Number), err)
	if old != nil {
		t.Fatalf("put new part %d: replaced %+v", p.Number, *old)
	}
}

// listParts lists the parts of the upload and fails t on error.
func listParts(t *testing.T, s store.MetaStore, uploadID string) []store.Part {
	t.Helper()
	list, err := s.ListParts(t.Context(), uploadID)
	mustOK(t, "list parts of "+uploadID, err)
	return list
}

// mustPart fails t unless got equals want, times to the second.
func mustPart(t *testing.T, what string, got, want store.Part) {
	t.Helper()
	mustUTC(t, what, got.CreatedAt)
	got.CreatedAt, want.CreatedAt = sec(got.CreatedAt), sec(want.CreatedAt)
	if got != want {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

// mustParts fails t unless got holds the same parts as want, in any order.
func mustParts(t *testing.T, what string, got, want []store.Part) {
	t.Helper()
	byNumber := func(a, b store.Part) int {
		return cmp.Or(strings.Compare(a.UploadID, b.UploadID), cmp.Compare(a.Number, b.Number))
	}
	mustOrderedParts(t, what, slices.SortedFunc(slices.Values(got), byNumber),
		slices.SortedFunc(slices.Values(want), byNumber))
}

// mustOrderedParts fails t unless got equals want, in order.
func mustOrderedParts(t *testing.T, what string, got, want []store.Part) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
	for i := range got {
		mustPart(t, fmt.Sprint(what, ": part ", i), got[i], want[i])
	}
}

// uploadFixture makes a cache with one upload and returns the upload.
func uploadFixture(t *testing.T, s store.MetaStore) store.Upload {
	t.Helper()
	c := createCache(t, s, "main")
	u := newUpload("upload", c.ID, "big.iso")
	createUpload(t, s, u)
	return u
}

func testPartPutList(t *testing.T, s store.MetaStore) {
	u := uploadFixture(t, s)
	mustOrderedParts(t, "list parts of a new upload", listParts(t, s, u.ID), nil)
	var want []store.Part
	for _, n := range []int{3, 1, 10, 2, 10000} {
		p := newPart(u.ID, n)
		putPart(t, s, p)
		want = append(want, p)
	}
	slices.SortFunc(want, func(a, b store.Part) int { return cmp.Compare(a.Number, b.Number) })
	mustOrderedParts(t, "list parts", listParts(t, s, u.ID), want)
}

func testPartReplace(t *testing.T, s store.MetaStore) {
	u := uploadFixture(t, s)
	first, other := newPart(u.ID, 1), newPart(u.ID, 2)
	putPart(t, s, first)
	putPart(t, s, other)
	second := first
	second.Size, second.MD5, second.BlobKey = 17, padHash("again", 32), "upload/again"
	second.CreatedAt = first.CreatedAt.Add(time.Minute)
	old, err := s.PutPart(t.Context(), second)
	mustOK(t, "put part again", err)
	if old == nil {
		t.Fatalf("put part again: no replaced part reported")
	}
	mustPart(t, "put part again: replaced part", *old, first)
	mustOrderedParts(t, "list parts after a replace", listParts(t, s, u.ID), []store.Part{second, other})
	old, err = s.PutPart(t.Context(), second)
	mustOK(t, "put the same part again", err)
	if old == nil {
		t.Fatalf("put the same part again: no replaced part reported")
	}
	mustPart(t, "put the same part again: replaced part", *old, second)
}

func testPartCreatedAtAssigned(t *testing.T, s store.MetaStore) {
	u := uploadFixture(t, s)
	p := newPart(u.ID, 1)
	p.CreatedAt = time.Time{}
	before := time.Now()
	putPart(t, s, p)
	got := listParts(t, s, u.ID)
	if len(got) != 1 {
		t.Fatalf("list parts: %+v, want one", got)
	}
	mustRecent(t, "put part with zero CreatedAt", got[0].CreatedAt, before)
	p.CreatedAt = got[0].CreatedAt
	mustPart(t, "list parts", got[0], p)
}

func testPartUnknownUpload(t *testing.T, s store.MetaStore) {
	u := uploadFixture(t, s)
	for _, id := range []string{"missing", "", u.ID + "x"} {
		_, err := s.PutPart(t.Context(), newPart(id, 1))
		mustNotFound(t, fmt.Sprintf("put part of upload %q", id), err)
		_, err = s.ListParts(t.Context(), id)
		mustNotFound(t, fmt.Sprintf("list parts of upload %q", id), err)
		_, err = s.DeleteUpload(t.Context(), id)
		mustNotFound(t, fmt.Sprintf("delete upload %q", id), err)
	}
	mustOrderedParts(t, "list parts after refused puts", listParts(t, s, u.ID), nil)
}

func testPartsPerUpload(t *testing.T, s store.MetaStore) {
	u := uploadFixture(t, s)
	v := newUpload("other", u.CacheID, u.Key)
	createUpload(t, s, v)
	pu, pv := newPart(u.ID, 1), newPart(v.ID, 1)
	putPart(t, s, pu)
	putPart(t, s, pv)
	mustOrderedParts(t, "parts of the first upload", listParts(t, s, u.ID), []store.Part{pu})
	mustOrderedParts(t, "parts of the second upload", listParts(t, s, v.ID), []store.Part{pv})
}

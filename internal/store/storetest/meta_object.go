package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// objectTests check the ObjectStore contract.
var objectTests = []metaTest{
	{"ObjectPutGet", testObjectPutGet},
	{"ObjectPutReplaces", testObjectPutReplaces},
	{"ObjectMetadata", testObjectMetadata},
	{"ObjectCreatedAtAssigned", testObjectCreatedAtAssigned},
	{"ObjectGetMissing", testObjectGetMissing},
	{"ObjectUnknownCache", testObjectUnknownCache},
	{"ObjectDelete", testObjectDelete},
}

// newObject returns the record of an object under key in the cache.
func newObject(cacheID int64, key string) store.Object {
	return store.Object{
		CacheID:     cacheID,
		Key:         key,
		ContentType: "text/plain; charset=utf-8",
		Size:        int64(100 + len(key)),
		SHA256:      fmt.Sprintf("%064x", key),
		MD5:         fmt.Sprintf("%032x", key)[:32],
		ETag:        fmt.Sprintf("%032x", key)[:32],
		Metadata:    map[string]string{"origin": key},
		BlobKey:     fmt.Sprintf("file/%d/%x", cacheID, key),
		CreatedAt:   time.Date(2024, 8, 9, 10, 11, 12, 0, time.UTC),
	}
}

// putObject records o and fails t on error.
func putObject(t *testing.T, s store.MetaStore, o store.Object) {
	t.Helper()
	mustOK(t, "put object "+o.Key, s.PutObject(t.Context(), o))
}

// getObject reads the record of key in the cache and fails t on error.
func getObject(t *testing.T, s store.MetaStore, cacheID int64, key string) store.Object {
	t.Helper()
	o, err := s.GetObject(t.Context(), cacheID, key)
	mustOK(t, "get object "+key, err)
	return o
}

func testObjectPutGet(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	for _, key := range []string{"log/abc-hello.drv", "ls/" + storeHash("x") + ".ls",
		"realisations/sha256:00ff!out.doi", "debuginfo/0123abcd", "some/s3 object/ünï (1).tar.gz"} {
		o := newObject(c.ID, key)
		putObject(t, s, o)
		mustObject(t, "get object "+key, getObject(t, s, c.ID, key), o)
	}
	multi := newObject(c.ID, "big.iso")
	multi.ETag = multi.MD5[:16] + "0000000000000000-12"
	putObject(t, s, multi)
	mustObject(t, "get object of a multipart upload", getObject(t, s, c.ID, multi.Key), multi)
}

func testObjectPutReplaces(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	o := newObject(c.ID, "log/x.drv")
	putObject(t, s, o)
	g := o
	g.ContentType, g.Size, g.SHA256 = "application/x-bzip2", 7, fmt.Sprintf("%064x", "other")
	g.MD5, g.ETag, g.Metadata = padHash("md5", 32), padHash("etag", 32)+"-2", map[string]string{"new": "1"}
	g.BlobKey, g.CreatedAt = "file/other", o.CreatedAt.Add(time.Hour)
	putObject(t, s, g)
	mustObject(t, "get replaced object", getObject(t, s, c.ID, o.Key), g)
	g.Metadata = nil
	putObject(t, s, g)
	mustObject(t, "get object whose metadata was replaced by none", getObject(t, s, c.ID, o.Key), g)
}

func testObjectMetadata(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	cases := []map[string]string{
		nil,
		{},
		{"a": ""},
		{"author": "Jane Doe", "x-tool": "rclone/1.65", "empty": "", "ünï": "cödé 日本",
			"quotes": `"q" 'q' \ / <&>`, "new": "line\nbreak\ttab", "comma,semi;": "=,;"},
	}
	for i, m := range cases {
		o := newObject(c.ID, fmt.Sprint("meta/", i))
		o.Metadata = m
		putObject(t, s, o)
		got := getObject(t, s, c.ID, o.Key)
		mustObject(t, fmt.Sprint("get object with metadata ", i), got, o)
	}
}

func testObjectCreatedAtAssigned(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	o := newObject(c.ID, "log/zero.drv")
	o.CreatedAt = time.Time{}
	before := time.Now()
	putObject(t, s, o)
	got := getObject(t, s, c.ID, o.Key)
	mustRecent(t, "put object with zero CreatedAt", got.CreatedAt, before)
	o.CreatedAt = got.CreatedAt
	mustObject(t, "get object", got, o)
}

func testObjectGetMissing(t *testing.T, s store.MetaStore) {
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	_, err := s.GetObject(t.Context(), a.ID, "log/missing")
	mustNotFound(t, "get missing object", err)
	oa := newObject(a.ID, "log/shared")
	putObject(t, s, oa)
	_, err = s.GetObject(t.Context(), b.ID, oa.Key)
	mustNotFound(t, "get object of another cache", err)
	_, err = s.GetObject(t.Context(), a.ID+1000, oa.Key)
	mustNotFound(t, "get object in an unknown cache", err)
	_, err = s.GetObject(t.Context(), a.ID, "log/share")
	mustNotFound(t, "get object by a prefix of a key", err)
	ob := newObject(b.ID, oa.Key)
	ob.Size = 1
	putObject(t, s, ob)
	mustObject(t, "get object in a", getObject(t, s, a.ID, oa.Key), oa)
	mustObject(t, "get object in b", getObject(t, s, b.ID, oa.Key), ob)
}

func testObjectUnknownCache(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "gone")
	mustOK(t, "delete cache", s.DeleteCache(t.Context(), "gone"))
	for _, id := range []int64{c.ID, c.ID + 1000, 0} {
		err := s.PutObject(t.Context(), newObject(id, "log/x"))
		mustNotFound(t, fmt.Sprintf("put object in cache %d", id), err)
		_, err = s.GetObject(t.Context(), id, "log/x")
		mustNotFound(t, "get object refused for an unknown cache", err)
	}
}

func testObjectDelete(t *testing.T, s store.MetaStore) {
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	gone, kept := newObject(a.ID, "log/gone"), newObject(a.ID, "log/kept")
	other := newObject(b.ID, gone.Key)
	for _, o := range []store.Object{gone, kept, other} {
		putObject(t, s, o)
	}
	mustOK(t, "delete object", s.DeleteObject(t.Context(), a.ID, gone.Key))
	_, err := s.GetObject(t.Context(), a.ID, gone.Key)
	mustNotFound(t, "get deleted object", err)
	mustNotFound(t, "delete object twice", s.DeleteObject(t.Context(), a.ID, gone.Key))
	mustNotFound(t, "delete missing object", s.DeleteObject(t.Context(), a.ID, "log/missing"))
	mustNotFound(t, "delete object in an unknown cache", s.DeleteObject(t.Context(), a.ID+1000, kept.Key))
	mustObject(t, "get kept object", getObject(t, s, a.ID, kept.Key), kept)
	mustObject(t, "get object of the same key in another cache", getObject(t, s, b.ID, other.Key), other)
	mustKeys(t, "keys after deleting an object", s, a.ID, kept.Key)
	putObject(t, s, gone)
	mustObject(t, "get object put again", getObject(t, s, a.ID, gone.Key), gone)
}

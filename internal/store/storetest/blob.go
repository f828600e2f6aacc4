package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// TestBlobStore runs the store.BlobStore conformance suite. newStore is
// called once for each subtest and must return an empty store, independent
// of any other it returned; it arranges its own cleanup with t.Cleanup.
func TestBlobStore(t *testing.T, newStore func(t *testing.T) store.BlobStore) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.BlobStore)
	}{
		{"PutGetStat", testBlobPutGetStat},
		{"PutEmpty", testBlobPutEmpty},
		{"PutUnknownSize", testBlobPutUnknownSize},
		{"PutReplaces", testBlobPutReplaces},
		{"GetRange", testBlobGetRange},
		{"PutReaderError", testBlobPutReaderError},
		{"PutTooFewBytes", testBlobPutTooFew},
		{"PutTooManyBytes", testBlobPutTooMany},
		{"PutCancelledBefore", testBlobPutCancelledBefore},
		{"PutCancelledDuring", testBlobPutCancelledDuring},
		{"Missing", testBlobMissing},
		{"Delete", testBlobDelete},
		{"List", testBlobList},
		{"ListStopsOnError", testBlobListStops},
		{"ListDuringChanges", testBlobListDuringChanges},
		{"ValidKeys", testBlobValidKeys},
		{"InvalidKeys", testBlobInvalidKeys},
		{"ConcurrentPutSameKey", testBlobConcurrentPut},
		{"ConcurrentReplaceAndGet", testBlobConcurrentReplace},
		{"Large", testBlobLarge},
		{"Compose", testBlobCompose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

// put stores data under key with its exact size and fails t on error.
func put(t *testing.T, s store.BlobStore, key string, data []byte) {
	t.Helper()
	err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)))
	mustOK(t, "put "+key, err)
}

// get reads the range [offset, offset+length) of key and fails t on error.
func get(t *testing.T, s store.BlobStore, key string, offset, length int64) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key, offset, length)
	mustOK(t, "get "+key, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	mustOK(t, "read "+key, err)
	mustOK(t, "close "+key, rc.Close())
	return b
}

// mustContent fails t unless key holds exactly want, by Get and by Stat.
func mustContent(t *testing.T, s store.BlobStore, key string, want []byte) {
	t.Helper()
	if got := get(t, s, key, 0, -1); !bytes.Equal(got, want) {
		t.Fatalf("content of %s: got %d bytes %.40q, want %d bytes %.40q",
			key, len(got), got, len(want), want)
	}
	info, err := s.Stat(t.Context(), key)
	mustOK(t, "stat "+key, err)
	if info.Size != int64(len(want)) {
		t.Fatalf("stat %s: size %d, want %d", key, info.Size, len(want))
	}
}

// mustAbsent fails t unless Stat and Get of key report store.ErrNotFound.
func mustAbsent(t *testing.T, s store.BlobStore, key string) {
	t.Helper()
	_, err := s.Stat(t.Context(), key)
	mustNotFound(t, "stat "+key, err)
	rc, err := s.Get(t.Context(), key, 0, -1)
	if err == nil {
		rc.Close()
	}
	mustNotFound(t, "get "+key, err)
}

// randomBytes returns n bytes of a fixed pseudo-random sequence.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testBlobPutGetStat(t *testing.T, s store.BlobStore) {
	const key = "nar/0a1b2c.nar.xz"
	data := []byte("the bytes of a nar")
	before := time.Now()
	put(t, s, key, data)
	mustContent(t, s, key, data)
	info, err := s.Stat(t.Context(), key)
	mustOK(t, "stat", err)
	if info.Key != key {
		t.Errorf("stat: key %q, want %q", info.Key, key)
	}
	if info.ModTime.IsZero() {
		t.Errorf("stat: zero modification time")
	}
	if lo := before.Add(-10 * time.Minute); info.ModTime.Before(lo) ||
		info.ModTime.After(time.Now().Add(10*time.Minute)) {
		t.Errorf("stat: modification time %v is not close to now", info.ModTime)
	}
}

func testBlobPutEmpty(t *testing.T, s store.BlobStore) {
	put(t, s, "empty", nil)
	mustContent(t, s, "empty", nil)
	if got := get(t, s, "empty", 0, 10); len(got) != 0 {
		t.Errorf("get range of empty blob: %d bytes", len(got))
	}
}

func testBlobPutUnknownSize(t *testing.T, s store.BlobStore) {
	data := randomBytes(300<<10, 1)
	// A plain io.Reader hides the length that bytes.Reader would offer.
	r := struct{ io.Reader }{bytes.NewReader(data)}
	mustOK(t, "put with size -1", s.Put(t.Context(), "unknown", r, -1))
	mustContent(t, s, "unknown", data)
}

func testBlobPutReplaces(t *testing.T, s store.BlobStore) {
	put(t, s, "k", []byte("first version, rather long"))
	put(t, s, "k", []byte("second"))
	mustContent(t, s, "k", []byte("second"))
}

func testBlobGetRange(t *testing.T, s store.BlobStore) {
	data := make([]byte, 100)
	for i := range data {
		data[i] = byte(i)
	}
	put(t, s, "r", data)
	cases := []struct {
		offset, length int64
		want           []byte
	}{
		{0, -1, data},
		{0, 100, data},
		{0, 1000, data},
		{10, 20, data[10:30]},
		{90, -1, data[90:]},
		{90, 50, data[90:]},
		{99, 1, data[99:]},
		{0, 0, nil},
		{50, 0, nil},
		{100, -1, nil},
		{100, 10, nil},
		{1000, -1, nil},
		{1000, 5, nil},
	}
	for _, c := range cases {
		got := get(t, s, "r", c.offset, c.length)
		if !bytes.Equal(got, c.want) {
			t.Errorf("get offset %d length %d: got %d bytes, want %d",
				c.offset, c.length, len(got), len(c.want))
		}
	}
}

// failingReader yields n bytes of x and then fails with errBoom.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errBoom
	}
	p = p[:min(len(p), r.n)]
	for i := range p {
		p[i] = 'x'
	}
	r.n -= len(p)
	return len(p), nil
}

func testBlobPutReaderError(t *testing.T, s store.BlobStore) {
	old := []byte("old content")
	put(t, s, "k", old)
	for _, size := range []int64{3 << 20, -1} {
		err := s.Put(t.Context(), "k", &failingReader{n: 1 << 20}, size)
		if err == nil {
			t.Fatalf("put over k with size %d from a failing reader: no error", size)
		}
		mustContent(t, s, "k", old)
		err = s.Put(t.Context(), "fresh", &failingReader{n: 1 << 20}, size)
		if err == nil {
			t.Fatalf("put fresh with size %d from a failing reader: no error", size)
		}
		mustAbsent(t, s, "fresh")
	}
}

func testBlobPutTooFew(t *testing.T, s store.BlobStore) {
	old := []byte("old content")
	put(t, s, "k", old)
	for _, n := range []int{0, 5, 1<<20 + 7} {
		data := randomBytes(n, 2)
		size := int64(n + 1)
		if err := s.Put(t.Context(), "k", bytes.NewReader(data), size); err == nil {
			t.Fatalf("put over k of %d bytes with size %d: no error", n, size)
		}
		mustContent(t, s, "k", old)
		if err := s.Put(t.Context(), "fresh", bytes.NewReader(data), size); err == nil {
			t.Fatalf("put fresh of %d bytes with size %d: no error", n, size)
		}
		mustAbsent(t, s, "fresh")
	}
}

func testBlobPutTooMany(t *testing.T, s store.BlobStore) {
	old := []byte("old content")
	put(t, s, "k", old)
	for _, n := range []int{1, 6, 2 << 20} {
		data := randomBytes(n, 3)
		size := int64(n - 1)
		if err := s.Put(t.Context(), "k", bytes.NewReader(data), size); err == nil {
			t.Fatalf("put over k of %d bytes with size %d: no error", n, size)
		}
		mustContent(t, s, "k", old)
		if err := s.Put(t.Context(), "fresh", bytes.NewReader(data), size); err == nil {
			t.Fatalf("put fresh of %d bytes with size %d: no error", n, size)
		}
		mustAbsent(t, s, "fresh")
	}
}

func testBlobPutCancelledBefore(t *testing.T, s store.BlobStore) {
	old := []byte("old content")
	put(t, s, "k", old)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	data := []byte("new content")
	if err := s.Put(ctx, "k", bytes.NewReader(data), int64(len(data))); err == nil {
		t.Fatalf("put over k with a cancelled context: no error")
	}
	mustContent(t, s, "k", old)
	if err := s.Put(ctx, "fresh", bytes.NewReader(data), int64(len(data))); err == nil {
		t.Fatalf("put fresh with a cancelled context: no error")
	}
	mustAbsent(t, s, "fresh")
}

// cancellingReader yields n bytes of y, cancelling its context on the first
// read.
type cancellingReader struct {
	n      int
	cancel context.CancelFunc
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	r.cancel()
	if r.n == 0 {
		return 0, io.EOF
	}
	p = p[:min(len(p), r.n, 64<<10)]
	for i := range p {
		p[i] = 'y'
	}
	r.n -= len(p)
	return len(p), nil
}

func testBlobPutCancelledDuring(t *testing.T, s store.BlobStore) {
	old := []byte("old content")
	put(t, s, "k", old)
	const n = 4 << 20
	for _, key := range []string{"k", "fresh"} {
		for _, size := range []int64{n, -1} {
			ctx, cancel := context.WithCancel(t.Context())
			err := s.Put(ctx, key, &cancellingReader{n: n, cancel: cancel}, size)
			cancel()
			if err == nil {
				t.Fatalf("put %s with size %d cancelled during the copy: no error", key, size)
			}
		}
	}
	mustContent(t, s, "k", old)
	mustAbsent(t, s, "fresh")
}

func testBlobMissing(t *testing.T, s store.BlobStore) {
	mustAbsent(t, s, "nar/missing.nar")
	put(t, s, "file", []byte("f"))
	put(t, s, "dir/file", []byte("g"))
	// Neither a key below a blob nor a key that is only a prefix of others
	// names a blob.
	mustAbsent(t, s, "file/below")
	mustAbsent(t, s, "dir")
	mustAbsent(t, s, "di")
}

func testBlobDelete(t *testing.T, s store.BlobStore) {
	ctx := t.Context()
	put(t, s, "d/a", []byte("a"))
	put(t, s, "d/b", []byte("b"))
	mustOK(t, "delete d/a", s.Delete(ctx, "d/a"))
	mustAbsent(t, s, "d/a")
	mustContent(t, s, "d/b", []byte("b"))
	mustOK(t, "delete d/a again", s.Delete(ctx, "d/a"))
	mustOK(t, "delete never stored", s.Delete(ctx, "never/stored"))
	mustOK(t, "delete below a blob", s.Delete(ctx, "d/b/c"))
	mustContent(t, s, "d/b", []byte("b"))
	put(t, s, "d/a", []byte("again"))
	mustContent(t, s, "d/a", []byte("again"))
}

// listKeys returns the sorted keys List reports for prefix, checking each
// reported size against sizes.
func listKeys(t *testing.T, s store.BlobStore, prefix string, sizes map[string]int) []string {
	t.Helper()
	var keys []string
	err := s.List(t.Context(), prefix, func(info store.BlobInfo) error {
		keys = append(keys, info.Key)
		if want, ok := sizes[info.Key]; ok && info.Size != int64(want) {
			t.Errorf("list %q: %s has size %d, want %d", prefix, info.Key, info.Size, want)
		}
		if info.ModTime.IsZero() {
			t.Errorf("list %q: %s has a zero modification time", prefix, info.Key)
		}
		return nil
	})
	mustOK(t, fmt.Sprintf("list %q", prefix), err)
	slices.Sort(keys)
	return keys
}

func testBlobList(t *testing.T, s store.BlobStore) {
	if keys := listKeys(t, s, "", nil); len(keys) != 0 {
		t.Fatalf("list of an empty store: %q", keys)
	}
	sizes := map[string]int{}
	for i, k := range []string{"nar/a", "nar/ab", "nar/b", "nar/sub/c",
		"narx/d", "log/e", "tmp/f", "top"} {
		sizes[k] = i + 1
		put(t, s, k, bytes.Repeat([]byte("z"), i+1))
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"log/e", "nar/a", "nar/ab", "nar/b", "nar/sub/c", "narx/d", "tmp/f", "top"}},
		{"nar/", []string{"nar/a", "nar/ab", "nar/b", "nar/sub/c"}},
		{"nar", []string{"nar/a", "nar/ab", "nar/b", "nar/sub/c", "narx/d"}},
		{"nar/a", []string{"nar/a", "nar/ab"}},
		{"nar/ab", []string{"nar/ab"}},
		{"nar/s", []string{"nar/sub/c"}},
		{"nar/sub/", []string{"nar/sub/c"}},
		{"t", []string{"tmp/f", "top"}},
		{"tmp/", []string{"tmp/f"}},
		{"nothing/", nil},
		{"nar/sub/c/", nil},
		{"zzz", nil},
	}
	for _, c := range cases {
		if got := listKeys(t, s, c.prefix, sizes); !slices.Equal(got, c.want) {
			t.Errorf("list %q: got %q, want %q", c.prefix, got, c.want)
		}
	}
}

func testBlobListStops(t *testing.T, s store.BlobStore) {
	for _, k := range []string{"a/1", "a/2", "b/3", "c"} {
		put(t, s, k, []byte(k))
	}
	calls := 0
	err := s.List(t.Context(), "", func(store.BlobInfo) error {
		calls++
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("list with a failing fn: got error %v, want %v", err, errBoom)
	}
	if calls != 1 {
		t.Fatalf("list with a failing fn: fn called %d times, want 1", calls)
	}
}

// testBlobListDuringChanges checks that List neither fails nor misses a
// blob that stays while others under the prefix come and go.
func testBlobListDuringChanges(t *testing.T, s store.BlobStore) {
	var stable []string
	for i := range 20 {
		k := fmt.Sprintf("c/stable/%02d", i)
		stable = append(stable, k)
		put(t, s, k, []byte(k))
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			k := fmt.Sprintf("c/churn/%d/%d", i%5, i%7)
			if err := s.Put(t.Context(), k, strings.NewReader(k), int64(len(k))); err != nil {
				t.Errorf("put during list: %v", err)
				return
			}
			if err := s.Delete(t.Context(), fmt.Sprintf("c/churn/%d/%d", (i+2)%5, (i+3)%7)); err != nil {
				t.Errorf("delete during list: %v", err)
				return
			}
		}
	})
	for range 20 {
		keys := listKeys(t, s, "c/", nil)
		for _, k := range stable {
			if !slices.Contains(keys, k) {
				t.Errorf("list during changes: %s missing", k)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
}

func testBlobValidKeys(t *testing.T, s store.BlobStore) {
	var long strings.Builder
	for long.Len() < 900 {
		long.WriteString(strings.Repeat("x", 99) + "/")
	}
	long.WriteString("end")
	keys := []string{"a", "0", "a.b", "a_b", "a-b", "...", ".a", "a.",
		"-", "_", "a/b/c/d/e", "0123456789abcdefghijklmnopqrstuvwxyz._-",
		long.String()}
	for i, k := range keys {
		put(t, s, k, []byte(k))
		mustContent(t, s, k, []byte(k))
		if got := listKeys(t, s, k, nil); !slices.Contains(got, k) {
			t.Errorf("list %.40q: %.40q missing", k, k)
		}
		if i%2 == 0 {
			mustOK(t, "delete "+k, s.Delete(t.Context(), k))
			mustAbsent(t, s, k)
		}
	}
}

// invalidKeys are keys every BlobStore must reject.
var invalidKeys = []string{
	"", "/", "../x", "..", ".", "a/../b", "a/./b", "./a", "a/..", "/abs",
	"a//b", "a/", "A", "nar/ABC", "a b", "a\x00b", "a\\b", "..\\x",
	"a/b/", "~", "a:b", "é", "a\nb",
}

func testBlobInvalidKeys(t *testing.T, s store.BlobStore) {
	ctx := t.Context()
	for _, k := range invalidKeys {
		if err := s.Put(ctx, k, strings.NewReader("x"), 1); err == nil {
			t.Errorf("put %q: no error", k)
		}
		if _, err := s.Stat(ctx, k); err == nil {
			t.Errorf("stat %q: no error", k)
		}
		if rc, err := s.Get(ctx, k, 0, -1); err == nil {
			rc.Close()
			t.Errorf("get %q: no error", k)
		}
		if err := s.Delete(ctx, k); err == nil {
			t.Errorf("delete %q: no error", k)
		}
	}
	if keys := listKeys(t, s, "", nil); len(keys) != 0 {
		t.Fatalf("invalid keys left blobs behind: %q", keys)
	}
}

func testBlobConcurrentPut(t *testing.T, s store.BlobStore) {
	data := randomBytes(256<<10, 4)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			errs[i] = s.Put(t.Context(), "same/key", bytes.NewReader(data), int64(len(data)))
		})
	}
	wg.Wait()
	for i, err := range errs {
		mustOK(t, fmt.Sprintf("concurrent put %d", i), err)
	}
	mustContent(t, s, "same/key", data)
}

// testBlobConcurrentReplace checks that Put replaces atomically: a reader
// sees the old or the new content, never a mix or a gap.
func testBlobConcurrentReplace(t *testing.T, s store.BlobStore) {
	a := bytes.Repeat([]byte("a"), 64<<10)
	b := bytes.Repeat([]byte("b"), 96<<10)
	put(t, s, "k", a)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				rc, err := s.Get(t.Context(), "k", 0, -1)
				if err != nil {
					t.Errorf("get during replace: %v", err)
					return
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Errorf("read during replace: %v", err)
					return
				}
				if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
					t.Errorf("read during replace: %d bytes of neither version", len(got))
					return
				}
			}
		})
	}
	for i := range 20 {
		put(t, s, "k", [][]byte{b, a}[i%2])
	}
	stop.Store(true)
	wg.Wait()
}

func testBlobLarge(t *testing.T, s store.BlobStore) {
	const n = 10 << 20
	data := randomBytes(n, 5)
	put(t, s, "large/blob", data)
	mustContent(t, s, "large/blob", data)
	if got := get(t, s, "large/blob", n-(1<<20), -1); !bytes.Equal(got, data[n-(1<<20):]) {
		t.Errorf("get the last MiB: wrong content")
	}
	if got := get(t, s, "large/blob", 3<<20, 5<<20); !bytes.Equal(got, data[3<<20:8<<20]) {
		t.Errorf("get 5 MiB from the middle: wrong content")
	}
}

// testBlobCompose checks Compose on stores that offer it: the parts
// concatenated, in order, under a new key, the parts left as they were; a
// wrong size or a missing part leaves nothing under the key.
func testBlobCompose(t *testing.T, s store.BlobStore) {
	c, ok := s.(store.Composer)
	if !ok {
		t.Skip("not a Composer")
	}
	ctx := t.Context()
	first, second := randomBytes(5<<20+1, 1), randomBytes(1000, 2) // S3: parts but the last are 5 MiB or more
	put(t, s, "part/1", first)
	put(t, s, "part/2", second)
	size := int64(len(first) + len(second))
	err := c.Compose(ctx, "whole", []string{"part/1", "part/2"}, size)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip("the wrapped store is not a Composer")
	}
	mustOK(t, "compose", err)
	mustContent(t, s, "whole", append(append([]byte{}, first...), second...))
	mustContent(t, s, "part/1", first)
	if err := c.Compose(ctx, "wrong", []string{"part/1", "part/2"}, size+1); err == nil {
		t.Fatalf("compose with a wrong size succeeded")
	}
	mustAbsent(t, s, "wrong")
	err = c.Compose(ctx, "missing", []string{"part/1", "part/none"}, size)
	mustNotFound(t, "compose with a missing part", err)
	mustAbsent(t, s, "missing")
}

package s3blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/storetest"
	"github.com/larder-cache/larder/internal/testserver"
)

// errBoom is the error the tests' failing readers return.
var errBoom = errors.New("boom")

// openTest opens a store on a new bucket of the shared MinIO server, with
// objects under prefix.
func openTest(t testing.TB, prefix string) (*Store, testserver.S3Server) {
	t.Helper()
	srv := testserver.MinIO(t)
	return openOn(t, srv, prefix), srv
}

// openOn opens a store on the bucket of srv, with objects under prefix.
func openOn(t testing.TB, srv testserver.S3Server, prefix string) *Store {
	t.Helper()
	s, err := Open(context.Background(), srv.URL(prefix))
	if err != nil {
		t.Fatalf("open %s: %v", srv.URL(prefix).Redacted(), err)
	}
	return s
}

// objectNames returns the names of all objects in the bucket of srv.
func objectNames(t testing.TB, srv testserver.S3Server) []string {
	t.Helper()
	var names []string
	for oi := range srv.Client(t).ListObjectsIter(context.Background(), srv.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if oi.Err != nil {
			t.Fatalf("list bucket %s: %v", srv.Bucket, oi.Err)
		}
		names = append(names, oi.Key)
	}
	return names
}

// mustClean fails t if the bucket of srv holds an upload marker, or an
// object outside the prefix of s.
func mustClean(t testing.TB, srv testserver.S3Server, s *Store) {
	t.Helper()
	for _, name := range objectNames(t, srv) {
		if !strings.HasPrefix(name, s.prefix) {
			t.Errorf("object %s is outside the prefix %q", name, s.prefix)
		}
		if strings.Contains(name, markerDir) {
			t.Errorf("upload marker %s left behind", name)
		}
	}
}

// mustNoUploads fails t if an upload of the blob under key is incomplete.
func mustNoUploads(t testing.TB, srv testserver.S3Server, s *Store, key string) {
	t.Helper()
	res, err := s.core.ListMultipartUploads(context.Background(), srv.Bucket, s.prefix+key, "", "", "", 1000)
	if err != nil {
		t.Fatalf("list uploads of %s: %v", key, err)
	}
	for _, up := range res.Uploads {
		if up.Key == s.prefix+key {
			t.Errorf("incomplete upload %s of %s left behind", up.UploadID, key)
		}
	}
}

func TestConformance(t *testing.T) {
	storetest.TestBlobStore(t, func(t *testing.T) store.BlobStore {
		s, srv := openTest(t, "")
		t.Cleanup(func() { mustClean(t, srv, s) })
		return s
	})
}

func TestConformanceUnderPrefix(t *testing.T) {
	storetest.TestBlobStore(t, func(t *testing.T) store.BlobStore {
		s, srv := openTest(t, "larder/blobs")
		t.Cleanup(func() { mustClean(t, srv, s) })
		return s
	})
}

// TestConformanceInParts runs the suite with every Put read in parts of
// the least size S3 takes, so that the suite's blobs go through the
// buffered single PUT, and its largest through a multipart upload.
func TestConformanceInParts(t *testing.T) {
	storetest.TestBlobStore(t, func(t *testing.T) store.BlobStore {
		s, srv := openTest(t, "p")
		s.singleMax, s.partSize = -1, minPartSize
		t.Cleanup(func() { mustClean(t, srv, s) })
		return s
	})
}

func TestOpenMissingBucket(t *testing.T) {
	srv := testserver.MinIO(t)
	srv.Bucket = "larder-no-such-bucket"
	_, err := Open(t.Context(), srv.URL(""))
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("open a missing bucket: got %v, want an error saying it does not exist", err)
	}
}

func TestOpenWrongKeys(t *testing.T) {
	srv := testserver.MinIO(t)
	srv.SecretKey = "not-the-secret"
	_, err := Open(t.Context(), srv.URL(""))
	if err == nil || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("open with a wrong secret: got %v, want a lasting error", err)
	}
}

func TestKeysStayUnderPrefix(t *testing.T) {
	s, srv := openTest(t, "pre/fix")
	ctx := t.Context()
	for _, k := range []string{"a", "nar/b", "x/y/z"} {
		if err := s.Put(ctx, k, strings.NewReader(k), int64(len(k))); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"../x", "../../x", "a/../../x", "/abs", "..", "a//b", "A", "uploads~/x", ""} {
		err := s.Put(ctx, k, strings.NewReader("x"), 1)
		if !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("put %q: got %v, want ErrInvalidKey", k, err)
		}
	}
	if err := s.List(ctx, "../", func(store.BlobInfo) error { return nil }); !errors.Is(err, store.ErrInvalidKey) {
		t.Errorf("list ../: got %v, want ErrInvalidKey", err)
	}
	for _, name := range objectNames(t, srv) {
		if !strings.HasPrefix(name, "pre/fix/") {
			t.Errorf("object %s is outside the prefix", name)
		}
	}
	// A key that would make an object name longer than S3 allows.
	long := strings.Repeat("k", 203) + "/" + strings.Repeat("l", 203) + "/" +
		strings.Repeat("m", 203) + "/" + strings.Repeat("n", 203) + "/" + strings.Repeat("o", 203)
	if err := s.Put(ctx, long, strings.NewReader("x"), 1); !errors.Is(err, store.ErrInvalidKey) {
		t.Errorf("put a key of %d bytes under a prefix: got %v, want ErrInvalidKey", len(long), err)
	}
}

func TestListSkipsForeignObjects(t *testing.T) {
	s, srv := openTest(t, "pre")
	ctx := t.Context()
	if err := s.Put(ctx, "nar/a", strings.NewReader("a"), 1); err != nil {
		t.Fatal(err)
	}
	c := srv.Client(t)
	for _, name := range []string{"outside", "prefix/x", "pre/nar/UPPER", "pre/nar/with space", "pre/uploads~/m", "pre/dir/"} {
		if _, err := c.PutObject(ctx, srv.Bucket, name, bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
	}
	var keys []string
	err := s.List(ctx, "", func(b store.BlobInfo) error {
		keys = append(keys, b.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "nar/a" {
		t.Fatalf("list: %q, want [nar/a]", keys)
	}
	if _, err := s.Stat(ctx, "outside"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("stat of an object outside the prefix: %v, want ErrNotFound", err)
	}
}

func TestGetReaderIsStreamed(t *testing.T) {
	s, _ := openTest(t, "")
	data := bytes.Repeat([]byte("0123456789"), 1000)
	if err := s.Put(t.Context(), "k", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(t.Context(), "k", 5, 20)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || string(got) != "56789012345678901234" {
		t.Fatalf("get range: %q, %v", got, err)
	}
}

func TestRangeHeader(t *testing.T) {
	cases := []struct {
		offset, length int64
		want           string
	}{
		{0, -1, ""},
		{0, math.MaxInt64, "bytes=0-9223372036854775806"},
		{0, 1 << 62, "bytes=0-4611686018427387903"},
		{5, -1, "bytes=5-"},
		{0, 1, "bytes=0-0"},
		{10, 20, "bytes=10-29"},
		{1 << 40, math.MaxInt64 - 1<<39, "bytes=1099511627776-"},
	}
	for _, c := range cases {
		if got := rangeHeader(c.offset, c.length); got != c.want {
			t.Errorf("rangeHeader(%d, %d) = %q, want %q", c.offset, c.length, got, c.want)
		}
	}
}

// TestCancelledIsNotUnavailable checks that the end of the caller's
// context is reported as such, not as S3 being unavailable.
func TestCancelledIsNotUnavailable(t *testing.T) {
	s, _ := openTest(t, "")
	const n = 32 << 20
	if err := s.Put(t.Context(), "big", newGen(5, n), n); err != nil {
		t.Fatal(err)
	}
	mustCancelled := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: got %v, want context.Canceled only", what, err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	rc, err := s.Get(ctx, "big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, 1<<20); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = io.Copy(io.Discard, rc)
	mustCancelled("read after cancel", err)
	_, err = s.Stat(ctx, "big")
	mustCancelled("stat", err)
	mustCancelled("put", s.Put(ctx, "k", strings.NewReader("x"), 1))
	mustCancelled("list", s.List(ctx, "", func(store.BlobInfo) error { return nil }))
	_, err = s.Reclaim(ctx, 0)
	mustCancelled("reclaim", err)
}

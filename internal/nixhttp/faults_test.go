package nixhttp_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/nixhttp"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/faulty"
	"github.com/larder-cache/larder/internal/store/local"
	"github.com/larder-cache/larder/internal/store/retry"
	"github.com/larder-cache/larder/internal/store/sqlite"
)

// faultEnv is larder on real stores whose blob store can be told to fail.
type faultEnv struct {
	*env
	blobs *faulty.Blobs
}

func newFaultEnv(t *testing.T) faultEnv {
	t.Helper()
	dir := t.TempDir()
	meta, err := sqlite.Open(t.Context(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	loc, err := local.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	fb := faulty.New(loc)
	svc, err := service.New(t.Context(), service.Options{
		Meta: meta, Blobs: retry.Blobs(fb, retry.Policy{Attempts: 2, Base: time.Millisecond, Max: time.Millisecond}),
		Limits: service.Limits{MaxNarInfoSize: 1 << 20, MaxUploadSize: 1 << 30, MaxNarSize: 1 << 30, MaxFileSize: 1 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, admin, err := svc.Bootstrap(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(nixhttp.New(svc, nixhttp.Options{}))
	t.Cleanup(srv.Close)
	return faultEnv{env: &env{t: t, meta: meta, blobs: loc, blobDir: filepath.Join(dir, "blobs"),
		srv: srv, admin: admin, logs: &logBuffer{}}, blobs: fb}
}

var errDown = fmt.Errorf("s3: connection refused: %w", store.ErrUnavailable)

// TestBlobStoreOutage makes the blob store fail: reads and writes answer
// 503 with Retry-After (which Nix retries), and a read that fails only
// once is retried within larder and succeeds.
func TestBlobStoreOutage(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t)
	p := newPath(t, "outage", bytes.Repeat([]byte("outage\n"), 100), "zstd")
	e.push("main", p)

	e.blobs.Fail(faulty.Get, 1, errDown) // one failure: retried inside larder
	if _, body := e.expect(200, "GET", "/main/"+p.URL(), "", nil); body != string(p.File) {
		t.Fatal("NAR read after one transient failure differs")
	}
	e.blobs.Fail(faulty.Get, 5, errDown)
	resp, msg := e.expect(503, "GET", "/main/"+p.URL(), "", nil)
	if resp.Header.Get("Retry-After") == "" || msg == "" {
		t.Errorf("503 without Retry-After or message: %v %q", resp.Header, msg)
	}
	e.blobs.Reset()

	q := newPath(t, "outage-put", []byte("put while down"), "zstd")
	e.blobs.Fail(faulty.Put, 1, errDown)
	before := e.snapshot()
	resp, _ = e.expect(503, "PUT", "/main/"+q.URL(), e.admin, q.File)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("a refused upload has no Retry-After")
	}
	e.mustUnchanged(before)
	e.push("main", q) // and the retry, once the store is back, succeeds
}

// TestBrokenReadMidNAR cuts a NAR read short inside the blob store: the
// client gets fewer bytes than the Content-Length announced (which Nix
// notices and retries), never a complete-looking short file.
func TestBrokenReadMidNAR(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t)
	p := newPath(t, "short", bytes.Repeat([]byte("0123456789"), 10000), "none")
	e.push("main", p)
	e.blobs.BreakReads(1, 1000, io.ErrUnexpectedEOF)
	resp, err := http.Get(e.srv.URL + "/main/" + p.URL())
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || int64(len(got)) >= resp.ContentLength {
		t.Fatalf("a broken read gave %d of %d bytes without an error (%v)", len(got), resp.ContentLength, err)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Logf("client error: %v", err)
	}
}

// TestSlowBlobStore delays blob reads beyond the client's patience: the
// client gives up and nothing breaks for the next request.
func TestSlowBlobStore(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t)
	p := newPath(t, "slow", []byte("slow"), "none")
	e.push("main", p)
	e.blobs.Delay(faulty.Get, 1, 2*time.Second)
	c := &http.Client{Timeout: 200 * time.Millisecond}
	if _, err := c.Get(e.srv.URL + "/main/" + p.URL()); err == nil {
		t.Fatal("the slow read did not time out on the client")
	}
	if _, body := e.expect(200, "GET", "/main/"+p.URL(), "", nil); body != string(p.File) {
		t.Fatal("the read after a timed-out one differs")
	}
}

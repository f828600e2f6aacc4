package s3blob

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/testserver"
)

// mustUnavailable fails t unless err wraps store.ErrUnavailable and not
// store.ErrNotFound.
func mustUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s with S3 down: got %v, want an error wrapping only store.ErrUnavailable", what, err)
	}
}

// stopServer stops the server of srv and fails t if it cannot.
func stopServer(t *testing.T, srv testserver.S3Server) {
	t.Helper()
	if err := srv.Server.Stop(); err != nil {
		t.Fatal(err)
	}
}

// startServer starts the server of srv again and fails t if it cannot.
func startServer(t *testing.T, srv testserver.S3Server) {
	t.Helper()
	if err := srv.Server.Start(); err != nil {
		t.Fatal(err)
	}
}

func TestUnavailableWhileStopped(t *testing.T) {
	srv := testserver.PrivateMinIO(t)
	s := openOn(t, srv, "f")
	ctx := t.Context()
	data := []byte("kept while down")
	if err := s.Put(ctx, "k", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	stopServer(t, srv)
	start := time.Now()
	mustUnavailable(t, "put", s.Put(ctx, "n", strings.NewReader("new"), 3))
	mustUnavailable(t, "put of unknown size", s.Put(ctx, "n", strings.NewReader("new"), -1))
	mustUnavailable(t, "put in parts", s.Put(ctx, "n", newGen(2, 40<<20), -1))
	_, err := s.Get(ctx, "k", 0, -1)
	mustUnavailable(t, "get", err)
	_, err = s.Get(ctx, "k", 0, 0)
	mustUnavailable(t, "get of nothing", err)
	_, err = s.Stat(ctx, "k")
	mustUnavailable(t, "stat", err)
	mustUnavailable(t, "delete", s.Delete(ctx, "k"))
	mustUnavailable(t, "list", s.List(ctx, "", func(store.BlobInfo) error { return nil }))
	_, err = s.Reclaim(ctx, 0)
	mustUnavailable(t, "reclaim", err)
	_, err = Open(ctx, srv.URL("f"))
	mustUnavailable(t, "open", err)
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("failing with S3 down took %v", d)
	}
	startServer(t, srv)
	if got := readRange(t, s, "k", 0, -1); !bytes.Equal(got, data) {
		t.Fatalf("after restart: k holds %q, want %q", got, data)
	}
	if err := s.Put(ctx, "n", strings.NewReader("new"), 3); err != nil {
		t.Fatalf("put after restart: %v", err)
	}
	if _, err := s.Stat(ctx, "n"); err != nil {
		t.Fatalf("stat after restart: %v", err)
	}
}

func TestGetBreaksWhenStopped(t *testing.T) {
	srv := testserver.PrivateMinIO(t)
	s := openOn(t, srv, "")
	ctx := t.Context()
	const n = 64 << 20
	if err := s.Put(ctx, "big", newGen(3, n), n); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, "big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, 1<<20); err != nil {
		t.Fatal(err)
	}
	stopServer(t, srv)
	_, err = io.Copy(io.Discard, rc)
	mustUnavailable(t, "read of a blob", err)
	startServer(t, srv)
}

// TestPutInterruptedThenReclaimed stops S3 in the middle of a multipart
// upload: the Put fails and cannot abort its upload, and Reclaim removes
// the upload once S3 is back.
func TestPutInterruptedThenReclaimed(t *testing.T) {
	srv := testserver.PrivateMinIO(t)
	s := openOn(t, srv, "i")
	s.singleMax, s.partSize = -1, minPartSize
	ctx := t.Context()
	g := newGen(4, 40<<20)
	g.off, g.at = 12<<20, func() { stopServer(t, srv) }
	err := s.Put(ctx, "nar/interrupted", g, -1)
	mustUnavailable(t, "put interrupted", err)
	startServer(t, srv)
	if _, err := s.Stat(ctx, "nar/interrupted"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("stat of the interrupted blob: %v, want ErrNotFound", err)
	}
	time.Sleep(10 * time.Millisecond)
	n, err := s.Reclaim(ctx, 0)
	if n != 1 || err != nil {
		t.Fatalf("reclaim: %d, %v; want 1, nil", n, err)
	}
	mustNoUploads(t, srv, s, "nar/interrupted")
	mustClean(t, srv, s)
}

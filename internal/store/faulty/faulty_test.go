package faulty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/local"
	"github.com/larder-cache/larder/internal/store/storetest"
)

// newBlobs returns a Blobs around a new local store holding "k" = "0123456789".
func newBlobs(t *testing.T) *Blobs {
	t.Helper()
	l, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := New(l)
	if err := b.Put(t.Context(), "k", strings.NewReader("0123456789"), 10); err != nil {
		t.Fatal(err)
	}
	return b
}

// read reads the whole blob k of b.
func read(ctx context.Context, b store.BlobStore) (string, error) {
	rc, err := b.Get(ctx, "k", 0, -1)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	return string(got), err
}

// TestTransparent checks that a Blobs without faults keeps the contract.
func TestTransparent(t *testing.T) {
	storetest.TestBlobStore(t, func(t *testing.T) store.BlobStore {
		l, err := local.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return New(l)
	})
}

func TestFail(t *testing.T) {
	b := newBlobs(t)
	ctx := t.Context()
	down := fmt.Errorf("s3 down: %w", store.ErrUnavailable)
	b.Fail(Get, 2, down)
	b.Fail(Put, 1, down)
	for i := range 2 {
		if _, err := read(ctx, b); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("get %d: %v, want ErrUnavailable", i, err)
		}
	}
	if got, err := read(ctx, b); err != nil || got != "0123456789" {
		t.Fatalf("third get: %q, %v", got, err)
	}
	r := strings.NewReader("new")
	if err := b.Put(ctx, "k", r, 3); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("failed put: %v", err)
	}
	if r.Len() != 3 {
		t.Errorf("a failed put read its reader")
	}
	if _, err := b.Stat(ctx, "k"); err != nil {
		t.Fatalf("stat without faults: %v", err)
	}
	if n := b.Calls(Get); n != 3 {
		t.Errorf("Calls(Get) = %d, want 3", n)
	}
	b.Fail(Stat, 5, down)
	b.Fail(Delete, 5, down)
	b.Fail(List, 5, down)
	b.Reset()
	if _, err := b.Stat(ctx, "k"); err != nil {
		t.Errorf("stat after Reset: %v", err)
	}
	if err := b.Delete(ctx, "nothing"); err != nil {
		t.Errorf("delete after Reset: %v", err)
	}
	if err := b.List(ctx, "", func(store.BlobInfo) error { return nil }); err != nil {
		t.Errorf("list after Reset: %v", err)
	}
}

func TestDelay(t *testing.T) {
	b := newBlobs(t)
	b.Delay(Stat, 1, 50*time.Millisecond)
	start := time.Now()
	if _, err := b.Stat(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("delayed stat took %v", d)
	}
	b.Delay(Stat, 1, time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.Stat(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stat delayed past its deadline: %v", err)
	}
}

func TestBreakReads(t *testing.T) {
	b := newBlobs(t)
	ctx := t.Context()
	b.BreakReads(1, 4, io.ErrUnexpectedEOF)
	got, err := read(ctx, b)
	if got != "0123" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("broken read: %q, %v", got, err)
	}
	b.BreakReads(1, 6, nil)
	if got, err := read(ctx, b); got != "012345" || err != nil {
		t.Fatalf("short read: %q, %v", got, err)
	}
	if got, err := read(ctx, b); got != "0123456789" || err != nil {
		t.Fatalf("read after the breaks: %q, %v", got, err)
	}
}

package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// flaky is a BlobStore whose Stat and Get fail with err the first fails
// times, and Put always fails.
type flaky struct {
	store.BlobStore
	fails, calls int
	err          error
}

func (f *flaky) Stat(ctx context.Context, key string) (store.BlobInfo, error) {
	f.calls++
	if f.calls <= f.fails {
		return store.BlobInfo{}, f.err
	}
	return store.BlobInfo{Key: key, Size: 1}, nil
}

func (f *flaky) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	f.calls++
	if f.calls <= f.fails {
		return nil, f.err
	}
	return io.NopCloser(strings.NewReader("x")), nil
}

func (f *flaky) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	f.calls++
	return f.err
}

var fast = Policy{Attempts: 3, Base: time.Millisecond, Max: 2 * time.Millisecond}

func TestRetriesTransientReads(t *testing.T) {
	unavailable := fmt.Errorf("s3 get: %w", store.ErrUnavailable)
	cases := []struct {
		name      string
		fails     int
		err       error
		wantErr   bool
		wantCalls int
	}{
		{"succeeds after two transient failures", 2, unavailable, false, 3},
		{"gives up after the attempts", 5, unavailable, true, 3},
		{"does not retry a permanent error", 5, store.ErrNotFound, true, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &flaky{fails: c.fails, err: c.err}
			b := Blobs(f, fast)
			_, err := b.Stat(t.Context(), "k")
			if (err != nil) != c.wantErr || f.calls != c.wantCalls {
				t.Fatalf("Stat: err %v after %d calls; want error %v after %d", err, f.calls, c.wantErr, c.wantCalls)
			}
			if c.wantErr && !errors.Is(err, c.err) {
				t.Fatalf("the error %v lost its cause", err)
			}
		})
	}
}

func TestDoesNotRetryWrites(t *testing.T) {
	f := &flaky{err: fmt.Errorf("put: %w", store.ErrUnavailable)}
	if err := Blobs(f, fast).Put(t.Context(), "k", strings.NewReader("x"), 1); err == nil || f.calls != 1 {
		t.Fatalf("Put: %v after %d calls, want one failed call", err, f.calls)
	}
}

func TestStopsWhenContextEnds(t *testing.T) {
	f := &flaky{fails: 100, err: store.ErrUnavailable}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Blobs(f, Policy{Attempts: 100, Base: time.Hour, Max: time.Hour}).Get(ctx, "k", 0, -1)
	if err == nil || f.calls != 1 {
		t.Fatalf("Get with an ended context: %v after %d calls", err, f.calls)
	}
}

package limit

import (
	"context"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// slow is a BlobStore whose Stat takes a while and counts how many run at
// once; its Put reads a blob through the wrapped store, as completing a
// multipart upload does.
type slow struct {
	store.BlobStore
	now, peak atomic.Int64
	outer     store.BlobStore
}

func (s *slow) Stat(ctx context.Context, key string) (store.BlobInfo, error) {
	n := s.now.Add(1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	time.Sleep(5 * time.Millisecond)
	s.now.Add(-1)
	return store.BlobInfo{Key: key}, nil
}

func (s *slow) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("x")), nil
}

func (s *slow) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	rc, err := s.outer.Get(ctx, "part", 0, -1)
	if err != nil {
		return err
	}
	time.Sleep(5 * time.Millisecond)
	return rc.Close()
}

func TestLimitsConcurrency(t *testing.T) {
	s := &slow{}
	b := Blobs(s, 3)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.Stat(t.Context(), "k"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if p := s.peak.Load(); p > 3 || p < 2 {
		t.Fatalf("%d calls ran at once, want at most 3 (and some overlap)", p)
	}
}

// TestUploadsThatReadDoNotDeadlock runs far more uploads than the limit,
// each of which opens a read while it holds its upload slot.
func TestUploadsThatReadDoNotDeadlock(t *testing.T) {
	s := &slow{}
	b := Blobs(s, 2)
	s.outer = b
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Put(ctx, "k", strings.NewReader(""), 0); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestWaitEndsWithContext(t *testing.T) {
	b := Blobs(&slow{}, 1).(*blobs)
	b.calls <- struct{}{} // the one slot is taken
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.Stat(ctx, "k"); err == nil {
		t.Fatal("a call ran without a slot")
	}
}

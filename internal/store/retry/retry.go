// Package retry wraps the store interfaces so that reads which failed for a
// transient reason (errors wrapping store.ErrUnavailable: a dropped
// connection, a timeout, an S3 5xx) are tried again a few times with
// backoff before the failure reaches the service. Writes are not retried
// here: a Put consumes its stream, and a write whose reply was lost may
// have happened; the client retries those (Nix retries 503s).
package retry

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// Policy says how often and how patiently to retry.
type Policy struct {
	Attempts int           // tries in all, at least 1
	Base     time.Duration // wait before the second try; doubled after each
	Max      time.Duration // longest wait between tries
}

// Default is the policy larder runs with: three tries within about a second.
var Default = Policy{Attempts: 3, Base: 100 * time.Millisecond, Max: time.Second}

// do runs f until it succeeds, fails for a reason other than
// store.ErrUnavailable, the tries run out, or ctx ends.
func do[T any](ctx context.Context, p Policy, f func() (T, error)) (T, error) {
	wait := p.Base
	for try := 1; ; try++ {
		v, err := f()
		if err == nil || !errors.Is(err, store.ErrUnavailable) || try >= p.Attempts {
			return v, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		wait = min(2*wait, p.Max)
	}
}

// Blobs wraps a BlobStore: Get, Stat and Delete are retried; Put and List
// are not (their reader or callback has seen data).
func Blobs(b store.BlobStore, p Policy) store.BlobStore { return &blobs{BlobStore: b, p: p} }

type blobs struct {
	store.BlobStore
	p Policy
}

func (b *blobs) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	return do(ctx, b.p, func() (io.ReadCloser, error) { return b.BlobStore.Get(ctx, key, offset, length) })
}

func (b *blobs) Stat(ctx context.Context, key string) (store.BlobInfo, error) {
	return do(ctx, b.p, func() (store.BlobInfo, error) { return b.BlobStore.Stat(ctx, key) })
}

func (b *blobs) Delete(ctx context.Context, key string) error {
	_, err := do(ctx, b.p, func() (struct{}, error) { return struct{}{}, b.BlobStore.Delete(ctx, key) })
	return err
}

// Compose is retried: it reads only blobs already stored.
func (b *blobs) Compose(ctx context.Context, key string, parts []string, size int64) error {
	c, ok := b.BlobStore.(store.Composer)
	if !ok {
		return errors.ErrUnsupported
	}
	_, err := do(ctx, b.p, func() (struct{}, error) { return struct{}{}, c.Compose(ctx, key, parts, size) })
	return err
}

// Unwrap returns the wrapped store.
func (b *blobs) Unwrap() store.BlobStore { return b.BlobStore }

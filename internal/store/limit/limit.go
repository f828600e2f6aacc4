// Package limit wraps a BlobStore so that at most a set number of calls run
// against the backing store at once: a burst of clients then queues inside
// larder instead of opening unbounded connections to an S3 store (which
// answers a flood with SlowDown).
//
// Uploads (Put, held for the whole transfer) and the other calls (Get, Stat,
// Delete, List, held until they return; a Get's reader streams after its
// slot is given back) draw on two separate pools. Completing a multipart
// upload or copying an object opens reads while it holds an upload slot;
// with one shared pool, enough of those at once would wait on each other
// for ever. Reads never wait for an upload slot while holding one of
// theirs, so two pools cannot deadlock.
package limit

import (
	"context"
	"errors"
	"io"

	"github.com/larder-cache/larder/internal/store"
)

// Blobs wraps b so that at most n uploads and n other calls run at once
// (n < 1: no limit).
func Blobs(b store.BlobStore, n int) store.BlobStore {
	if n < 1 {
		return b
	}
	return &blobs{BlobStore: b, puts: make(chan struct{}, n), calls: make(chan struct{}, n)}
}

type blobs struct {
	store.BlobStore
	puts, calls chan struct{}
}

// hold waits for a slot of pool, or for ctx to end, and returns the
// function that gives it back.
func hold(ctx context.Context, pool chan struct{}) (func(), error) {
	select {
	case pool <- struct{}{}:
		return func() { <-pool }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *blobs) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	done, err := hold(ctx, b.puts)
	if err != nil {
		return err
	}
	defer done()
	return b.BlobStore.Put(ctx, key, r, size)
}

// Compose counts as an upload.
func (b *blobs) Compose(ctx context.Context, key string, parts []string, size int64) error {
	c, ok := b.BlobStore.(store.Composer)
	if !ok {
		return errors.ErrUnsupported
	}
	done, err := hold(ctx, b.puts)
	if err != nil {
		return err
	}
	defer done()
	return c.Compose(ctx, key, parts, size)
}

func (b *blobs) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	done, err := hold(ctx, b.calls)
	if err != nil {
		return nil, err
	}
	defer done()
	return b.BlobStore.Get(ctx, key, offset, length)
}

func (b *blobs) Stat(ctx context.Context, key string) (store.BlobInfo, error) {
	done, err := hold(ctx, b.calls)
	if err != nil {
		return store.BlobInfo{}, err
	}
	defer done()
	return b.BlobStore.Stat(ctx, key)
}

func (b *blobs) Delete(ctx context.Context, key string) error {
	done, err := hold(ctx, b.calls)
	if err != nil {
		return err
	}
	defer done()
	return b.BlobStore.Delete(ctx, key)
}

func (b *blobs) List(ctx context.Context, prefix string, fn func(store.BlobInfo) error) error {
	done, err := hold(ctx, b.calls)
	if err != nil {
		return err
	}
	defer done()
	return b.BlobStore.List(ctx, prefix, fn)
}

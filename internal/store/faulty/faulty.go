// Package faulty wraps a store.BlobStore to inject faults in unit tests.
//
// A Blobs passes every call on to the store it wraps until it is told
// otherwise: to fail the next calls of a method with a given error (such
// as one wrapping store.ErrUnavailable), to make them wait first, or to
// hand out Get readers that end early or fail after some bytes. Faults are
// counted down per method, call by call, and are safe to set while other
// goroutines use the store.
//
//	b := faulty.New(local)
//	b.Fail(faulty.Get, 2, fmt.Errorf("s3 down: %w", store.ErrUnavailable))
//	b.BreakReads(1, 100, io.ErrUnexpectedEOF)
package faulty

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// Method names a method of store.BlobStore.
type Method string

// The methods faults can be set for.
const (
	Put    Method = "Put"
	Get    Method = "Get"
	Stat   Method = "Stat"
	Delete Method = "Delete"
	List   Method = "List"
)

// Blobs is a store.BlobStore that passes its calls on to another, except
// for the faults it has been told to inject.
type Blobs struct {
	next store.BlobStore

	mu     sync.Mutex
	faults map[Method]*faults
	breaks breaks
}

var _ store.BlobStore = (*Blobs)(nil)

// faults are the faults pending for one method, and its calls so far.
type faults struct {
	calls  int
	fail   int // calls still to fail
	err    error
	delays int // calls still to delay
	delay  time.Duration
}

// breaks says how the readers of the next Gets break.
type breaks struct {
	n     int   // Gets whose readers still break
	after int64 // bytes each reader yields before it breaks
	err   error // what it returns then; nil for io.EOF, a short read
}

// New returns a Blobs that wraps next, with no faults set.
func New(next store.BlobStore) *Blobs {
	return &Blobs{next: next, faults: map[Method]*faults{}}
}

// Unwrap returns the wrapped store.
func (b *Blobs) Unwrap() store.BlobStore { return b.next }

// Fail makes the next n calls of m return err (wrapped, with the method's
// name) without reaching the wrapped store. A Put that fails so does not
// read its reader.
func (b *Blobs) Fail(m Method, n int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.method(m)
	f.fail, f.err = n, err
}

// Delay makes the next n calls of m wait for d, or until their context
// ends, before they go on (to fail, if Fail says so, or to the wrapped
// store).
func (b *Blobs) Delay(m Method, n int, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.method(m)
	f.delays, f.delay = n, d
}

// BreakReads makes the readers of the next n successful Gets yield at most
// after bytes and then return err, or end there with io.EOF, as a
// truncated blob would, if err is nil.
func (b *Blobs) BreakReads(n int, after int64, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.breaks = breaks{n: n, after: after, err: err}
}

// Reset clears every pending fault. Call counts stay.
func (b *Blobs) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.faults {
		f.fail, f.delays = 0, 0
	}
	b.breaks = breaks{}
}

// Calls returns how many times m has been called, faults included.
func (b *Blobs) Calls(m Method) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.method(m).calls
}

// method returns the faults of m. b.mu is held.
func (b *Blobs) method(m Method) *faults {
	f := b.faults[m]
	if f == nil {
		f = &faults{}
		b.faults[m] = f
	}
	return f
}

// enter counts a call of m and applies its faults: it waits if the call is
// to be delayed and returns an error if it is to fail.
func (b *Blobs) enter(ctx context.Context, m Method) error {
	b.mu.Lock()
	f := b.method(m)
	f.calls++
	var delay time.Duration
	if f.delays > 0 {
		f.delays--
		delay = f.delay
	}
	var err error
	if f.fail > 0 {
		f.fail--
		err = fmt.Errorf("faulty %s: %w", m, f.err)
	}
	b.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return fmt.Errorf("faulty %s: %w", m, ctx.Err())
		case <-t.C:
		}
	}
	return err
}

// Put stores the bytes of r under key, unless a fault says otherwise.
func (b *Blobs) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := b.enter(ctx, Put); err != nil {
		return err
	}
	return b.next.Put(ctx, key, r, size)
}

// Get opens the blob under key, unless a fault says otherwise; its reader
// may break as BreakReads says.
func (b *Blobs) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := b.enter(ctx, Get); err != nil {
		return nil, err
	}
	rc, err := b.next.Get(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.breaks.n <= 0 {
		return rc, nil
	}
	b.breaks.n--
	return &brokenReader{rc: rc, left: b.breaks.after, err: b.breaks.err}, nil
}

// Stat describes the blob under key, unless a fault says otherwise.
func (b *Blobs) Stat(ctx context.Context, key string) (store.BlobInfo, error) {
	if err := b.enter(ctx, Stat); err != nil {
		return store.BlobInfo{}, err
	}
	return b.next.Stat(ctx, key)
}

// Delete removes the blob under key, unless a fault says otherwise.
func (b *Blobs) Delete(ctx context.Context, key string) error {
	if err := b.enter(ctx, Delete); err != nil {
		return err
	}
	return b.next.Delete(ctx, key)
}

// List walks the blobs under prefix, unless a fault says otherwise.
func (b *Blobs) List(ctx context.Context, prefix string, fn func(store.BlobInfo) error) error {
	if err := b.enter(ctx, List); err != nil {
		return err
	}
	return b.next.List(ctx, prefix, fn)
}

// brokenReader yields at most left bytes of rc, then returns err, or
// io.EOF if err is nil.
type brokenReader struct {
	rc   io.ReadCloser
	left int64
	err  error
}

// Read reads from rc until the break.
func (r *brokenReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		if r.err == nil {
			return 0, io.EOF
		}
		return 0, r.err
	}
	p = p[:min(int64(len(p)), r.left)]
	n, err := r.rc.Read(p)
	r.left -= int64(n)
	return n, err
}

// Close closes rc.
func (r *brokenReader) Close() error { return r.rc.Close() }

package narverify

import (
	"io"
	"sync"
)

// asyncHash feeds hashes from a goroutine of its own, so that hashing an
// upload and its decompressed NAR runs alongside reading and decompressing
// them instead of after each piece: on two cores, a zstd upload verifies a
// third faster. Each write is copied into buffers of asyncBufferSize from a
// pool shared by all uploads; at most asyncQueue of them wait to be hashed,
// and each goes back to the pool once hashed, so that a stalled upload
// holds none.
type asyncHash struct {
	w    io.Writer    // the hashes, which never fail
	full chan *[]byte // copies to hash, in order
	done chan struct{}
	once sync.Once
}

const (
	asyncQueue      = 3
	asyncBufferSize = 256 << 10
)

var asyncBuffers = sync.Pool{New: func() any {
	b := make([]byte, asyncBufferSize)
	return &b
}}

// newAsyncHash feeds w, a hash or several (io.MultiWriter), which must
// not be read before Close.
func newAsyncHash(w io.Writer) *asyncHash {
	a := &asyncHash{w: w, full: make(chan *[]byte, asyncQueue), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for b := range a.full {
			_, _ = a.w.Write(*b)
			*b = (*b)[:cap(*b)]
			asyncBuffers.Put(b)
		}
	}()
	return a
}

// Write queues a copy of p to be hashed, waiting while the queue is full;
// p may be reused once it returns. It must not be called after Close.
func (a *asyncHash) Write(p []byte) {
	for len(p) > 0 {
		b := asyncBuffers.Get().(*[]byte)
		n := copy(*b, p)
		*b = (*b)[:n]
		a.full <- b
		p = p[n:]
	}
}

// Close waits until everything written is hashed and stops the goroutine;
// it may be called more than once.
func (a *asyncHash) Close() {
	a.once.Do(func() { close(a.full) })
	<-a.done
}

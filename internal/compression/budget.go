package compression

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Budget bounds the memory that decoders opened with it hold at once. Each
// decoder reserves what the headers of its stream say it will allocate
// (see Open) before it allocates it, and gives it back when it is closed.
// A reservation that does not fit waits, in order of arrival, for others to
// be given back, for at most the budget's wait. A Budget is safe for
// concurrent use.
type Budget struct {
	total int64
	wait  time.Duration

	mu    sync.Mutex
	used  int64
	queue []*budgetWaiter // first come, first served
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed once the bytes are granted
}

// NewBudget returns a budget of total bytes whose reservations wait at most
// wait for room.
func NewBudget(total int64, wait time.Duration) *Budget {
	return &Budget{total: total, wait: wait}
}

// Total returns the bytes the budget holds.
func (b *Budget) Total() int64 { return b.total }

// Wait returns how long a reservation waits for room.
func (b *Budget) Wait() time.Duration { return b.wait }

// InUse returns the bytes reserved now.
func (b *Budget) InUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// BusyError reports that a reservation found no room within the budget's
// wait: other decoders held it all the while. Trying again later may work.
type BusyError struct {
	Need  int64         // the bytes asked for
	Total int64         // the budget's size
	Wait  time.Duration // how long the reservation waited
}

// Error says how much was asked of how much, and for how long.
func (e *BusyError) Error() string {
	return fmt.Sprintf("no room for %s of decoder memory within %v: all %s are in use",
		mib(e.Need), e.Wait, mib(e.Total))
}

// acquire reserves n bytes, waiting for room as the budget allows. A
// request to grow a reservation already held goes before the requests
// that wait for a first one: the decoder making it holds memory that it
// gives back sooner if it can go on. acquire returns a *BusyError when
// the wait ends without room, the context's error when ctx ends first, and
// a *LimitError, at once, when n exceeds the whole budget.
func (b *Budget) acquire(ctx context.Context, n int64, grow bool) error {
	if n > b.total {
		return &LimitError{What: "decoder memory", Need: n, Max: b.total, Budget: true}
	}
	b.mu.Lock()
	if len(b.queue) == 0 && b.used+n <= b.total {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	if grow {
		b.queue = slices.Insert(b.queue, 0, w)
		b.grant() // it may fit, now that it is first
	} else {
		b.queue = append(b.queue, w)
	}
	b.mu.Unlock()

	timer := time.NewTimer(b.wait)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
		return nil
	case <-timer.C:
		err = &BusyError{Need: n, Total: b.total, Wait: b.wait}
	case <-ctx.Done():
		err = ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready:
		return nil // granted as the wait ended: take it
	default:
	}
	if i := slices.Index(b.queue, w); i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
	}
	b.grant() // those behind it may fit
	return err
}

// release gives back n bytes.
func (b *Budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.used < 0 {
		panic("compression: decoder budget released more than was reserved")
	}
	b.grant()
}

// grant hands room to the waiters at the head of the queue that fit. The
// caller holds mu.
func (b *Budget) grant() {
	for len(b.queue) > 0 && b.used+b.queue[0].n <= b.total {
		w := b.queue[0]
		b.queue = b.queue[1:]
		b.used += w.n
		close(w.ready)
	}
}

// reservation is what one decoder holds of a budget. With a nil budget it
// reserves nothing, and every need is granted.
type reservation struct {
	ctx     context.Context
	budget  *Budget
	held    int64 // bytes held of the budget
	largest int64 // the largest need of a frame so far
	err     error // the refusal that stopped the decoder
}

// frame checks that a frame's window (or dictionary) is within limit and
// reserves what the frame needs, overhead included.
func (r *reservation) frame(method, what string, window, limit, need int64) error {
	if window > limit {
		r.err = &LimitError{Method: method, What: what, Need: window, Max: limit}
		return r.err
	}
	return r.need(need)
}

// need makes sure the reservation covers a frame (a zstd or lz4 frame, an
// xz block, a brotli stream, or all of a bzip2 or gzip stream) needing n
// bytes. A later frame needing more than any before adds its whole need,
// as the decoder may still hold the buffers of the earlier frame while it
// allocates those of the new one. A refusal is kept in err, so that it
// reaches the caller whatever a decoder makes of its input's error.
func (r *reservation) need(n int64) error {
	if n <= r.largest {
		return nil
	}
	if r.budget != nil {
		if total := r.budget.total; r.held > 0 && r.held+n > total {
			// Room this reservation holds itself will never come free.
			r.err = &LimitError{What: "decoder memory", Need: r.held + n, Max: total, Budget: true}
			return r.err
		}
		if err := r.budget.acquire(r.ctx, n, r.held > 0); err != nil {
			r.err = err
			return err
		}
	}
	r.held += n
	r.largest = n
	return nil
}

// release gives back all the reservation holds; it may be called again.
func (r *reservation) release() {
	if r.budget != nil {
		r.budget.release(r.held)
	}
	r.held, r.largest = 0, 0
}

// mib formats a byte count in MiB, with a fraction only where needed.
func mib(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	if n < 1<<20 {
		return fmt.Sprintf("%d KiB", (n+1023)>>10)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

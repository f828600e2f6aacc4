// Package coalesce batches the writes of server connections, so that a
// connection that answers many small requests at once (HTTP/2 streams
// multiplexed over TLS, as Nix asks for narinfos) pays one system call for
// many answers instead of one each.
//
// Go's HTTP/2 server flushes each answer as soon as it has no other frame
// queued, and crypto/tls turns each flush into a record and a write(2):
// under load, the system calls take half its time. A coalescing
// connection's Write copies the bytes into a buffer and returns; one
// goroutine per connection writes whatever has gathered since its last
// write, in one call. Nothing waits for a timer: an idle connection's
// bytes go out at once, and a busy one's are batched while the previous
// batch is written.
package coalesce

import (
	"net"
	"sync"
	"time"
)

// MaxBuffered bounds the bytes a connection holds unwritten: past it, Write
// waits for the batch in flight.
const MaxBuffered = 64 << 10

// closeTimeout bounds the wait of Close for the bytes still buffered, when
// the connection has no earlier write deadline.
const closeTimeout = 10 * time.Second

// NewListener returns a listener whose connections coalesce their writes.
func NewListener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return NewConn(c), nil
}

// NewConn returns c with its writes coalesced. Its Close writes what is
// buffered first, within the write deadline or closeTimeout.
func NewConn(c net.Conn) net.Conn {
	cc := &conn{Conn: c, done: make(chan struct{})}
	cc.ready.L, cc.drained.L = &cc.mu, &cc.mu
	go cc.flush()
	return cc
}

type conn struct {
	net.Conn
	mu sync.Mutex
	// ready wakes the flusher (bytes buffered, or closing); drained wakes
	// writers and Close (a batch written, or failed).
	ready, drained sync.Cond
	buf, spare     []byte
	busy           bool  // a batch is being written
	err            error // the first write error; every Write returns it then
	closing        bool
	deadline       time.Time // the write deadline last set
	done           chan struct{}
}

// Write buffers p, once there is room, and returns the error of an earlier
// batch, if one failed.
func (c *conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closing && len(c.buf) > 0 && len(c.buf)+len(p) > MaxBuffered {
		c.drained.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closing:
		return 0, net.ErrClosed
	}
	c.buf = append(c.buf, p...)
	c.ready.Signal()
	return len(p), nil
}

// flush writes the buffered bytes, a batch at a time, until the connection
// is closing and nothing is left, or a write fails.
func (c *conn) flush() {
	defer close(c.done)
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for len(c.buf) == 0 && !c.closing {
			c.ready.Wait()
		}
		if len(c.buf) == 0 || c.err != nil {
			return
		}
		out := c.buf
		c.buf, c.busy = c.spare[:0], true
		c.mu.Unlock()
		_, err := c.Conn.Write(out)
		c.mu.Lock()
		c.busy = false
		// The buffer is kept for the next batch: a file sent over TLS
		// would otherwise cost an allocation per batch (measured: half
		// the throughput of HTTP/2 downloads).
		if cap(out) <= 2*MaxBuffered {
			c.spare = out[:0]
		}
		if err != nil {
			c.err, c.buf, c.spare = err, nil, nil
		}
		c.drained.Broadcast()
		if err != nil {
			return
		}
	}
}

// Close writes what is buffered, within the write deadline or
// closeTimeout, and closes the connection.
func (c *conn) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closing = true
	pending := len(c.buf) > 0 || c.busy
	limit := time.Now().Add(closeTimeout)
	if !c.deadline.IsZero() && c.deadline.Before(limit) {
		limit = c.deadline
	}
	c.ready.Signal()
	c.drained.Broadcast()
	c.mu.Unlock()
	if pending {
		_ = c.Conn.SetWriteDeadline(limit)
	}
	<-c.done
	return c.Conn.Close()
}

// SetDeadline and SetWriteDeadline first wait for the bytes written before
// them to be sent, under the deadline they were written with: a caller
// that ends its writes with a deadline of now, as crypto/tls does after its
// close_notify alert, must not cut off what it already wrote.
func (c *conn) SetDeadline(t time.Time) error { return c.setDeadline(t, c.Conn.SetDeadline) }

func (c *conn) SetWriteDeadline(t time.Time) error { return c.setDeadline(t, c.Conn.SetWriteDeadline) }

func (c *conn) setDeadline(t time.Time, set func(time.Time) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drain()
	c.deadline = t
	return set(t)
}

// drain waits, with c.mu held, until nothing is buffered or in flight, or
// a write failed; at most closeTimeout, if the deadline set is later.
func (c *conn) drain() {
	if c.err != nil || len(c.buf) == 0 && !c.busy {
		return
	}
	if limit := time.Now().Add(closeTimeout); c.deadline.IsZero() || c.deadline.After(limit) {
		_ = c.Conn.SetWriteDeadline(limit)
	}
	for c.err == nil && (len(c.buf) > 0 || c.busy) {
		c.drained.Wait()
	}
}

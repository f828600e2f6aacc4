// Package connlimit bounds the connections a server holds open, and with
// them everything a client can make it hold per connection: goroutines,
// read and write buffers, HTTP/2 streams, uploads in flight.
//
// A few connections from addresses the caller names (the loopback, for the
// server's own health checks) are let in past the limit.
//
// A connection past the limit is refused as soon as it is accepted, never
// left waiting in the kernel's queue: over plain HTTP it is answered 503
// with a message that names the limit, over TLS it is closed. Refusals run
// in goroutines of their own, a bounded number of them; past that number a
// connection is closed without an answer.
package connlimit

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Listener.
type Options struct {
	// Answer, if set, is written to a refused connection before it is
	// closed (an HTTP response); nil closes it at once.
	Answer []byte
	// Refused, if set, is called for each connection refused.
	Refused func()
	// Logger reports, at most once a minute, that connections are refused.
	Logger *slog.Logger
	// Spare connections past the limit are let in from addresses Exempt
	// reports true for.
	Spare  int
	Exempt func(net.Addr) bool
}

// Listener is a net.Listener that keeps at most max connections open.
type Listener struct {
	net.Listener
	max      int64
	open     atomic.Int64
	opts     Options
	refusing chan struct{} // a slot per refusal running
	lastWarn atomic.Int64  // unix nanoseconds of the last warning
}

// maxRefusing bounds the refusals that wait for the client to read the
// answer; refuseTime bounds how long each waits.
const (
	maxRefusing = 64
	refuseTime  = time.Second
)

// New wraps ln so that it keeps at most max connections open (max < 1: no
// limit; it still counts them).
func New(ln net.Listener, max int, opts Options) *Listener {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, max: int64(max), opts: opts, refusing: make(chan struct{}, maxRefusing)}
}

// HTTPAnswer is the answer to a plain-HTTP connection refused at a limit
// of max connections; setting names the setting that raises it.
func HTTPAnswer(max int, setting string) []byte {
	body := fmt.Sprintf("larder is serving its limit of %d connections (%s); try again shortly\n", max, setting)
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s", len(body), body)
}

// Open returns the number of connections open.
func (l *Listener) Open() int64 { return l.open.Load() }

// Accept returns the next connection while fewer than the limit are open,
// and refuses the others as they come.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		n := l.open.Add(1)
		if n <= l.max || l.max < 1 ||
			n <= l.max+int64(l.opts.Spare) && l.opts.Exempt != nil && l.opts.Exempt(c.RemoteAddr()) {
			return newConn(c, l), nil
		}
		l.open.Add(-1)
		l.refuse(c)
	}
}

func (l *Listener) refuse(c net.Conn) {
	if l.opts.Refused != nil {
		l.opts.Refused()
	}
	now := time.Now().UnixNano()
	if last := l.lastWarn.Load(); now-last >= int64(time.Minute) && l.lastWarn.CompareAndSwap(last, now) {
		l.opts.Logger.Warn("refusing connections: the limit of open connections is reached",
			"max_connections", l.max, "remote", c.RemoteAddr().String())
	}
	if l.opts.Answer == nil {
		c.Close()
		return
	}
	select {
	case l.refusing <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		answer(c, l.opts.Answer)
	}()
}

// answer writes msg to c and closes it once the client has had the time
// to read it: closing a connection with a request unread in it would reset
// it, and the client could lose the answer.
func answer(c net.Conn, msg []byte) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(refuseTime))
	if _, err := c.Write(msg); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.CopyN(io.Discard, c, 64<<10)
}

// conn is a connection that gives its place back when it is closed.
type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

// newConn wraps c, keeping the optional methods net/http uses on it:
// ReadFrom (sendfile) and CloseWrite.
func newConn(c net.Conn, l *Listener) net.Conn {
	w := &conn{Conn: c, l: l}
	if _, ok := c.(io.ReaderFrom); ok {
		return &readerFromConn{w}
	}
	return w
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// readerFromConn is a conn whose connection can send files itself.
type readerFromConn struct{ *conn }

func (c *readerFromConn) ReadFrom(r io.Reader) (int64, error) {
	return c.Conn.(io.ReaderFrom).ReadFrom(r)
}

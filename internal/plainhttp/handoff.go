package plainhttp

import (
	"io"
	"net"
	"sync"
)

// handoffListener is the net.Listener net/http serves: its Accept returns
// the connections fasthttp hands over.
type handoffListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// give hands c to net/http, or closes it if the listener is closed.
func (l *handoffListener) give(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// replayConn is a connection handed over: it reads first the request
// fasthttp had read, then what fasthttp had buffered, then the connection
// (r); it writes straight to the connection, and ReadFrom keeps the
// connection's sendfile for the files net/http sends.
type replayConn struct {
	net.Conn          // fasthttp's hijacked connection: Close, deadlines, addresses
	raw      net.Conn // the connection accepted
	r        io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *replayConn) Write(p []byte) (int, error) { return c.raw.Write(p) }

func (c *replayConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.raw.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.raw}, r)
}

// writerOnly hides the ReaderFrom of a writer, so that io.Copy does not
// call it back.
type writerOnly struct{ io.Writer }

package connlimit

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serve accepts from l until it is closed and sends each connection on the
// channel it returns.
func serve(t *testing.T, l net.Listener) <-chan net.Conn {
	t.Helper()
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(conns)
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() { l.Close() })
	return conns
}

func listen(t *testing.T, max int, opts Options) *Listener {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return New(tcp, max, opts)
}

func dial(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func accepted(t *testing.T, conns <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

func TestRefusesPastTheLimitWithAnAnswer(t *testing.T) {
	var refused atomic.Int64
	l := listen(t, 2, Options{Answer: HTTPAnswer(2, "max_connections"), Refused: func() { refused.Add(1) }})
	conns := serve(t, l)
	dial(t, l)
	dial(t, l)
	first, _ := accepted(t, conns), accepted(t, conns)
	if got := l.Open(); got != 2 {
		t.Fatalf("open = %d, want 2", got)
	}

	// The third is answered 503 whether or not it sent its request.
	third := dial(t, l)
	if _, err := io.WriteString(third, "GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = third.SetDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil {
		t.Fatalf("refused connection: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(body), "limit of 2 connections (max_connections)") {
		t.Fatalf("refusal: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if refused.Load() != 1 {
		t.Fatalf("refused = %d, want 1", refused.Load())
	}
	select {
	case c := <-conns:
		t.Fatalf("a connection past the limit was accepted: %v", c.RemoteAddr())
	default:
	}

	// Closing one, twice, frees one place.
	first.Close()
	first.Close()
	if got := l.Open(); got != 1 {
		t.Fatalf("open after a close = %d, want 1", got)
	}
	dial(t, l)
	accepted(t, conns)
	if got := l.Open(); got != 2 {
		t.Fatalf("open = %d, want 2", got)
	}
}

func TestRefusesWithoutAnswer(t *testing.T) {
	l := listen(t, 1, Options{})
	conns := serve(t, l)
	dial(t, l)
	accepted(t, conns)
	c := dial(t, l)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("refused connection read %d bytes, %v; want it closed", n, err)
	}
}

// A client that sends nothing and never closes holds a refusal for
// refuseTime at most.
func TestRefusalOfASilentClientEnds(t *testing.T) {
	l := listen(t, 1, Options{Answer: HTTPAnswer(1, "max_connections")})
	conns := serve(t, l)
	dial(t, l)
	accepted(t, conns)
	c := dial(t, l)
	_ = c.SetDeadline(time.Now().Add(refuseTime + 5*time.Second))
	began := time.Now()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read the refusal: %v", err)
	}
	if !strings.HasPrefix(string(b), "HTTP/1.1 503 ") {
		t.Fatalf("refusal = %q", b)
	}
	if took := time.Since(began); took > refuseTime+2*time.Second {
		t.Fatalf("refusal took %v", took)
	}
	waitFor(t, func() bool { return len(l.refusing) == 0 })
}

func TestSpareForExempt(t *testing.T) {
	exempt := true
	l := listen(t, 1, Options{Spare: 2, Exempt: func(a net.Addr) bool { return exempt }})
	conns := serve(t, l)
	for range 3 {
		dial(t, l)
		accepted(t, conns)
	}
	if l.Open() != 3 {
		t.Fatalf("open = %d, want 3: the limit and two spare", l.Open())
	}
	c := dial(t, l) // past the spare ones too
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("past the spare connections: read %d, %v; want it closed", n, err)
	}

	// Not exempt: the limit alone.
	exempt = false
	l2 := listen(t, 1, Options{Spare: 2, Exempt: func(net.Addr) bool { return exempt }})
	conns2 := serve(t, l2)
	dial(t, l2)
	accepted(t, conns2)
	c = dial(t, l2)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("not exempt: read %d, %v; want it closed", n, err)
	}
}

func TestNoLimitCounts(t *testing.T) {
	l := listen(t, 0, Options{})
	conns := serve(t, l)
	for range 5 {
		dial(t, l)
	}
	var got []net.Conn
	for range 5 {
		got = append(got, accepted(t, conns))
	}
	if l.Open() != 5 {
		t.Fatalf("open = %d, want 5", l.Open())
	}
	for _, c := range got {
		c.Close()
	}
	if l.Open() != 0 {
		t.Fatalf("open = %d, want 0", l.Open())
	}
}

// net/http sends files with the connection's ReadFrom (sendfile) and ends
// connections with CloseWrite: the wrapper keeps both.
func TestKeepsConnectionMethods(t *testing.T) {
	l := listen(t, 4, Options{})
	conns := serve(t, l)
	client := dial(t, l)
	c := accepted(t, conns)
	if _, ok := c.(io.ReaderFrom); !ok {
		t.Fatalf("%T lost ReadFrom", c)
	}
	n, err := c.(io.ReaderFrom).ReadFrom(strings.NewReader("hello"))
	if n != 5 || err != nil {
		t.Fatalf("ReadFrom = %d, %v", n, err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(client)
	if string(b) != "hello" || err != nil {
		t.Fatalf("client read %q, %v", b, err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("condition not reached")
}

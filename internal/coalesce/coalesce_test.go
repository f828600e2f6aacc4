package coalesce

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection, the server's
// coalesced.
func pair(t *testing.T) (server net.Conn, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := NewListener(ln).Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// TestInOrder: writes of every size, from several goroutines, arrive whole
// and each in one piece, and Close sends what is buffered before the end.
func TestInOrder(t *testing.T) {
	server, client := pair(t)
	const writers, each = 4, 300
	var want [writers]bytes.Buffer
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range each {
				n := r.IntN(3 * MaxBuffered / 2) // some past the bound
				msg := fmt.Appendf(nil, "%d %d %d\n", w, i, n)
				msg = append(msg, bytes.Repeat([]byte{byte('a' + w)}, n)...)
				msg = append(msg, '\n')
				want[w].Write(msg)
				if _, err := server.Write(msg); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	got := make(chan []byte)
	go func() { b, _ := io.ReadAll(client); got <- b }()
	wg.Wait()
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	// Split what arrived back into each writer's messages, in order.
	var per [writers]bytes.Buffer
	rest := <-got
	for len(rest) > 0 {
		var w, i, n int
		line, after, ok := bytes.Cut(rest, []byte("\n"))
		if _, err := fmt.Sscanf(string(line), "%d %d %d", &w, &i, &n); !ok || err != nil || w >= writers || len(after) < n+1 {
			t.Fatalf("a message arrived broken: %.40q", rest)
		}
		per[w].Write(rest[:len(line)+1+n+1])
		rest = after[n+1:]
	}
	for w := range writers {
		if !bytes.Equal(per[w].Bytes(), want[w].Bytes()) {
			t.Fatalf("writer %d: %d bytes arrived, want %d, in order", w, per[w].Len(), want[w].Len())
		}
	}
}

// slowConn is a connection whose writes wait for release, and are counted.
type slowConn struct {
	net.Conn
	release chan struct{}
	writes  atomic.Int64
	out     bytes.Buffer
	mu      sync.Mutex
	fail    error
}

func (c *slowConn) Write(p []byte) (int, error) {
	<-c.release
	c.writes.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return 0, c.fail
	}
	return c.out.Write(p)
}

func (c *slowConn) Close() error                     { return nil }
func (c *slowConn) SetWriteDeadline(time.Time) error { return nil }
func (c *slowConn) SetDeadline(t time.Time) error    { return nil }

// TestBatches: writes made while a batch is being written go out together.
func TestBatches(t *testing.T) {
	raw := &slowConn{release: make(chan struct{})}
	c := NewConn(raw)
	for i := range 100 {
		if _, err := fmt.Fprintf(c, "answer %d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	close(raw.release)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := raw.writes.Load(); n > 2 {
		t.Errorf("100 small writes made %d writes to the connection, want at most 2", n)
	}
	var want bytes.Buffer
	for i := range 100 {
		fmt.Fprintf(&want, "answer %d\n", i)
	}
	if !bytes.Equal(raw.out.Bytes(), want.Bytes()) {
		t.Errorf("wrote %q, want %q", raw.out.String(), want.String())
	}
}

// TestErrorsStick: once a batch fails, every later Write returns its error
// and nothing more is written.
func TestErrorsStick(t *testing.T) {
	boom := errors.New("connection reset")
	raw := &slowConn{release: make(chan struct{}), fail: boom}
	close(raw.release)
	c := NewConn(raw)
	_, _ = c.Write([]byte("first"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Write([]byte("next"))
		if errors.Is(err, boom) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Write after a failed batch: %v, want %v", err, boom)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := c.Write([]byte("more")); !errors.Is(err, boom) {
		t.Fatalf("second Write after a failed batch: %v, want %v", err, boom)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("closed")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

// TestStalledReader: against a client that reads nothing, writes block once
// the buffers are full, the write deadline ends them, and Close returns.
func TestStalledReader(t *testing.T) {
	server, _ := pair(t)
	if err := server.SetWriteDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	chunk := make([]byte, 32<<10)
	var err error
	for i := 0; i < 100_000 && err == nil; i++ {
		_, err = server.Write(chunk)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("writes to a stalled client ended with %v, want a timeout", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- server.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close of a connection to a stalled client did not return")
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("took %v, want about the 500ms deadline", took)
	}
}

// TestCloseStalledNoDeadline: Close gives up on a client that reads nothing
// after closeTimeout at the latest, or the write deadline set.
func TestCloseStalledNoDeadline(t *testing.T) {
	server, _ := pair(t)
	go func() {
		chunk := make([]byte, 32<<10)
		for {
			if _, err := server.Write(chunk); err != nil {
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // the kernel's buffers fill
	_ = server.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	closed := make(chan error, 1)
	go func() { closed <- server.Close() }()
	select {
	case <-closed:
	case <-time.After(closeTimeout / 2):
		t.Fatal("Close did not honour the write deadline")
	}
}

// TestHTTP2 serves HTTP/2 over TLS on a coalescing listener: many streams
// at once on one connection get their own answers, and shutdown is
// graceful.
func TestHTTP2(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "not HTTP/2", http.StatusHTTPVersionNotSupported)
			return
		}
		if r.URL.Path == "/big" {
			_, _ = w.Write(bytes.Repeat([]byte("x"), 3<<20))
			return
		}
		fmt.Fprintf(w, "answer to %s", r.URL.Path)
	}))
	srv.EnableHTTP2 = true
	srv.Listener = NewListener(srv.Listener)
	srv.StartTLS()
	defer srv.Close()
	client := srv.Client()
	client.Transport.(*http.Transport).TLSClientConfig.NextProtos = []string{"h2"}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			path := fmt.Sprintf("/p%d", i)
			if i%50 == 0 {
				path = "/big"
			}
			resp, err := client.Get(srv.URL + path)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			switch {
			case err != nil:
				t.Error(err)
			case resp.ProtoMajor != 2:
				t.Errorf("%s: answered over %s, want HTTP/2", path, resp.Proto)
			case path == "/big" && len(b) != 3<<20:
				t.Errorf("/big: %d bytes, want %d", len(b), 3<<20)
			case path != "/big" && string(b) != "answer to "+path:
				t.Errorf("%s: answered %q", path, b)
			}
		})
	}
	wg.Wait()
}

// TestDeadlineAfterWrites: a deadline set after some writes, even one of
// now (as crypto/tls sets after its close_notify alert), does not cut off
// what was written before it.
func TestDeadlineAfterWrites(t *testing.T) {
	for range 50 {
		server, client := pair(t)
		msg := bytes.Repeat([]byte("answer "), 20_000)
		if _, err := server.Write(msg); err != nil {
			t.Fatal(err)
		}
		if err := server.SetWriteDeadline(time.Now()); err != nil {
			t.Fatal(err)
		}
		_, _ = server.Write([]byte("late")) // after a deadline of now: may fail, or be sent
		go server.Close()
		got, _ := io.ReadAll(client)
		if !bytes.HasPrefix(got, msg) {
			t.Fatalf("%d bytes arrived; the %d written before the deadline do not all", len(got), len(msg))
		}
	}
}

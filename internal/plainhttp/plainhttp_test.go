package plainhttp

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// echo answers every request with what it saw, reading the body whole; a
// GET of /files/big is a file served with http.ServeContent, and /panic
// panics.
func echo(t *testing.T) http.Handler {
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("0123456789abcdef"), 1<<16), 0o600); err != nil {
		t.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("on purpose")
		case "/files/big":
			f, err := os.Open(big)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			http.ServeContent(w, r, "big", time.Time{}, f)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Remote-Set", fmt.Sprint(r.RemoteAddr != ""))
		fmt.Fprintf(w, "%s %s host=%s body=%q auth=%q\n", r.Method, r.URL.Path, r.Host, body, r.Header.Get("Authorization"))
	})
}

// servers starts h behind net/http alone, as larder serves without
// fast_lookups, and behind a Server, as it serves with it.
func servers(t *testing.T, h http.Handler) (plain, fast string) {
	t.Helper()
	ref := httptest.NewUnstartedServer(h)
	ref.Config.ReadHeaderTimeout = 2 * time.Second
	ref.Config.MaxHeaderBytes = 64 << 10
	ref.Config.ErrorLog = log.New(io.Discard, "", 0) // the panic case
	ref.Start()
	t.Cleanup(ref.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	slow := &http.Server{ReadHeaderTimeout: 2 * time.Second, MaxHeaderBytes: 64 << 10}
	slow.ErrorLog = log.New(io.Discard, "", 0)
	s := New(h, slow, Options{ReadHeaderTimeout: 2 * time.Second, IdleTimeout: 5 * time.Second, MaxHeaderBytes: 64 << 10})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shut down: %v", err)
		}
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return ref.Listener.Addr().String(), ln.Addr().String()
}

// sameAnswers reports whether the Server answered as net/http did: the same
// statuses and bodies, except that a request fasthttp could not read has
// its own explanation after net/http's "NNN Status text".
func sameAnswers(want, got []string) bool {
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		if want[i] == got[i] {
			continue
		}
		prefix, _, _ := strings.Cut(want[i], ":")
		code, rest, _ := strings.Cut(prefix, " ")
		if rest != code+" "+http.StatusText(atoi(code)) || !strings.HasPrefix(got[i], prefix+": ") {
			return false
		}
	}
	return true
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

// exchange sends raw on a connection to addr and returns every response
// read until the server closes it or a second passes without one.
func exchange(t *testing.T, addr, raw string) []string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var got []string
	for {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return got
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusContinue {
			continue // one from each server that may ask: informational
		}
		got = append(got, fmt.Sprintf("%d %s", resp.StatusCode, body))
	}
}

// TestSameAnswers sends each request, good and hostile, to net/http alone
// and to the Server, on one connection each, and wants the same answers:
// lookups answered by fasthttp, everything else by net/http once the
// connection is handed over, including what follows on the connection.
func TestSameAnswers(t *testing.T) {
	plain, fast := servers(t, echo(t))
	const lookup = "GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n"
	const narinfo = "GET /main/0123456789abcdfghijklmnpqrsvwxyz.narinfo HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eDp5\r\n\r\n"
	cases := []struct{ name, raw string }{
		{"lookup", lookup},
		{"narinfo lookup", narinfo},
		{"HEAD lookup", "HEAD /main/nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"lookups pipelined", lookup + narinfo + lookup},
		{"lookup with a query", "GET /main/nix-cache-info?a=b HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"lookup percent-encoded", "GET /main/nix%2dcache-info HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"lookup with dot segments", "GET /main/../main/nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"lookup over HTTP/1.0", "GET /main/nix-cache-info HTTP/1.0\r\nHost: x\r\n\r\n"},
		{"lookup in absolute form", "GET http://x/main/nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"lookup without Host", "GET /main/nix-cache-info HTTP/1.1\r\n\r\n"},
		{"lookup with two Hosts", "GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"},
		{"lookup with a body", "GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" + lookup},
		{"PUT then lookups", lookup + "PUT /main/log/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + lookup + narinfo},
		{"PUT of one byte", "PUT /main/log/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nh" + lookup},
		{"PUT of nothing", "PUT /main/log/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" + lookup},
		{"PUT chunked", "PUT /main/log/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + lookup},
		{"PUT with Expect: 100-continue", "PUT /main/log/x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello" + lookup},
		{"PUT with a body past 8 KiB", "PUT /main/log/x HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + strings.Repeat("z", 20000) + lookup},
		{"Content-Length and Transfer-Encoding", "PUT /main/log/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"negative Content-Length", "PUT /main/log/x HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"},
		{"two Content-Lengths", "PUT /main/log/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
		{"a request line of garbage", "BLAH\r\n\r\n"},
		{"a header without a colon", "GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n"},
		{"a header with a space before the colon", "GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n"},
		{"headers past 64 KiB", "GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n"},
		{"a lower-case method", "get /main/nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"an unknown protocol", "GET /main/nix-cache-info HTTP/2.0\r\nHost: x\r\n\r\n"},
		{"a handler that panics", "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"Connection: close", "GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + lookup},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, got := exchange(t, plain, c.raw), exchange(t, fast, c.raw)
			if !sameAnswers(want, got) {
				t.Errorf("answers differ\nnet/http: %q\nServer:   %q", want, got)
			}
		})
	}
}

// start serves h with a Server on a free port, with the timeouts given,
// and returns it and its address.
func start(t *testing.T, h http.Handler, header, idle time.Duration) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(h, &http.Server{ReadHeaderTimeout: header, IdleTimeout: idle, MaxHeaderBytes: 64 << 10},
		Options{ReadHeaderTimeout: header, IdleTimeout: idle, MaxHeaderBytes: 64 << 10})
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s, ln.Addr().String()
}

// TestWhoAnswers: lookups are answered by fasthttp, and a connection is
// handed over once, at its first other request, after which net/http
// answers everything on it, a file (by sendfile) intact.
func TestWhoAnswers(t *testing.T) {
	s, addr := start(t, echo(t), 2*time.Second, 5*time.Second)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return string(b)
	}
	for range 10 {
		if got := get("/main/0123456789abcdfghijklmnpqrsvwxyz.narinfo"); !strings.HasPrefix(got, "GET /main/0123456789abcdfghijklmnpqrsvwxyz.narinfo host=127.0.0.1:") {
			t.Fatalf("lookup answered %q", got)
		}
	}
	if n, h := s.lookups.Load(), s.handedOver.Load(); n != 10 || h != 0 {
		t.Fatalf("after 10 lookups: %d answered by fasthttp, %d connections handed over; want 10, 0", n, h)
	}
	if got := get("/files/big"); got != strings.Repeat("0123456789abcdef", 1<<16) {
		t.Fatalf("the file came back with %d bytes, not as stored", len(got))
	}
	for range 5 {
		get("/main/nix-cache-info")
	}
	if n, h := s.lookups.Load(), s.handedOver.Load(); n != 10 || h != 1 {
		t.Fatalf("after a download and 5 more lookups on the same connection: %d answered by fasthttp, %d handed over; want 10, 1", n, h)
	}
}

// TestHandlerPanics: a lookup whose handler panics is answered 500 and
// the server goes on.
func TestHandlerPanics(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/main/nix-cache-info" {
			panic("on purpose")
		}
		_, _ = io.WriteString(w, "ok")
	})
	_, addr := start(t, h, 2*time.Second, 5*time.Second)
	got := exchange(t, addr, "GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n")
	if len(got) != 1 || !strings.HasPrefix(got[0], "500 ") {
		t.Fatalf("a panicking lookup answered %q, want 500", got)
	}
	if got := exchange(t, addr, "GET /main/0123456789abcdfghijklmnpqrsvwxyz.narinfo HTTP/1.1\r\nHost: x\r\n\r\n"); len(got) != 1 || got[0] != "200 ok" {
		t.Fatalf("after the panic: %q", got)
	}
}

// TestSlowClients: headers that never end are cut off after the header
// timeout, on both servers, and an idle connection after the idle one.
func TestSlowClients(t *testing.T) {
	_, addr := start(t, echo(t), 300*time.Millisecond, 600*time.Millisecond)
	closedWithin := func(raw string, d time.Duration) bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, raw)
		_ = c.SetReadDeadline(time.Now().Add(d))
		_, err = io.Copy(io.Discard, c)
		return err == nil // EOF: the server closed it
	}
	const lookup = "GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, c := range []struct{ name, raw string }{
		{"headers unfinished", "GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\n"},
		{"idle after a lookup", lookup},
		{"headers unfinished after a handover", "PUT /main/log/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx" + "GET /x HTTP/1.1\r\n"},
		{"idle after a handover", "PUT /main/log/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx"},
	} {
		if !closedWithin(c.raw, 3*time.Second) {
			t.Errorf("%s: the connection was still open after 3 s", c.name)
		}
	}
}

// TestShutdownWaits: Shutdown lets a request in flight on a handed-over
// connection finish, and Serve returns http.ErrServerClosed.
func TestShutdownWaits(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = io.WriteString(w, "done")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(h, &http.Server{}, Options{ReadHeaderTimeout: time.Second, IdleTimeout: time.Second, MaxHeaderBytes: 1 << 10})
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	answer := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/slow")
		if err != nil {
			answer <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answer <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	time.Sleep(100 * time.Millisecond)
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := <-answer; got != "200 done" {
		t.Fatalf("the request in flight got %q", got)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Fatalf("Serve returned %v", err)
	}
}

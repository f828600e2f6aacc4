package plainhttp

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/httpx"
)

// quickStub answers /main/…narinfo lookups itself: 200 with the path, 304
// to an If-None-Match of "x", and declines /slow/…; /main/panic… panics.
type quickStub struct{ asked atomic.Int64 }

func (q *quickStub) ServeLookup(l *httpx.Lookup) bool {
	q.asked.Add(1)
	switch {
	case strings.HasPrefix(l.Path, "/slow/"):
		return false
	case strings.HasPrefix(l.Path, "/main/panic"):
		panic("on purpose")
	case l.IfNoneMatch == `"x"`:
		l.Status = http.StatusNotModified
		l.Header = append(l.Header, httpx.Field{Name: "Etag", Value: `"x"`})
	default:
		l.Status = http.StatusOK
		l.Header = append(l.Header, httpx.Field{Name: "Content-Type", Value: "text/x-nix-narinfo"},
			httpx.Field{Name: "Etag", Value: `"x"`})
		l.Body = []byte("quick " + l.Path + " from " + l.Remote.String() + "\n")
	}
	return true
}

// TestQuick: lookups the quick handler takes are answered with its status,
// header and body (none to HEAD, with the length of GET's; none to a 304),
// one it declines by the handler, one whose handler panics with 500, and
// S3-signed ones are never offered to it.
func TestQuick(t *testing.T) {
	q := &quickStub{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(echo(t), &http.Server{ReadHeaderTimeout: 2 * time.Second},
		Options{ReadHeaderTimeout: 2 * time.Second, IdleTimeout: 5 * time.Second, MaxHeaderBytes: 64 << 10, Quick: q})
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	base := "http://" + ln.Addr().String()
	const lookup = "/main/0123456789abcdfghijklmnpqrsvwxyz.narinfo"

	do := func(method, path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := do("GET", lookup)
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "quick "+lookup+" from 127.0.0.1:") ||
		resp.Header.Get("Content-Type") != "text/x-nix-narinfo" || resp.Header.Get("Etag") != `"x"` ||
		resp.ContentLength != int64(len(body)) {
		t.Fatalf("GET: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	resp, head := do("HEAD", lookup)
	if resp.StatusCode != 200 || head != "" || resp.ContentLength != int64(len(body)) {
		t.Fatalf("HEAD: %d, length %d, body %q; want 200, %d, none", resp.StatusCode, resp.ContentLength, head, len(body))
	}
	resp, body = do("GET", lookup, "If-None-Match", `"x"`)
	if resp.StatusCode != 304 || body != "" || resp.Header.Get("Etag") != `"x"` {
		t.Fatalf("conditional GET: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	resp, body = do("GET", "/slow/0123456789abcdfghijklmnpqrsvwxyz.narinfo")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "GET /slow/") {
		t.Fatalf("a declined lookup: %d %q, want the handler's answer", resp.StatusCode, body)
	}
	resp, _ = do("GET", "/main/panic56789abcdfghijklmnpqrsvwxyz.narinfo")
	if resp.StatusCode != 500 {
		t.Fatalf("a panicking quick handler: %d, want 500", resp.StatusCode)
	}
	asked := q.asked.Load()
	resp, body = do("GET", lookup, "Authorization", "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00")
	if q.asked.Load() != asked || !strings.HasPrefix(body, "GET "+lookup) {
		t.Fatalf("an S3-signed lookup went to the quick handler, or was answered %d %q", resp.StatusCode, body)
	}
	resp, body = do("GET", lookup, "Authorization", "Basic bGFyZGVyOnNlY3JldA==")
	if q.asked.Load() != asked+1 || !strings.HasPrefix(body, "quick ") {
		t.Fatalf("a lookup with a netrc password was not offered to the quick handler: %d %q", resp.StatusCode, body)
	}
	if got := s.lookups.Load(); got != 7 {
		t.Fatalf("%d lookups counted, want 7", got)
	}
}

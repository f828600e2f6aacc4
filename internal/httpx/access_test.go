package httpx

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/metrics"
)

// TestAccessLog: a request is counted under its kind and logged with the
// front end's attributes; the writer knows what was sent.
func TestAccessLog(t *testing.T) {
	var logs bytes.Buffer
	m := metrics.New()
	a := AccessLog{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: m, Protocol: "nix", Message: "request"}
	r := httptest.NewRequest("GET", "/main/nix-cache-info", nil)
	w := &ResponseWriter{ResponseWriter: httptest.NewRecorder()}
	if w.Status() != http.StatusOK {
		t.Errorf("status before anything was sent: %d, want 200", w.Status())
	}
	_, _ = io.WriteString(w, "hello")
	w.WriteHeader(http.StatusTeapot) // too late: the 200 was sent
	a.Done(r, w, "cache-info", time.Millisecond, func() []slog.Attr {
		return []slog.Attr{slog.Int("status", w.Status()), slog.Int64("bytes", w.Bytes()), slog.String("cache", "main")}
	})
	line := logs.String()
	for _, want := range []string{"msg=request", "status=200", "bytes=5", "cache=main"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line %q lacks %q", line, want)
		}
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/_larder/metrics", nil))
	if want := `larder_http_requests_total{code="200",kind="cache-info",method="GET",protocol="nix"} 1`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("the metrics lack %q", want)
	}
}

func TestRequestID(t *testing.T) {
	a, b := RequestID(), RequestID()
	if len(a) != 16 || strings.Trim(a, "0123456789abcdef") != "" || a == b {
		t.Errorf("request IDs %q and %q", a, b)
	}
}

// TestAccessLogQuiet: with Info off, the request is counted and its line
// never built.
func TestAccessLogQuiet(t *testing.T) {
	m := metrics.New()
	a := AccessLog{Logger: slog.New(slog.DiscardHandler), Metrics: m, Protocol: "s3", Message: "s3 request"}
	w := &ResponseWriter{ResponseWriter: httptest.NewRecorder()}
	a.Done(httptest.NewRequest("HEAD", "/main", nil), w, "HeadBucket", time.Millisecond, func() []slog.Attr {
		t.Error("the line was built with Info off")
		return nil
	})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/_larder/metrics", nil))
	if want := `larder_http_requests_total{code="200",kind="HeadBucket",method="HEAD",protocol="s3"} 1`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("the metrics lack %q", want)
	}
}

// TestResponseWriterReadFrom: a body copied into the writer goes through
// the wrapped writer's ReadFrom (net/http's sends files with sendfile),
// and counts as sent.
func TestResponseWriterReadFrom(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "body")
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("0123456789", 10000)
	if _, err := f.WriteString(body); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got bytes.Buffer
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &ResponseWriter{ResponseWriter: w}
		if _, ok := io.Writer(rw).(io.ReaderFrom); !ok {
			t.Error("the writer hides the ReaderFrom of net/http's")
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		n, err := io.Copy(rw, io.LimitReader(f, int64(len(body))))
		if err != nil || n != int64(len(body)) || rw.Bytes() != n || rw.Status() != http.StatusOK {
			t.Errorf("copied %d bytes (%v); the writer counted %d, status %d", n, err, rw.Bytes(), rw.Status())
		}
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(&got, resp.Body); err != nil || got.String() != body {
		t.Fatalf("the client read %d bytes (%v), not the %d sent", got.Len(), err, len(body))
	}
}

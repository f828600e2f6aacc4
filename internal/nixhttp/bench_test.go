package nixhttp_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/larder-cache/larder/internal/nixhttp"
)

// benchHandler returns a handler over an env holding paths in main, logging
// at warn as the benchmarks against nginx run it, and the paths of their
// narinfos.
func benchHandler(b *testing.B, paths int) (http.Handler, []string) {
	e := newEnv(b)
	var keys []string
	for i := range paths {
		p := newPath(e.t, "bench", []byte{byte(i), byte(i >> 8)}, "zstd")
		e.push("main", p)
		keys = append(keys, "/main/"+p.Hash+".narinfo")
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return nixhttp.New(e.app.Service, nixhttp.Options{Logger: log, Metrics: e.app.Metrics}), keys
}

// discard is a ResponseWriter that keeps only the status, reused across
// requests so that the benchmark counts the handler's allocations alone.
type discard struct {
	hdr    http.Header
	status int
}

func (d *discard) Header() http.Header         { return d.hdr }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(code int)        { d.status = code }

// benchLookups serves GETs of paths in turn and fails unless each answers
// want.
func benchLookups(b *testing.B, h http.Handler, paths []string, want int) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		reqs := make([]*http.Request, len(paths))
		for i, p := range paths {
			reqs[i] = httptest.NewRequest("GET", p, nil)
		}
		w := &discard{hdr: http.Header{}}
		i := 0
		for pb.Next() {
			clear(w.hdr)
			w.status = 200
			r := reqs[i%len(reqs)]
			h.ServeHTTP(w, r)
			if w.status != want {
				b.Fatalf("GET %s: %d, want %d", r.URL.Path, w.status, want)
			}
			i++
		}
	})
}

// BenchmarkNarInfoHit serves narinfos the cache holds, in process.
func BenchmarkNarInfoHit(b *testing.B) {
	h, keys := benchHandler(b, 100)
	benchLookups(b, h, keys, http.StatusOK)
}

// BenchmarkNarInfoMiss answers lookups of paths the cache does not hold, in
// process.
func BenchmarkNarInfoMiss(b *testing.B) {
	h, _ := benchHandler(b, 1)
	benchLookups(b, h, []string{"/main/0123456789abcdfghijklmnpqrsvwxyz.narinfo"}, http.StatusNotFound)
}

package nixhttp_test

import (
	"net/http/httptest"
	"testing"

	"github.com/larder-cache/larder/internal/config"
)

// benchHandler returns the handler of an env holding paths in main, with
// the access log off as in the benchmarks against nginx.
func benchHandler(b *testing.B, paths int) (*env, []string) {
	e := newEnv(b, func(c *config.Config) { c.LogLevel = "warn" })
	var keys []string
	for i := range paths {
		p := newPath(e.t, "bench", []byte{byte(i), byte(i >> 8)}, "zstd")
		e.push("main", p)
		keys = append(keys, "/main/"+p.Hash+".narinfo")
	}
	return e, keys
}

// BenchmarkNarInfoHit serves narinfos the cache holds, in process.
func BenchmarkNarInfoHit(b *testing.B) {
	e, keys := benchHandler(b, 100)
	h := e.srv.Config.Handler
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", keys[i%len(keys)], nil))
			if rec.Code != 200 {
				b.Fatalf("GET %s: %d", keys[i%len(keys)], rec.Code)
			}
			i++
		}
	})
}

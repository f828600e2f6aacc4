package metrics

import (
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/_larder/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, body)
	}
	return string(body)
}

func TestRecorded(t *testing.T) {
	m := New()
	m.Request("nix", "narinfo", "GET", 200, time.Millisecond)
	m.Request("nix", "narinfo", "GET", 200, time.Millisecond)
	m.Request("s3", "PutObject", "PUT", 403, time.Millisecond)
	m.CacheCollected("main", 10, 1000, 3, 300, true)
	m.CacheCollected("main", 9, 900, 1, 100, false)
	m.Collected(nil, time.Second, 4, 400)
	m.Collected(errors.New("store down"), time.Second, 0, 0)
	m.UpstreamLookup(LookupHit, 20*time.Millisecond)
	m.UpstreamLookup(LookupMiss, 10*time.Millisecond)
	m.UpstreamLookup("anything", time.Millisecond)
	m.UpstreamNar(NarStored, 1000)
	m.UpstreamNar(NarServed, 500)
	m.UpstreamNar(NarServed, 500)
	m.UpstreamSkipped(3)
	body := scrape(t, m)
	for _, want := range []string{
		`larder_http_requests_total{code="200",kind="narinfo",method="GET",protocol="nix"} 2`,
		`larder_http_requests_total{code="403",kind="PutObject",method="PUT",protocol="s3"} 1`,
		`larder_http_request_duration_seconds_count{kind="narinfo",protocol="nix"} 2`,
		`larder_cache_kept_paths{cache="main"} 9`,
		`larder_cache_kept_bytes{cache="main"} 900`,
		`larder_gc_removed_paths_total{cache="main"} 4`,
		`larder_gc_removed_bytes_total{cache="main"} 400`,
		`larder_cache_pins_over_quota{cache="main"} 0`,
		`larder_gc_runs_total{result="ok"} 1`,
		`larder_gc_runs_total{result="error"} 1`,
		`larder_gc_nar_files_deleted_total 4`,
		`larder_gc_nar_bytes_deleted_total 400`,
		`larder_gc_duration_seconds_count 1`,
		`larder_upstream_lookups_total{result="hit"} 1`,
		`larder_upstream_lookups_total{result="miss"} 1`,
		`larder_upstream_lookups_total{result="other"} 1`,
		`larder_upstream_lookup_duration_seconds_count 3`,
		`larder_upstream_nar_fetches_total{result="served"} 2`,
		`larder_upstream_nar_bytes_total{result="stored"} 1000`,
		`larder_upstream_nar_bytes_total{result="served"} 1000`,
		`larder_upstream_skipped_paths_total 3`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the metrics lack %q", want)
		}
	}
}

// TestLabelsBounded: whatever a caller passes, the request labels take
// values from fixed sets, so that requests from anyone cannot add series
// without end.
func TestLabelsBounded(t *testing.T) {
	m := New()
	for i := range 1000 {
		junk := fmt.Sprintf("%d-%s", i, strings.Repeat("x", 200))
		m.Request("nix", "narinfo", junk, 405, time.Millisecond)     // a method of the client's
		m.Request("s3", junk, "GET", 404, time.Millisecond)          // a kind no front end uses
		m.Request(junk, "narinfo", "GET", 200, time.Millisecond)     // an unknown protocol
		m.Request("nix", "narinfo", "GET", 1000+i, time.Millisecond) // a status HTTP has not
		m.Request("nix", "PutObject", "get", 200, time.Millisecond)  // another protocol's kind, a method in lower case
	}
	body := scrape(t, m)
	for _, want := range []string{
		`larder_http_requests_total{code="405",kind="narinfo",method="other",protocol="nix"} 1000`,
		`larder_http_requests_total{code="404",kind="other",method="GET",protocol="s3"} 1000`,
		`larder_http_requests_total{code="200",kind="other",method="GET",protocol="other"} 1000`,
		`larder_http_requests_total{code="other",kind="narinfo",method="GET",protocol="nix"} 1000`,
		`larder_http_requests_total{code="200",kind="other",method="other",protocol="nix"} 1000`,
		`larder_http_request_duration_seconds_count{kind="other",protocol="other"} 1000`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the metrics lack %q", want)
		}
	}
	if strings.Contains(body, "xxxxxxxx") {
		t.Error("a label value passed in reached the metrics")
	}
	series := 0
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, "larder_http_requests_total{") {
			series++
		}
	}
	if series != 5 {
		t.Errorf("%d request series, want 5", series)
	}
	// Only label sets counted as given are remembered for the next
	// request: none of the above, one of these.
	for range 3 {
		m.Request("nix", "narinfo", "GET", 200, time.Millisecond)
	}
	remembered := 0
	m.series.Range(func(any, any) bool { remembered++; return true })
	if remembered != 1 {
		t.Errorf("%d label sets remembered, want 1", remembered)
	}
	if body := scrape(t, m); !strings.Contains(body, `larder_http_requests_total{code="200",kind="narinfo",method="GET",protocol="nix"} 3`) {
		t.Error("requests counted through a remembered label set are missing")
	}
}

// TestNil: a nil *Metrics records nothing and serves 404.
func TestNil(t *testing.T) {
	var m *Metrics
	m.Request("nix", "nar", "GET", 200, time.Millisecond)
	m.CacheCollected("main", 1, 1, 1, 1, true)
	m.Collected(nil, time.Second, 1, 1)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/_larder/metrics", nil))
	if rec.Code != 404 {
		t.Fatalf("a nil Metrics serves %d, want 404", rec.Code)
	}
}

// BenchmarkRequest is the cost a request pays for its metrics.
func BenchmarkRequest(b *testing.B) {
	m := New()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Request("nix", "narinfo", "GET", 200, time.Millisecond)
		}
	})
}

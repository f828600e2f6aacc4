package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestGCPinsOverQuota: when a cache's pins alone exceed its max-size, the
// collection keeps them all, and says so in the log and in the metrics,
// which GET /_larder/metrics serves with the request and collection
// counters.
func TestGCPinsOverQuota(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--gc-grace", "1s", "--gc-interval", "1s")
	write := srv.token(t, "main", "write")
	dep := newGoPath("dep", 4000)
	top := newGoPath("top", 4000, dep)
	loose := newGoPath("loose", 4000)
	srv.pushGo(t, "main", write, dep, loose)
	srv.pushGo(t, "main", write, top)
	srv.cli(t, "pin", "add", "main", top.StorePath)
	from := srv.logSize()
	srv.setPolicy(t, "main", "", "1000")
	srv.waitLogLine(t, from, `msg="the pins of a cache alone exceed its size limit"`, "cache=main")

	l := srv.lister(t, "main")
	waitFor(t, "the collection of the unpinned path", 10*time.Second, 200*time.Millisecond, func() bool {
		return !l.holds("main", loose.StorePath)[loose.StorePath]
	})
	held := l.holds("main", top.StorePath, dep.StorePath)
	if !held[top.StorePath] || !held[dep.StorePath] {
		t.Errorf("the quota dropped a pin or its closure: %v", held)
	}
	code, body := httpDo(t, "GET", srv.URL+"/_larder/metrics", "", nil)
	if code != 200 {
		t.Fatalf("GET /_larder/metrics: %d %s", code, body)
	}
	for _, want := range []string{
		`larder_cache_pins_over_quota{cache="main"} 1`,
		`larder_gc_runs_total{result="ok"}`,
		`larder_gc_removed_paths_total{cache="main"} 1`,
		`larder_http_requests_total{code="201",kind="narinfo",method="PUT",protocol="nix"} 3`,
		`larder_cache_kept_paths{cache="main"} 2`,
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", strings.Join(grepLines(body, "larder_"), "\n"))
	}
}

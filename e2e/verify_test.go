package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestVerifyCLI: larder verify reports a NAR file whose blob was lost and
// exits with status 1; a dry run withdraws nothing (a second finds the file
// as the first did), a real run withdraws the file with its narinfo (404),
// and once the path is pushed again
// larder verify --full, which reads every file back, is content.
func TestVerifyCLI(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--gc-interval", "0s")
	kept, lost := newGoPath("kept", 3000), newGoPath("lost", 3000)
	srv.pushGo(t, "main", srv.AdminToken, kept)
	if out := srv.cli(t, "verify", "--full"); !strings.Contains(out, "checked 1 NAR files") || !strings.Contains(out, "0 missing, 0 damaged") {
		t.Fatalf("larder verify --full of a sound cache printed:\n%s", out)
	}
	srv.removeNarBlobs(t)
	srv.pushGo(t, "main", srv.AdminToken, lost)
	// kept's blob is gone, lost was pushed after: only kept is missing. A
	// dry run withdraws nothing, so a second one finds the same.
	for range 2 {
		out, errOut, err := srv.tryCLI("verify", "--dry-run")
		if err == nil || !strings.Contains(out, kept.NarKey()+": missing; would be withdrawn") || strings.Contains(out, lost.NarKey()) {
			t.Fatalf("larder verify --dry-run with a lost blob: %v\n%s%s", err, out, errOut)
		}
	}
	out, errOut, err := srv.tryCLI("verify", "--cache", "main")
	if err == nil || !strings.Contains(out, kept.NarKey()+": missing; withdrawn") || !strings.Contains(errOut, "push their paths again") {
		t.Fatalf("larder verify with a lost blob: %v\n%s%s", err, out, errOut)
	}
	waitFor(t, "the withdrawn narinfo to answer 404", 10*time.Second, 100*time.Millisecond, func() bool {
		return srv.narInfoStatus(t, "main", kept.StorePath) == http.StatusNotFound
	})
	if code := srv.narInfoStatus(t, "main", lost.StorePath); code != http.StatusOK {
		t.Errorf("a sound path answers %d after verify", code)
	}
	srv.pushGo(t, "main", srv.AdminToken, kept)
	srv.checkNar(t, "main", kept)
	if out := srv.cli(t, "verify", "--full"); !strings.Contains(out, "checked 2 NAR files") || !strings.Contains(out, "0 missing, 0 damaged") {
		t.Fatalf("larder verify --full after the path was pushed again printed:\n%s", out)
	}
	if _, errOut, err := srv.tryCLI("verify", "--cache", "nope"); err == nil || !strings.Contains(errOut, "nope") {
		t.Errorf("larder verify --cache nope: %v %s", err, errOut)
	}
}

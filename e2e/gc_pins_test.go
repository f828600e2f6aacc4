package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// pinJSON is a pin as the pins API returns it.
type pinJSON struct {
	Name          string    `json:"name"`
	StorePath     string    `json:"storePath"`
	PinnedAt      time.Time `json:"pinnedAt"`
	KeepRevisions int       `json:"keepRevisions"`
	KeepDays      int       `json:"keepDays"`
}

// apiPins returns GET /_larder/api/caches/CACHE/pins with token.
func (s *server) apiPins(t *testing.T, cache, token string) []pinJSON {
	t.Helper()
	code, body := httpDo(t, "GET", s.URL+"/_larder/api/caches/"+cache+"/pins", token, nil)
	if code != 200 {
		t.Fatalf("GET pins of %s: %d %s", cache, code, body)
	}
	var pins []pinJSON
	if err := json.Unmarshal([]byte(body), &pins); err != nil {
		t.Fatalf("GET pins of %s: %v\n%s", cache, err, body)
	}
	return pins
}

// pinPaths returns the store paths of pins, in order.
func pinPaths(pins []pinJSON) []string {
	var out []string
	for _, p := range pins {
		out = append(out, p.StorePath)
	}
	return out
}

// TestGCPinRevisions pins three builds under one name with
// --keep-revisions 2 (two with larder pin add, the newest over the HTTP API
// with the write token CI pushes with), makes everything older than the
// retention, and collects with larder gc: the oldest revision and an
// unpinned path go, the two newest stay with their closures and substitute
// with real Nix into empty stores. A dry run before changes nothing and
// predicts what the collection removes.
func TestGCPinRevisions(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--gc-grace", "1s", "--gc-interval", "0s")
	n := needNix(t)
	key := srv.pubkey(t, "main")
	srv.setPolicy(t, "main", "2s", "")
	p := n.buildGraph("pins-"+randomHex(4),
		graphNode{Name: "lib0", Size: 20000},
		graphNode{Name: "app0", Size: 1000, Refs: []string{"lib0"}},
		graphNode{Name: "lib1", Size: 20000},
		graphNode{Name: "app1", Size: 1000, Refs: []string{"lib1"}},
		graphNode{Name: "lib2", Size: 20000},
		graphNode{Name: "app2", Size: 1000, Refs: []string{"lib2"}},
		graphNode{Name: "loose", Size: 20000},
	)
	write := srv.token(t, "main", "write")
	read := srv.token(t, "main", "read")
	pusher := n.withNetrc(srv.Host, write)
	url := srv.cacheURL("main")

	// Revisions are pinned in different seconds (stores keep times to the
	// second), so that their order is certain.
	pusher.run("nix", "copy", "--to", url, p["app0"], p["loose"])
	srv.cli(t, "pin", "add", "main", p["app0"], "--name", "release", "--keep-revisions", "2")
	time.Sleep(1100 * time.Millisecond)
	pusher.run("nix", "copy", "--to", url, p["app1"])
	srv.cli(t, "pin", "add", "main", p["app1"], "--name", "release", "--keep-revisions", "2")
	time.Sleep(1100 * time.Millisecond)
	pusher.run("nix", "copy", "--to", url, p["app2"])

	// The newest revision is pinned as CI would, over HTTP with the token
	// it pushed with; a read token may not pin, nor may a path the cache
	// does not hold be pinned.
	pinURL := srv.URL + "/_larder/api/caches/main/pins/release"
	body := `{"storePath": "` + p["app2"] + `", "keepRevisions": 2}`
	if code, resp := httpDo(t, "PUT", pinURL, read, strings.NewReader(body)); code != 403 {
		t.Errorf("pin with a read token: %d %s, want 403", code, resp)
	}
	missing := "/nix/store/" + strings.Repeat("1", 32) + "-not-pushed"
	if code, resp := httpDo(t, "PUT", pinURL, write, strings.NewReader(`{"storePath": "`+missing+`", "keepRevisions": 2}`)); code != 404 {
		t.Errorf("pin of a path the cache does not hold: %d %s, want 404", code, resp)
	}
	code, resp := httpDo(t, "PUT", pinURL, write, strings.NewReader(body))
	if code != 201 {
		t.Fatalf("pin over HTTP with the write token: %d %s, want 201", code, resp)
	}
	var pinned pinJSON
	if err := json.Unmarshal([]byte(resp), &pinned); err != nil || pinned.Name != "release" || pinned.StorePath != p["app2"] || pinned.KeepRevisions != 2 {
		t.Errorf("pin over HTTP answered %s (%v)", resp, err)
	}
	pins := srv.apiPins(t, "main", read)
	if got, want := pinPaths(pins), []string{p["app2"], p["app1"], p["app0"]}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("GET pins lists %v, want the three revisions newest first %v", got, want)
	}
	for _, pin := range pins {
		if pin.Name != "release" || pin.KeepRevisions != 2 || pin.PinnedAt.IsZero() {
			t.Errorf("GET pins lists %+v, want name release keeping 2 revisions", pin)
		}
	}
	if got := lines(srv.cli(t, "pin", "list", "main")); len(got) != 4 {
		t.Errorf("larder pin list shows %d lines, want a header and three revisions:\n%s", len(got), strings.Join(got, "\n"))
	}

	// Everything is now made older than the retention: only the pins keep
	// anything.
	time.Sleep(3200 * time.Millisecond)
	files := srv.narFiles(t)
	dry := srv.collect(t, "--dry-run")
	if got := dry.Caches["main"]; got.Removed != 3 || got.Kept != 4 || !strings.Contains(got.Notes, "1 pin revisions expired") {
		t.Errorf("the dry run predicts %+v, want 3 paths removed, 4 kept and 1 pin revision expired:\n%s", got, dry.Out)
	}
	if got := len(srv.apiPins(t, "main", read)); got != 3 {
		t.Errorf("after the dry run %d pins are left, want all 3", got)
	}
	if got := srv.narFiles(t); got != files {
		t.Errorf("the dry run changed the NAR files on disk from %d to %d", files, got)
	}

	r := srv.collect(t)
	if got := r.Caches["main"]; got.Removed != 3 || got.Kept != 4 || got.Pinned != 2 || !strings.Contains(got.Notes, "1 pin revisions expired") {
		t.Errorf("larder gc reports %+v, want 3 paths removed, 4 kept, 2 pinned, 1 pin revision expired:\n%s", got, r.Out)
	}
	if r.Nars != 3 || srv.narFiles(t) != files-3 {
		t.Errorf("larder gc deleted %d NAR files (%d of %d left), want 3", r.Nars, srv.narFiles(t), files)
	}
	if dry.Nars != r.Nars {
		t.Errorf("the dry run said it would delete %d NAR files, the collection deleted %d:\n%s\n%s", dry.Nars, r.Nars, dry.Out, r.Out)
	}
	for _, gone := range []string{p["app0"], p["lib0"], p["loose"]} {
		if code := srv.narInfoStatus(t, "main", gone); code != 404 {
			t.Errorf("narinfo of %s: %d, want 404 (expired revision or unpinned)", gone, code)
		}
	}
	for _, kept := range []string{p["app1"], p["lib1"], p["app2"], p["lib2"]} {
		if code := srv.narInfoStatus(t, "main", kept); code != 200 {
			t.Errorf("narinfo of %s: %d, want 200 (one of the two newest revisions)", kept, code)
		}
	}
	if got, want := pinPaths(srv.apiPins(t, "main", read)), []string{p["app2"], p["app1"]}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("after the collection GET pins lists %v, want %v", got, want)
	}
	if got := lines(srv.cli(t, "pin", "list", "main")); len(got) != 3 || !strings.Contains(got[1], p["app2"]) || !strings.Contains(got[2], p["app1"]) {
		t.Errorf("after the collection larder pin list shows:\n%s", strings.Join(got, "\n"))
	}
	for _, top := range []string{"app1", "app2"} {
		substitute(t, srv, "main", key, p[top], n.closureOf(p[top]))
	}
	cannotSubstitute(t, srv, "main", key, p["app0"])

	// The two revisions stay through further collections.
	if again := srv.collect(t).Caches["main"]; again.Removed != 0 || again.Kept != 4 {
		t.Errorf("a second collection reports %+v, want nothing removed and 4 kept", again)
	}
}

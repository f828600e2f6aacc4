package nixkey

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"strings"
	"sync"
	"testing"
	"time"
)

// requireNix skips the test when the Nix command line tools are missing,
// unless LARDER_REQUIRE_NIX=1 makes that a failure.
func requireNix(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nix-store"); err != nil {
		if os.Getenv("LARDER_REQUIRE_NIX") == "1" {
			t.Fatalf("LARDER_REQUIRE_NIX=1 but nix-store is not on PATH: %v", err)
		}
		t.Skip("nix-store is not on PATH")
	}
}

// runNix runs a Nix command with a private narinfo cache and no
// substituters, and returns its trimmed standard output.
func runNix(t *testing.T, cacheDir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(),
		"NIX_CONFIG=experimental-features = nix-command ca-derivations\nbuild-users-group =\nsandbox = false\nsubstituters =",
		"XDG_CACHE_HOME="+cacheDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// recordingCache is an in-memory binary cache that records every request
// path below its root.
type recordingCache struct {
	mu    sync.Mutex
	files map[string][]byte
	keys  []string
}

func (c *recordingCache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The first path segment selects a cache, so that each compression
	// method gets a fresh one; the rest is the key.
	_, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys = append(c.keys, key)
	switch r.Method {
	case http.MethodPut:
		c.files[r.URL.Path] = body
	case http.MethodGet, http.MethodHead:
		if b, ok := c.files[r.URL.Path]; ok {
			_, _ = w.Write(b)
			return
		}
		if key == "nix-cache-info" {
			_, _ = io.WriteString(w, "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n")
			return
		}
		http.NotFound(w, r)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// TestNixClientKeys runs the real Nix client against a recording cache and
// checks that every key it reads or writes parses, round-trips and has the
// expected shape.
func TestNixClientKeys(t *testing.T) {
	requireNix(t)
	rec := &recordingCache{files: map[string][]byte{}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	cacheDir := t.TempDir()

	// A nonce makes the derivations new, so they are built here and
	// their build logs exist.
	nonce := fmt.Sprint(time.Now().UnixNano())
	out := runNix(t, cacheDir, "nix-build", "--no-out-link", "-E", debugDrvExpr(nonce))
	drv := runNix(t, cacheDir, "nix-store", "--query", "--deriver", out)

	for _, method := range []string{"xz", "zstd", "bzip2", "lz4", "br", "lzip", "gzip", "none"} {
		url := fmt.Sprintf("%s/%s?compression=%s&index-debug-info=true&write-nar-listing=1", srv.URL, method, method)
		runNix(t, cacheDir, "nix", "copy", "--to", url, out)
	}
	runNix(t, cacheDir, "nix", "store", "copy-log", "--to", srv.URL+"/log", out)
	runNix(t, cacheDir, "nix", "copy", "--to", srv.URL+"/ca", "--impure", "--expr", caDrvExpr(nonce))

	rec.mu.Lock()
	keys := append([]string(nil), rec.keys...)
	rec.mu.Unlock()
	seen := checkClientKeys(t, keys)

	for _, k := range []Kind{CacheInfo, NarInfo, Listing, Nar, Log, Realisation, DebugInfo} {
		if len(seen[k]) == 0 {
			t.Errorf("the client used no %s key; keys: %q", k, keys)
		}
	}
	if logs := seen[Log]; len(logs) > 0 && logs[0].Name != path.Base(drv) {
		t.Errorf("build log key name = %q, want the derivation base name %q", logs[0].Name, path.Base(drv))
	}
	for _, k := range seen[DebugInfo] {
		if k.Name != debugBuildID {
			t.Errorf("debuginfo key build id = %q, want %q", k.Name, debugBuildID)
		}
	}
	for _, k := range seen[Realisation] {
		if !strings.HasPrefix(k.Name, "sha256:") || !strings.HasSuffix(k.Name, "!out") {
			t.Errorf("realisation id = %q, want sha256:<hex>!out", k.Name)
		}
	}
	checkNarExts(t, seen[Nar])
}

// checkClientKeys parses every recorded key and groups the keys by kind.
func checkClientKeys(t *testing.T, keys []string) map[Kind][]Key {
	t.Helper()
	seen := map[Kind][]Key{}
	for _, s := range keys {
		k, err := Parse(s)
		if err != nil {
			t.Errorf("the client used a key that does not parse: %v", err)
			continue
		}
		if k.String() != s {
			t.Errorf("Parse(%q).String() = %q", s, k.String())
		}
		seen[k.Kind] = append(seen[k.Kind], k)
	}
	return seen
}

// checkNarExts checks that NARs were uploaded with every extension Nix
// gives and without one for gzip and none.
func checkNarExts(t *testing.T, nars []Key) {
	t.Helper()
	exts := map[string]bool{}
	for _, k := range nars {
		exts[k.Ext] = true
	}
	for _, ext := range []string{"", ".xz", ".zst", ".bz2", ".lz4", ".br", ".lzip"} {
		if !exts[ext] {
			t.Errorf("no NAR key with extension %q among %v", ext, nars)
		}
	}
}

// debugBuildID is the build id of the debug file in the output of
// debugDrvExpr.
const debugBuildID = "abcdef0123456789abcdef0123456789abcdef01"

// debugDrvExpr returns a derivation that logs a line and has a debug file
// under lib/debug/.build-id, so that index-debug-info writes a debuginfo key.
func debugDrvExpr(nonce string) string {
	dir := "$out/lib/debug/.build-id/" + debugBuildID[:2]
	script := fmt.Sprintf("echo building; /bin/mkdir -p %s && echo debug > %s/%s.debug", dir, dir, debugBuildID[2:])
	return fmt.Sprintf(`derivation { name = "larder-nixkey-debug"; nonce = "%s"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" %q]; }`,
		nonce, script)
}

// caDrvExpr returns a content-addressed derivation, whose copy uploads a
// realisation.
func caDrvExpr(nonce string) string {
	return fmt.Sprintf(`derivation { name = "larder-nixkey-ca"; nonce = "%s"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "echo ca > $out"]; __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; }`,
		nonce)
}

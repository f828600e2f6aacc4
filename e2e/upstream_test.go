package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/narinfo"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// TestUpstreamSkipPush: a closure half of which an upstream (nginx serving
// a cache nix copy wrote, signed with a key nix-store made) holds is
// pushed with nix copy: only the other half is uploaded, and only its
// bytes are stored. A consumer with larder as its only substituter gets
// the whole closure, which nix store verify passes.
func TestUpstreamSkipPush(t *testing.T) {
	t.Parallel()
	n := needNix(t)
	up := newUpstreamCache(t, n, "upstream.skip-1", "")
	srv := startServer(t)
	srv.cli(t, "cache", "create", "plain")
	srv, out := srv.upstreams(t, "main", "--upstream", up.spec())
	if !strings.Contains(out, "1 upstreams, skip") {
		t.Fatalf("cache update --upstream printed %q", out)
	}
	p := n.buildGraph("skip-"+randomHex(4),
		graphNode{Name: "base1", Size: 2 << 20},
		graphNode{Name: "base2", Size: 2 << 20, Refs: []string{"base1"}},
		graphNode{Name: "app1", Size: 20000, Refs: []string{"base2"}},
		graphNode{Name: "app2", Size: 20000, Refs: []string{"app1", "base1"}},
	)
	up.add(p["base2"]) // and base1, its closure
	closure := n.closureOf(p["app2"])
	pusher := n.withNetrc(srv.Host, srv.token(t, "*", "write"))

	from := srv.logSize()
	pusher.run("nix", "copy", "--to", srv.cacheURL("main"), p["app2"])
	narPuts := srv.requests(from, "method=PUT", "cache=main", "kind=nar ")
	infoPuts := srv.requests(from, "method=PUT", "cache=main", "kind=narinfo")
	from = srv.logSize()
	pusher.run("nix", "copy", "--to", srv.cacheURL("plain"), p["app2"])
	plainNarPuts := srv.requests(from, "method=PUT", "cache=plain", "kind=nar ")
	if narPuts != 2 || infoPuts != 2 || plainNarPuts != 4 {
		t.Fatalf("PUTs of NAR files and narinfos: %d and %d to the cache with an upstream, %d NAR files to the one without; want 2, 2 and 4",
			narPuts, infoPuts, plainNarPuts)
	}
	caches := srv.apiCaches(t, srv.AdminToken)
	skip, plain := caches["main"], caches["plain"]
	t.Logf("stored with skip: %d paths, %d bytes; without: %d paths, %d bytes", skip.Paths, skip.Bytes, plain.Paths, plain.Bytes)
	if skip.Paths != 4 || plain.Paths != 4 || skip.Bytes*20 > plain.Bytes {
		t.Fatalf("the cache with an upstream holds %d paths in %d bytes, the one without %d paths in %d bytes; "+
			"want 4 paths each, and only the small half stored with the upstream", skip.Paths, skip.Bytes, plain.Paths, plain.Bytes)
	}
	row := srv.cacheList(t)["main"]
	if row.Upstreams != "skip" || !strings.Contains(srv.cli(t, "cache", "list"), up.URL+"  "+up.Key) {
		t.Fatalf("cache list does not show the upstream of main: %+v\n%s", row, srv.cli(t, "cache", "list"))
	}

	// A consumer of larder alone, trusting larder's and the upstream's keys.
	key := srv.pubkey(t, "main")
	substitute(t, srv, "main", key+" "+up.Key, p["app2"], closure)
	// larder signs what it serves from the upstream too, having checked
	// the upstream's signature: trusting larder's key alone verifies all.
	needNix(t).run("nix", "store", "verify", "--store", srv.cacheURL("main"), "--trusted-public-keys", key, "-r", p["app2"])
	if after := srv.apiCaches(t, srv.AdminToken)["main"]; after.Bytes != skip.Bytes {
		t.Fatalf("serving the upstream's half stored %d bytes more: the cache does not pull through", after.Bytes-skip.Bytes)
	}
}

// TestUpstreamPullThrough: a cache that pulls through serves what only its
// upstream holds, with real Nix; eight readers of one NAR file at once,
// and a range of it, make one download; once stored, the path is served
// with the upstream stopped.
func TestUpstreamPullThrough(t *testing.T) {
	t.Parallel()
	n := needNix(t)
	up := newUpstreamCache(t, n, "upstream.pull-1", "2m") // NAR files at 2 MB/s: a download lasts
	srv := startServer(t)
	srv, _ = srv.upstreams(t, "main", "--upstream", up.spec(), "--skip=false", "--pull-through")
	p := n.buildGraph("pull-"+randomHex(4),
		graphNode{Name: "big", Size: 6 << 20},
		graphNode{Name: "small", Size: 20000, Refs: []string{"big"}},
	)
	up.add(p["small"])

	code, body := httpDo(t, "GET", srv.cacheURL("main")+"/"+hashPart(p["big"])+".narinfo", "", nil)
	if code != 200 {
		t.Fatalf("narinfo of a path only the upstream holds: %d %s", code, body)
	}
	f := narInfoFields(body)
	narURL, fileHash := srv.cacheURL("main")+"/"+f["URL"][0], strings.TrimPrefix(f["FileHash"][0], "sha256:")
	var wg sync.WaitGroup
	sums := make([]string, 8)
	for i := range sums {
		wg.Go(func() {
			resp, err := http.Get(narURL)
			if err != nil {
				sums[i] = err.Error()
				return
			}
			defer resp.Body.Close()
			h := sha256.New()
			if _, err := io.Copy(h, resp.Body); err != nil || resp.StatusCode != 200 {
				sums[i] = fmt.Sprint(resp.StatusCode, err)
				return
			}
			sums[i] = nixbase32.EncodeToString(h.Sum(nil))
		})
	}
	var ranged []byte
	var rangeStatus int
	wg.Go(func() {
		time.Sleep(500 * time.Millisecond) // while the file arrives
		req, _ := http.NewRequest("GET", narURL, nil)
		req.Header.Set("Range", "bytes=1000-1999")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		rangeStatus = resp.StatusCode
		ranged, _ = io.ReadAll(resp.Body)
	})
	wg.Wait()
	for i, sum := range sums {
		if sum != fileHash {
			t.Errorf("reader %d got a file hashing to %s, want %s", i, sum, fileHash)
		}
	}
	_, whole := httpDo(t, "GET", narURL, "", nil)
	if rangeStatus != 206 || string(ranged) != whole[1000:2000] {
		t.Errorf("a range asked for while the file arrived: %d, %d bytes; want 206 and bytes 1000 to 1999", rangeStatus, len(ranged))
	}
	gets := up.requests(`"GET /nar/`)
	t.Logf("upstream downloads for 8 concurrent readers and a range: %d", gets)
	if gets != 1 {
		t.Fatalf("8 concurrent readers and a range made %d downloads from the upstream, want 1", gets)
	}
	if c := srv.apiCaches(t, srv.AdminToken)["main"]; c.Paths != 1 || c.Bytes < 6<<20 {
		t.Fatalf("after pulling through: %d paths, %d bytes; want big stored", c.Paths, c.Bytes)
	}

	key := srv.pubkey(t, "main")
	closure := n.closureOf(p["small"])
	substitute(t, srv, "main", key+" "+up.Key, p["small"], closure)
	up.stop()
	substitute(t, srv, "main", key, p["small"], closure)
	if gets := up.requests(`"GET /nar/`); gets != 2 {
		t.Fatalf("%d downloads from the upstream in all, want 2 (big, then small)", gets)
	}
}

// TestUpstreamSecondLarder: another larder is an upstream too; larder push
// skips what it holds, and says so.
func TestUpstreamSecondLarder(t *testing.T) {
	t.Parallel()
	n := needNix(t)
	base := startServer(t)
	srv := startServer(t)
	p := n.buildPair("second-" + randomHex(4))
	lib, app := p.Paths[1], p.Top
	if p.Paths[0] != app {
		lib = p.Paths[0]
	}
	n.withNetrc(base.Host, base.token(t, "main", "write")).run("nix", "copy", "--to", base.cacheURL("main"), lib)
	srv, _ = srv.upstreams(t, "main", "--upstream", base.cacheURL("main")+"="+base.pubkey(t, "main"))
	out, errOut, err := runLarder(nil, "push", "--server", srv.URL, "--cache", "main", "--token-file",
		writeTokenFile(t, srv.token(t, "main", "write")), app)
	if err != nil || !strings.Contains(out+errOut, "pushed 1 paths (1 already cached, 1 upstream)") {
		t.Fatalf("larder push of a closure half in the other larder: %v\n%s%s", err, out, errOut)
	}
	substitute(t, srv, "main", srv.pubkey(t, "main"), app, p.Paths)
}

// writeTokenFile writes a token to a file for --token-file.
func writeTokenFile(t *testing.T, token string) string {
	t.Helper()
	f := t.TempDir() + "/token"
	must(t, os.WriteFile(f, []byte(token+"\n"), 0o600))
	return f
}

// randomStoreHash returns the hash of a store path nobody has.
func randomStoreHash() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return nixbase32.EncodeToString(b)
}

// TestUpstreamDead: an upstream that accepts connections and never answers
// makes no lookup slower than the timeout (1 s), and pushes go on.
func TestUpstreamDead(t *testing.T) {
	t.Parallel()
	n := needNix(t)
	srv := startServer(t)
	_, key := n.genKey("dead.test-1")
	srv, _ = srv.upstreams(t, "main", "--upstream", hang(t)+"="+key, "--pull-through")
	write := srv.token(t, "main", "write")
	for i, tok := range []string{write, "", write, ""} {
		start := time.Now()
		code, _ := httpDo(t, "GET", srv.cacheURL("main")+"/"+randomStoreHash()+".narinfo", tok, nil)
		took := time.Since(start)
		t.Logf("lookup %d with a dead upstream: %d in %v", i, code, took)
		if code != 404 || took > 2*time.Second {
			t.Fatalf("lookup %d with a dead upstream: %d after %v; want 404 within the timeout of 1s (and a second)", i, code, took)
		}
	}
	p := n.buildPair("dead-" + randomHex(4))
	start := time.Now()
	n.withNetrc(srv.Host, write).run("nix", "copy", "--to", srv.cacheURL("main"), p.Top)
	t.Logf("nix copy of 2 paths with a dead upstream: %v", time.Since(start))
	substitute(t, srv, "main", srv.pubkey(t, "main"), p.Top, p.Paths)
	srv.waitLog(t, "upstream did not answer")
}

// forgedUpstream serves, for each path, a narinfo and a NAR file as a test
// makes them; cut names NAR files it closes the connection of halfway.
type forgedUpstream struct {
	files map[string][]byte
	cut   map[string]int // bytes sent before the connection is closed
}

func (f *forgedUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, ok := f.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if n, ok := f.cut[r.URL.Path]; ok {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(200)
		_, _ = w.Write(body[:n])
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	_, _ = w.Write(body)
}

// TestUpstreamForged: narinfos signed with another key, NAR files
// tampered with or cut short, and a NarHash the NAR file does not have:
// nothing is served whole or stored, and the log says why.
func TestUpstreamForged(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	sec, pub, err := narinfo.GenerateKey("forged.test-1")
	must(t, err)
	key, err := narinfo.ParseSecretKey(sec)
	must(t, err)
	otherSec, _, err := narinfo.GenerateKey("forged.test-1")
	must(t, err)
	otherKey, err := narinfo.ParseSecretKey(otherSec)
	must(t, err)
	fu := &forgedUpstream{files: map[string][]byte{}, cut: map[string]int{}}
	hs := httptest.NewServer(fu)
	defer hs.Close()
	srv, _ = srv.upstreams(t, "main", "--upstream", hs.URL+"="+pub, "--skip=false", "--pull-through")

	paths := map[string]*goPath{}
	add := func(name string, sign narinfo.SecretKey, edit func(*narinfo.NarInfo), nar func([]byte) []byte) {
		p := newGoPath(name, 200_000)
		ni, err := narinfo.Parse([]byte(p.NarInfo()))
		must(t, err)
		if edit != nil {
			edit(ni)
		}
		ni.Sign(sign)
		fu.files["/"+p.Hash()+".narinfo"] = ni.Bytes()
		fu.files["/"+p.NarKey()] = nar(append([]byte{}, p.NAR...))
		paths[name] = p
	}
	same := func(b []byte) []byte { return b }
	add("wrongkey", otherKey, nil, same)
	add("tampered", key, nil, func(b []byte) []byte { b[len(b)-100] ^= 1; return b })
	add("truncated", key, nil, same)
	fu.cut["/"+paths["truncated"].NarKey()] = len(paths["truncated"].NAR) / 2
	add("empty", key, nil, same)
	fu.cut["/"+paths["empty"].NarKey()] = 0
	other := newGoPath("other", 1000)
	add("narhash", key, func(ni *narinfo.NarInfo) { ni.NarHash, _ = narinfo.ParseHash("sha256:" + other.narHash()) }, same)

	get := func(url string) (int, int, error) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, len(b), err
	}
	if code := srv.narInfoStatus(t, "main", paths["wrongkey"].StorePath); code != 404 {
		t.Errorf("narinfo signed with another key: %d, want 404", code)
	}
	for _, name := range []string{"tampered", "truncated", "narhash", "empty"} {
		p := paths[name]
		code, body := httpDo(t, "GET", srv.cacheURL("main")+"/"+p.Hash()+".narinfo", "", nil)
		if code != 200 {
			t.Fatalf("%s: narinfo %d %s", name, code, body)
		}
		// Refused before its first byte is sent, the file is answered with
		// 502; after, the answer is cut short.
		code, n, err := get(srv.cacheURL("main") + "/" + narInfoFields(body)["URL"][0])
		switch {
		case name == "empty" && code != http.StatusBadGateway:
			t.Errorf("NAR file of which the upstream sent nothing: %d, %v; want 502", code, err)
		case code == http.StatusBadGateway && err == nil:
		case code == http.StatusOK && err != nil && n < len(p.NAR):
		default:
			t.Errorf("%s: NAR file answered %d, %d of %d bytes, %v; want 502, or 200 cut short", name, code, n, len(p.NAR), err)
		}
	}
	srv.waitLog(t, "upstream narinfo refused")
	for _, want := range []string{"no signature of " + paths["wrongkey"].StorePath, "NAR file from an upstream refused",
		"not the one its signed narinfo describes"} {
		srv.waitLog(t, want)
	}
	// Once refused, the narinfo of a forged NAR file is not served either.
	if code := srv.narInfoStatus(t, "main", paths["tampered"].StorePath); code != 404 {
		t.Errorf("narinfo of a path whose NAR file was tampered with: %d, want 404", code)
	}
	if c := srv.apiCaches(t, srv.AdminToken)["main"]; c.Paths != 0 || c.Bytes != 0 || srv.narFiles(t) != 0 {
		t.Fatalf("after forged answers: %d paths, %d bytes, %d NAR files; want none", c.Paths, c.Bytes, srv.narFiles(t))
	}
}

// TestUpstreamGC: collections keep the closures of recent paths whole,
// upstream-only and pulled-through paths included, and drop the
// upstream-only paths of old roots with them.
func TestUpstreamGC(t *testing.T) {
	t.Parallel()
	n := needNix(t)
	up := newUpstreamCache(t, n, "upstream.gc-1", "")
	srv := startServer(t, "--gc-grace", "1s", "--gc-interval", "1s")
	srv, _ = srv.upstreams(t, "main", "--upstream", up.spec(), "--pull-through")
	p := n.buildGraph("upgc-"+randomHex(4),
		graphNode{Name: "pulled", Size: 30000},
		graphNode{Name: "skipped", Size: 30000},
		graphNode{Name: "kept", Size: 1000, Refs: []string{"pulled", "skipped"}},
		graphNode{Name: "olddep", Size: 30000},
		graphNode{Name: "old", Size: 1000, Refs: []string{"olddep"}},
	)
	up.add(p["pulled"], p["skipped"], p["olddep"])
	pusher := n.withNetrc(srv.Host, srv.token(t, "main", "write"))
	from := srv.logSize()
	pusher.run("nix", "copy", "--to", srv.cacheURL("main"), p["kept"], p["old"])
	if puts := srv.requests(from, "method=PUT", "kind=nar "); puts != 2 {
		t.Fatalf("%d NAR files uploaded, want 2 (kept and old)", puts)
	}
	// A reader pulls pulled through; skipped stays upstream-only.
	key := srv.pubkey(t, "main")
	substitute(t, srv, "main", key+" "+up.Key, p["pulled"], []string{p["pulled"]})
	srv.setPolicy(t, "main", "2s", "")
	l := srv.lister(t, "main")
	// kept is fetched every 250 ms, until old is collected.
	waitFor(t, "the collection of old", 30*time.Second, 250*time.Millisecond, func() bool {
		if code := srv.narInfoStatus(t, "main", p["kept"]); code != 200 {
			t.Fatalf("narinfo of the fetched path kept: %d", code)
		}
		return !l.holds("main", p["old"])[p["old"]]
	})
	// old went with olddep, upstream-only; kept's closure stays whole:
	// pulled stored, skipped upstream-only.
	waitFor(t, "the removal of olddep", 10*time.Second, 250*time.Millisecond, func() bool {
		return removedPaths(srv.log.String(), "main") >= 2
	})
	if got := removedPaths(srv.log.String(), "main"); got != 2 {
		t.Fatalf("collections removed %d paths, want 2 (old and olddep)", got)
	}
	held := l.holds("main", p["kept"], p["pulled"])
	code, body := httpDo(t, "POST", srv.URL+"/_larder/api/caches/main/missing", srv.token(t, "main", "read"),
		strings.NewReader(`{"hashes": ["`+hashPart(p["skipped"])+`", "`+hashPart(p["olddep"])+`"]}`))
	if !held[p["kept"]] || !held[p["pulled"]] || code != 200 ||
		!strings.Contains(body, `"missing":["`+hashPart(p["olddep"])+`"]`) || !strings.Contains(body, `"upstream":["`+hashPart(p["skipped"])+`"]`) {
		t.Fatalf("after the collection: kept and pulled held %v; missing paths %d %s", held, code, body)
	}
	// Served whole: skipped through the upstream (and pulled through now),
	// then everything from the cache alone.
	substitute(t, srv, "main", key+" "+up.Key, p["kept"], n.closureOf(p["kept"]))
	up.stop()
	substitute(t, srv, "main", key, p["kept"], n.closureOf(p["kept"]))
}

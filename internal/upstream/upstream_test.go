package upstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/narinfo"
	"github.com/larder-cache/larder/internal/testserver"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// cache is an upstream made for a test: narinfos and NAR files by path,
// counting the requests it answers.
type cache struct {
	t        *testing.T
	key      narinfo.SecretKey
	pub      string
	mu       sync.Mutex
	files    map[string][]byte
	headers  map[string]http.Header
	requests atomic.Int64
	hold     chan struct{} // if set, narinfo requests wait for it to close
	srv      *httptest.Server
}

func newCache(t *testing.T) *cache {
	t.Helper()
	sec, pub, err := narinfo.GenerateKey("up.test-1")
	if err != nil {
		t.Fatal(err)
	}
	key, err := narinfo.ParseSecretKey(sec)
	if err != nil {
		t.Fatal(err)
	}
	c := &cache{t: t, key: key, pub: pub, files: map[string][]byte{}, headers: map[string]http.Header{}}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *cache) serve(w http.ResponseWriter, r *http.Request) {
	c.requests.Add(1)
	if strings.HasSuffix(r.URL.Path, ".narinfo") && c.hold != nil {
		<-c.hold
	}
	c.mu.Lock()
	body, ok := c.files[r.URL.Path]
	hdr := c.headers[r.URL.Path]
	c.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	for k, v := range hdr {
		w.Header()[k] = v
	}
	_, _ = w.Write(body)
}

func (c *cache) upstream() Upstream {
	c.t.Helper()
	up, err := Parse(c.srv.URL, []string{c.pub})
	if err != nil {
		c.t.Fatal(err)
	}
	return up
}

func (c *cache) put(path string, body []byte) {
	c.mu.Lock()
	c.files[path] = body
	c.mu.Unlock()
}

// path is a store path of a test: its hash, its narinfo as signed, and
// its NAR file.
type path struct {
	hash string
	ni   *narinfo.NarInfo
	nar  []byte
}

// addPath adds a path named name with a NAR file of the given bytes,
// signed by the cache's key unless edit changes that, and returns it.
func (c *cache) addPath(name string, nar []byte, edit func(*narinfo.NarInfo)) path {
	c.t.Helper()
	sum := sha256.Sum256([]byte(name))
	hash := nixbase32.EncodeToString(sum[:20])
	fileHash, err := narinfo.ParseHash(fmt.Sprintf("sha256:%x", sha256.Sum256(nar)))
	if err != nil {
		c.t.Fatal(err)
	}
	ni := &narinfo.NarInfo{
		StorePath:   "/nix/store/" + hash + "-" + name,
		URL:         "nar/" + fileHash.Nix32() + ".nar",
		Compression: "none",
		FileHash:    fileHash,
		FileSize:    uint64(len(nar)),
		NarHash:     fileHash,
		NarSize:     uint64(len(nar)),
	}
	ni.Sign(c.key)
	if edit != nil {
		edit(ni)
	}
	c.put("/"+hash+".narinfo", ni.Bytes())
	c.put("/"+ni.URL, nar)
	return path{hash: hash, ni: ni, nar: nar}
}

// newClient returns a client with a short timeout and a log the test can
// read.
func newClient(t *testing.T, timeout time.Duration) (*Client, *testserver.SyncBuffer) {
	log := &testserver.SyncBuffer{}
	c := New(Options{Timeout: timeout, Logger: slog.New(slog.NewTextHandler(log, nil))})
	return c, log
}

func TestParse(t *testing.T) {
	_, pub, err := narinfo.GenerateKey("k-1")
	if err != nil {
		t.Fatal(err)
	}
	up, err := Parse("https://cache.example.org/sub/", []string{pub})
	if err != nil || up.URL != "https://cache.example.org/sub" || len(up.Keys) != 1 || up.Keys[0].String() != pub {
		t.Fatalf("Parse: %+v, %v", up, err)
	}
	for _, c := range []struct {
		url  string
		keys []string
		want string
	}{
		{"ftp://cache.example.org", []string{pub}, "not an http:// or https:// URL"},
		{"cache.example.org", []string{pub}, "not an http:// or https:// URL"},
		{"https://user:secret@cache.example.org", []string{pub}, "credentials"},
		{"https://cache.example.org?x=1", []string{pub}, "no query or fragment"},
		{"https://cache.example.org#x", []string{pub}, "no query or fragment"},
		{"https://cache.example.org", nil, "give the public key"},
		{"https://cache.example.org", []string{"k-1:short"}, "invalid public key"},
	} {
		_, err := Parse(c.url, c.keys)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q, %q) = %v, want an error containing %q", c.url, c.keys, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Parse(%q): the error shows the password: %v", c.url, err)
		}
	}
}

func TestLookupHit(t *testing.T) {
	up := newCache(t)
	p := up.addPath("hello", []byte("a NAR file"), nil)
	c, _ := newClient(t, time.Second)
	hit, out := c.Lookup(t.Context(), []Upstream{up.upstream()}, p.hash)
	if out != Found || hit == nil {
		t.Fatalf("lookup of a path the upstream holds: %v, %v", hit, out)
	}
	if hit.Upstream != up.srv.URL || hit.NarInfo.StorePath != p.ni.StorePath ||
		hit.FileKey() != "nar/"+p.ni.FileHash.Nix32()+".nar" {
		t.Fatalf("hit: %+v, key %s", hit, hit.FileKey())
	}
	if sigs := hit.ValidSigs(); len(sigs) != 1 || sigs[0] != p.ni.Sigs[0] {
		t.Fatalf("valid signatures: %q, want the upstream's", sigs)
	}
	r, err := c.Fetch(t.Context(), hit)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, p.nar) {
		t.Fatalf("fetched %q, %v; want %q", got, err, p.nar)
	}
	// Remembered: asked again, the upstream is not.
	n := up.requests.Load()
	if _, out := c.Lookup(t.Context(), []Upstream{up.upstream()}, p.hash); out != Found || up.requests.Load() != n {
		t.Fatalf("second lookup: %v after %d more requests, want a hit from memory", out, up.requests.Load()-n)
	}
	// Checked, it is.
	if _, out := c.Check(t.Context(), []Upstream{up.upstream()}, p.hash); out != Found || up.requests.Load() != n+1 {
		t.Fatalf("check: %v after %d more requests, want a hit from the upstream", out, up.requests.Load()-n)
	}
}

func TestLookupMissRemembered(t *testing.T) {
	up := newCache(t)
	c, _ := newClient(t, time.Second)
	for i := range 3 {
		if hit, out := c.Lookup(t.Context(), []Upstream{up.upstream()}, strings.Repeat("a", 32)); out != Absent || hit != nil {
			t.Fatalf("lookup %d of a path no upstream has: %v, %v", i, hit, out)
		}
	}
	if n := up.requests.Load(); n != 1 {
		t.Fatalf("three lookups of a missing path made %d requests, want 1", n)
	}
	if _, out := c.Lookup(t.Context(), nil, strings.Repeat("a", 32)); out != Absent {
		t.Fatalf("lookup without upstreams: %v, want absent", out)
	}
}

// TestLookupRefused: answers that are forged, unsigned, of another path,
// too large or unusable are refused, with a log line, and remembered as
// misses.
func TestLookupRefused(t *testing.T) {
	up := newCache(t)
	other, _, err := narinfo.GenerateKey("up.test-1") // the same name, another key
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := narinfo.ParseSecretKey(other)
	cases := map[string]struct {
		edit func(*narinfo.NarInfo)
		want string
	}{
		"wrong-key":   {func(ni *narinfo.NarInfo) { ni.Sigs = nil; ni.Sign(otherKey) }, "no signature"},
		"unsigned":    {func(ni *narinfo.NarInfo) { ni.Sigs = nil }, "no signature"},
		"tampered":    {func(ni *narinfo.NarInfo) { ni.NarSize++ }, "no signature"},
		"no-filehash": {func(ni *narinfo.NarInfo) { ni.FileHash = narinfo.Hash{}; ni.FileSize = 0 }, "no FileHash"},
		"elsewhere":   {func(ni *narinfo.NarInfo) { ni.URL = "../../etc/passwd" }, "not a relative path"},
		"absolute":    {func(ni *narinfo.NarInfo) { ni.URL = "http://169.254.169.254/nar/x.nar" }, "character larder does not follow"},
		"lzip": {func(ni *narinfo.NarInfo) {
			ni.Compression = "lzip"
			ni.Sigs = nil
			ni.Sign(up.key)
		}, "does not support the Compression"},
	}
	c, log := newClient(t, time.Second)
	for name, tc := range cases {
		p := up.addPath(name, []byte("nar of "+name), tc.edit)
		if hit, out := c.Lookup(t.Context(), []Upstream{up.upstream()}, p.hash); out != Absent || hit != nil {
			t.Errorf("%s: lookup = %v, %v; want it refused", name, hit, out)
		}
		if !strings.Contains(log.String(), "upstream narinfo refused") || !strings.Contains(log.String(), tc.want) {
			t.Errorf("%s: the log does not say why it was refused (%q):\n%s", name, tc.want, log.String())
		}
	}
	// Another path's narinfo, and one that is too large.
	p := up.addPath("real", []byte("nar"), nil)
	liar := strings.Repeat("b", 32)
	up.put("/"+liar+".narinfo", p.ni.Bytes())
	huge := strings.Repeat("c", 32)
	up.put("/"+huge+".narinfo", bytes.Repeat([]byte("x"), 2<<20))
	garbage := strings.Repeat("d", 32)
	up.put("/"+garbage+".narinfo", []byte("<html>not a narinfo</html>\n"))
	for hash, want := range map[string]string{liar: "not the path asked for", huge: "larger than", garbage: "invalid narinfo"} {
		if hit, out := c.Lookup(t.Context(), []Upstream{up.upstream()}, hash); out != Absent || hit != nil {
			t.Errorf("lookup of %s = %v, %v; want it refused", hash, hit, out)
		}
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, log.String())
		}
	}
	n := up.requests.Load()
	c.Lookup(t.Context(), []Upstream{up.upstream()}, liar)
	if up.requests.Load() != n {
		t.Errorf("a refused answer was asked for again at once")
	}
}

// hang listens on a port and accepts connections, but never answers.
func hang(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "http://" + l.Addr().String()
}

// TestLookupDeadUpstream: an upstream that never answers costs a lookup
// its timeout, and later lookups nothing while it is left alone; another
// upstream's hit is not held up by it.
func TestLookupDeadUpstream(t *testing.T) {
	good := newCache(t)
	p := good.addPath("hello", []byte("nar"), nil)
	dead, err := Parse(hang(t), []string{good.pub})
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 300 * time.Millisecond
	c, log := newClient(t, timeout)
	start := time.Now()
	hit, out := c.Lookup(t.Context(), []Upstream{dead}, p.hash)
	if took := time.Since(start); out != Unknown || hit != nil || took > timeout+time.Second {
		t.Fatalf("lookup at a dead upstream: %v, %v after %v; want unknown within %v", hit, out, took, timeout)
	}
	// The request ends with the lookup, and says so.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(log.String(), "upstream did not answer"); {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say the upstream did not answer:\n%s", log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	start = time.Now()
	if _, out := c.Lookup(t.Context(), []Upstream{dead}, strings.Repeat("e", 32)); out != Unknown || time.Since(start) > timeout/2 {
		t.Fatalf("lookup while the dead upstream is left alone: %v after %v; want unknown at once", out, time.Since(start))
	}
	// The good one answers, however the dead one does.
	hit, out = c.Lookup(t.Context(), []Upstream{dead, good.upstream()}, p.hash)
	if out != Found || hit == nil || hit.Upstream != good.srv.URL {
		t.Fatalf("lookup at a dead and a good upstream: %v, %v", hit, out)
	}
	// A path neither has is unknown, not absent: the dead one could not say.
	if _, out := c.Lookup(t.Context(), []Upstream{good.upstream(), dead}, strings.Repeat("f", 32)); out != Unknown {
		t.Fatalf("lookup of a missing path at a dead and a good upstream: %v, want unknown", out)
	}
}

// TestLookupShared: concurrent lookups of one path make one request.
func TestLookupShared(t *testing.T) {
	up := newCache(t)
	p := up.addPath("hello", []byte("nar"), nil)
	up.hold = make(chan struct{})
	c, _ := newClient(t, 5*time.Second)
	var wg sync.WaitGroup
	outs := make([]Outcome, 8)
	for i := range outs {
		wg.Go(func() { _, outs[i] = c.Lookup(t.Context(), []Upstream{up.upstream()}, p.hash) })
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c.mu.Lock()
		n := len(c.inflight)
		c.mu.Unlock()
		if n == 1 && up.requests.Load() == 1 || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(50 * time.Millisecond) // let the other lookups join, if they are to
	close(up.hold)
	wg.Wait()
	for i, out := range outs {
		if out != Found {
			t.Errorf("lookup %d: %v", i, out)
		}
	}
	if n := up.requests.Load(); n != 1 {
		t.Fatalf("8 concurrent lookups made %d requests, want 1", n)
	}
}

// TestLookupAskerLeaves: a lookup whose caller goes away does not stop the
// request that another lookup shares.
func TestLookupAskerLeaves(t *testing.T) {
	up := newCache(t)
	p := up.addPath("hello", []byte("nar"), nil)
	up.hold = make(chan struct{})
	c, _ := newClient(t, 5*time.Second)
	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan Outcome)
	go func() { _, out := c.Lookup(ctx, []Upstream{up.upstream()}, p.hash); first <- out }()
	for up.requests.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	second := make(chan Outcome)
	go func() { _, out := c.Lookup(t.Context(), []Upstream{up.upstream()}, p.hash); second <- out }()
	cancel()
	if out := <-first; out != Unknown {
		t.Fatalf("the lookup whose caller left: %v, want unknown", out)
	}
	close(up.hold)
	if out := <-second; out != Found {
		t.Fatalf("the lookup that shared the request: %v, want found", out)
	}
}

func TestFetchRefused(t *testing.T) {
	up := newCache(t)
	c := New(Options{FetchTimeout: 300 * time.Millisecond})
	p := up.addPath("short", []byte("the NAR file"), nil)
	hit, out := c.Lookup(t.Context(), []Upstream{up.upstream()}, p.hash)
	if out != Found {
		t.Fatal(out)
	}
	up.put("/"+p.ni.URL, []byte("the NAR"))
	if _, err := c.Fetch(t.Context(), hit); err == nil || !strings.Contains(err.Error(), "FileSize") {
		t.Errorf("fetch of a file shorter than its FileSize: %v", err)
	}
	up.put("/"+p.ni.URL, p.nar)
	up.mu.Lock()
	up.headers["/"+p.ni.URL] = http.Header{"Content-Encoding": {"gzip"}}
	up.mu.Unlock()
	if _, err := c.Fetch(t.Context(), hit); err == nil || !strings.Contains(err.Error(), "Content-Encoding") {
		t.Errorf("fetch of a file sent with Content-Encoding: %v", err)
	}
	up.put("/"+p.ni.URL, nil)
	delete(up.files, "/"+p.ni.URL)
	if _, err := c.Fetch(t.Context(), hit); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("fetch of a file the upstream lost: %v", err)
	}
}

// TestFetchStalls: a NAR file whose upstream stops sending fails after the
// fetch timeout.
func TestFetchStalls(t *testing.T) {
	up := newCache(t)
	p := up.addPath("stall", bytes.Repeat([]byte("n"), 1000), nil)
	stall := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".narinfo") {
			up.serve(w, r)
			return
		}
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write(p.nar[:100])
		w.(http.Flusher).Flush()
		<-stall
	}))
	defer srv.Close()
	defer close(stall) // before Close, which waits for the handler
	u, err := Parse(srv.URL, []string{up.pub})
	if err != nil {
		t.Fatal(err)
	}
	c := New(Options{FetchTimeout: 300 * time.Millisecond})
	hit, out := c.Lookup(t.Context(), []Upstream{u}, p.hash)
	if out != Found {
		t.Fatal(out)
	}
	r, err := c.Fetch(t.Context(), hit)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	start := time.Now()
	n, err := io.Copy(io.Discard, r)
	if err == nil || n != 100 || time.Since(start) > 5*time.Second {
		t.Fatalf("read of a stalled NAR file: %d bytes, %v after %v; want an error after 100 bytes", n, err, time.Since(start))
	}
}

func TestAnswerCacheBounded(t *testing.T) {
	c := newAnswerCache()
	until := time.Now().Add(time.Hour)
	for i := range 3 * answerMax {
		c.put(answerKey{"u", fmt.Sprint(i)}, answer{absent: true}, until)
	}
	if n := c.len(); n > 2*answerMax {
		t.Fatalf("the answer cache holds %d answers, more than %d", n, 2*answerMax)
	}
	if _, ok := c.get(answerKey{"u", fmt.Sprint(3*answerMax - 1)}, time.Now()); !ok {
		t.Fatalf("the latest answer is forgotten")
	}
	if _, ok := c.get(answerKey{"u", fmt.Sprint(3*answerMax - 1)}, until.Add(time.Second)); ok {
		t.Fatalf("an expired answer is served")
	}
}

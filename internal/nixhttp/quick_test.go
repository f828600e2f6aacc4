package nixhttp_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/larder-cache/larder/internal/httpx"
	"github.com/larder-cache/larder/internal/narinfo"
	"github.com/larder-cache/larder/internal/nixhttp"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// lookupAnswer is what a client sees of an answer: status, the header fields
// larder sets, and body.
type lookupAnswer struct {
	status int
	header []string // "Name: value", sorted
	body   string
}

// answerOf is h's answer to a request.
func answerOf(h http.Handler, method, path string, hdr ...string) lookupAnswer {
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	a := lookupAnswer{status: w.Code, body: w.Body.String()}
	for k, vs := range w.Header() {
		for _, v := range vs {
			a.header = append(a.header, k+": "+v)
		}
	}
	if method == http.MethodGet && w.Code != http.StatusNotModified && w.Header().Get("Content-Length") == "" {
		a.header = append(a.header, "Content-Length: "+strconv.Itoa(w.Body.Len())) // as net/http adds it
	}
	slices.Sort(a.header)
	return a
}

// quickAnswer is ServeLookup's answer to the same request, as package
// plainhttp sends it, and whether it answered.
func quickAnswer(e *env, method, path string, hdr ...string) (lookupAnswer, bool) {
	l := &httpx.Lookup{Head: method == http.MethodHead, Path: path, Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "If-None-Match" {
			l.IfNoneMatch = hdr[i+1]
		}
	}
	if !e.h.ServeLookup(l) {
		return lookupAnswer{}, false
	}
	a := lookupAnswer{status: l.Status}
	for _, f := range l.Header {
		a.header = append(a.header, http.CanonicalHeaderKey(f.Name)+": "+f.Value)
	}
	if l.Status != http.StatusNotModified {
		a.header = append(a.header, "Content-Length: "+strconv.Itoa(len(l.Body)))
	}
	if !l.Head {
		a.body = string(l.Body)
	}
	slices.Sort(a.header)
	return a, true
}

// TestServeLookup: the quick path answers hits it has rendered, misses and
// conditional lookups of a public cache exactly as ServeHTTP's own path
// does, whether asked by the fasthttp front end or through ServeHTTP,
// counts them, and declines everything that needs more than memory.
func TestServeLookup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	slow := nixhttp.NoQuick(nixhttp.New(e.app.Service, nixhttp.Options{Metrics: e.app.Metrics}))
	slowAnswer := func(e *env, method, path string, hdr ...string) lookupAnswer {
		return answerOf(slow, method, path, hdr...)
	}
	p := newPath(t, "quick", []byte("quick"), "none")
	e.push("main", p)
	for _, spec := range []service.CacheSpec{{Name: "secret", Private: true}, {Name: "pulls"}} {
		if _, err := e.app.Service.CreateCache(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
	}
	e.push("secret", p)
	_, pub, err := narinfo.GenerateKey("up-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.app.Service.SetUpstream(t.Context(), "pulls", store.UpstreamConfig{PullThrough: true,
		Upstreams: []store.Upstream{{URL: "http://127.0.0.1:1", Keys: []string{pub}}}}); err != nil {
		t.Fatal(err)
	}
	hit := "/main/" + p.Hash + ".narinfo"
	miss := "/main/" + strings.Repeat("0", 32) + ".narinfo"

	if _, ok := quickAnswer(e, "GET", hit); ok {
		t.Fatal("a narinfo not rendered yet was answered from memory")
	}
	etag := ""
	same := func(method, path string, hdr ...string) {
		t.Helper()
		want := slowAnswer(e, method, path, hdr...)
		got, ok := quickAnswer(e, method, path, hdr...)
		if !ok {
			t.Fatalf("%s %s %v declined", method, path, hdr)
		}
		for _, got := range []lookupAnswer{got, answerOf(e.h, method, path, hdr...)} {
			if got.status != want.status || !slices.Equal(got.header, want.header) || got.body != want.body {
				t.Fatalf("%s %s %v:\nquick %d %q %q\nslow  %d %q %q", method, path, hdr,
					got.status, got.header, got.body, want.status, want.header, want.body)
			}
		}
		for _, h := range got.header {
			if v, ok := strings.CutPrefix(h, "Etag: "); ok {
				etag = v
			}
		}
	}
	same("GET", hit)
	if etag == "" || !strings.Contains(slowAnswer(e, "GET", hit).body, "StorePath: "+p.StorePath) {
		t.Fatal("the hit has no ETag, or is not the narinfo")
	}
	same("HEAD", hit)
	same("GET", hit, "If-None-Match", etag)
	same("GET", hit, "If-None-Match", `"stale"`)
	same("GET", miss)

	hits := `larder_http_requests_total{code="200",kind="narinfo",method="GET",protocol="nix"}`
	misses := `larder_http_requests_total{code="404",kind="narinfo",method="GET",protocol="nix"}`
	h0, m0 := metric(t, e, hits), metric(t, e, misses)
	for range 3 {
		quickAnswer(e, "GET", hit)
		quickAnswer(e, "GET", miss)
	}
	if h, m := metric(t, e, hits), metric(t, e, misses); h != h0+3 || m != m0+3 {
		t.Fatalf("3 quick hits and misses counted as %v and %v more", h-h0, m-m0)
	}
	if logs := e.logs.String(); !strings.Contains(logs, `kind=narinfo status=404 bytes=`) ||
		!strings.Contains(logs, `remote=127.0.0.1:1 reason="cache main has no 00000000000000000000000000000000.narinfo"`) {
		t.Fatalf("no access log line of a quick miss in:\n%s", logs)
	}

	for _, path := range []string{
		"/secret/" + p.Hash + ".narinfo", // private
		"/secret/" + strings.Repeat("0", 32) + ".narinfo",
		"/nosuch/" + p.Hash + ".narinfo",                // no such cache
		"/main/" + strings.Repeat("e", 32) + ".narinfo", // not a hash: 400
		"/main/nix-cache-info",
		"/pulls/" + strings.Repeat("0", 32) + ".narinfo", // the upstream may have it
		"/main/" + p.URL(),
	} {
		slowAnswer(e, "GET", path) // rendered, if it can be
		if a, ok := quickAnswer(e, "GET", path); ok {
			t.Errorf("GET %s answered from memory: %+v", path, a)
		}
	}
}

// metric returns the value of a series of the server's metrics, 0 if it
// has none.
func metric(t *testing.T, e *env, series string) float64 {
	t.Helper()
	w := httptest.NewRecorder()
	e.app.Metrics.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

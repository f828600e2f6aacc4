package nixhttp_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// The credentials of the auth matrix. Each is wrong in one way only: the
// expired and revoked tokens are admin tokens of the cache addressed, the
// other cache's token is an admin token of another cache.
var matrixCredentials = []string{"none", "wrong-token", "expired", "revoked", "read-only", "other-cache"}

// matrixState is everything the requests of the matrix could change: the
// narinfos and blobs (snapshot), and every cache with its keys (narinfos,
// NARs, files, each with its ETag and time) and pins.
func matrixState(t *testing.T, e *env) string {
	t.Helper()
	ctx := t.Context()
	s := e.snapshot()
	var b strings.Builder
	fmt.Fprintf(&b, "narinfos %d blobs %v\n", s.narinfos, s.blobs)
	caches, err := e.meta.ListCaches(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range caches {
		fmt.Fprintf(&b, "cache %s private=%v policy=%+v\n", c.Name, c.Private, c.Policy)
		keys, err := e.meta.ListKeys(ctx, c.ID, "", "", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s %s %s\n", k.Key, k.ETag, k.Modified.Format(time.RFC3339Nano))
		}
		pins, rules, err := e.meta.ListPins(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pins {
			fmt.Fprintf(&b, "  pin %s %s %+v\n", p.Name, p.StorePath, rules[p.Name])
		}
	}
	return b.String()
}

// matrixCreds makes the credentials of the matrix for a cache.
func matrixCreds(t *testing.T, e *env, cache string) map[string]string {
	t.Helper()
	ctx := t.Context()
	revoked, tok, err := e.app.Service.CreateToken(ctx, service.TokenSpec{Cache: cache, Perm: store.PermAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.app.Service.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"none":        "",
		"wrong-token": "lrd_" + strings.Repeat("a", 39), // the shape of a token, not one
		// Expired the moment it is made: the expiry is rounded down to the
		// second.
		"expired":     e.token(cache, store.PermAdmin, time.Nanosecond),
		"revoked":     revoked,
		"read-only":   e.token(cache, store.PermRead, 0),
		"other-cache": e.token("other", store.PermAdmin, 0),
	}
}

// matrixEndpoint is a row of the matrix.
type matrixEndpoint struct {
	name, method, path string
	body               []byte
	cache              string // whose credentials are used
	kind               string // "write", "read" (of a private cache), "unsupported", "list"
	control            int    // the status with a credential that may: read-only for reads, admin for writes
	hdr                []string
}

// TestAuthMatrix sends every write endpoint, every read of a private cache
// and the read of a public cache's pins, over the Nix protocol and larder's
// JSON API, with every kind of bad credential: each is refused with 401 or 403 and a message saying why, and
// nothing changes. DELETE is not part of the Nix protocol: it gets 405 with
// every credential, admin included. GET /_larder/api/caches lists the
// caches a credential administers: with a valid token that administers
// none of them it answers an empty list, which must not name a cache.
// Finally each endpoint is sent with a credential that may, so that every
// row is known to be an endpoint that works.
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, spec := range []service.CacheSpec{{Name: "secret", Private: true}, {Name: "other"}} {
		if _, err := e.app.Service.CreateCache(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
	}
	// What the private cache holds, and what main holds already.
	drv := strings.Repeat("a", 32) + "-hello.drv"
	id := "sha256:" + strings.Repeat("ab", 32) + "!out"
	listing := strings.Repeat("b", 32) + ".ls"
	debug := "debuginfo/" + strings.Repeat("d", 40) + ".debug"
	files := map[string]string{
		listing:                       `{"version":1,"root":{"type":"regular","size":1}}`,
		"log/" + drv:                  "building hello\n",
		"realisations/" + id + ".doi": `{"id":"` + id + `","outPath":"` + strings.Repeat("c", 32) + `-hello","signatures":[],"dependentRealisations":{}}`,
		debug:                         `{"archive":"../nar/x.nar.xz","member":"lib/debug/.build-id/dd/d.debug"}`,
		"log/" + strings.Repeat("f", 32) + "-old.drv": "an older log\n",
	}
	private := newPath(t, "private", []byte("private"), "zstd")
	e.push("secret", private)
	pinned := newPath(t, "pinned", []byte("pinned"), "zstd")
	e.push("main", pinned)
	e.push("secret", pinned)
	for key, body := range files {
		e.expect(201, "PUT", "/secret/"+key, e.admin, []byte(body))
		e.expect(201, "PUT", "/main/"+key, e.admin, []byte(body))
	}
	pin := `{"storePath": "` + pinned.StorePath + `"}`
	e.expect(201, "PUT", "/_larder/api/caches/main/pins/release", e.admin, []byte(pin))
	e.expect(201, "PUT", "/_larder/api/caches/secret/pins/release", e.admin, []byte(pin))
	fresh := newPath(t, "fresh", []byte("fresh"), "xz") // what the writes would add
	upload := func() string {
		_, body := e.expect(201, "POST", "/_larder/api/caches/main/uploads", e.admin, []byte(`{"key": "`+fresh.URL()+`"}`))
		var ans struct {
			UploadID string `json:"uploadId"`
		}
		if err := json.Unmarshal([]byte(body), &ans); err != nil {
			t.Fatal(err)
		}
		return ans.UploadID
	}
	partOf, aborted := upload(), upload()
	missing := []byte(`{"hashes": ["` + private.Hash + `", "` + fresh.Hash + `"]}`)
	creds := map[string]map[string]string{"main": matrixCreds(t, e, "main"), "secret": matrixCreds(t, e, "secret")}

	endpoints := []matrixEndpoint{
		// Writes, in an order in which the controls succeed.
		{"PUT-nar", "PUT", "/main/" + fresh.URL(), fresh.File, "main", "write", 201, nil},
		{"PUT-narinfo", "PUT", "/main/" + fresh.Hash + ".narinfo", []byte(fresh.NarInfo()), "main", "write", 201, nil},
		{"PUT-nix-cache-info", "PUT", "/main/nix-cache-info", []byte("StoreDir: /nix/store\n"), "main", "write", 200, nil},
		{"PUT-log", "PUT", "/main/log/" + drv, []byte("a new log\n"), "main", "write", 201, nil},
		{"PUT-realisation", "PUT", "/main/realisations/" + id + ".doi", []byte(files["realisations/"+id+".doi"]), "main", "write", 201, nil},
		{"PUT-listing", "PUT", "/main/" + listing, []byte(files[listing]), "main", "write", 201, nil},
		{"PUT-debuginfo", "PUT", "/main/" + debug, []byte(files[debug]), "main", "write", 201, nil},
		{"PUT-pin", "PUT", "/_larder/api/caches/main/pins/ci", []byte(pin), "main", "write", 201, nil},
		{"DELETE-pin", "DELETE", "/_larder/api/caches/main/pins/release", nil, "main", "write", 204, nil},
		{"POST-upload", "POST", "/_larder/api/caches/main/uploads", []byte(`{"key": "` + fresh.URL() + `"}`), "main", "write", 201, nil},
		{"PUT-upload-part", "PUT", "/_larder/api/caches/main/uploads/" + partOf + "/parts/1", fresh.File, "main", "write", 200, nil},
		{"DELETE-upload", "DELETE", "/_larder/api/caches/main/uploads/" + aborted, nil, "main", "write", 204, nil},
		{"DELETE-narinfo", "DELETE", "/main/" + pinned.Hash + ".narinfo", nil, "main", "unsupported", 405, nil},
		{"DELETE-nar", "DELETE", "/main/" + pinned.URL(), nil, "main", "unsupported", 405, nil},
		{"DELETE-nix-cache-info", "DELETE", "/main/nix-cache-info", nil, "main", "unsupported", 405, nil},
		{"DELETE-log", "DELETE", "/main/log/" + drv, nil, "main", "unsupported", 405, nil},
		{"DELETE-realisation", "DELETE", "/main/realisations/" + id + ".doi", nil, "main", "unsupported", 405, nil},
		// Reads of the private cache.
		{"GET-narinfo", "GET", "/secret/" + private.Hash + ".narinfo", nil, "secret", "read", 200, nil},
		{"HEAD-narinfo", "HEAD", "/secret/" + private.Hash + ".narinfo", nil, "secret", "read", 200, nil},
		{"GET-missing-narinfo", "GET", "/secret/" + strings.Repeat("0", 32) + ".narinfo", nil, "secret", "read", 404, nil},
		{"GET-nar", "GET", "/secret/" + private.URL(), nil, "secret", "read", 200, nil},
		{"HEAD-nar", "HEAD", "/secret/" + private.URL(), nil, "secret", "read", 200, nil},
		{"GET-nar-range", "GET", "/secret/" + private.URL(), nil, "secret", "read", 206, []string{"Range", "bytes=0-3"}},
		{"GET-nix-cache-info", "GET", "/secret/nix-cache-info", nil, "secret", "read", 200, nil},
		{"GET-log", "GET", "/secret/log/" + drv, nil, "secret", "read", 200, nil},
		{"GET-realisation", "GET", "/secret/realisations/" + id + ".doi", nil, "secret", "read", 200, nil},
		{"GET-listing", "GET", "/secret/" + listing, nil, "secret", "read", 200, nil},
		{"GET-debuginfo", "GET", "/secret/" + debug, nil, "secret", "read", 200, nil},
		{"GET-pins", "GET", "/_larder/api/caches/secret/pins", nil, "secret", "read", 200, nil},
		// The pins of a public cache need a read credential too.
		{"GET-pins-public", "GET", "/_larder/api/caches/main/pins", nil, "main", "read", 200, nil},
		// Which paths a cache lacks: a read, which needs a credential for
		// a public cache too.
		{"POST-missing", "POST", "/_larder/api/caches/secret/missing", missing, "secret", "read", 200, nil},
		{"POST-missing-public", "POST", "/_larder/api/caches/main/missing", missing, "main", "read", 200, nil},
		// The caches a credential administers.
		{"GET-caches", "GET", "/_larder/api/caches", nil, "secret", "list", 200, nil},
	}
	before := matrixState(t, e)
	cells := 0
	for _, ep := range endpoints {
		for _, cred := range matrixCredentials {
			cells++
			t.Run(ep.name+"/"+cred, func(t *testing.T) {
				resp, body := e.do(ep.method, ep.path, creds[ep.cache][cred], ep.body, ep.hdr...)
				checkMatrixCell(t, ep, cred, resp, body)
				if got := matrixState(t, e); got != before {
					t.Fatalf("the stores changed:\nbefore:\n%s\nafter:\n%s", before, got)
				}
			})
		}
	}
	if want := len(endpoints) * len(matrixCredentials); cells != want || cells < 150 {
		t.Fatalf("the matrix has %d cells, want %d", cells, want)
	}

	// The controls: a credential that may gets the endpoint's answer.
	for _, ep := range endpoints {
		tok := e.admin
		if ep.kind == "read" || ep.kind == "list" {
			tok = creds[ep.cache]["read-only"]
		}
		if resp, body := e.do(ep.method, ep.path, tok, ep.body, ep.hdr...); resp.StatusCode != ep.control {
			t.Errorf("control %s: %d %q, want %d", ep.name, resp.StatusCode, body, ep.control)
		}
	}
	if got := matrixState(t, e); got == before {
		t.Error("the controls changed nothing: the write endpoints of the matrix do not write")
	}
}

// checkMatrixCell checks the answer to an endpoint with a credential.
func checkMatrixCell(t *testing.T, ep matrixEndpoint, cred string, resp *http.Response, body string) {
	t.Helper()
	what := map[string]string{"write": "write to cache " + ep.cache, "read": "read cache " + ep.cache, "list": "list caches"}[ep.kind]
	var status int
	var says string
	switch {
	case ep.kind == "unsupported":
		status, says = 405, "DELETE is not supported"
		if allow := resp.Header.Get("Allow"); allow != "GET, HEAD, PUT" {
			t.Errorf("405 with Allow %q", allow)
		}
	case cred == "none":
		status, says = 401, "a token is needed to "+what
	case cred == "wrong-token" || cred == "revoked":
		status, says = 401, "the token is not valid (unknown or revoked)"
	case cred == "expired":
		status, says = 401, "the credential expired at"
	case ep.kind == "list":
		// A valid token: the caches it administers, none of main and
		// secret.
		var list []struct {
			Name string `json:"name"`
		}
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &list) != nil {
			t.Fatalf("%d %q, want 200 and a JSON list", resp.StatusCode, body)
		}
		var names []string
		for _, c := range list {
			names = append(names, c.Name)
		}
		want := map[string][]string{"read-only": nil, "other-cache": {"other"}}[cred]
		if !slices.Equal(names, want) {
			t.Fatalf("lists %v, want %v", names, want)
		}
		return
	case cred == "read-only" && ep.kind == "read":
		// The credential that may: the control of the column.
		if resp.StatusCode != ep.control {
			t.Fatalf("%d %q, want %d: a read token may read", resp.StatusCode, body, ep.control)
		}
		return
	case cred == "read-only":
		status, says = 403, "the credential allows read, but writing to cache main needs write"
	case cred == "other-cache":
		status, says = 403, "the credential is for cache other, not cache "+ep.cache
	default:
		t.Fatalf("no expectation for %s with %s", ep.name, cred)
	}
	if resp.StatusCode != status {
		t.Fatalf("%s %s with %s: %d %q, want %d", ep.method, ep.path, cred, resp.StatusCode, body, status)
	}
	if ep.method != http.MethodHead && !strings.Contains(body, says) {
		t.Errorf("message %q does not say %q", body, says)
	}
	if status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("refusal with Cache-Control %q, want no-store", resp.Header.Get("Cache-Control"))
	}
}

// TestMissingLikePrivate sends every endpoint of a private cache, and the
// same request for a cache that does not exist (a name of the same length),
// with every credential that may not read either name: the two answers are
// the same (status, headers, body but for the name), so that nobody can
// find out whether a private cache exists. Nothing changes. A credential
// that may read the name is still told which it is: 404 for the missing
// cache, 403 for what it may not do to the private one.
func TestMissingLikePrivate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const private, missing = "secret", "nosuch"
	for _, spec := range []service.CacheSpec{{Name: private, Private: true}, {Name: "other"}} {
		if _, err := e.app.Service.CreateCache(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
	}
	p := newPath(t, "hidden", []byte("hidden"), "zstd")
	e.push(private, p)
	drv := strings.Repeat("a", 32) + "-hidden.drv"
	e.expect(201, "PUT", "/"+private+"/log/"+drv, e.admin, []byte("a log\n"))
	pin := []byte(`{"storePath": "` + p.StorePath + `"}`)
	e.expect(201, "PUT", "/_larder/api/caches/"+private+"/pins/release", e.admin, pin)
	fresh := newPath(t, "fresh", []byte("fresh"), "xz")

	creds := matrixCreds(t, e, private)
	delete(creds, "read-only") // it may read the private cache
	creds["other-read"] = e.token("other", store.PermRead, 0)
	creds["glob-write"] = e.token("ci-*", store.PermWrite, 0)
	endpoints := []struct {
		method, path string // path with CACHE for the cache's name
		body         []byte
	}{
		{"GET", "/CACHE/nix-cache-info", nil},
		{"HEAD", "/CACHE/nix-cache-info", nil},
		{"GET", "/CACHE/" + p.Hash + ".narinfo", nil},
		{"HEAD", "/CACHE/" + p.Hash + ".narinfo", nil},
		{"GET", "/CACHE/" + strings.Repeat("0", 32) + ".narinfo", nil},
		{"GET", "/CACHE/" + p.URL(), nil},
		{"HEAD", "/CACHE/" + p.URL(), nil},
		{"GET", "/CACHE/log/" + drv, nil},
		{"PUT", "/CACHE/" + fresh.URL(), fresh.File},
		{"PUT", "/CACHE/" + fresh.Hash + ".narinfo", []byte(fresh.NarInfo())},
		{"PUT", "/CACHE/nix-cache-info", []byte("StoreDir: /nix/store\n")},
		{"PUT", "/CACHE/log/" + drv, []byte("another log\n")},
		{"GET", "/_larder/api/caches/CACHE/pins", nil},
		{"PUT", "/_larder/api/caches/CACHE/pins/ci", pin},
		{"DELETE", "/_larder/api/caches/CACHE/pins/release", nil},
	}
	before := matrixState(t, e)
	for _, ep := range endpoints {
		for name, tok := range creds {
			t.Run(ep.method+ep.path+"/"+name, func(t *testing.T) {
				send := func(cache string) (*http.Response, string) {
					return e.do(ep.method, strings.Replace(ep.path, "CACHE", cache, 1), tok, ep.body)
				}
				pr, pb := send(private)
				mr, mb := send(missing)
				if pr.StatusCode != 401 && pr.StatusCode != 403 {
					t.Fatalf("the private cache answered %d %q, want a refusal", pr.StatusCode, pb)
				}
				if mr.StatusCode != pr.StatusCode || strings.ReplaceAll(mb, missing, private) != pb {
					t.Fatalf("told apart: private %d %q, missing %d %q", pr.StatusCode, pb, mr.StatusCode, mb)
				}
				pr.Header.Del("Date")
				mr.Header.Del("Date")
				if fmt.Sprint(pr.Header) != fmt.Sprint(mr.Header) {
					t.Fatalf("headers told apart:\nprivate %v\nmissing %v", pr.Header, mr.Header)
				}
				if got := matrixState(t, e); got != before {
					t.Fatalf("the stores changed:\nbefore:\n%s\nafter:\n%s", before, got)
				}
			})
		}
	}
	// The log says which it was.
	for _, why := range []string{"reason=\"a token is needed to read cache nosuch, if it exists: there is no such cache\"",
		"reason=\"a token is needed to read cache secret, if it exists: the cache is private\""} {
		if !strings.Contains(e.logs.String(), why) {
			t.Errorf("the log does not say %s", why)
		}
	}

	// A credential that may read the name is told the truth.
	starRead := e.token(service.AllCaches, store.PermRead, 0)
	for _, c := range []struct {
		method, path, token string
		body                []byte
		status              int
		says                string
	}{
		{"GET", "/nosuch/nix-cache-info", starRead, nil, 404, `there is no cache named "nosuch"`},
		{"PUT", "/nosuch/log/" + drv, starRead, []byte("x\n"), 404, `there is no cache named "nosuch"`},
		{"PUT", "/secret/log/" + drv, starRead, []byte("x\n"), 403, "the credential allows read, but writing to cache secret needs write"},
		{"GET", "/_larder/api/caches/nosuch/pins", starRead, nil, 404, `there is no cache named "nosuch"`},
		{"GET", "/_larder/api/caches/secret/pins", starRead, nil, 200, "release"},
		{"PUT", "/nosuch/" + fresh.URL(), e.admin, fresh.File, 404, `there is no cache named "nosuch"`},
		{"GET", "/ci-missing/nix-cache-info", creds["glob-write"], nil, 404, `there is no cache named "ci-missing"`},
	} {
		if _, body := e.expect(c.status, c.method, c.path, c.token, c.body); !strings.Contains(body, c.says) {
			t.Errorf("%s %s: %q does not say %q", c.method, c.path, body, c.says)
		}
	}
}

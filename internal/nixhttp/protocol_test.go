package nixhttp_test

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/larder-cache/larder/internal/buildinfo"
	"github.com/larder-cache/larder/internal/narinfo"
)

func TestCacheInfo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	resp, body := e.expect(200, "GET", "/main/nix-cache-info", "", nil)
	if body != "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n" {
		t.Fatalf("nix-cache-info is %q", body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/x-nix-cache-info" {
		t.Errorf("Content-Type %q", ct)
	}
	// A missing cache is no cache to a credential that may read the name;
	// to anyone else it is refused like a private one (TestMissingLikePrivate).
	e.expect(404, "GET", "/nosuch/nix-cache-info", e.admin, nil)
	e.expect(401, "GET", "/nosuch/nix-cache-info", "", nil)
	// Nix uploads a cache-info only when it could not read one; larder keeps
	// its own, and refuses one for another store.
	e.expect(200, "PUT", "/main/nix-cache-info", e.admin, []byte("StoreDir: /nix/store\n"))
	_, msg := e.expect(400, "PUT", "/main/nix-cache-info", e.admin, []byte("StoreDir: /gnu/store\n"))
	if !strings.Contains(msg, "/gnu/store") {
		t.Errorf("message %q does not name the store", msg)
	}
}

func TestPushThenRead(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"none", "xz", "zstd"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p := newPath(t, "hello-1.0", bytes.Repeat([]byte("hello larder\n"), 1000), method)

			// nix copy: narinfo missing, NAR missing, upload both.
			e.expect(404, "GET", "/main/"+p.Hash+".narinfo", "", nil)
			e.expect(404, "HEAD", "/main/"+p.URL(), e.admin, nil)
			e.push("main", p)

			resp, _ := e.expect(200, "HEAD", "/main/"+p.URL(), "", nil)
			if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(p.File)) {
				t.Errorf("HEAD Content-Length %s, want %d", cl, len(p.File))
			}
			resp, body := e.expect(200, "GET", "/main/"+p.URL(), "", nil)
			if body != string(p.File) {
				t.Fatal("NAR file served differs from the one uploaded")
			}
			if resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("Content-Encoding") != "" {
				t.Errorf("NAR headers: %v", resp.Header)
			}

			resp, body = e.expect(200, "GET", "/main/"+p.Hash+".narinfo", "", nil)
			ni, err := narinfo.Parse([]byte(body))
			if err != nil {
				t.Fatalf("served narinfo does not parse: %v\n%s", err, body)
			}
			if ni.StorePath != p.StorePath || ni.URL != p.URL() || ni.Compression != method ||
				ni.NarSize != uint64(len(p.NAR)) || ni.FileSize != uint64(len(p.File)) {
				t.Errorf("served narinfo:\n%s\nuploaded:\n%s", body, p.NarInfo())
			}
			if resp.Header.Get("Content-Type") != "text/x-nix-narinfo" || resp.Header.Get("ETag") == "" {
				t.Errorf("narinfo headers: %v", resp.Header)
			}
			mustSignedBy(t, e, "main", ni)
		})
	}
}

// mustSignedBy checks that a served narinfo carries a valid signature by
// the cache's key.
func mustSignedBy(t *testing.T, e *env, cache string, ni *narinfo.NarInfo) {
	t.Helper()
	c, err := e.app.Service.GetCache(t.Context(), cache)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := narinfo.ParseSecretKey(c.SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	pk := sk.PublicKey()
	if pk.String() != c.PublicKey {
		t.Fatalf("the public key of cache %s is %s, not the public half of its signing key, %s", cache, c.PublicKey, pk)
	}
	if !ni.Verify([]narinfo.PublicKey{pk}) {
		t.Fatalf("narinfo is not signed by %s: %v", c.PublicKey, ni.Sigs)
	}
}

func TestRanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPath(t, "ranged", bytes.Repeat([]byte("0123456789"), 500), "none")
	e.push("main", p)
	url := "/main/" + p.URL()
	size := len(p.File)
	cases := []struct {
		rng        string
		status     int
		start, end int // expected bytes [start, end)
	}{
		{"bytes=0-9", 206, 0, 10},
		{"bytes=10-", 206, 10, size},
		{"bytes=-16", 206, size - 16, size},
		{"bytes=100-99999999", 206, 100, size},
		{"bytes=-99999999", 206, 0, size},
		{"bytes=0-0,5-6", 200, 0, size}, // several ranges: the whole file
		{"bytes=x-y", 200, 0, size},     // unparsable: ignored
		{"pages=1-2", 200, 0, size},
	}
	for _, c := range cases {
		resp, body := e.expect(c.status, "GET", url, "", nil, "Range", c.rng)
		if body != string(p.File[c.start:c.end]) {
			t.Errorf("Range %s: got %d bytes, want bytes %d-%d", c.rng, len(body), c.start, c.end)
		}
		if c.status == 206 {
			want := "bytes " + strconv.Itoa(c.start) + "-" + strconv.Itoa(c.end-1) + "/" + strconv.Itoa(size)
			if got := resp.Header.Get("Content-Range"); got != want {
				t.Errorf("Range %s: Content-Range %q, want %q", c.rng, got, want)
			}
		}
	}
	resp, _ := e.expect(416, "GET", url, "", nil, "Range", "bytes="+strconv.Itoa(size)+"-")
	if got := resp.Header.Get("Content-Range"); got != "bytes */"+strconv.Itoa(size) {
		t.Errorf("416 Content-Range %q", got)
	}
	e.expect(416, "GET", url, "", nil, "Range", "bytes=-0")
	// If-Range with another ETag: the whole file.
	e.expect(200, "GET", url, "", nil, "Range", "bytes=0-9", "If-Range", `"other"`)
	resp, _ = e.expect(206, "GET", url, "", nil, "Range", "bytes=0-9", "If-Range", `"`+nix32sha(p.File)+`"`)
	if resp.ContentLength != 10 {
		t.Errorf("If-Range with the right ETag: %d bytes", resp.ContentLength)
	}
}

func TestConditionalGet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPath(t, "etag", []byte("x"), "none")
	e.push("main", p)
	for _, key := range []string{p.URL(), p.Hash + ".narinfo", "nix-cache-info"} {
		resp, _ := e.expect(200, "GET", "/main/"+key, "", nil)
		etag := resp.Header.Get("ETag")
		if etag == "" {
			t.Fatalf("%s has no ETag", key)
		}
		e.expect(304, "GET", "/main/"+key, "", nil, "If-None-Match", etag)
		e.expect(200, "GET", "/main/"+key, "", nil, "If-None-Match", `"stale"`)
		if cc := resp.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "public, max-age=") {
			t.Errorf("%s: Cache-Control %q", key, cc)
		}
	}
	resp, _ := e.expect(404, "GET", "/main/"+strings.Repeat("0", 32)+".narinfo", "", nil)
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("miss: Cache-Control %q", cc)
	}
}

func TestNarInfoReupload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPath(t, "signed", []byte("content"), "zstd")
	e.push("main", p)
	narinfoKey := "/main/" + p.Hash + ".narinfo"

	// The same narinfo again changes nothing.
	e.expect(200, "PUT", narinfoKey, e.admin, []byte(p.NarInfo()))

	// nix store sign re-uploads it with a new Sig line: merged.
	sec, _, err := narinfo.GenerateKey("extra-1")
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := narinfo.ParseSecretKey(sec)
	ni, _ := narinfo.Parse([]byte(p.NarInfo()))
	ni.Sign(sk)
	e.expect(200, "PUT", narinfoKey, e.admin, ni.Bytes())
	_, body := e.expect(200, "GET", narinfoKey, "", nil)
	served, _ := narinfo.Parse([]byte(body))
	if !served.Verify([]narinfo.PublicKey{sk.PublicKey()}) {
		t.Fatalf("merged Sig missing:\n%s", body)
	}
	mustSignedBy(t, e, "main", served)
	if n := strings.Count(body, "Sig: "); n != 2 {
		t.Fatalf("%d Sig lines, want the uploader's and the cache's:\n%s", n, body)
	}

	// Another NAR for the same path: first upload wins.
	other := newPath(t, "signed", []byte("other content"), "zstd")
	other.StorePath, other.Hash = p.StorePath, p.Hash
	e.expect(201, "PUT", "/main/"+other.URL(), e.admin, other.File)
	before := e.snapshot()
	_, msg := e.expect(409, "PUT", narinfoKey, e.admin, []byte(other.NarInfo()))
	if !strings.Contains(msg, "first upload wins") {
		t.Errorf("409 message %q does not say why", msg)
	}
	e.mustUnchanged(before)
	_, body2 := e.expect(200, "GET", narinfoKey, "", nil)
	if body2 != body {
		t.Fatalf("narinfo changed after a refused re-upload:\n%s", body2)
	}
}

func TestSameNarTwoCaches(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.app.Service.CreateCache(t.Context(), serviceSpec("second")); err != nil {
		t.Fatal(err)
	}
	p := newPath(t, "shared", bytes.Repeat([]byte("shared\n"), 100), "xz")
	e.push("main", p)
	before := e.snapshot()
	// The second cache does not hold it until it is uploaded there too:
	// nothing leaks across caches.
	e.expect(404, "HEAD", "/second/"+p.URL(), "", nil)
	e.expect(409, "PUT", "/second/"+p.Hash+".narinfo", e.admin, []byte(p.NarInfo()))
	e.push("second", p)
	after := e.snapshot()
	if len(after.blobs) != len(before.blobs) {
		t.Fatalf("blobs %v after the second upload, want %v", after.blobs, before.blobs)
	}
	if after.narinfos != before.narinfos+1 {
		t.Fatalf("narinfos %d, want %d", after.narinfos, before.narinfos+1)
	}
	// The same file uploaded again to the same cache is accepted and not
	// stored again.
	e.expect(200, "PUT", "/main/"+p.URL(), e.admin, p.File)
	e.mustUnchanged(after)
}

func TestOtherFiles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	drv := strings.Repeat("a", 32) + "-hello.drv"
	id := "sha256:" + strings.Repeat("ab", 32) + "!out"
	files := []struct {
		key, body, ctype string
	}{
		{strings.Repeat("b", 32) + ".ls", `{"version":1,"root":{"type":"regular","size":1}}`, "application/json"},
		{"log/" + drv, "building hello\n", "text/plain; charset=utf-8"},
		{"realisations/" + id + ".doi", `{"id":"` + id + `","outPath":"` + strings.Repeat("c", 32) + `-hello","signatures":[],"dependentRealisations":{}}`, "application/json"},
		{"debuginfo/" + strings.Repeat("d", 40) + ".debug", `{"archive":"../nar/x.nar.xz","member":"lib/debug/.build-id/dd/d.debug"}`, "application/json"},
	}
	for _, f := range files {
		e.expect(404, "GET", "/main/"+f.key, "", nil)
		e.expect(201, "PUT", "/main/"+f.key, e.admin, []byte(f.body), "Content-Type", "application/octet-stream")
		resp, body := e.expect(200, "GET", "/main/"+f.key, "", nil)
		if body != f.body || resp.Header.Get("Content-Type") != f.ctype {
			t.Errorf("%s: served %q as %q", f.key, body, resp.Header.Get("Content-Type"))
		}
		e.expect(200, "HEAD", "/main/"+f.key, "", nil)
	}
	// Replacing a log replaces it.
	e.expect(201, "PUT", "/main/log/"+drv, e.admin, []byte("second log\n"))
	if _, body := e.expect(200, "GET", "/main/log/"+drv, "", nil); body != "second log\n" {
		t.Errorf("log after replace: %q", body)
	}
}

func TestIndexAndHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, body := e.expect(200, "GET", "/", "", nil)
	if !strings.Contains(body, "http://larder.test/main") {
		t.Errorf("index does not list main:\n%s", body)
	}
	if !strings.HasPrefix(body, "larder "+buildinfo.Version()+":") {
		t.Errorf("index does not start with larder's version %s:\n%s", buildinfo.Version(), body)
	}
	e.expect(200, "GET", "/_larder/health", "", nil)
	e.expect(404, "GET", "/_larder/nothing", "", nil)
	e.expect(http.StatusMethodNotAllowed, "DELETE", "/main/nix-cache-info", e.admin, nil)
}

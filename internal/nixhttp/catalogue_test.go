// The hostile-input catalogue: requests and command lines that are
// truncated, oversized, inconsistent, malformed, mis-signed, replayed or
// slow. Each case is named, expects one specific refusal (a 4xx status and,
// where larder gives one, a message or S3 error code saying what was
// wrong; for the CLI an exit status and message) and checks that the
// stores are unchanged. Counted one per named table row or, where a test
// sends one kind of hostile input, per test:
//
//	Nix protocol                                                      107
//	  internal/nixhttp/hostile_test.go   TestHostileRequests (33), the
//	    zstd bomb, size limits, short and long bodies                  37
//	  internal/nixhttp/api_test.go       TestPinAPIRefuses             23
//	  internal/nixhttp/catalogue_test.go (this file, new)              47
//	S3 API                                                            130
//	  internal/s3api/auth_test.go        signatures, digests, chunk
//	    signatures, permissions, expired presigned PUT                 26
//	  internal/s3api/request_test.go     DeleteObjects (7) and Complete-
//	    MultipartUpload (5) bodies, unknown subresources (16), hostile
//	    rows of TestErrorDocuments (7)                                 35
//	  internal/s3api/nix_test.go         TestNixVerificationFailures    8
//	  internal/s3api/aws_test.go         presigned URLs, multipart       8
//	  e2e/s3_refused_test.go             aws, mc, rclone, s3cmd runs    9
//	  internal/s3api/catalogue_test.go   (new)                         44
//	CLI                                                                58
//	  e2e/gc_cli_test.go                 TestGCCLIRefuses              15
//	  e2e/cli_test.go                    names, permission, config     10
//	  e2e/cli_hostile_test.go            (new)                         33
//	Total                                                             295
//
// The auth matrices, internal/nixhttp/authmatrix_test.go (28 endpoints x 6
// credentials) and internal/s3api/authmatrix_test.go (28 x 7), add every
// write and private-read endpoint against every kind of bad credential; in
// the same files TestMissingLikePrivate (15 x 7) and TestS3MissingLikePrivate
// (22 x 7) check that a private cache and a missing one get the same answer.

package nixhttp_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/nixhttp"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/ulikunitz/xz"
)

// catTimeout is the body and header timeout of the server the slow-client
// cases talk to: short, so that they stay fast.
const catTimeout = 250 * time.Millisecond

// answer is what a hostile request got: the status and body of the
// response, or closed if the server hung up without answering.
type answer struct {
	status int
	body   string
	closed bool
}

// catCase is one entry of the catalogue.
type catCase struct {
	name   string
	send   func(t *testing.T) answer
	status int    // 0: the server must close the connection without an answer
	msg    string // part of the message
	goMsg  bool   // the answer is net/http's own, not larder's one-line message
}

// request returns a case sender for an ordinary request with the admin
// token (the refusal must be about the request, not the credential), or
// with the Authorization header given in hdr.
func (e *env) request(method, path string, body []byte, hdr ...string) func(*testing.T) answer {
	return func(t *testing.T) answer {
		resp, msg := e.do(method, path, e.admin, body, hdr...)
		return answer{status: resp.StatusCode, body: msg}
	}
}

// lengthless hides the length of a body, so that it is sent chunked.
type lengthless struct{ r io.Reader }

func (l lengthless) Read(p []byte) (int, error) { return l.r.Read(p) }

// chunked returns a case sender for a PUT with a chunked body and no
// Content-Length.
func (e *env) chunked(path string, body []byte) func(*testing.T) answer {
	return func(t *testing.T) answer {
		req, err := http.NewRequest(http.MethodPut, e.srv.URL+path, lengthless{bytes.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+e.admin)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{status: resp.StatusCode, body: string(b)}
	}
}

// exchange writes head (and then body) to a new connection to srv and reads
// the answer, waiting at most wait; the connection is kept open for writing
// meanwhile, so a missing body is a stalled client, not a short one.
func exchange(t *testing.T, srv *httptest.Server, head string, body []byte, wait time.Duration) answer {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(body); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("no answer within %v", wait)
		}
		return answer{closed: true}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b)}
}

// raw returns a case sender for a request written by hand to srv: head is
// the request line and headers without the blank line ending them
// (Authorization is added with the admin token), body what follows.
func (e *env) raw(srv *httptest.Server, head string, body []byte, wait time.Duration) func(*testing.T) answer {
	return func(t *testing.T) answer {
		h := head + "Host: larder\r\nAuthorization: Bearer " + e.admin + "\r\n\r\n"
		return exchange(t, srv, h, body, wait)
	}
}

// slowServer is the handler of e behind a server configured as cmd/larder
// configures its http.Server (ReadHeaderTimeout, MaxHeaderBytes and the
// body_timeout setting), with the timeouts cut to catTimeout.
func slowServer(t *testing.T, e *env) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nixhttp.New(e.app.Service, nixhttp.Options{BodyTimeout: catTimeout}))
	srv.Config.ReadHeaderTimeout = catTimeout
	srv.Config.MaxHeaderBytes = 64 << 10
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// narTokens renders a NAR from its tokens: each a length-prefixed string
// padded to 8 bytes.
func narTokens(tokens ...string) []byte {
	var b bytes.Buffer
	for _, s := range tokens {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		b.Write(n[:])
		b.WriteString(s)
		b.Write(make([]byte, (8-len(s)%8)%8))
	}
	return b.Bytes()
}

// narDir renders a NAR of a directory holding regular files, name and
// contents alternating, in the order given.
func narDir(files ...string) []byte {
	toks := []string{"nix-archive-1", "(", "type", "directory"}
	for i := 0; i+1 < len(files); i += 2 {
		toks = append(toks, "entry", "(", "name", files[i], "node", "(", "type", "regular", "contents", files[i+1], ")", ")")
	}
	return narTokens(append(toks, ")")...)
}

// narKey is the key of an uncompressed NAR file.
func narKey(file []byte) string { return "/main/nar/" + nix32sha(file) + ".nar" }

// bomb returns a NAR of size zero bytes, compressed with method (xz or
// gzip): a few kilobytes that decompress far past the ratio limit.
func bomb(t *testing.T, method string, size int) []byte {
	t.Helper()
	f := filepath.Join(t.TempDir(), "zeros")
	if err := os.WriteFile(f, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	var w io.WriteCloser
	switch method {
	case "xz":
		xw, err := xz.NewWriter(&file)
		if err != nil {
			t.Fatal(err)
		}
		w = xw
	case "gzip":
		gw, err := gzip.NewWriterLevel(&file, gzip.BestCompression)
		if err != nil {
			t.Fatal(err)
		}
		w = gw
	}
	if err := nar.DumpPath(w, f); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return file.Bytes()
}

// unchangedFor is mustUnchanged reporting to the test t (a subtest), not
// to the test that made e.
func (e *env) unchangedFor(t *testing.T, before snapshot) {
	t.Helper()
	after := e.snapshot()
	if after.narinfos != before.narinfos || !slices.Equal(after.blobs, before.blobs) {
		t.Fatalf("store changed: before %+v, after %+v", before, after)
	}
	if tmp, _ := filepath.Glob(filepath.Join(e.blobDir, "tmp~", "*")); len(tmp) > 0 {
		t.Fatalf("temporary files left behind: %v", tmp)
	}
}

// runCatalogue runs each case as a subtest: the status, the message, and
// the stores as they were.
func runCatalogue(t *testing.T, e *env, cases []catCase) {
	t.Helper()
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.name] {
			t.Fatalf("two cases named %q", c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshot()
			got := c.send(t)
			switch {
			case c.status == 0 && !got.closed:
				t.Fatalf("answered %d %q, want the connection closed without an answer", got.status, got.body)
			case c.status != 0 && got.closed:
				t.Fatalf("the connection was closed without an answer, want %d", c.status)
			case got.status != c.status:
				t.Fatalf("status %d, want %d; body %q", got.status, c.status, got.body)
			case !strings.Contains(got.body, c.msg):
				t.Errorf("message %q does not contain %q", got.body, c.msg)
			case c.status != 0 && !c.goMsg && got.body != "" && (!strings.HasSuffix(got.body, "\n") || strings.Count(got.body, "\n") != 1):
				t.Errorf("message %q is not one line", got.body)
			}
			e.unchangedFor(t, before)
		})
	}
}

// TestCatalogueNixRequests extends TestHostileRequests: traversal and
// encoded keys, malformed narinfos and NARs, bad framing of the body, and
// bad credentials in the wrong shape.
func TestCatalogueNixRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPath(t, "victim", bytes.Repeat([]byte("victim\n"), 100), "zstd")
	e.expect(201, "PUT", "/main/"+p.URL(), e.admin, p.File) // NAR present, narinfo not
	ni := p.NarInfo()
	edit := func(old, new string) []byte {
		if !strings.Contains(ni, old) {
			t.Fatalf("narinfo has no %q", old)
		}
		return []byte(strings.Replace(ni, old, new, 1))
	}
	narinfoKey := "/main/" + p.Hash + ".narinfo"
	logKey := "/main/log/" + strings.Repeat("a", 32) + "-x.drv"
	flipped := append([]byte{}, p.File...)
	flipped[len(flipped)/2] ^= 0x01
	padded := narDir("a", "x")
	padded[len(padded)-3*16-1] = 1 // the padding of the contents "x", before three ")"
	if !bytes.Equal(narTokens("x")[9:], make([]byte, 7)) {
		t.Fatal("narTokens does not pad with zeros")
	}
	truncated := narDir("a", "content")
	truncated = truncated[:len(truncated)/2]
	srv := e.srv
	big := fmt.Sprintf("PUT %s HTTP/1.1\r\nContent-Length: %d\r\nExpect: 100-continue\r\n", logKey, int64(1)<<40)

	runCatalogue(t, e, []catCase{
		// Keys: encoded, double-encoded and disguised traversal.
		{name: "double-encoded traversal in a NAR key", send: e.request("GET", "/main/nar/%252e%252e%252fx", nil), status: 400, msg: "encoded twice"},
		{name: "double-encoded traversal upload", send: e.request("PUT", "/main/%252e%252e%252f%252e%252e%252fetc%252fpasswd", []byte("x")), status: 400, msg: "encoded twice"},
		{name: "backslash traversal", send: e.request("GET", "/main/nar/..%5c..%5cx", nil), status: 400, msg: "backslash"},
		{name: "overlong UTF-8 dots", send: e.request("GET", "/main/nar/%c0%ae%c0%ae/x", nil), status: 400, msg: "non-ASCII"},
		{name: "traversal onto a narinfo key", send: e.request("PUT", "/main/nar/../"+p.Hash+".narinfo", []byte(ni)), status: 400, msg: `contains ".."`},
		{name: "upper-case NAR extension", send: e.request("PUT", "/main/nar/"+nix32sha(p.File)+".nar.ZST", p.File), status: 400, msg: "compression extension"},

		// Narinfos: malformed fields, each with the rest of the narinfo right.
		{name: "narinfo duplicate StorePath", send: e.request("PUT", narinfoKey, []byte(ni+"StorePath: "+p.StorePath+"\n")), status: 400, msg: "duplicate StorePath"},
		{name: "narinfo NarHash in md5", send: e.request("PUT", narinfoKey, edit("NarHash: sha256:", "NarHash: md5:")), status: 400, msg: "md5"},
		{name: "narinfo NarSize out of range", send: e.request("PUT", narinfoKey, edit(fmt.Sprintf("NarSize: %d", len(p.NAR)), "NarSize: 99999999999999999999999")), status: 400, msg: "NarSize"},
		{name: "narinfo negative NarSize", send: e.request("PUT", narinfoKey, edit(fmt.Sprintf("NarSize: %d", len(p.NAR)), "NarSize: -1")), status: 400, msg: "NarSize"},
		{name: "narinfo CRLF line ends", send: e.request("PUT", narinfoKey, []byte(strings.ReplaceAll(ni, "\n", "\r\n"))), status: 400, msg: "carriage return"},
		{name: "narinfo corrupt Sig", send: e.request("PUT", narinfoKey, []byte(ni+"Sig: cache.example.org-1:@@@@\n")), status: 400, msg: "Sig"},
		{name: "narinfo Deriver traversal", send: e.request("PUT", narinfoKey, []byte(ni+"Deriver: ../../x.drv\n")), status: 400, msg: "Deriver"},
		{name: "narinfo bad CA", send: e.request("PUT", narinfoKey, []byte(ni+"CA: garbage\n")), status: 400, msg: "CA"},
		{name: "narinfo reference listed twice", send: e.request("PUT", narinfoKey, edit("References: ", "References: "+p.Hash+"-victim "+p.Hash+"-victim")), status: 400, msg: "listed twice"},
		{name: "narinfo URL on another host", send: e.request("PUT", narinfoKey, edit("URL: "+p.URL(), "URL: http://evil.example/"+p.URL())), status: 400, msg: "URL"},
		{name: "narinfo StorePath outside /nix/store", send: e.request("PUT", narinfoKey, edit("/nix/store/", "/gnu/store/")), status: 400, msg: "not in /nix/store"},

		// NAR files: the hash of a stored file with other bytes, and
		// archives that are not well-formed, each named by its own hash.
		{name: "re-upload of a stored NAR with other bytes", send: e.request("PUT", "/main/"+p.URL(), flipped), status: 400, msg: "not the hash its name gives"},
		{name: "NAR entry named ..", send: e.request("PUT", narKey(narDir("..", "x")), narDir("..", "x")), status: 400, msg: "not a valid NAR"},
		{name: "NAR entry name with a slash", send: e.request("PUT", narKey(narDir("a/b", "x")), narDir("a/b", "x")), status: 400, msg: "not a valid NAR"},
		{name: "NAR NUL in an entry name", send: e.request("PUT", narKey(narDir("a\x00b", "x")), narDir("a\x00b", "x")), status: 400, msg: "not a valid NAR"},
		{name: "NAR duplicate entry", send: e.request("PUT", narKey(narDir("a", "x", "a", "y")), narDir("a", "x", "a", "y")), status: 400, msg: "not a valid NAR"},
		{name: "NAR unsorted entries", send: e.request("PUT", narKey(narDir("b", "x", "a", "y")), narDir("b", "x", "a", "y")), status: 400, msg: "not a valid NAR"},
		{name: "NAR truncated archive", send: e.request("PUT", narKey(truncated), truncated), status: 400, msg: "not a valid NAR"},
		{name: "NAR trailing data", send: e.request("PUT", narKey(append(narDir("a", "x"), narTokens("more")...)), append(narDir("a", "x"), narTokens("more")...)), status: 400, msg: "trailing data"},
		{name: "NAR non-zero padding", send: e.request("PUT", narKey(padded), padded), status: 400, msg: "not a valid NAR"},

		// Other files.
		{name: "realisation not JSON", send: e.request("PUT", "/main/realisations/sha256:"+strings.Repeat("ab", 32)+"!out.doi", []byte("{not json")), status: 400, msg: "JSON"},
		{name: "debuginfo not JSON", send: e.request("PUT", "/main/debuginfo/"+strings.Repeat("ab", 20)+".debug", []byte("{not json")), status: 400, msg: "JSON"},

		// Credentials in the wrong shape, and a method the protocol lacks.
		{name: "malformed Basic credentials", send: e.request("PUT", narinfoKey, []byte(ni), "Authorization", "Basic !!!not-base64"), status: 401, msg: "a token is needed"},
		{name: "oversized bearer token", send: e.request("PUT", narinfoKey, []byte(ni), "Authorization", "Bearer lrd_"+strings.Repeat("x", 16<<10)), status: 401, msg: "not valid"},
		{name: "POST to a narinfo", send: e.request("POST", narinfoKey, []byte(ni)), status: 405, msg: "POST is not supported"},

		// Framing of the body.
		{name: "chunked NAR upload", send: e.chunked("/main/"+p.URL(), p.File), status: 411, msg: "Content-Length"},
		{name: "chunked narinfo upload", send: e.chunked(narinfoKey, []byte(ni)), status: 411, msg: "Content-Length"},
		{name: "Content-Length and Transfer-Encoding", send: e.raw(srv, "PUT "+logKey+" HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n", []byte("5\r\nhello\r\n0\r\n\r\n"), 5*time.Second), status: 411, msg: "Content-Length"},
		{name: "negative Content-Length", send: e.raw(srv, "PUT "+logKey+" HTTP/1.1\r\nContent-Length: -5\r\n", nil, 5*time.Second), status: 400, msg: "Bad Request", goMsg: true},
		{name: "two Content-Lengths", send: e.raw(srv, "PUT "+logKey+" HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n", []byte("hello!"), 5*time.Second), status: 400, msg: "Bad Request", goMsg: true},
		{name: "a terabyte announced with Expect: 100-continue", send: e.raw(srv, big, nil, 5*time.Second), status: 413, msg: "more than the limit"},
	})
	e.expect(404, "GET", narinfoKey, "", nil)
}

// TestCatalogueSlowClients sends to a server with short timeouts: a client
// that stops sending its body is abandoned with 408 and nothing stored; one
// that never finishes its headers is disconnected (there is no request to
// answer yet); headers past 64 KiB get 431.
func TestCatalogueSlowClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	slow := slowServer(t, e)
	p := newPath(t, "slow", bytes.Repeat([]byte("slow client\n"), 100), "zstd")
	ni := []byte(p.NarInfo())
	put := func(key string, n int) string {
		return fmt.Sprintf("PUT /main/%s HTTP/1.1\r\nContent-Length: %d\r\n", key, n)
	}
	wait := 20 * catTimeout
	// The headers stop between two lines, or inside one: net/http hangs up,
	// or answers 400 as for a malformed header.
	headerTimeout := func(partial string) func(t *testing.T) answer {
		return func(t *testing.T) answer {
			start := time.Now()
			a := exchange(t, slow, "PUT /main/"+p.URL()+" HTTP/1.1\r\nHost: larder\r\n"+partial, nil, wait)
			if d := time.Since(start); d < catTimeout {
				t.Errorf("answered after %v, before the header timeout of %v", d, catTimeout)
			}
			return a
		}
	}
	bigHeader := func(t *testing.T) answer {
		return exchange(t, slow, "GET /main/nix-cache-info HTTP/1.1\r\nHost: larder\r\nX-Big: "+strings.Repeat("a", 70<<10)+"\r\n\r\n", nil, wait)
	}
	runCatalogue(t, e, []catCase{
		{name: "body timeout on a NAR", send: e.raw(slow, put(p.URL(), len(p.File)), p.File[:10], wait), status: 408, msg: "after 10 bytes"},
		{name: "body timeout on a narinfo", send: e.raw(slow, put(p.Hash+".narinfo", len(ni)), ni[:10], wait), status: 408, msg: fmt.Sprintf("stopped after 10 of %d bytes", len(ni))},
		{name: "body timeout on a build log", send: e.raw(slow, put("log/"+strings.Repeat("a", 32)+"-x.drv", 100), []byte("a log"), wait), status: 408, msg: "stopped after 5 of 100 bytes"},
		{name: "header timeout between lines", send: headerTimeout(""), status: 0},
		{name: "header timeout inside a line", send: headerTimeout("Content-Len"), status: 400, msg: "Bad Request", goMsg: true},
		{name: "headers over 64 KiB", send: bigHeader, status: 431, msg: "Request Header Fields Too Large", goMsg: true},
	})
	// The server still works for a client that sends in time.
	resp, err := slow.Client().Get(slow.URL + "/main/nix-cache-info")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET after the slow clients: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestCatalogueBombs uploads NARs that decompress past the limits: an xz
// and a gzip bomb past max_decompression_ratio (TestDecompressionBomb has
// zstd), and a NAR past max_nar_size.
func TestCatalogueBombs(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // max_decompression_ratio 50 past 1 MiB
	xzBomb, gzBomb := bomb(t, "xz", 8<<20), bomb(t, "gzip", 8<<20)
	small := newEnv(t, func(c *configT) { c.MaxNarSize = 4 << 10 })
	tooBig := newPath(t, "too-big", bytes.Repeat([]byte("0123456789abcdef"), 1024), "zstd")
	// Small files, so that what is refused is what they expand to.
	if len(xzBomb) > 64<<10 || len(gzBomb) > 64<<10 || len(tooBig.File) > 4<<10 {
		t.Fatalf("the bombs are not small: xz %d, gzip %d, zstd %d bytes", len(xzBomb), len(gzBomb), len(tooBig.File))
	}
	runCatalogue(t, e, []catCase{
		{name: "xz decompression bomb", send: e.request("PUT", "/main/nar/"+nix32sha(xzBomb)+".nar.xz", xzBomb), status: 413, msg: "decompression bomb"},
		{name: "gzip decompression bomb", send: e.request("PUT", narKey(gzBomb), gzBomb), status: 413, msg: "decompression bomb"},
	})
	runCatalogue(t, small, []catCase{
		{name: "NAR past max_nar_size", send: small.request("PUT", "/main/"+tooBig.URL(), tooBig.File), status: 413, msg: "exceeds the maximum NAR size of 4096 bytes"},
	})
}

// TestCatalogueNoSniff reads every kind of file, and larder's own pages
// and refusals: every answer says X-Content-Type-Options: nosniff, so that
// no browser takes a file for another type than the one larder gives.
func TestCatalogueNoSniff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPath(t, "sniffed", []byte("<html><script>alert(1)</script></html>"), "none")
	e.push("main", p)
	drv := strings.Repeat("a", 32) + "-sniffed.drv"
	id := "sha256:" + strings.Repeat("ab", 32) + "!out"
	files := map[string]string{
		"log/" + drv:                  "<html><script>alert(1)</script></html>\n",
		p.Hash + ".ls":                `{"version":1,"root":{"type":"regular","size":1}}`,
		"realisations/" + id + ".doi": `{"id":"` + id + `","outPath":"` + p.Hash + `-sniffed","signatures":[],"dependentRealisations":{}}`,
		"debuginfo/" + strings.Repeat("d", 40) + ".debug": `{"archive":"../nar/x.nar","member":"lib/debug/.build-id/dd/d.debug"}`,
	}
	for key, body := range files {
		e.expect(201, "PUT", "/main/"+key, e.admin, []byte(body))
	}
	cases := []struct {
		method, path string
		hdr          []string
		status       int
	}{
		{"GET", "/main/nix-cache-info", nil, 200},
		{"GET", "/main/" + p.Hash + ".narinfo", nil, 200},
		{"HEAD", "/main/" + p.Hash + ".narinfo", nil, 200},
		{"GET", "/main/" + p.URL(), nil, 200},
		{"HEAD", "/main/" + p.URL(), nil, 200},
		{"GET", "/main/" + p.URL(), []string{"Range", "bytes=0-3"}, 206},
		{"GET", "/main/" + p.URL(), []string{"Range", "bytes=100000-"}, 416},
		{"GET", "/main/" + p.URL(), []string{"If-None-Match", `"` + nix32sha(p.File) + `"`}, 304},
		{"GET", "/", nil, 200},
		{"GET", "/_larder/health", nil, 200},
		{"GET", "/main/" + strings.Repeat("0", 32) + ".narinfo", nil, 404},
		{"GET", "/main/etc/passwd", nil, 400},
	}
	for key := range files {
		cases = append(cases, struct {
			method, path string
			hdr          []string
			status       int
		}{"GET", "/main/" + key, nil, 200})
	}
	for _, c := range cases {
		resp, _ := e.expect(c.status, c.method, c.path, "", nil, c.hdr...)
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s %v: X-Content-Type-Options %q, want nosniff", c.method, c.path, c.hdr, got)
		}
	}
}

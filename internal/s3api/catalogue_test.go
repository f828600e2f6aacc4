package s3api_test

// The S3 part of the hostile-input catalogue; the list of where the whole
// catalogue lives is at the top of internal/nixhttp/catalogue_test.go.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/nixhttp"
	"github.com/larder-cache/larder/internal/s3api"
	"github.com/larder-cache/larder/internal/store"
	"github.com/nix-community/go-nix/pkg/nar"
)

// catTimeout is the body timeout of the server the slow-client cases talk
// to: short, so that they stay fast.
const catTimeout = 250 * time.Millisecond

// s3Case is one entry of the catalogue: a request, and the S3 error it
// must get.
type s3Case struct {
	name   string
	send   func(t *testing.T) (*http.Response, []byte)
	status int
	code   string
	msg    string // part of the message, if the code alone is not specific
}

// catalogueEnv is an env with small limits, so that bombs and oversized
// uploads are cheap to send.
func catalogueEnv(t *testing.T) *env {
	return newEnv(t, func(c *config.Config) {
		c.MaxUploadSize = 64 << 10
		c.MaxDecompressionRatio = 50
		c.DecompressionFloor = 1 << 20
	})
}

// signed returns a case sender that signs q with c and sends it.
func (e *env) signed(c cred, q raw) func(*testing.T) (*http.Response, []byte) {
	return func(*testing.T) (*http.Response, []byte) { return e.do(c, q) }
}

// tampered returns a case sender that signs q with c, lets change alter
// the signed request, and sends it.
func (e *env) tampered(c cred, q raw, change func(*http.Request)) func(*testing.T) (*http.Response, []byte) {
	return func(*testing.T) (*http.Response, []byte) {
		req := e.signedRequest(c, q)
		change(req)
		return e.send(q.srv, req)
	}
}

// presigned returns a case sender for a URL presigned with c at the time
// at; expires is X-Amz-Expires, change alters the presigned request.
func (e *env) presigned(c cred, method, target string, at time.Time, expires string, change func(*http.Request)) func(*testing.T) (*http.Response, []byte) {
	return func(t *testing.T) (*http.Response, []byte) {
		req, err := http.NewRequest(method, e.srv.URL+target+"?X-Amz-Expires="+expires, nil)
		if err != nil {
			t.Fatal(err)
		}
		presignAt(t, c, req, at)
		if change != nil {
			change(req)
		}
		return e.send(nil, req)
	}
}

// stalled returns a case sender that sends the request q signed with c to
// srv over a bare connection, with only the first n bytes of its body, and
// then either stops sending (close false: a stalled client) or closes its
// side (close true: a short body).
func (e *env) stalled(srv *httptest.Server, c cred, q raw, n int, close bool) func(*testing.T) (*http.Response, []byte) {
	return func(t *testing.T) (*http.Response, []byte) {
		q.srv = srv
		req := e.signedRequest(c, q)
		conn, err := net.Dial("tcp", req.URL.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var head bytes.Buffer
		fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", req.Method, req.URL.RequestURI(), req.Host, len(q.body))
		for k, v := range req.Header {
			fmt.Fprintf(&head, "%s: %s\r\n", k, v[0])
		}
		head.WriteString("\r\n")
		head.Write(q.body[:n])
		if _, err := conn.Write(head.Bytes()); err != nil {
			t.Fatal(err)
		}
		if close {
			_ = conn.(*net.TCPConn).CloseWrite()
		}
		_ = conn.SetReadDeadline(time.Now().Add(20 * catTimeout))
		resp, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
}

// slowServer is both front ends of e, as cmd/larder serves them, with the
// body timeout cut to catTimeout.
func slowServer(t *testing.T, e *env) *httptest.Server {
	t.Helper()
	nix := nixhttp.New(e.app.Service, nixhttp.Options{BodyTimeout: catTimeout})
	s3h := s3api.New(e.app.Service, s3api.Options{Region: e.app.Config.S3Region, BodyTimeout: catTimeout})
	srv := httptest.NewUnstartedServer(frontEnds(nix, s3h))
	srv.Config.ReadHeaderTimeout = catTimeout
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// unchangedFor is unchanged reporting to the test t (a subtest), not to
// the test that made e.
func (e *env) unchangedFor(t *testing.T, before snapshot) {
	t.Helper()
	after := e.snapshot()
	if !slices.Equal(before.keys, after.keys) || !slices.Equal(before.uploads, after.uploads) ||
		before.narinfos != after.narinfos || !slices.Equal(before.blobs, after.blobs) {
		t.Fatalf("the stores changed:\nbefore %+v\nafter  %+v", before, after)
	}
	if tmp, _ := filepath.Glob(filepath.Join(e.app.Config.BlobsURL().Path, "tmp~", "*")); len(tmp) > 0 {
		t.Fatalf("temporary files left behind: %v", tmp)
	}
}

// runS3Catalogue runs each case as a subtest: the status, the error
// document, and the stores as they were.
func runS3Catalogue(t *testing.T, e *env, cases []s3Case) {
	t.Helper()
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.name] {
			t.Fatalf("two cases named %q", c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshot()
			resp, body := c.send(t)
			msg := expectError(t, resp, body, c.status, c.code)
			if !strings.Contains(msg, c.msg) {
				t.Errorf("message %q does not contain %q", msg, c.msg)
			}
			e.unchangedFor(t, before)
		})
	}
}

// createUpload starts a multipart upload of key in bucket with c and
// uploads its part 1; it returns the upload ID and the part's ETag.
func (e *env) createUpload(c cred, bucket, key string, part []byte) (string, string) {
	e.t.Helper()
	resp, b := e.do(c, raw{method: "POST", target: "/" + bucket + "/" + key + "?uploads"})
	expectStatus(e.t, resp, b, http.StatusOK)
	var created struct {
		UploadID string `xml:"UploadId"`
	}
	if err := xml.Unmarshal(b, &created); err != nil || created.UploadID == "" {
		e.t.Fatalf("CreateMultipartUpload: %v\n%s", err, b)
	}
	resp, b = e.do(c, raw{method: "PUT", target: "/" + bucket + "/" + key + "?partNumber=1&uploadId=" + created.UploadID, body: part})
	expectStatus(e.t, resp, b, http.StatusOK)
	return created.UploadID, resp.Header.Get("ETag")
}

// TestCatalogueS3Signatures sends requests whose signature was made for
// another request (replayed with another key, method, subresource, host,
// payload hash, headers, body or time) or is malformed, and presigned URLs
// stretched past what they allow.
func TestCatalogueS3Signatures(t *testing.T) {
	t.Parallel()
	e := catalogueEnv(t)
	body := []byte("must not be stored")
	put := raw{method: "PUT", target: "/main/sig/object", body: body}
	resp, b := e.do(e.admin, raw{method: "PUT", target: "/main/sig/existing", body: []byte("existing")})
	expectStatus(t, resp, b, http.StatusOK)
	// Chunk signatures chain from the request's signature: the chunks of
	// one request are not valid after the headers of another.
	other := e.chunkedPut(e.admin, "/main/sig/other", body, 8, -1)
	otherBody, err := io.ReadAll(other.Body)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()

	runS3Catalogue(t, e, []s3Case{
		{"payload hash replaced after signing", e.tampered(e.admin, put, func(r *http.Request) { r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD") }), 403, "SignatureDoesNotMatch", ""},
		{"signature replayed on another key", e.tampered(e.admin, put, func(r *http.Request) { r.URL.Path = "/main/sig/elsewhere" }), 403, "SignatureDoesNotMatch", ""},
		{"signature of a GET replayed as DELETE", e.tampered(e.admin, raw{method: "GET", target: "/main/sig/existing"}, func(r *http.Request) { r.Method = "DELETE" }), 403, "SignatureDoesNotMatch", ""},
		{"signature replayed with a subresource added", e.tampered(e.admin, raw{method: "GET", target: "/main/sig/existing"}, func(r *http.Request) { r.URL.RawQuery = "uploads"; r.Method = "POST" }), 403, "SignatureDoesNotMatch", ""},
		{"signature replayed for another host", e.tampered(e.admin, put, func(r *http.Request) { r.Host = "evil.example" }), 403, "SignatureDoesNotMatch", ""},
		{"signed header dropped", e.tampered(e.admin, raw{method: "PUT", target: "/main/sig/object", body: body, hdr: []string{"X-Amz-Meta-Owner", "ci"}}, func(r *http.Request) { r.Header.Del("X-Amz-Meta-Owner") }), 403, "SignatureDoesNotMatch", ""},
		{"chunks replayed under another request", func(t *testing.T) (*http.Response, []byte) {
			req := e.chunkedPut(e.admin, "/main/sig/object", body, 8, -1)
			req.Body = io.NopCloser(bytes.NewReader(otherBody))
			return e.send(nil, req)
		}, 403, "SignatureDoesNotMatch", ""},
		{"X-Amz-Date changed after signing", e.tampered(e.admin, put, func(r *http.Request) { r.Header.Set("X-Amz-Date", "20200101T000000Z") }), 400, "AuthorizationHeaderMalformed", "Date is not the same"},
		{"X-Amz-Date removed", e.tampered(e.admin, put, func(r *http.Request) { r.Header.Del("X-Amz-Date") }), 403, "AccessDenied", "Date"},
		{"Authorization header malformed", e.tampered(e.admin, put, func(r *http.Request) { r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=garbage") }), 400, "AuthorizationHeaderMalformed", "three components"},
		{"signed for another service", e.tampered(e.admin, put, func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/s3/aws4_request", "/ec2/aws4_request", 1))
		}), 400, "AuthorizationHeaderMalformed", "ec2"},
		{"presigned URL valid for more than a week", e.presigned(e.admin, "GET", "/main/sig/existing", now, "604801", nil), 400, "AuthorizationQueryParametersError", "604800"},
		{"presigned URL without X-Amz-Expires", e.presigned(e.admin, "GET", "/main/sig/existing", now, "60", func(r *http.Request) {
			q := r.URL.Query()
			q.Del("X-Amz-Expires")
			r.URL.RawQuery = q.Encode()
		}), 400, "AuthorizationQueryParametersError", "X-Amz-Expires"},
		{"presigned URL dated in the future", e.presigned(e.admin, "GET", "/main/sig/existing", now.Add(time.Hour), "60", nil), 403, "AccessDenied", "not yet valid"},
		{"presigned URL with its expiry stretched", e.presigned(e.admin, "GET", "/main/sig/existing", now.Add(-10*time.Minute), "60", func(r *http.Request) {
			q := r.URL.Query()
			q.Set("X-Amz-Expires", "3600")
			r.URL.RawQuery = q.Encode()
		}), 403, "SignatureDoesNotMatch", ""},
		{"presigned GET replayed as PUT", e.presigned(e.admin, "GET", "/main/sig/existing", now, "600", func(r *http.Request) {
			r.Method = "PUT"
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}), 403, "SignatureDoesNotMatch", ""},
	})
	if !e.exists("sig/existing") {
		t.Fatal("a refused request deleted sig/existing")
	}
}

// TestCatalogueS3Keys sends keys and copy sources that try to leave their
// bucket or are not keys at all.
func TestCatalogueS3Keys(t *testing.T) {
	t.Parallel()
	e := catalogueEnv(t)
	e.createCache("secret", true)
	writeMain := e.key("main", store.PermWrite)
	resp, b := e.do(e.admin, raw{method: "PUT", target: "/main/src", body: []byte("source")})
	expectStatus(t, resp, b, http.StatusOK)
	copyFrom := func(c cred, source string) func(*testing.T) (*http.Response, []byte) {
		return e.signed(c, raw{method: "PUT", target: "/main/copied", hdr: []string{"X-Amz-Copy-Source", source}})
	}
	runS3Catalogue(t, e, []s3Case{
		{"bucket named ..", e.signed(e.admin, raw{method: "PUT", target: "/%2e%2e/x", body: []byte("x")}), 404, "NoSuchBucket", `".."`},
		{"copy source traversal from a private bucket", copyFrom(writeMain, "/secret/../main/src"), 403, "AccessDenied", "cache secret"},
		{"copy source traversal stays in its bucket", copyFrom(e.admin, "/secret/..%2Fmain%2Fsrc"), 404, "NoSuchKey", "../main/src"},
		{"key not UTF-8", e.signed(e.admin, raw{method: "PUT", target: "/main/%ff%fe", body: []byte("x")}), 400, "InvalidRequest", "UTF-8"},
		{"key over 1024 bytes", e.signed(e.admin, raw{method: "PUT", target: "/main/" + strings.Repeat("k", 1025), body: []byte("x")}), 400, "InvalidRequest", "1024"},
	})
	if e.exists("copied") {
		t.Fatal("a refused copy created main/copied")
	}
}

// TestCatalogueS3Bodies sends bodies that are short, oversized, bombs,
// malformed NARs and narinfos, or malformed aws-chunked streams.
func TestCatalogueS3Bodies(t *testing.T) {
	t.Parallel()
	e := catalogueEnv(t)
	body := []byte("0123456789abcdefghij")
	f := filepath.Join(t.TempDir(), "zeros")
	if err := os.WriteFile(f, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var bomb bytes.Buffer
	zw, err := zstd.NewWriter(&bomb, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		t.Fatal(err)
	}
	if err := nar.DumpPath(zw, f); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := newStorePath(t, "victim", []byte("victim content"), "none")
	truncated := p.file[:len(p.file)-16]
	malformedChunks := func(t *testing.T) (*http.Response, []byte) {
		req := e.chunkedPut(e.admin, "/main/chunky", body, 8, -1)
		b, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatal(err)
		}
		req.Body = io.NopCloser(bytes.NewReader(bytes.Replace(b, []byte("8;chunk-signature"), []byte("z;chunk-signature"), 1)))
		return e.send(nil, req)
	}
	runS3Catalogue(t, e, []s3Case{
		{"Content-MD5 not base64", e.signed(e.admin, raw{method: "PUT", target: "/main/obj", body: body, hdr: []string{"Content-MD5", "!!not-base64"}}), 400, "InvalidDigest", ""},
		{"body shorter than Content-Length", e.stalled(e.srv, e.admin, raw{method: "PUT", target: "/main/obj", body: body}, 5, true), 400, "IncompleteBody", ""},
		{"object past max_upload_size", e.signed(e.admin, raw{method: "PUT", target: "/main/big", body: make([]byte, 65<<10)}), 400, "EntityTooLarge", "limit"},
		{"NAR decompression bomb", e.signed(e.admin, raw{method: "PUT", target: "/main/nar/" + nix32sha(bomb.Bytes()) + ".nar.zst", body: bomb.Bytes()}), 400, "EntityTooLarge", "decompression bomb"},
		{"NAR truncated archive", e.signed(e.admin, raw{method: "PUT", target: "/main/nar/" + nix32sha(truncated) + ".nar", body: truncated}), 400, "InvalidRequest", "not a valid NAR"},
		{"narinfo with a NUL byte", e.signed(e.admin, raw{method: "PUT", target: "/main/" + p.narinfoKey(), body: []byte(strings.Replace(p.narinfo(), "References: ", "References: \x00", 1))}), 400, "InvalidRequest", "narinfo"},
		{"aws-chunked with a malformed chunk size", malformedChunks, 400, "InvalidRequest", "chunk size"},
		// X-Amz-Decoded-Content-Length is signed: changing it breaks the
		// signature.
		{"X-Amz-Decoded-Content-Length changed after signing", func(t *testing.T) (*http.Response, []byte) {
			req := e.chunkedPut(e.admin, "/main/chunky", body, 8, -1)
			req.Header.Set("X-Amz-Decoded-Content-Length", "30")
			return e.send(nil, req)
		}, 403, "SignatureDoesNotMatch", ""},
	})
	if bomb.Len() > 64<<10 {
		t.Fatalf("the bomb is %d bytes, past max_upload_size: it would be refused for that", bomb.Len())
	}
}

// TestCatalogueS3XML sends malformed CompleteMultipartUpload and
// DeleteObjects documents and multipart requests aimed at another
// bucket's or key's upload.
func TestCatalogueS3XML(t *testing.T) {
	t.Parallel()
	e := catalogueEnv(t)
	e.createCache("other", false)
	writeOther := e.key("other", store.PermWrite)
	for _, k := range []string{"keep", "mp"} {
		resp, b := e.do(e.admin, raw{method: "PUT", target: "/main/" + k, body: []byte(k)})
		expectStatus(t, resp, b, http.StatusOK)
	}
	id, etag := e.createUpload(e.admin, "main", "mp", []byte("the part"))
	complete := func(doc string) func(*testing.T) (*http.Response, []byte) {
		return e.signed(e.admin, raw{method: "POST", target: "/main/mp?uploadId=" + id, body: []byte(doc)})
	}
	part := "<Part><PartNumber>1</PartNumber><ETag>" + etag + "</ETag></Part>"
	entities := `<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>`
	pad := strings.Repeat("<!-- padding -->", 70000) // past 1 MiB
	deleteDoc := func(doc string) func(*testing.T) (*http.Response, []byte) {
		return e.signed(e.admin, raw{method: "POST", target: "/main?delete", body: []byte(doc)})
	}
	runS3Catalogue(t, e, []s3Case{
		{"CompleteMultipartUpload with entity expansion", complete(entities + "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&c;</ETag></Part></CompleteMultipartUpload>"), 400, "MalformedXML", ""},
		{"CompleteMultipartUpload over 1 MiB", complete("<CompleteMultipartUpload>" + part + pad + "</CompleteMultipartUpload>"), 400, "MalformedXML", "1 MiB"},
		{"CompleteMultipartUpload part number past 10000", complete("<CompleteMultipartUpload><Part><PartNumber>10001</PartNumber><ETag>" + etag + "</ETag></Part></CompleteMultipartUpload>"), 400, "InvalidPart", "10001"},
		{"CompleteMultipartUpload negative part number", complete("<CompleteMultipartUpload><Part><PartNumber>-1</PartNumber><ETag>" + etag + "</ETag></Part></CompleteMultipartUpload>"), 400, "InvalidPart", "-1"},
		{"DeleteObjects with entity expansion", deleteDoc(entities + "<Delete><Object><Key>&c;</Key></Object></Delete>"), 400, "MalformedXML", ""},
		{"DeleteObjects over 1 MiB", deleteDoc("<Delete><Object><Key>keep</Key></Object>" + pad + "</Delete>"), 400, "MalformedXML", "1 MiB"},
		{"UploadPart into another bucket's upload", e.signed(writeOther, raw{method: "PUT", target: "/other/mp?partNumber=2&uploadId=" + id, body: []byte("hijack")}), 404, "NoSuchUpload", id},
		{"CompleteMultipartUpload of another bucket's upload", e.signed(writeOther, raw{method: "POST", target: "/other/mp?uploadId=" + id, body: []byte("<CompleteMultipartUpload>" + part + "</CompleteMultipartUpload>")}), 404, "NoSuchUpload", id},
		{"AbortMultipartUpload of another key's upload", e.signed(e.admin, raw{method: "DELETE", target: "/main/other-key?uploadId=" + id}), 404, "NoSuchUpload", id},
		{"UploadPart number past 10000", e.signed(e.admin, raw{method: "PUT", target: "/main/mp?partNumber=10001&uploadId=" + id, body: []byte("x")}), 400, "InvalidArgument", "10000"},
	})
	if !e.exists("keep") {
		t.Fatal("a refused DeleteObjects deleted keep")
	}
	resp, b := e.do(e.admin, raw{method: "POST", target: "/main/mp?uploadId=" + id, body: []byte("<CompleteMultipartUpload>" + part + "</CompleteMultipartUpload>")})
	expectStatus(t, resp, b, http.StatusOK) // the upload survived every refusal
}

// TestCatalogueS3SlowClients sends uploads that stop sending their body to
// a server with a short body_timeout: each is abandoned with RequestTimeout
// and nothing is stored.
func TestCatalogueS3SlowClients(t *testing.T) {
	t.Parallel()
	e := catalogueEnv(t)
	slow := slowServer(t, e)
	id, _ := e.createUpload(e.admin, "main", "mp", []byte("part one"))
	p := newStorePath(t, "slow", bytes.Repeat([]byte("slow\n"), 200), "none")
	part := make([]byte, 1000)
	runS3Catalogue(t, e, []s3Case{
		{"body timeout on PutObject", e.stalled(slow, e.admin, raw{method: "PUT", target: "/main/slow", body: make([]byte, 1000)}, 10, false), 400, "RequestTimeout", ""},
		{"body timeout on a NAR", e.stalled(slow, e.admin, raw{method: "PUT", target: "/main/" + p.narKey(), body: p.file}, 10, false), 400, "RequestTimeout", ""},
		{"body timeout on UploadPart", e.stalled(slow, e.admin, raw{method: "PUT", target: "/main/mp?partNumber=2&uploadId=" + url.QueryEscape(id), body: part, payload: "UNSIGNED-PAYLOAD"}, 10, false), 400, "RequestTimeout", ""},
	})
}

// scrapeMetrics returns what GET /_larder/metrics serves.
func (e *env) scrapeMetrics() string {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.app.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/_larder/metrics", nil))
	if rec.Code != http.StatusOK {
		e.t.Fatalf("metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

// requestSeries counts the series of larder_http_requests_total.
func requestSeries(metrics string) int {
	n := 0
	for line := range strings.SplitSeq(metrics, "\n") {
		if strings.HasPrefix(line, "larder_http_requests_total{") {
			n++
		}
	}
	return n
}

// TestCatalogueRandomMethods sends requests with random method names over
// both protocols, signed for S3 and unsigned: each is refused, and the
// metrics stay as large as they were, since every method outside the
// fixed set is counted as "other".
func TestCatalogueRandomMethods(t *testing.T) {
	t.Parallel()
	e := catalogueEnv(t)
	random := func(n int) string {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		for i := range b {
			b[i] = 'A' + b[i]%26
		}
		return string(b)
	}
	send := func() {
		t.Helper()
		m := random(1000)
		resp, b := e.do(e.admin, raw{method: m, target: "/main/some/object"})
		expectError(t, resp, b, http.StatusNotImplemented, "NotImplemented")
		req, err := http.NewRequest(m, e.srv.URL+"/main/nix-cache-info", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, b = e.send(nil, req)
		expectStatus(t, resp, b, http.StatusMethodNotAllowed)
	}
	send() // every series the requests can make, made once
	before := e.scrapeMetrics()
	const n = 500
	for range n {
		send()
	}
	after := e.scrapeMetrics()
	for _, want := range []string{
		`larder_http_requests_total{code="501",kind="other",method="other",protocol="s3"} ` + fmt.Sprint(n+1),
		`larder_http_requests_total{code="405",kind="cache-info",method="other",protocol="nix"} ` + fmt.Sprint(n+1),
	} {
		if !strings.Contains(after, want) {
			t.Errorf("the metrics lack %q", want)
		}
	}
	if b, a := requestSeries(before), requestSeries(after); a != b {
		t.Errorf("%d requests with random methods made %d request series out of %d", 2*n, a-b, b)
	}
	// The Go runtime's metrics change a little; a method name in a label
	// would add a kilobyte a request.
	if growth := len(after) - len(before); growth > 8<<10 {
		t.Errorf("%d requests with random methods grew the metrics by %d bytes, to %d", 2*n, growth, len(after))
	}
}

// TestCatalogueS3ObjectHeaders uploads objects that a browser would run
// (HTML, SVG, and one without a type) and reads them back with every kind
// of read: each keeps its uploader's Content-Type, as S3 clients expect,
// but says X-Content-Type-Options: nosniff and Content-Security-Policy:
// sandbox, so that opened in a browser it runs in no origin, and none is
// taken for another type. NARs and narinfos read over S3, listings and
// errors say nosniff too.
func TestCatalogueS3ObjectHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	page := []byte("<html><script>alert(document.cookie)</script></html>")
	objects := map[string]string{"page.html": "text/html", "image.svg": "image/svg+xml", "untyped": ""}
	for key, ctype := range objects {
		var hdr []string
		if ctype != "" {
			hdr = []string{"Content-Type", ctype}
		}
		resp, b := e.do(e.admin, raw{method: "PUT", target: "/main/" + key, body: page, hdr: hdr})
		expectStatus(t, resp, b, http.StatusOK)
	}
	p := newStorePath(t, "sniffed", page, "none")
	for key, body := range map[string][]byte{p.narKey(): p.file, p.narinfoKey(): []byte(p.narinfo())} {
		resp, b := e.do(e.admin, raw{method: "PUT", target: "/main/" + key, body: body})
		expectStatus(t, resp, b, http.StatusOK)
	}
	check := func(q raw, status int, ctype, csp string) {
		t.Helper()
		resp, b := e.do(e.admin, q)
		expectStatus(t, resp, b, status)
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s: X-Content-Type-Options %q, want nosniff", q.method, q.target, got)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != csp {
			t.Errorf("%s %s: Content-Security-Policy %q, want %q", q.method, q.target, got, csp)
		}
		if got := resp.Header.Get("Content-Type"); ctype != "" && got != ctype {
			t.Errorf("%s %s: Content-Type %q, want %q", q.method, q.target, got, ctype)
		}
	}
	for key, ctype := range objects {
		if ctype == "" {
			ctype = "binary/octet-stream"
		}
		check(raw{method: "GET", target: "/main/" + key}, 200, ctype, "sandbox")
		check(raw{method: "HEAD", target: "/main/" + key}, 200, ctype, "sandbox")
		check(raw{method: "GET", target: "/main/" + key, hdr: []string{"Range", "bytes=0-5"}}, 206, ctype, "sandbox")
	}
	check(raw{method: "GET", target: "/main/" + p.narKey()}, 200, "application/x-nix-nar", "sandbox")
	check(raw{method: "GET", target: "/main/" + p.narinfoKey()}, 200, "", "sandbox")
	check(raw{method: "GET", target: "/main?list-type=2"}, 200, "application/xml", "")
	check(raw{method: "GET", target: "/main/absent"}, 404, "application/xml", "")
}

package s3api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/larder-cache/larder/internal/app"
	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/narinfo"
	"github.com/larder-cache/larder/internal/nixhttp"
	"github.com/larder-cache/larder/internal/s3api"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
	"github.com/minio/minio-go/v7"
	miniocreds "github.com/minio/minio-go/v7/pkg/credentials"
)

// The region the clients sign for, as Garage users configure it.
const region = "garage"

func TestMain(m *testing.M) {
	// A CA bundle meant for other tools breaks aws-sdk-go-v2's TLS; the
	// tests give every client the test server's certificate instead.
	os.Unsetenv("AWS_CA_BUNDLE")
	os.Exit(m.Run())
}

// env is larder assembled as `larder serve` runs it (SQLite and a local blob
// directory in a temporary data directory, both front ends on one listener)
// behind an HTTP and an HTTPS test server.
type env struct {
	t     *testing.T
	app   *app.App
	srv   *httptest.Server // plain HTTP
	tls   *httptest.Server // HTTPS with a test certificate
	admin cred             // an S3 key with admin rights on every cache
	logs  *logBuffer
	seen  *recorder
}

// cred is an S3 access key pair.
type cred struct{ id, secret string }

func newEnv(t *testing.T, tweak ...func(*config.Config)) *env {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	for _, f := range tweak {
		f(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	a, err := app.Open(t.Context(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	nix := nixhttp.New(a.Service, nixhttp.Options{Logger: log, PublicURL: "http://larder.test", Metrics: a.Metrics})
	s3h := s3api.New(a.Service, s3api.Options{Logger: log, Region: cfg.S3Region, Domain: cfg.S3Domain, Metrics: a.Metrics})
	seen := &recorder{}
	h := seen.wrap(frontEnds(nix, s3h))
	e := &env{t: t, app: a, srv: httptest.NewServer(h), tls: httptest.NewTLSServer(h), logs: logs, seen: seen}
	t.Cleanup(e.srv.Close)
	t.Cleanup(e.tls.Close)
	e.admin = e.key(service.AllCaches, store.PermAdmin)
	return e
}

// frontEnds is the dispatch of cmd/larder: a request signed for S3 goes to
// the S3 API, anything else is the Nix binary cache protocol.
func frontEnds(nix, s3 http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s3api.Is(r) {
			s3.ServeHTTP(w, r)
			return
		}
		nix.ServeHTTP(w, r)
	})
}

// key creates an S3 access key for scope with permission perm.
func (e *env) key(scope string, perm store.Perm) cred {
	e.t.Helper()
	text, _, err := e.app.Service.CreateToken(e.t.Context(), service.TokenSpec{Cache: scope, Perm: perm, S3: true})
	if err != nil {
		e.t.Fatal(err)
	}
	id, secret, ok := strings.Cut(text, " ")
	if !ok || strings.ContainsAny(secret, " \n") {
		e.t.Fatalf("S3 credential %q is not one line \"ID SECRET\"", text)
	}
	return cred{id: id, secret: secret}
}

// createCache creates a cache directly through the service.
func (e *env) createCache(name string, private bool) {
	e.t.Helper()
	if _, err := e.app.Service.CreateCache(e.t.Context(), service.CacheSpec{Name: name, Private: private}); err != nil {
		e.t.Fatal(err)
	}
}

// publicKey returns the public key of a cache.
func (e *env) publicKey(cache string) narinfo.PublicKey {
	e.t.Helper()
	c, err := e.app.Service.GetCache(e.t.Context(), cache)
	if err != nil {
		e.t.Fatal(err)
	}
	sk, err := narinfo.ParseSecretKey(c.SecretKey)
	if err != nil {
		e.t.Fatal(err)
	}
	if k := sk.PublicKey(); k.String() != c.PublicKey {
		e.t.Fatalf("the public key of cache %s is %s, not the public half of its signing key, %s", cache, c.PublicKey, k)
	}
	return sk.PublicKey()
}

// servers are the two listeners, for tests that run over both.
func (e *env) servers() map[string]*httptest.Server {
	return map[string]*httptest.Server{"http": e.srv, "https": e.tls}
}

// awsClient is an aws-sdk-go-v2 S3 client for srv as a user configures one
// for an S3-compatible server: path style, a base endpoint, a region. The
// SDK's defaults (flexible checksums) are kept; retries are off, so that an
// error is seen as it is.
func (e *env) awsClient(srv *httptest.Server, c cred) *s3.Client {
	return s3.New(s3.Options{
		Region:       region,
		BaseEndpoint: aws.String(srv.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(c.id, c.secret, ""),
		HTTPClient:   srv.Client(),
		Retryer:      aws.NopRetryer{},
		// What config.LoadDefaultConfig sets unless told otherwise.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
	})
}

// minioClient is a minio-go client for srv, as mc builds one.
func (e *env) minioClient(srv *httptest.Server, c cred) *minio.Client {
	e.t.Helper()
	mc, err := minio.New(strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://"), &minio.Options{
		Creds:        miniocreds.NewStaticV4(c.id, c.secret, ""),
		Secure:       strings.HasPrefix(srv.URL, "https://"),
		Transport:    srv.Client().Transport,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   1,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return mc
}

// raw is a request built and signed by hand, for what the SDKs will not send.
type raw struct {
	method string
	target string // escaped path and query, e.g. "/main/a%20b?acl"
	body   []byte
	hdr    []string // name, value, name, value...
	// payload is the x-amz-content-sha256 to sign: "" for the SHA-256 of
	// body, "-" to send none.
	payload string
	at      time.Time // signing time; zero: now
	srv     *httptest.Server
}

// do signs q with c (as aws-sdk-go-v2's signer signs for S3) and sends it.
func (e *env) do(c cred, q raw) (*http.Response, []byte) {
	e.t.Helper()
	req := e.signedRequest(c, q)
	return e.send(q.srv, req)
}

func (e *env) signedRequest(c cred, q raw) *http.Request {
	e.t.Helper()
	srv := q.srv
	if srv == nil {
		srv = e.srv
	}
	req, err := http.NewRequest(q.method, srv.URL+q.target, bytes.NewReader(q.body))
	if err != nil {
		e.t.Fatal(err)
	}
	if q.body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for i := 0; i+1 < len(q.hdr); i += 2 {
		if strings.EqualFold(q.hdr[i], "Host") {
			req.Host = q.hdr[i+1]
			continue
		}
		req.Header.Set(q.hdr[i], q.hdr[i+1])
	}
	payload := q.payload
	switch payload {
	case "":
		payload = sha256Hex(q.body)
		req.Header.Set("X-Amz-Content-Sha256", payload)
	case "-":
		payload = sha256Hex(nil)
	default:
		req.Header.Set("X-Amz-Content-Sha256", payload)
	}
	at := q.at
	if at.IsZero() {
		at = time.Now()
	}
	err = v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }).
		SignHTTP(context.Background(), aws.Credentials{AccessKeyID: c.id, SecretAccessKey: c.secret}, req, payload, "s3", region, at)
	if err != nil {
		e.t.Fatal(err)
	}
	return req
}

// presignAt turns req into a presigned URL request signed with c at the
// time at; X-Amz-Expires must already be in its query.
func presignAt(t *testing.T, c cred, req *http.Request, at time.Time) {
	t.Helper()
	signed, _, err := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }).
		PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: c.id, SecretAccessKey: c.secret}, req, "UNSIGNED-PAYLOAD", "s3", region, at)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	req.URL = u
}

// send sends a request to srv (nil: the HTTP server) and reads the answer.
func (e *env) send(srv *httptest.Server, req *http.Request) (*http.Response, []byte) {
	e.t.Helper()
	if srv == nil {
		srv = e.srv
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

// get is a plain, unsigned GET over the Nix protocol.
func (e *env) get(path string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.send(e.srv, req)
}

// s3Error is an S3 error document.
type s3Error struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	Resource  string   `xml:"Resource"`
	RequestID string   `xml:"RequestId"`
}

// expectError checks that a response is the S3 error code with status, as
// a complete error document (or, for HEAD, no body), and returns its message.
func expectError(t *testing.T, resp *http.Response, body []byte, status int, code string) string {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d (%s); body: %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, code, body)
	}
	id := resp.Header.Get("x-amz-request-id")
	if id == "" {
		t.Errorf("%s %s: error without x-amz-request-id", resp.Request.Method, resp.Request.URL.Path)
	}
	if resp.Request.Method == http.MethodHead {
		if len(body) != 0 {
			t.Errorf("HEAD error with a body: %q", body)
		}
		return ""
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/xml" {
		t.Errorf("error Content-Type %q, want application/xml", ct)
	}
	var doc s3Error
	if err := xml.Unmarshal(body, &doc); err != nil {
		t.Fatalf("error body is not an S3 error document: %v\n%s", err, body)
	}
	if doc.Code != code {
		t.Fatalf("%s %s: code %s, want %s; message: %s", resp.Request.Method, resp.Request.URL.Path, doc.Code, code, doc.Message)
	}
	if doc.Message == "" || doc.Resource == "" || doc.RequestID == "" {
		t.Errorf("incomplete error document: %+v", doc)
	}
	if doc.RequestID != id {
		t.Errorf("RequestId %q, but x-amz-request-id %q", doc.RequestID, id)
	}
	return doc.Message
}

// expectStatus fails unless resp has the status.
func expectStatus(t *testing.T, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body: %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, status, body)
	}
}

// snapshot is what the stores hold, to check that a refused request changed
// nothing: every listed key of every cache, the uploads in progress, the
// narinfos and the blobs.
type snapshot struct {
	keys     []string
	uploads  []string
	narinfos int
	blobs    []string
}

func (e *env) snapshot() snapshot {
	e.t.Helper()
	ctx := e.t.Context()
	var s snapshot
	caches, err := e.app.Meta.ListCaches(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, c := range caches {
		entries, err := e.app.Meta.ListKeys(ctx, c.ID, "", "", 1<<20)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, en := range entries {
			s.keys = append(s.keys, c.Name+"/"+en.Key+" "+en.ETag)
		}
		ups, err := e.app.Meta.ListUploads(ctx, c.ID, "")
		if err != nil {
			e.t.Fatal(err)
		}
		for _, u := range ups {
			s.uploads = append(s.uploads, c.Name+"/"+u.Key+" "+u.ID)
		}
	}
	ni, err := e.app.Meta.ListNarInfoKeys(ctx, 0, 1<<30)
	if err != nil {
		e.t.Fatal(err)
	}
	s.narinfos = len(ni)
	err = e.app.Blobs.List(ctx, "", func(b store.BlobInfo) error {
		s.blobs = append(s.blobs, b.Key)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// unchanged fails if the stores differ from before, or if an upload left a
// temporary file behind.
func (e *env) unchanged(before snapshot) {
	e.t.Helper()
	after := e.snapshot()
	if !slices.Equal(before.keys, after.keys) || !slices.Equal(before.uploads, after.uploads) ||
		before.narinfos != after.narinfos || !slices.Equal(before.blobs, after.blobs) {
		e.t.Fatalf("the stores changed:\nbefore %+v\nafter  %+v", before, after)
	}
	tmp, _ := filepath.Glob(filepath.Join(e.app.Config.BlobsURL().Path, "tmp~", "*"))
	if len(tmp) > 0 {
		e.t.Fatalf("temporary files left behind: %v", tmp)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// recorder remembers the headers of the S3 requests the server received, to
// check what the real clients sent.
type recorder struct {
	mu   sync.Mutex
	reqs []seenRequest
}

type seenRequest struct {
	method, path string
	header       http.Header
}

func (rec *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, seenRequest{method: r.Method, path: r.URL.Path, header: r.Header.Clone()})
		rec.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// find returns the requests for path with the method.
func (rec *recorder) find(method, path string) []seenRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []seenRequest
	for _, r := range rec.reqs {
		if r.method == method && r.path == path {
			out = append(out, r)
		}
	}
	return out
}

// logBuffer collects the server's log, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

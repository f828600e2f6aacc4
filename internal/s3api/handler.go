// Package s3api is the front end that speaks the S3 API, so that `nix copy
// --to s3://CACHE?endpoint=…`, mc, aws, rclone and s3cmd work on larder:
// every cache is a bucket. Requests are authenticated with AWS Signature V4
// (package sigv4); keys in the Nix layout go through the service's ingest,
// other keys are plain objects.
//
// It parses requests, calls the service, writes S3 XML, and maps errors to
// S3 error codes in one function (errors.go). It must not import a store
// implementation.
package s3api

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/httpx"
	"github.com/larder-cache/larder/internal/metrics"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/sigv4"
	"github.com/larder-cache/larder/internal/store"
)

// Options configure a Handler.
type Options struct {
	Logger *slog.Logger
	// Region, if set, is the only region requests may be signed for; it is
	// also what GetBucketLocation answers.
	Region string
	// Domain, if set, enables virtual-host style requests: a request for
	// host CACHE.Domain addresses the bucket CACHE.
	Domain string
	// Metrics counts requests; nil counts nothing.
	Metrics *metrics.Metrics
	// BodyTimeout is how long an upload may send nothing before it is
	// abandoned (RequestTimeout); 0 means a minute.
	BodyTimeout time.Duration
}

// Handler serves the S3 API.
type Handler struct {
	svc       *service.Service
	log       *slog.Logger
	opts      Options
	accessLog httpx.AccessLog
}

// New returns a Handler over svc.
func New(svc *service.Service, opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = time.Minute
	}
	return &Handler{svc: svc, log: opts.Logger, opts: opts,
		accessLog: httpx.AccessLog{Logger: opts.Logger, Metrics: opts.Metrics, Protocol: "s3", Message: "s3 request"}}
}

// Is reports whether r is an S3 request: one signed with AWS Signature V4,
// or with the obsolete V2 (which gets a clear error).
func Is(r *http.Request) bool { return sigv4.IsSigned(r) || sigv4.IsSignedV2(r) }

// request is one S3 request being served.
type request struct {
	r         *http.Request
	w         *httpx.ResponseWriter
	id        string // x-amz-request-id
	bucket    string
	key       string
	op        string // for the log
	principal *service.Principal
	auth      *sigv4.Request
	err       error
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := &request{r: r, w: &httpx.ResponseWriter{ResponseWriter: w}, id: httpx.RequestID()}
	start := time.Now()
	defer func() { h.logRequest(q, time.Since(start)) }()
	q.w.Header().Set("x-amz-request-id", q.id)
	q.w.Header().Set("Server", "larder")
	// Objects keep the content type their uploader gave: a browser must
	// not guess another.
	q.w.Header().Set("X-Content-Type-Options", "nosniff")

	if sigv4.IsSignedV2(r) && !sigv4.IsSigned(r) {
		h.fail(q, &s3Error{Status: 400, Code: "InvalidRequest",
			Message: "AWS Signature Version 2 is not supported; sign requests with Signature Version 4"})
		return
	}
	q.bucket, q.key = h.address(r)
	if r.Body != nil && r.Body != http.NoBody {
		// A client that stops sending is abandoned, as on the Nix protocol:
		// reading fails with os.ErrDeadlineExceeded (RequestTimeout).
		r.Body = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(q.w), timeout: h.opts.BodyTimeout}
	}
	auth, err := sigv4.Verify(r.Context(), r, q.lookup(h.svc), sigv4.Options{Region: h.opts.Region, Service: "s3"})
	if err != nil {
		h.fail(q, err)
		return
	}
	q.auth = auth
	defer auth.Body.Close()
	h.route(q)
}

// idleBody is a request body whose every read must make progress within
// timeout.
type idleBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	return b.ReadCloser.Read(p)
}

// lookup gives sigv4 the secret of an access key and keeps the principal
// the key stands for as the request's, so that a request looks its key up
// once.
func (q *request) lookup(svc *service.Service) sigv4.Lookup {
	return func(ctx context.Context, id string) (string, error) {
		secret, p, err := svc.AccessKey(ctx, id)
		if service.CodeOf(err) == service.CodeUnauthenticated {
			return "", sigv4.ErrUnknownKey
		}
		q.principal = p
		return secret, err
	}
}

// address returns the bucket and key a request names: path style
// (/BUCKET/KEY), or virtual-host style (BUCKET.DOMAIN/KEY) when a domain is
// configured.
func (h *Handler) address(r *http.Request) (bucket, key string) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	if h.opts.Domain != "" {
		host := r.Host
		if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
			host = host[:i]
		}
		if b, ok := strings.CutSuffix(host, "."+h.opts.Domain); ok && b != "" {
			return b, path
		}
	}
	bucket, key, _ = strings.Cut(path, "/")
	return bucket, key
}

// route dispatches a request to its operation.
func (h *Handler) route(q *request) {
	r, query := q.r, q.r.URL.Query()
	has := func(name string) bool { _, ok := query[name]; return ok }
	switch {
	case q.bucket == "":
		if r.Method == http.MethodGet {
			h.listBuckets(q)
			return
		}
	case q.key == "":
		h.routeBucket(q, has)
		return
	case has("uploadId"):
		switch r.Method {
		case http.MethodGet:
			h.listParts(q)
			return
		case http.MethodPut:
			h.uploadPart(q)
			return
		case http.MethodPost:
			h.completeUpload(q)
			return
		case http.MethodDelete:
			h.abortUpload(q)
			return
		}
	case has("uploads") && r.Method == http.MethodPost:
		h.createUpload(q)
		return
	case has("acl"):
		h.objectACL(q)
		return
	case has("tagging"):
		if r.Method == http.MethodGet {
			h.emptyTagging(q)
			return
		}
	case hasSubresource(query):
		// An operation larder does not implement, e.g. PUT ?retention: it
		// must not be taken for the plain PUT of the object.
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		h.getObject(q)
		return
	case r.Method == http.MethodPut && r.Header.Get("x-amz-copy-source") != "":
		h.copyObject(q)
		return
	case r.Method == http.MethodPut:
		h.putObject(q)
		return
	case r.Method == http.MethodDelete:
		h.deleteObject(q)
		return
	}
	h.fail(q, notImplemented(r))
}

// routeBucket dispatches a request addressed to a bucket.
func (h *Handler) routeBucket(q *request, has func(string) bool) {
	switch q.r.Method {
	case http.MethodGet:
		switch {
		case has("location"):
			h.bucketLocation(q)
		case has("object-lock"):
			h.bucketNoConfig(q, "ObjectLockConfigurationNotFoundError", "Object Lock configuration does not exist for this bucket")
		case has("policy"):
			h.bucketNoConfig(q, "NoSuchBucketPolicy", "The bucket policy does not exist")
		case has("lifecycle"):
			h.bucketNoConfig(q, "NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist")
		case has("cors"):
			h.bucketNoConfig(q, "NoSuchCORSConfiguration", "The CORS configuration does not exist")
		case has("encryption"):
			h.bucketNoConfig(q, "ServerSideEncryptionConfigurationNotFoundError", "The server side encryption configuration was not found")
		case has("tagging"):
			h.bucketNoConfig(q, "NoSuchTagSet", "The TagSet does not exist")
		case has("website"):
			h.bucketNoConfig(q, "NoSuchWebsiteConfiguration", "The specified bucket does not have a website configuration")
		case has("replication"):
			h.bucketNoConfig(q, "ReplicationConfigurationNotFoundError", "The replication configuration was not found")
		case has("versioning"):
			h.bucketVersioning(q)
		case has("acl"):
			h.bucketACL(q)
		case has("uploads"):
			h.listUploads(q)
		case has("versions"):
			h.listVersions(q)
		case hasSubresource(q.r.URL.Query()):
			h.fail(q, notImplemented(q.r))
		default:
			h.listObjects(q)
		}
	case http.MethodHead:
		h.headBucket(q)
	case http.MethodPut:
		switch {
		case has("acl"):
			h.bucketACL(q)
		case hasSubresource(q.r.URL.Query()):
			h.fail(q, notImplemented(q.r))
		default:
			h.createBucket(q)
		}
	case http.MethodDelete:
		if hasSubresource(q.r.URL.Query()) { // e.g. DELETE ?cors
			h.fail(q, notImplemented(q.r))
			return
		}
		h.deleteBucket(q)
	case http.MethodPost:
		if has("delete") {
			h.deleteObjects(q)
			return
		}
		h.fail(q, notImplemented(q.r))
	default:
		h.fail(q, notImplemented(q.r))
	}
}

// subresources are the query parameters by which S3 selects an operation
// other than the plain GET, HEAD, PUT, DELETE or POST of a bucket or object.
// route and routeBucket dispatch the ones larder implements first; a
// request with any other is NotImplemented. Other parameters (the SDKs'
// x-id, response-* overrides, listing parameters) are not subresources.
var subresources = map[string]bool{
	"abac": true, "accelerate": true, "acl": true, "analytics": true, "attributes": true,
	"cors": true, "delete": true, "encryption": true, "intelligent-tiering": true,
	"inventory": true, "legal-hold": true, "lifecycle": true, "location": true,
	"logging": true, "metadataConfiguration": true, "metadataTable": true, "metrics": true,
	"notification": true, "object-lock": true, "ownershipControls": true, "policy": true,
	"policyStatus": true, "publicAccessBlock": true, "renameObject": true,
	"replication": true, "requestPayment": true, "restore": true, "retention": true,
	"select": true, "tagging": true, "torrent": true, "uploadId": true,
	"uploads": true, "versioning": true, "versions": true, "website": true,
}

// hasSubresource reports whether a query names a subresource.
func hasSubresource(query url.Values) bool {
	for name := range query {
		if subresources[name] {
			return true
		}
	}
	return false
}

// cache authorises the request for its bucket at the level need.
func (h *Handler) cache(q *request, need store.Perm) (service.Cache, bool) {
	c, err := h.svc.Authorize(q.r.Context(), q.principal, q.bucket, need)
	if err != nil {
		h.fail(q, err)
		return service.Cache{}, false
	}
	return c, true
}

// writeXML answers with an XML document.
func (h *Handler) writeXML(q *request, status int, v any) {
	body, err := xml.Marshal(v)
	if err != nil {
		h.fail(q, err)
		return
	}
	q.w.Header().Set("Content-Type", "application/xml")
	q.w.WriteHeader(status)
	_, _ = q.w.Write([]byte(xml.Header))
	_, _ = q.w.Write(body)
}

// readXML decodes a small XML request body into v. The body is read to
// its end, and so verified (signatures, payload hash, Content-MD5,
// checksums), before anything is decoded: no operation may act on a
// document that turns out not to be the one that was signed.
func readXML(q *request, v any) error {
	const limit = 1 << 20
	body, err := io.ReadAll(io.LimitReader(q.auth.Body, limit+1))
	if err != nil {
		var se *sigv4.Error
		if errors.As(err, &se) {
			return err
		}
		return &s3Error{Status: 400, Code: "IncompleteBody", Message: "The request body could not be read"}
	}
	if len(body) > limit {
		return &s3Error{Status: 400, Code: "MalformedXML", Message: "The XML document is larger than 1 MiB"}
	}
	if err := xml.Unmarshal(body, v); err != nil {
		return &s3Error{Status: 400, Code: "MalformedXML",
			Message: "The XML you provided was not well-formed or did not validate against our published schema"}
	}
	return nil
}

// resource is the bucket and key a request is about, for error documents.
func (q *request) resource() string {
	if q.key == "" {
		return "/" + q.bucket
	}
	return "/" + q.bucket + "/" + q.key
}

// escapeKey encodes a key for a listing if the client asked for
// encoding-type=url.
func escapeKey(s string, encode bool) string {
	if !encode {
		return s
	}
	return httpx.EscapeKey(s)
}

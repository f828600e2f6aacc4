package s3api

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/compression"
	"github.com/larder-cache/larder/internal/httpx"
	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// getObject answers GET and HEAD of an object, with Range and the four
// conditional headers.
func (h *Handler) getObject(q *request) {
	q.op = "GetObject"
	if q.r.Method == http.MethodHead {
		q.op = "HeadObject"
	}
	c, ok := h.cache(q, store.PermRead)
	if !ok {
		return
	}
	o, err := h.svc.StatObject(q.r.Context(), c, q.key)
	countLookup(h.svc, c, q.key, err)
	if err != nil {
		h.fail(q, err)
		return
	}
	etag := `"` + o.ETag + `"`
	hdr := q.w.Header()
	hdr.Set("ETag", etag)
	hdr.Set("Last-Modified", o.Modified.UTC().Format(http.TimeFormat))
	hdr.Set("Accept-Ranges", "bytes")
	if status := preconditions(q.r, etag, o.Modified); status != 0 {
		if status == http.StatusPreconditionFailed {
			h.fail(q, &s3Error{Status: status, Code: "PreconditionFailed", Message: "At least one of the preconditions you specified did not hold"})
			return
		}
		q.w.WriteHeader(status)
		return
	}
	ctype := o.ContentType
	if ctype == "" {
		ctype = "binary/octet-stream"
	}
	hdr.Set("Content-Type", ctype)
	// The content type is the uploader's: an HTML or SVG object opened in a
	// browser runs as a page without an origin, not as larder's.
	hdr.Set("Content-Security-Policy", "sandbox")
	for k, v := range o.Metadata {
		hdr["x-amz-meta-"+k] = []string{v} // as sent: names are case-sensitive to clients
	}
	off, length, status := int64(0), o.Size, http.StatusOK
	// A size not known until the body is sent (a chunked NAR compressed
	// again, see service.NarFile) takes no ranges and gives no length.
	if rg := q.r.Header.Get("Range"); rg != "" && o.Size >= 0 && httpx.IfRangeAllows(q.r.Header.Get("If-Range"), etag) {
		start, n, ok, satisfiable := httpx.ParseRange(rg, o.Size)
		switch {
		case ok && !satisfiable:
			hdr.Set("Content-Range", "bytes */"+strconv.FormatInt(o.Size, 10))
			h.fail(q, &s3Error{Status: http.StatusRequestedRangeNotSatisfiable, Code: "InvalidRange", Message: "The requested range is not satisfiable"})
			return
		case ok:
			off, length, status = start, n, http.StatusPartialContent
			hdr.Set("Content-Range", httpx.ContentRange(off, length, o.Size))
		}
	}
	if length >= 0 {
		hdr.Set("Content-Length", strconv.FormatInt(length, 10))
	}
	if q.r.Method == http.MethodHead {
		q.w.WriteHeader(status)
		return
	}
	body, err := h.svc.ReadObject(q.r.Context(), o, off, length)
	if err != nil {
		h.fail(q, err)
		return
	}
	defer body.Close()
	q.w.WriteHeader(status)
	if _, err := io.Copy(q.w, body); err != nil {
		q.err = err
	}
}

// countLookup counts a GET or HEAD of a narinfo in the cache's history,
// as the Nix protocol's are counted: found, or not there. Other errors
// and other objects do not count. Newer Nix substitutes from s3:// caches
// this way.
func countLookup(svc *service.Service, c service.Cache, key string, err error) {
	if k, perr := nixkey.Parse(key); perr != nil || k.Kind != nixkey.NarInfo {
		return
	}
	switch {
	case err == nil:
		svc.CountLookup(c.Name(), true)
	case service.CodeOf(err) == service.CodeNotFound:
		svc.CountLookup(c.Name(), false)
	}
}

// preconditions evaluates If-Match, If-Unmodified-Since, If-None-Match and
// If-Modified-Since as S3 does, and returns the status to answer with
// instead of the object (412 or 304), or 0.
func preconditions(r *http.Request, etag string, modified time.Time) int {
	modified = modified.Truncate(time.Second)
	since := func(name string) (time.Time, bool) {
		t, err := http.ParseTime(r.Header.Get(name))
		return t, err == nil
	}
	im := r.Header.Get("If-Match")
	if im != "" && !httpx.ETagMatches(im, etag) {
		return http.StatusPreconditionFailed
	}
	if t, ok := since("If-Unmodified-Since"); ok && im == "" && modified.After(t) {
		return http.StatusPreconditionFailed
	}
	inm := r.Header.Get("If-None-Match")
	if inm != "" && httpx.ETagMatches(inm, etag) {
		return http.StatusNotModified
	}
	if t, ok := since("If-Modified-Since"); ok && inm == "" && !modified.After(t) {
		return http.StatusNotModified
	}
	return 0
}

// objectMeta reads the content type and user metadata of an upload.
func objectMeta(r *http.Request) service.ObjectMeta {
	m := service.ObjectMeta{ContentType: r.Header.Get("Content-Type")}
	for k, v := range r.Header {
		name, ok := strings.CutPrefix(strings.ToLower(k), "x-amz-meta-")
		if ok && len(v) > 0 {
			if m.Metadata == nil {
				m.Metadata = map[string]string{}
			}
			m.Metadata[name] = v[0]
		}
	}
	return m
}

// uploadBody returns the payload of an upload and its size, decoded from a
// Content-Encoding Nix's S3 store may set (narinfo-compression and the
// like). Close it once read.
func (h *Handler) uploadBody(q *request) (io.ReadCloser, int64, error) {
	enc := strings.TrimSpace(q.auth.ContentEncoding)
	if enc == "" || enc == "identity" {
		return io.NopCloser(q.auth.Body), q.auth.Length, nil
	}
	if !compression.Supported(enc) || enc == compression.None {
		return nil, 0, &s3Error{Status: 400, Code: "InvalidArgument", Message: "Content-Encoding " + enc + " is not supported"}
	}
	rc, err := h.svc.DecodeBody(q.r.Context(), enc, q.auth.Body)
	if service.CodeOf(err) == service.CodeInvalid {
		return nil, 0, &s3Error{Status: 400, Code: "InvalidArgument", Message: service.Message(err)}
	}
	if err != nil {
		return nil, 0, err
	}
	return rc, -1, nil
}

func (h *Handler) putObject(q *request) {
	q.op = "PutObject"
	c, ok := h.cache(q, store.PermWrite)
	if !ok {
		return
	}
	body, size, err := h.uploadBody(q)
	if err != nil {
		h.fail(q, err)
		return
	}
	defer body.Close()
	o, err := h.svc.PutObject(q.r.Context(), c, q.key, body, size, objectMeta(q.r))
	if err != nil {
		h.fail(q, err)
		return
	}
	h.writeChecksums(q)
	q.w.Header().Set("ETag", `"`+o.ETag+`"`)
	q.w.WriteHeader(http.StatusOK)
}

// writeChecksums echoes the checksums the client asked to be checked.
func (h *Handler) writeChecksums(q *request) {
	if q.auth.Checksums == nil {
		return
	}
	for k, v := range q.auth.Checksums() {
		q.w.Header().Set(k, v)
	}
}

func (h *Handler) deleteObject(q *request) {
	q.op = "DeleteObject"
	c, ok := h.cache(q, store.PermWrite)
	if !ok {
		return
	}
	if err := h.svc.DeleteObject(q.r.Context(), c, q.key); err != nil {
		h.fail(q, err)
		return
	}
	q.w.WriteHeader(http.StatusNoContent)
}

// copyObject copies an object, from this or another bucket the credential
// may read, through the same ingest as an upload. The metadata is the
// source's (x-amz-metadata-directive COPY) or the request's (REPLACE).
func (h *Handler) copyObject(q *request) {
	q.op = "CopyObject"
	ctx := q.r.Context()
	dst, ok := h.cache(q, store.PermWrite)
	if !ok {
		return
	}
	o, ok := h.copySourceObject(q)
	if !ok {
		return
	}
	meta := service.ObjectMeta{ContentType: o.ContentType, Metadata: o.Metadata}
	if strings.EqualFold(q.r.Header.Get("x-amz-metadata-directive"), "REPLACE") {
		meta = objectMeta(q.r)
	}
	body, err := h.svc.ReadObject(ctx, o, 0, -1)
	if err != nil {
		h.fail(q, err)
		return
	}
	defer body.Close()
	copied, err := h.svc.PutObject(ctx, dst, q.key, body, o.Size, meta)
	if err != nil {
		h.fail(q, err)
		return
	}
	h.writeXML(q, http.StatusOK, copyObjectResult{NS: s3NS, LastModified: timeISO(time.Now()), ETag: `"` + copied.ETag + `"`})
}

// copySourceObject describes the object x-amz-copy-source names, if the
// credential may read it.
func (h *Handler) copySourceObject(q *request) (service.ObjectInfo, bool) {
	bucket, key, err := copySource(q.r.Header.Get("x-amz-copy-source"))
	if err == nil {
		var src service.Cache
		if src, err = h.svc.Authorize(q.r.Context(), q.principal, bucket, store.PermRead); err == nil {
			var o service.ObjectInfo
			if o, err = h.svc.StatObject(q.r.Context(), src, key); err == nil {
				return o, true
			}
		}
	}
	h.fail(q, err)
	return service.ObjectInfo{}, false
}

// copySource parses x-amz-copy-source: "[/]bucket/key[?versionId=…]",
// URL-encoded.
func copySource(v string) (bucket, key string, err error) {
	v, _, _ = strings.Cut(v, "?")
	v, uerr := url.PathUnescape(strings.TrimPrefix(v, "/"))
	bucket, key, found := strings.Cut(v, "/")
	if uerr != nil || !found || bucket == "" || key == "" {
		return "", "", &s3Error{Status: 400, Code: "InvalidArgument", Message: "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"}
	}
	return bucket, key, nil
}

// objectACL answers GET ?acl with "owner full control" and accepts PUT ?acl
// without changing anything.
func (h *Handler) objectACL(q *request) {
	q.op = "ObjectACL"
	need := store.PermRead
	if q.r.Method == http.MethodPut {
		need = store.PermWrite
	} else if q.r.Method != http.MethodGet {
		h.fail(q, notImplemented(q.r))
		return
	}
	c, ok := h.cache(q, need)
	if !ok {
		return
	}
	if _, err := h.svc.StatObject(q.r.Context(), c, q.key); err != nil {
		h.fail(q, err)
		return
	}
	if q.r.Method == http.MethodPut {
		q.w.WriteHeader(http.StatusOK)
		return
	}
	h.writeXML(q, http.StatusOK, ownerFullControl())
}

func (h *Handler) emptyTagging(q *request) {
	q.op = "GetObjectTagging"
	c, ok := h.cache(q, store.PermRead)
	if !ok {
		return
	}
	if _, err := h.svc.StatObject(q.r.Context(), c, q.key); err != nil {
		h.fail(q, err)
		return
	}
	h.writeXML(q, http.StatusOK, tagging{NS: s3NS})
}

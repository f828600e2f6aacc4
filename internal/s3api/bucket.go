package s3api

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

func (h *Handler) listBuckets(q *request) {
	q.op = "ListBuckets"
	caches, err := h.svc.CachesFor(q.r.Context(), q.principal)
	if err != nil {
		h.fail(q, err)
		return
	}
	res := listAllMyBucketsResult{NS: s3NS, Owner: larderOwner, Buckets: []bucketEntry{}}
	for _, c := range caches {
		res.Buckets = append(res.Buckets, bucketEntry{Name: c.Name, CreationDate: timeISO(c.CreatedAt)})
	}
	h.writeXML(q, http.StatusOK, res)
}

func (h *Handler) createBucket(q *request) {
	q.op = "CreateBucket"
	_, err := h.svc.CreateCacheAs(q.r.Context(), q.principal, service.CacheSpec{Name: q.bucket})
	if err != nil {
		h.fail(q, err)
		return
	}
	q.w.Header().Set("Location", "/"+q.bucket)
	q.w.WriteHeader(http.StatusOK)
}

func (h *Handler) headBucket(q *request) {
	q.op = "HeadBucket"
	if _, ok := h.cache(q, store.PermRead); ok {
		q.w.Header().Set("x-amz-bucket-region", h.region(q))
		q.w.WriteHeader(http.StatusOK)
	}
}

func (h *Handler) deleteBucket(q *request) {
	q.op = "DeleteBucket"
	if err := h.svc.DeleteEmptyCacheAs(q.r.Context(), q.principal, q.bucket); err != nil {
		h.fail(q, err)
		return
	}
	q.w.WriteHeader(http.StatusNoContent)
}

// region is the region larder answers with: the configured one, or the one
// the request was signed for.
func (h *Handler) region(q *request) string {
	if h.opts.Region != "" {
		return h.opts.Region
	}
	return q.auth.Region
}

func (h *Handler) bucketLocation(q *request) {
	q.op = "GetBucketLocation"
	if _, ok := h.cache(q, store.PermRead); !ok {
		return
	}
	region := h.region(q)
	if region == "us-east-1" {
		region = "" // as AWS answers for us-east-1
	}
	h.writeXML(q, http.StatusOK, locationConstraint{NS: s3NS, Region: region})
}

// bucketNoConfig answers a read of a bucket configuration larder does not
// keep the way S3 answers for a bucket without one.
func (h *Handler) bucketNoConfig(q *request, code, msg string) {
	q.op = "GetBucketConfiguration"
	if _, ok := h.cache(q, store.PermRead); ok {
		h.fail(q, &s3Error{Status: http.StatusNotFound, Code: code, Message: msg})
	}
}

func (h *Handler) bucketVersioning(q *request) {
	q.op = "GetBucketVersioning"
	if _, ok := h.cache(q, store.PermRead); ok {
		h.writeXML(q, http.StatusOK, versioningConfiguration{NS: s3NS})
	}
}

// bucketACL answers GET ?acl with "owner full control" and accepts PUT ?acl
// without changing anything: access is controlled by larder's credentials.
func (h *Handler) bucketACL(q *request) {
	q.op = "BucketACL"
	need := store.PermRead
	if q.r.Method == http.MethodPut {
		need = store.PermWrite
	}
	if _, ok := h.cache(q, need); !ok {
		return
	}
	if q.r.Method == http.MethodPut {
		q.w.WriteHeader(http.StatusOK)
		return
	}
	h.writeXML(q, http.StatusOK, ownerFullControl())
}

// listPage is one page of a listing, with keys grouped by a delimiter.
type listPage struct {
	objects   []service.ObjectInfo
	prefixes  []string
	truncated bool
	last      string // the last key or common prefix returned
}

// list collects up to max keys and common prefixes after after. A common
// prefix that after falls in (a marker or continuation token naming the
// last group of the previous page) was listed already and is skipped.
func (h *Handler) list(q *request, c service.Cache, prefix, delimiter, after string, max int) (listPage, error) {
	var p listPage
	batch := min(1000, max+1) // enough to tell whether the page is truncated
	start := after
	for {
		objs, err := h.svc.ListObjects(q.r.Context(), c, prefix, after, batch)
		if err != nil {
			return p, err
		}
		regroup := false
		for _, o := range objs {
			cp := ""
			if delimiter != "" {
				if i := strings.Index(o.Key[len(prefix):], delimiter); i >= 0 {
					cp = o.Key[:len(prefix)+i+len(delimiter)]
				}
			}
			if cp != "" && strings.HasPrefix(start, cp) {
				after, regroup = cp+"\xff", true // past every key of the group
				break
			}
			if len(p.objects)+len(p.prefixes) == max {
				p.truncated = true
				return p, nil
			}
			if cp != "" {
				p.prefixes = append(p.prefixes, cp)
				p.last = cp
				after, regroup = cp+"\xff", true
				break
			}
			p.objects = append(p.objects, o)
			p.last, after = o.Key, o.Key
		}
		if !regroup && len(objs) < batch {
			return p, nil
		}
	}
}

// maxKeys reads a max-keys style parameter: at most 1000, 1000 if absent.
func maxKeys(q *request, name string) (int, error) {
	v := q.r.URL.Query().Get(name)
	if v == "" {
		return 1000, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, &s3Error{Status: 400, Code: "InvalidArgument", Message: name + " must be a non-negative integer"}
	}
	return min(n, 1000), nil
}

func (h *Handler) listObjects(q *request) {
	c, ok := h.cache(q, store.PermRead)
	if !ok {
		return
	}
	v := q.r.URL.Query()
	max, err := maxKeys(q, "max-keys")
	if err != nil {
		h.fail(q, err)
		return
	}
	encode := v.Get("encoding-type") == "url"
	prefix, delim := v.Get("prefix"), v.Get("delimiter")
	res := listBucketResult{NS: s3NS, Name: q.bucket, Prefix: escapeKey(prefix, encode), MaxKeys: max,
		Delimiter: escapeKey(delim, encode)}
	if encode {
		res.EncodingType = "url"
	}
	after, withOwner := "", true
	if v.Get("list-type") == "2" {
		q.op = "ListObjectsV2"
		withOwner = v.Get("fetch-owner") == "true"
		after = v.Get("start-after")
		res.StartAfter = escapeKey(after, encode)
		if tok := v.Get("continuation-token"); tok != "" {
			raw, err := base64.RawURLEncoding.DecodeString(tok)
			if err != nil {
				h.fail(q, &s3Error{Status: 400, Code: "InvalidArgument", Message: "The continuation token provided is incorrect"})
				return
			}
			res.ContinuationToken, after = tok, max2(after, string(raw))
		}
	} else {
		q.op = "ListObjects"
		after = v.Get("marker")
		m := escapeKey(after, encode)
		res.Marker = &m
	}
	page, err := h.list(q, c, prefix, delim, after, max)
	if err != nil {
		h.fail(q, err)
		return
	}
	res.IsTruncated = page.truncated
	for _, o := range page.objects {
		obj := object{Key: escapeKey(o.Key, encode), LastModified: timeISO(o.Modified),
			ETag: `"` + o.ETag + `"`, Size: o.Size, StorageClass: "STANDARD"}
		if withOwner {
			obj.Owner = &larderOwner
		}
		res.Contents = append(res.Contents, obj)
	}
	for _, p := range page.prefixes {
		res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{Prefix: escapeKey(p, encode)})
	}
	if q.op == "ListObjectsV2" {
		n := len(page.objects) + len(page.prefixes)
		res.KeyCount = &n
		if page.truncated {
			res.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(page.last))
		}
	} else if page.truncated && delim != "" {
		res.NextMarker = escapeKey(page.last, encode)
	}
	h.writeXML(q, http.StatusOK, res)
}

func max2(a, b string) string {
	if a > b {
		return a
	}
	return b
}

// listVersions answers GET ?versions as for an unversioned bucket: each
// object is its one version, "null".
func (h *Handler) listVersions(q *request) {
	q.op = "ListObjectVersions"
	c, ok := h.cache(q, store.PermRead)
	if !ok {
		return
	}
	v := q.r.URL.Query()
	max, err := maxKeys(q, "max-keys")
	if err != nil {
		h.fail(q, err)
		return
	}
	encode := v.Get("encoding-type") == "url"
	prefix, delim := v.Get("prefix"), v.Get("delimiter")
	page, err := h.list(q, c, prefix, delim, v.Get("key-marker"), max)
	if err != nil {
		h.fail(q, err)
		return
	}
	res := listVersionsResult{NS: s3NS, Name: q.bucket, Prefix: escapeKey(prefix, encode),
		KeyMarker: escapeKey(v.Get("key-marker"), encode), MaxKeys: max, Delimiter: escapeKey(delim, encode),
		IsTruncated: page.truncated}
	if encode {
		res.EncodingType = "url"
	}
	if page.truncated {
		res.NextKeyMarker, res.NextVersionIDMarker = escapeKey(page.last, encode), "null"
	}
	for _, o := range page.objects {
		res.Versions = append(res.Versions, version{Key: escapeKey(o.Key, encode), VersionID: "null", IsLatest: true,
			LastModified: timeISO(o.Modified), ETag: `"` + o.ETag + `"`, Size: o.Size, StorageClass: "STANDARD", Owner: larderOwner})
	}
	for _, p := range page.prefixes {
		res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{Prefix: escapeKey(p, encode)})
	}
	h.writeXML(q, http.StatusOK, res)
}

func (h *Handler) deleteObjects(q *request) {
	q.op = "DeleteObjects"
	c, ok := h.cache(q, store.PermWrite)
	if !ok {
		return
	}
	var req deleteRequest
	if err := readXML(q, &req); err != nil {
		h.fail(q, err)
		return
	}
	if len(req.Objects) > 1000 {
		h.fail(q, &s3Error{Status: 400, Code: "MalformedXML", Message: "a request may delete at most 1000 objects"})
		return
	}
	res := deleteResult{NS: s3NS}
	for _, o := range req.Objects {
		if err := h.svc.DeleteObject(q.r.Context(), c, o.Key); err != nil {
			_, code, msg := s3Status(err)
			res.Errors = append(res.Errors, deleteError{Key: o.Key, Code: code, Message: msg})
			continue
		}
		if !req.Quiet {
			res.Deleted = append(res.Deleted, deletedObject{Key: o.Key})
		}
	}
	h.writeXML(q, http.StatusOK, res)
}

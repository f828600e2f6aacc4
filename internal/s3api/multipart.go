package s3api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/larder-cache/larder/internal/httpx"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

func (h *Handler) createUpload(q *request) {
	q.op = "CreateMultipartUpload"
	c, ok := h.cache(q, store.PermWrite)
	if !ok {
		return
	}
	id, err := h.svc.CreateUpload(q.r.Context(), c, q.key, objectMeta(q.r))
	if err != nil {
		h.fail(q, err)
		return
	}
	h.writeXML(q, http.StatusOK, initiateMultipartUploadResult{NS: s3NS, Bucket: q.bucket, Key: q.key, UploadID: id})
}

func (h *Handler) uploadPart(q *request) {
	q.op = "UploadPart"
	c, ok := h.cache(q, store.PermWrite)
	if !ok {
		return
	}
	v := q.r.URL.Query()
	n, err := strconv.Atoi(v.Get("partNumber"))
	if err != nil || n < 1 || n > service.MaxParts {
		h.fail(q, &s3Error{Status: 400, Code: "InvalidArgument", Message: "Part number must be an integer between 1 and 10000, inclusive"})
		return
	}
	if q.r.Header.Get("x-amz-copy-source") != "" {
		h.uploadPartCopy(q, c, n)
		return
	}
	etag, err := h.svc.UploadPart(q.r.Context(), c, q.key, v.Get("uploadId"), n, q.auth.Body, q.auth.Length)
	if err != nil {
		h.fail(q, err)
		return
	}
	h.writeChecksums(q)
	q.w.Header().Set("ETag", `"`+etag+`"`)
	q.w.WriteHeader(http.StatusOK)
}

// uploadPartCopy uploads part n from (a range of) an object the credential
// may read; aws s3 cp uses it to copy large objects.
func (h *Handler) uploadPartCopy(q *request, c service.Cache, n int) {
	q.op = "UploadPartCopy"
	ctx := q.r.Context()
	o, ok := h.copySourceObject(q)
	if !ok {
		return
	}
	off, length := int64(0), o.Size
	if rg := q.r.Header.Get("x-amz-copy-source-range"); rg != "" {
		start, size, ok, satisfiable := httpx.ParseRange(rg, o.Size)
		if !ok || !satisfiable {
			h.fail(q, &s3Error{Status: 400, Code: "InvalidArgument", Message: "The x-amz-copy-source-range value must be of the form bytes=first-last within the source object"})
			return
		}
		off, length = start, size
	}
	body, err := h.svc.ReadObject(ctx, o, off, length)
	if err != nil {
		h.fail(q, err)
		return
	}
	defer body.Close()
	etag, err := h.svc.UploadPart(ctx, c, q.key, q.r.URL.Query().Get("uploadId"), n, body, length)
	if err != nil {
		h.fail(q, err)
		return
	}
	h.writeXML(q, http.StatusOK, copyPartResult{NS: s3NS, LastModified: timeISO(time.Now()), ETag: `"` + etag + `"`})
}

func (h *Handler) completeUpload(q *request) {
	q.op = "CompleteMultipartUpload"
	c, ok := h.cache(q, store.PermWrite)
	if !ok {
		return
	}
	var req completeMultipartUpload
	if err := readXML(q, &req); err != nil {
		h.fail(q, err)
		return
	}
	parts := make([]service.CompletedPart, len(req.Parts))
	for i, p := range req.Parts {
		parts[i] = service.CompletedPart{Number: p.PartNumber, ETag: p.ETag}
	}
	o, err := h.svc.CompleteUpload(q.r.Context(), c, q.key, q.r.URL.Query().Get("uploadId"), parts)
	if err != nil {
		h.fail(q, err)
		return
	}
	h.writeXML(q, http.StatusOK, completeMultipartUploadResult{NS: s3NS, Location: q.resource(),
		Bucket: q.bucket, Key: q.key, ETag: `"` + o.ETag + `"`})
}

func (h *Handler) abortUpload(q *request) {
	q.op = "AbortMultipartUpload"
	c, ok := h.cache(q, store.PermWrite)
	if !ok {
		return
	}
	if err := h.svc.AbortUpload(q.r.Context(), c, q.key, q.r.URL.Query().Get("uploadId")); err != nil {
		h.fail(q, err)
		return
	}
	q.w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) listParts(q *request) {
	q.op = "ListParts"
	c, ok := h.cache(q, store.PermWrite)
	if !ok {
		return
	}
	id := q.r.URL.Query().Get("uploadId")
	_, parts, err := h.svc.ListParts(q.r.Context(), c, q.key, id)
	if err != nil {
		h.fail(q, err)
		return
	}
	marker, _ := strconv.Atoi(q.r.URL.Query().Get("part-number-marker"))
	max, err := maxKeys(q, "max-parts")
	if err != nil {
		h.fail(q, err)
		return
	}
	res := listPartsResult{NS: s3NS, Bucket: q.bucket, Key: q.key, UploadID: id, Initiator: larderOwner,
		Owner: larderOwner, StorageClass: "STANDARD", PartNumberMarker: marker, MaxParts: max}
	for _, p := range parts {
		if p.Number <= marker {
			continue
		}
		if len(res.Parts) == max {
			res.IsTruncated = true
			break
		}
		res.Parts = append(res.Parts, part{PartNumber: p.Number, LastModified: timeISO(p.CreatedAt), ETag: `"` + p.MD5 + `"`, Size: p.Size})
		res.NextPartNumberMarker = p.Number
	}
	h.writeXML(q, http.StatusOK, res)
}

func (h *Handler) listUploads(q *request) {
	q.op = "ListMultipartUploads"
	c, ok := h.cache(q, store.PermWrite)
	if !ok {
		return
	}
	v := q.r.URL.Query()
	max, err := maxKeys(q, "max-uploads")
	if err != nil {
		h.fail(q, err)
		return
	}
	prefix, keyMarker, idMarker := v.Get("prefix"), v.Get("key-marker"), v.Get("upload-id-marker")
	uploads, err := h.svc.ListUploads(q.r.Context(), c, prefix)
	if err != nil {
		h.fail(q, err)
		return
	}
	res := listMultipartUploadsResult{NS: s3NS, Bucket: q.bucket, Prefix: prefix, KeyMarker: keyMarker,
		UploadIDMarker: idMarker, MaxUploads: max}
	// Uploads come ordered by key; a page starts after the key marker, or
	// after the upload marker among the uploads of the key marker.
	skipping := idMarker != ""
	for _, u := range uploads {
		if u.Key < keyMarker || u.Key == keyMarker && (idMarker == "" || skipping) {
			skipping = skipping && u.ID != idMarker
			continue
		}
		if len(res.Uploads) == max {
			res.IsTruncated = true
			break
		}
		res.Uploads = append(res.Uploads, upload{Key: u.Key, UploadID: u.ID, Initiator: larderOwner, Owner: larderOwner,
			StorageClass: "STANDARD", Initiated: timeISO(u.CreatedAt)})
		res.NextKeyMarker, res.NextUploadIDMarker = u.Key, u.ID
	}
	h.writeXML(q, http.StatusOK, res)
}

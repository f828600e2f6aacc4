package nixhttp

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// The calls a push client makes besides the Nix protocol's uploads:
//
//	POST   /_larder/api/caches/CACHE/missing                  {"hashes": [...]} → {"missing": [...], "upstream": [...]} (read)
//	POST   /_larder/api/caches/CACHE/uploads                  {"key": "nar/….nar.zst"} → {"uploadId": …} (write)
//	PUT    /_larder/api/caches/CACHE/uploads/ID/parts/N       a part, 1 ≤ N ≤ 10000 → {"etag": …} (write)
//	POST   /_larder/api/caches/CACHE/uploads/ID/complete      {"parts": [{"number": N, "etag": …}]} (write)
//	DELETE /_larder/api/caches/CACHE/uploads/ID               abort (write)
//
// A NAR file sent in parts (each at least 5 MiB but the last, so that a
// proxy's body limit does not bound a NAR) is verified when the upload is
// completed, as one sent whole.

// maxMissingBody bounds the body of a missing query: MaxMissingQuery
// hashes of 32 characters, quoted and separated.
const maxMissingBody = service.MaxMissingQuery*36 + 1024

type missingJSON struct {
	Hashes   []string `json:"hashes,omitempty"`
	Missing  []string `json:"missing"`
	Upstream []string `json:"upstream,omitempty"`
}

type uploadJSON struct {
	Key      string     `json:"key"`
	UploadID string     `json:"uploadId,omitempty"`
	Parts    []partJSON `json:"parts,omitempty"`
}

type partJSON struct {
	Number int    `json:"number"`
	ETag   string `json:"etag"`
	Size   int64  `json:"size,omitempty"`
}

// decodeJSON reads a JSON request body of at most max bytes into v,
// refusing unknown fields and anything after the value.
func decodeJSON(r *http.Request, max int64, v any, what string) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	switch {
	case err != nil:
		return &service.Error{Code: service.CodeClientGone, Msg: "the request body could not be read", Err: err}
	case int64(len(data)) > max:
		return &service.Error{Code: service.CodeTooLarge, Msg: fmt.Sprintf("the body is more than the limit of %d bytes", max)}
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &service.Error{Code: service.CodeInvalid, Msg: fmt.Sprintf("the body is not %s: %v", what, err)}
	}
	if dec.More() {
		return &service.Error{Code: service.CodeInvalid, Msg: fmt.Sprintf("the body is not %s: data after the JSON value", what)}
	}
	return nil
}

// apiMissing answers which of a list of store path hashes the cache lacks.
func (h *Handler) apiMissing(w http.ResponseWriter, r *http.Request, info *requestInfo, p *service.Principal, cache string) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		h.writeError(w, r, info, methodError{r.Method})
		return
	}
	c, err := h.svc.AuthorizeCredential(r.Context(), p, cache, store.PermRead)
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	var req missingJSON
	if err := decodeJSON(r, maxMissingBody, &req, `{"hashes": [store path hashes]}`); err != nil {
		h.writeError(w, r, info, err)
		return
	}
	missing, err := h.svc.MissingPaths(r.Context(), c, req.Hashes, p.Can(cache, store.PermWrite))
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	writeJSON(w, http.StatusOK, missingJSON{Missing: missing.Missing, Upstream: missing.Upstream})
}

// apiUploads answers the calls of multipart uploads: parts are the path
// after /uploads, "" to create one.
func (h *Handler) apiUploads(w http.ResponseWriter, r *http.Request, info *requestInfo, p *service.Principal, cache string, parts []string) {
	c, err := h.svc.Authorize(r.Context(), p, cache, store.PermWrite)
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	switch {
	case len(parts) == 0 && r.Method == http.MethodPost:
		h.apiCreateUpload(w, r, info, c)
	case len(parts) == 3 && parts[1] == "parts" && r.Method == http.MethodPut:
		h.apiUploadPart(w, r, info, c, parts[0], parts[2])
	case len(parts) == 2 && parts[1] == "complete" && r.Method == http.MethodPost:
		h.apiCompleteUpload(w, r, info, c, parts[0])
	case len(parts) == 1 && r.Method == http.MethodDelete:
		u, err := h.svc.Upload(r.Context(), c, parts[0])
		if err == nil {
			err = h.svc.AbortUpload(r.Context(), c, u.Key, u.ID)
		}
		if err != nil {
			h.writeError(w, r, info, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		h.writeError(w, r, info, &service.Error{Code: service.CodeNotFound, Msg: "no such API call: " + r.Method + " " + r.URL.Path})
	}
}

func (h *Handler) apiCreateUpload(w http.ResponseWriter, r *http.Request, info *requestInfo, c service.Cache) {
	var req uploadJSON
	if err := decodeJSON(r, 64<<10, &req, `{"key": "nar/<file hash>.nar<ext>"}`); err != nil {
		h.writeError(w, r, info, err)
		return
	}
	if k, err := nixkey.Parse(req.Key); err != nil || k.Kind != nixkey.Nar {
		h.writeError(w, r, info, &service.Error{Code: service.CodeInvalid,
			Msg: fmt.Sprintf("%q is not the key of a NAR file, nar/<file hash>.nar<ext>: only NAR files are uploaded in parts", req.Key)})
		return
	}
	id, err := h.svc.CreateUpload(r.Context(), c, req.Key, service.ObjectMeta{ContentType: "application/x-nix-nar"})
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	writeJSON(w, http.StatusCreated, uploadJSON{Key: req.Key, UploadID: id})
}

func (h *Handler) apiUploadPart(w http.ResponseWriter, r *http.Request, info *requestInfo, c service.Cache, id, number string) {
	n, err := strconv.Atoi(number)
	if err != nil || number != strconv.Itoa(n) {
		h.writeError(w, r, info, &service.Error{Code: service.CodeInvalid, Msg: fmt.Sprintf("part number %q is not a number", number)})
		return
	}
	if r.ContentLength < 0 {
		h.writeError(w, r, info, &service.Error{Code: service.CodeLengthRequired, Msg: "a part needs a Content-Length"})
		return
	}
	u, err := h.svc.Upload(r.Context(), c, id)
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	etag, err := h.svc.UploadPart(r.Context(), c, u.Key, u.ID, n, h.bodyReader(w, r, info), r.ContentLength)
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	writeJSON(w, http.StatusOK, partJSON{Number: n, ETag: etag, Size: r.ContentLength})
}

func (h *Handler) apiCompleteUpload(w http.ResponseWriter, r *http.Request, info *requestInfo, c service.Cache, id string) {
	var req uploadJSON
	if err := decodeJSON(r, 1<<20, &req, `{"parts": [{"number": N, "etag": "…"}]}`); err != nil {
		h.writeError(w, r, info, err)
		return
	}
	u, err := h.svc.Upload(r.Context(), c, id)
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	if req.Key != "" && req.Key != u.Key {
		h.writeError(w, r, info, &service.Error{Code: service.CodeInvalid, Msg: fmt.Sprintf("upload %s is of %s, not %s", id, u.Key, req.Key)})
		return
	}
	parts := make([]service.CompletedPart, len(req.Parts))
	for i, p := range req.Parts {
		parts[i] = service.CompletedPart{Number: p.Number, ETag: p.ETag}
	}
	o, err := h.svc.CompleteUpload(r.Context(), c, u.Key, u.ID, parts)
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	writeJSON(w, http.StatusCreated, uploadJSON{Key: o.Key, UploadID: id, Parts: nil})
}

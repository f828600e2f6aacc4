package nixhttp

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// larder's own JSON API, under /_larder/api/, authenticated like uploads:
//
//	GET    /_larder/api/caches                       caches the credential administers, with usage and policy
//	GET    /_larder/api/caches/CACHE/pins            pins of a cache (read, a token also for a public cache)
//	PUT    /_larder/api/caches/CACHE/pins/NAME       pin a path: {"storePath": …, "keepRevisions": K, "keepDays": D} (write)
//	DELETE /_larder/api/caches/CACHE/pins/NAME       unpin every revision, or ?path=STORE-PATH (write)
//	POST   /_larder/api/caches/CACHE/missing         which of many paths the cache lacks (read; see api_push.go)
//	…      /_larder/api/caches/CACHE/uploads…        NAR files uploaded in parts (write; see api_push.go)
//
// CI pins what it just pushed with the same token it pushed with.

const apiPrefix = "/_larder/api/"

type cacheJSON struct {
	Name         string         `json:"name"`
	Private      bool           `json:"private"`
	PublicKey    string         `json:"publicKey"`
	Paths        int64          `json:"paths"`
	Bytes        int64          `json:"bytes"`
	RetentionSec int64          `json:"retentionSeconds"`
	MaxSize      int64          `json:"maxSize"`
	LastGC       *time.Time     `json:"lastGC,omitempty"`
	Upstreams    []upstreamJSON `json:"upstreams,omitempty"`
	SkipUpstream bool           `json:"skipUpstream,omitempty"`
	PullThrough  bool           `json:"pullThrough,omitempty"`
}

type upstreamJSON struct {
	URL  string   `json:"url"`
	Keys []string `json:"keys"`
}

type pinJSON struct {
	Name          string    `json:"name"`
	StorePath     string    `json:"storePath"`
	PinnedAt      time.Time `json:"pinnedAt,omitzero"`
	KeepRevisions int       `json:"keepRevisions,omitempty"`
	KeepDays      int       `json:"keepDays,omitempty"`
}

// serveAPI answers larder's JSON API.
func (h *Handler) serveAPI(w http.ResponseWriter, r *http.Request, info *requestInfo) {
	info.kind = "api"
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, apiPrefix), "/")
	p, err := h.svc.Authenticate(r.Context(), credentials(r))
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	switch {
	case len(parts) == 1 && parts[0] == "caches" && r.Method == http.MethodGet:
		h.apiCaches(w, r, info, p)
	case len(parts) == 3 && parts[0] == "caches" && parts[2] == "pins" && r.Method == http.MethodGet:
		info.cache = parts[1]
		h.apiPins(w, r, info, p, parts[1])
	case len(parts) == 4 && parts[0] == "caches" && parts[2] == "pins":
		info.cache = parts[1]
		h.apiPin(w, r, info, p, parts[1], parts[3])
	case len(parts) == 3 && parts[0] == "caches" && parts[2] == "missing":
		info.cache = parts[1]
		h.apiMissing(w, r, info, p, parts[1])
	case len(parts) >= 3 && parts[0] == "caches" && parts[2] == "uploads":
		info.cache = parts[1]
		h.apiUploads(w, r, info, p, parts[1], parts[3:])
	default:
		h.writeError(w, r, info, &service.Error{Code: service.CodeNotFound, Msg: "no such API call: " + r.Method + " " + r.URL.Path})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *Handler) apiCaches(w http.ResponseWriter, r *http.Request, info *requestInfo, p *service.Principal) {
	if p == service.Anonymous {
		// Like every other call of the API: no credential, no answer (not
		// an empty list that looks like "you administer nothing").
		h.writeError(w, r, info, &service.Error{Code: service.CodeUnauthenticated, Msg: "a token is needed to list caches"})
		return
	}
	caches, err := h.svc.ListCaches(r.Context())
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	out := []cacheJSON{}
	for _, c := range caches {
		if !p.Can(c.Name, store.PermAdmin) {
			continue
		}
		paths, bytes, err := h.svc.CacheUsage(r.Context(), c)
		if err != nil {
			h.writeError(w, r, info, err)
			return
		}
		cj := cacheJSON{Name: c.Name, Private: c.Private, PublicKey: c.PublicKey, Paths: paths, Bytes: bytes,
			RetentionSec: int64(c.Policy.Retention / time.Second), MaxSize: c.Policy.MaxSize,
			SkipUpstream: c.Upstream.Skip, PullThrough: c.Upstream.PullThrough}
		for _, up := range c.Upstream.Upstreams {
			cj.Upstreams = append(cj.Upstreams, upstreamJSON{URL: up.URL, Keys: up.Keys})
		}
		if !c.LastGC.IsZero() {
			t := c.LastGC.UTC()
			cj.LastGC = &t
		}
		out = append(out, cj)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) apiPins(w http.ResponseWriter, r *http.Request, info *requestInfo, p *service.Principal, cache string) {
	c, err := h.svc.AuthorizeCredential(r.Context(), p, cache, store.PermRead)
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	pins, rules, err := h.svc.Pins(r.Context(), c)
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	out := []pinJSON{}
	for _, pin := range pins {
		rule := rules[pin.Name]
		out = append(out, pinJSON{Name: pin.Name, StorePath: pin.StorePath, PinnedAt: pin.CreatedAt.UTC(),
			KeepRevisions: rule.KeepRevisions, KeepDays: int(rule.KeepFor / (24 * time.Hour))})
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) apiPin(w http.ResponseWriter, r *http.Request, info *requestInfo, p *service.Principal, cache, name string) {
	c, err := h.svc.Authorize(r.Context(), p, cache, store.PermWrite)
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	switch r.Method {
	case http.MethodPut, http.MethodPost:
		var req pinJSON
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			h.writeError(w, r, info, &service.Error{Code: service.CodeInvalid, Msg: fmt.Sprintf("the body is not a pin: %v", err)})
			return
		}
		rule := store.PinRule{KeepRevisions: req.KeepRevisions, KeepFor: time.Duration(req.KeepDays) * 24 * time.Hour}
		pin, err := h.svc.Pin(r.Context(), c, service.PinSpec{StorePath: req.StorePath, Name: name, Rule: rule})
		if err != nil {
			h.writeError(w, r, info, err)
			return
		}
		writeJSON(w, http.StatusCreated, pinJSON{Name: pin.Name, StorePath: pin.StorePath, PinnedAt: pin.CreatedAt.UTC(),
			KeepRevisions: rule.KeepRevisions, KeepDays: req.KeepDays})
	case http.MethodDelete:
		if err := h.svc.Unpin(r.Context(), c, name, r.URL.Query().Get("path")); err != nil {
			h.writeError(w, r, info, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "PUT, POST, DELETE")
		h.writeError(w, r, info, methodError{r.Method})
	}
}

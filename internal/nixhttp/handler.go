// Package nixhttp is the front end that speaks the Nix binary cache protocol
// over HTTP: GET and HEAD of every file of a cache for substituters, PUT of
// every file for `nix copy --to http://…`, `nix store copy-log` and
// `nix store sign`. Every cache is served under /CACHE/.
//
// It parses requests, authenticates them, calls the service, and maps the
// service's errors to HTTP statuses in one function (errors.go). It must not
// import a store implementation.
package nixhttp

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/buildinfo"
	"github.com/larder-cache/larder/internal/httpx"
	"github.com/larder-cache/larder/internal/metrics"
	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// Options configure a Handler.
type Options struct {
	Logger *slog.Logger
	// BodyTimeout is how long an upload may send nothing before it is
	// abandoned.
	BodyTimeout time.Duration
	// PublicURL is the base URL shown on the index page.
	PublicURL string
	// Metrics counts requests; nil counts nothing.
	Metrics *metrics.Metrics
}

// Handler serves the Nix binary cache protocol.
type Handler struct {
	svc       *service.Service
	log       *slog.Logger
	opts      Options
	accessLog httpx.AccessLog
	noQuick   bool // tests compare ServeHTTP's answers without the quick path
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
		accessLog: httpx.AccessLog{Logger: opts.Logger, Metrics: opts.Metrics, Protocol: "nix", Message: "request"}}
}

// ServeHTTP routes a request: / and /_larder/… are larder's own pages,
// /CACHE/KEY a file of a cache.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.serveQuick(w, r) {
		return
	}
	q := &request{w: httpx.ResponseWriter{ResponseWriter: w}} // what the access log needs, in one allocation
	rw, info := &q.w, &q.info
	// Every answer has the content type larder chose, never one a browser
	// should guess at.
	rw.Header()["X-Content-Type-Options"] = nosniff
	defer h.logRequest(r, rw, info, time.Now())

	path := r.URL.Path
	switch {
	case path == "/":
		h.serveIndex(rw, r)
		return
	case strings.HasPrefix(path, "/_larder/"):
		h.serveInternal(rw, r, info)
		return
	}
	cacheName, rest, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	info.cache = cacheName
	if err := service.ValidateCacheName(cacheName); err != nil {
		h.writeError(rw, r, info, err)
		return
	}
	key, err := nixkey.Parse(rest)
	if err != nil {
		h.writeError(rw, r, info, &service.Error{Code: service.CodeInvalid, Msg: fmt.Sprintf("%q is not a binary cache file: %v", rest, err)})
		return
	}
	info.kind = key.Kind.String()

	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.serveRead(rw, r, info, cacheName, key)
		if key.Kind == nixkey.NarInfo {
			h.countLookup(cacheName, rw.Status())
		}
	case http.MethodPut:
		h.serveWrite(rw, r, info, cacheName, key)
	default:
		rw.Header().Set("Allow", "GET, HEAD, PUT")
		h.writeError(rw, r, info, methodError{r.Method})
	}
}

// countLookup counts a narinfo lookup answered with status in the cache's
// history: found (200, 304) or not there (404). Refusals do not count.
func (h *Handler) countLookup(cacheName string, status int) {
	switch status {
	case http.StatusOK, http.StatusNotModified:
		h.svc.CountLookup(cacheName, true)
	case http.StatusNotFound:
		h.svc.CountLookup(cacheName, false)
	}
}

// access authenticates the request and checks it may use the cache at the
// level need.
func (h *Handler) access(r *http.Request, cacheName string, need store.Perm) (service.Cache, error) {
	return h.svc.Access(r.Context(), cacheName, credentials(r), need)
}

// credentials returns the token a request carries: the password of HTTP
// Basic authentication (what Nix sends from a netrc file; the user name is
// ignored) or a Bearer token.
func credentials(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	scheme, rest, _ := strings.Cut(auth, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return strings.TrimSpace(rest)
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
		if err != nil {
			return ""
		}
		_, password, ok := strings.Cut(string(raw), ":")
		if !ok {
			return ""
		}
		return password
	}
	return ""
}

// serveIndex answers / with a short description and the public caches.
func (h *Handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	caches, err := h.svc.ListCaches(r.Context())
	if err != nil {
		h.writeError(w, r, &requestInfo{}, err)
		return
	}
	var b strings.Builder
	b.WriteString("larder " + buildinfo.Version() + ": a Nix binary cache\n\nPublic caches (use as substituters):\n")
	for _, c := range caches {
		if !c.Private {
			fmt.Fprintf(&b, "  %s/%s  %s\n", h.opts.PublicURL, c.Name, c.PublicKey)
		}
	}
	b.WriteString("\nIn a browser, " + h.opts.PublicURL + "/ is the dashboard.\n")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Vary", "Accept") // browsers get the dashboard
	if r.Method == http.MethodGet {
		_, _ = w.Write([]byte(b.String()))
	}
}

// serveInternal answers larder's own endpoints under /_larder/.
func (h *Handler) serveInternal(w http.ResponseWriter, r *http.Request, info *requestInfo) {
	info.kind = "internal"
	if strings.HasPrefix(r.URL.Path, apiPrefix) {
		h.serveAPI(w, r, info)
		return
	}
	switch r.URL.Path {
	case "/_larder/health":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	default:
		h.writeError(w, r, info, &service.Error{Code: service.CodeNotFound, Msg: "no such page"})
	}
}

// Package web is larder's dashboard, a front end like nixhttp: pages for
// people, rendered on the server with html/template from what the service
// answers, with a little JavaScript (its own and the uPlot charting
// library, embedded) that draws the plots of a cache's history. Everything
// it serves is embedded in the binary; nothing is fetched from elsewhere.
//
// Public caches are shown to anyone. Private caches and the collection
// page need a login: a token pasted once opens a session, which a cookie
// names (see session.go). Every answer carries a Content-Security-Policy
// that allows no inline script or style.
//
// It must not import a store implementation; it calls the service only.
package web

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/httpx"
	"github.com/larder-cache/larder/internal/metrics"
	"github.com/larder-cache/larder/internal/service"
)

// Prefix is where the dashboard's pages live. The landing page is also
// served at / to browsers (requests that accept text/html).
const Prefix = "/_larder/ui/"

// csp allows the page's own scripts, styles, images and fetches, and
// nothing inline: no script or style attribute or element runs.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Options configure a Handler.
type Options struct {
	Logger  *slog.Logger
	Metrics *metrics.Metrics // nil counts nothing
	// PublicURL is the base URL clients reach larder at: substituter URLs
	// are made from it, and an https one makes cookies Secure.
	PublicURL string
	// TLS says that the server itself serves HTTPS: cookies are Secure.
	TLS bool
}

// Handler serves the dashboard.
type Handler struct {
	svc       *service.Service
	log       *slog.Logger
	opts      Options
	secure    bool // cookies need HTTPS
	origin    string
	accessLog httpx.AccessLog
	pages     map[string]*template.Template
	assets    *assets
}

// New returns a Handler over svc.
func New(svc *service.Service, opts Options) (*Handler, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.PublicURL = strings.TrimSuffix(opts.PublicURL, "/")
	h := &Handler{svc: svc, log: opts.Logger, opts: opts,
		accessLog: httpx.AccessLog{Logger: opts.Logger, Metrics: opts.Metrics, Protocol: "web", Message: "request"}}
	if u, err := url.Parse(opts.PublicURL); err == nil && u.Host != "" {
		h.secure = u.Scheme == "https"
		h.origin = u.Scheme + "://" + u.Host
	}
	h.secure = h.secure || opts.TLS
	sub, err := fs.Sub(assetFS, "assets")
	if err != nil {
		return nil, err
	}
	if h.assets, err = loadAssets(sub); err != nil {
		return nil, fmt.Errorf("load the dashboard's assets: %w", err)
	}
	if h.pages, err = parsePages(h.assets); err != nil {
		return nil, fmt.Errorf("parse the dashboard's templates: %w", err)
	}
	return h, nil
}

// Is reports whether r is for the dashboard: a path under Prefix, or the
// landing page asked for by a browser. Other clients asking for / (curl,
// scripts) keep getting the plain text index of the Nix front end.
func Is(r *http.Request) bool {
	if strings.HasPrefix(r.URL.Path, Prefix) || r.URL.Path == strings.TrimSuffix(Prefix, "/") {
		return true
	}
	return r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && acceptsHTML(r)
}

// acceptsHTML reports whether the request's Accept header names text/html,
// as browsers' do for a page.
func acceptsHTML(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(mt), "text/html") && !strings.Contains(strings.ReplaceAll(params, " ", ""), "q=0") {
			return true
		}
	}
	return false
}

// request is what a page handler knows of its request.
type request struct {
	r       *http.Request
	w       http.ResponseWriter
	info    *requestInfo
	session *service.Session // nil: nobody is logged in
	secret  string           // the session's secret, from its cookie
}

// principal returns whom the request comes from.
func (q *request) principal() *service.Principal {
	if q.session == nil {
		return service.Anonymous
	}
	return q.session.Principal
}

// requestInfo collects what the access log says about a request: never
// its path or query, which may hold what a person searched for.
type requestInfo struct {
	kind  string // page, asset, data or session
	page  string // which page
	cache string
	err   error
	id    string // the request ID of a 5xx answer
}

// ServeHTTP routes a request of the dashboard.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &httpx.ResponseWriter{ResponseWriter: w}
	info := &requestInfo{kind: "page"}
	start := time.Now()
	defer func() { h.logRequest(r, rw, info, time.Since(start)) }()
	hdr := rw.Header()
	hdr.Set("Content-Security-Policy", csp)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "same-origin")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	hdr.Set("Cross-Origin-Resource-Policy", "same-origin")
	if r.URL.Path == "/" {
		hdr.Set("Vary", "Accept")
	}
	q := &request{r: r, w: rw, info: info}
	rest := strings.TrimPrefix(r.URL.Path, Prefix)
	if strings.HasPrefix(rest, "assets/") {
		info.kind, info.page = "asset", "asset"
		h.serveAsset(q, strings.TrimPrefix(rest, "assets/"))
		return
	}
	if err := h.loadSession(q); err != nil {
		h.fail(q, err)
		return
	}
	parts := strings.Split(rest, "/")
	switch {
	case r.URL.Path == "/" || r.URL.Path == Prefix || r.URL.Path == strings.TrimSuffix(Prefix, "/"):
		h.get(q, "index", h.index)
	case rest == "search":
		h.get(q, "searchall", h.searchAll)
	case rest == "login":
		info.kind = "session"
		h.login(q)
	case rest == "logout":
		info.kind = "session"
		h.logout(q)
	case len(parts) >= 2 && parts[0] == "caches":
		info.cache = parts[1]
		h.serveCache(q, parts[1], parts[2:])
	default:
		h.fail(q, notFound("no such page"))
	}
}

// serveCache routes the pages of one cache.
func (h *Handler) serveCache(q *request, name string, rest []string) {
	if err := service.ValidateCacheName(name); err != nil {
		h.fail(q, notFound("no such page"))
		return
	}
	switch {
	case len(rest) == 0 || len(rest) == 1 && rest[0] == "":
		h.get(q, "cache", func(q *request) error { return h.cachePage(q, name) })
	case len(rest) == 1 && rest[0] == "history.json":
		q.info.kind = "data"
		h.get(q, "history", func(q *request) error { return h.history(q, name) })
	case len(rest) == 1 && rest[0] == "search":
		h.get(q, "search", func(q *request) error { return h.search(q, name) })
	case len(rest) == 2 && rest[0] == "paths":
		h.get(q, "path", func(q *request) error { return h.pathPage(q, name, rest[1]) })
	case len(rest) == 1 && rest[0] == "gc":
		h.get(q, "gc", func(q *request) error { return h.gcPage(q, name) })
	default:
		h.fail(q, notFound("no such page"))
	}
}

// get answers a page that only GET and HEAD may ask for.
func (h *Handler) get(q *request, page string, fn func(*request) error) {
	q.info.page = page
	if q.r.Method != http.MethodGet && q.r.Method != http.MethodHead {
		q.w.Header().Set("Allow", "GET, HEAD")
		h.fail(q, errMethod)
		return
	}
	if err := fn(q); err != nil {
		h.fail(q, err)
	}
}

// errMethod is the answer to a method a page does not take.
var errMethod = errors.New("method not allowed")

// webError is an error this front end makes itself, with its status.
type webError struct {
	status int
	msg    string
}

func (e *webError) Error() string { return e.msg }

func notFound(msg string) error   { return &webError{http.StatusNotFound, msg} }
func badRequest(msg string) error { return &webError{http.StatusBadRequest, msg} }
func forbidden(msg string) error  { return &webError{http.StatusForbidden, msg} }

// status maps an error to the status this front end answers with. It is
// the only place that does.
func status(err error) int {
	if we, ok := errors.AsType[*webError](err); ok {
		return we.status
	}
	if errors.Is(err, errMethod) {
		return http.StatusMethodNotAllowed
	}
	switch service.CodeOf(err) {
	case service.CodeInvalid:
		return http.StatusBadRequest
	case service.CodeNotFound:
		return http.StatusNotFound
	case service.CodeUnauthenticated:
		return http.StatusUnauthorized
	case service.CodeForbidden:
		return http.StatusForbidden
	case service.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case service.CodeUnavailable:
		return http.StatusServiceUnavailable
	case service.CodeClientGone:
		return http.StatusRequestTimeout
	}
	return http.StatusInternalServerError
}

// message returns what a person is shown of err: its one line, or for a
// fault of larder a generic line with the request ID that finds it in the
// log.
func (h *Handler) message(q *request, err error, code int) string {
	if we, ok := errors.AsType[*webError](err); ok {
		return we.msg
	}
	if errors.Is(err, errMethod) {
		return "this page does not take " + q.r.Method
	}
	if msg := service.Message(err); msg != "" && code < 500 || code == http.StatusServiceUnavailable && msg != "" {
		return msg
	}
	q.info.id = httpx.RequestID()
	h.log.Error("request failed", "page", q.info.page, "cache", q.info.cache, "request_id", q.info.id, "err", err)
	return "internal server error (request " + q.info.id + ")"
}

// fail answers the request with the error page of err.
func (h *Handler) fail(q *request, err error) {
	code := status(err)
	q.info.err = err
	msg := h.message(q, err, code)
	if code == http.StatusServiceUnavailable {
		q.w.Header().Set("Retry-After", "5")
	}
	if q.info.kind == "data" || q.info.kind == "asset" {
		q.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		q.w.Header().Set("Cache-Control", "no-store")
		q.w.WriteHeader(code)
		_, _ = fmt.Fprintln(q.w, msg)
		return
	}
	h.render(q, code, "error", errorPage{Status: code, StatusText: http.StatusText(code), Message: msg,
		LoginHint: code == http.StatusUnauthorized && q.session == nil})
}

// logRequest writes the access log line of a request and counts it.
func (h *Handler) logRequest(r *http.Request, w *httpx.ResponseWriter, info *requestInfo, d time.Duration) {
	h.accessLog.Done(r, w, info.kind, d, func() []slog.Attr {
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("page", info.page),
			slog.String("cache", info.cache),
			slog.Int("status", w.Status()),
			slog.Int64("bytes", w.Bytes()),
			slog.Duration("duration", d.Round(time.Microsecond)),
			slog.String("remote", r.RemoteAddr),
		}
		if info.id != "" {
			attrs = append(attrs, slog.String("request_id", info.id))
		}
		if info.err != nil && w.Status() < 500 {
			attrs = append(attrs, slog.String("reason", h.reason(info.err)))
		}
		return attrs
	})
}

// reason is what the log says of a refusal.
func (h *Handler) reason(err error) string {
	if we, ok := errors.AsType[*webError](err); ok {
		return we.msg
	}
	if msg := service.Message(err); msg != "" {
		return msg
	}
	return err.Error()
}

package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// pageNames are the templates of pages; each is parsed with layout.html.
var pageNames = []string{"index", "cache", "search", "searchall", "path", "gc", "login", "error"}

// parsePages parses each page with the layout.
func parsePages(a *assets) (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"asset":    a.url,
		"bytes":    humanBytes,
		"count":    humanCount,
		"time":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"ago":      ago,
		"pathName": pathName,
		"percent":  percent,
		"days":     func(d time.Duration) string { return humanDuration(d) },
	}
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		pages[name] = t
	}
	return pages, nil
}

// layout is what every page's frame shows.
type layout struct {
	Title     string
	LoggedIn  bool
	Who       string // the session's principal, as logs name it
	CSRF      string // the session's, for the logout form
	LoginNext string // where the login link returns to
	Page      any
}

// render answers with the named page.
func (h *Handler) render(q *request, code int, name string, page any) {
	l := layout{Title: titleOf(page), Page: page, LoginNext: q.r.URL.Path}
	if q.session != nil {
		l.LoggedIn, l.Who, l.CSRF = true, q.session.Principal.ID(), q.session.CSRF
	}
	if q.r.URL.RawQuery != "" && q.r.Method == http.MethodGet {
		l.LoginNext += "?" + q.r.URL.RawQuery
	}
	var buf bytes.Buffer
	if err := h.pages[name].Execute(&buf, l); err != nil {
		h.log.Error("render a page", "page", name, "err", err)
		q.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		q.w.WriteHeader(http.StatusInternalServerError)
		_, _ = fmt.Fprintln(q.w, "internal server error")
		return
	}
	hdr := q.w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	q.w.WriteHeader(code)
	if q.r.Method != http.MethodHead {
		_, _ = q.w.Write(buf.Bytes())
	}
}

// titled pages name themselves.
type titled interface{ title() string }

func titleOf(page any) string {
	if t, ok := page.(titled); ok {
		return t.title() + " · larder"
	}
	return "larder"
}

// cacheCard is a cache as the landing page shows it.
type cacheCard struct {
	Name, URL, PublicKey string
	Private              bool
}

// NixConf returns the nix.conf lines that substitute from the cache.
func (c cacheCard) NixConf() string {
	s := fmt.Sprintf("extra-substituters = %s\nextra-trusted-public-keys = %s\n", c.URL, c.PublicKey)
	if c.Private {
		s += "netrc-file = /etc/nix/larder.netrc   # a read token as its password\n"
	}
	return s
}

// NixOS returns the NixOS configuration that substitutes from the cache.
func (c cacheCard) NixOS() string {
	return fmt.Sprintf("nix.settings = {\n  extra-substituters = [ %q ];\n  extra-trusted-public-keys = [ %q ];\n};\n", c.URL, c.PublicKey)
}

// Flake returns the nixConfig of a flake that substitutes from the cache.
func (c cacheCard) Flake() string {
	return fmt.Sprintf("{\n  nixConfig = {\n    extra-substituters = [ %q ];\n    extra-trusted-public-keys = [ %q ];\n  };\n}\n", c.URL, c.PublicKey)
}

type indexPage struct {
	Caches    []cacheCard
	PublicURL string
}

func (indexPage) title() string { return "Caches" }

// index is the landing page: the caches the visitor may see.
func (h *Handler) index(q *request) error {
	caches, err := h.visibleCaches(q)
	if err != nil {
		return err
	}
	page := indexPage{PublicURL: h.opts.PublicURL}
	for _, c := range caches {
		page.Caches = append(page.Caches, cacheCard{Name: c.Name, URL: h.opts.PublicURL + "/" + c.Name,
			PublicKey: c.PublicKey, Private: c.Private})
	}
	h.render(q, http.StatusOK, "index", page)
	return nil
}

// visibleCaches returns the caches the visitor may see, by name.
func (h *Handler) visibleCaches(q *request) ([]store.Cache, error) {
	caches, err := h.svc.ListCaches(q.r.Context())
	if err != nil {
		return nil, err
	}
	p := q.principal()
	visible := caches[:0]
	for _, c := range caches {
		if !c.Private || p.Can(c.Name, store.PermRead) {
			visible = append(visible, c)
		}
	}
	return visible, nil
}

// cacheOf returns the named cache if the request may see it: public ones
// to anyone, private ones to a session whose token may read them. The
// service refuses a cache the visitor may not see as it refuses one that
// does not exist.
func (h *Handler) cacheOf(q *request, name string) (service.Cache, error) {
	return h.svc.Authorize(q.r.Context(), q.principal(), name, store.PermRead)
}

type cachePage struct {
	Card        cacheCard
	Cache       service.Cache
	Overview    service.Overview
	Quota       int // percent of MaxSize used, if the cache has one
	HitRate     string
	Recent      []store.NarInfo
	Pins        []store.Pin
	PinsShown   bool // the visitor may see the pins
	MayCollect  bool // the visitor may see the collection page
	HistoryURL  string
	SearchQuery string
}

func (p cachePage) title() string { return p.Card.Name }

// cachePage shows a cache: its size, history, latest pushes and pins.
func (h *Handler) cachePage(q *request, name string) error {
	c, err := h.cacheOf(q, name)
	if err != nil {
		return err
	}
	ctx := q.r.Context()
	o, err := h.svc.Overview(ctx, c)
	if err != nil {
		return err
	}
	recent, err := h.svc.RecentPushes(ctx, c, 20)
	if err != nil {
		return err
	}
	page := cachePage{Card: cacheCard{Name: c.Name(), URL: h.opts.PublicURL + "/" + c.Name(), PublicKey: c.PublicKey(), Private: c.Private()},
		Cache: c, Overview: o, Recent: recent, HistoryURL: Prefix + "caches/" + c.Name() + "/history.json",
		MayCollect: q.principal().Can(c.Name(), store.PermAdmin)}
	if max := c.Policy().MaxSize; max > 0 {
		page.Quota = int(min(100, o.Bytes*100/max))
	}
	page.HitRate = percent(o.Hits, o.Requests)
	// Pins are shown as the API shows them: to a credential that may read
	// the cache, public or not.
	if _, err := h.svc.AuthorizeCredential(ctx, q.principal(), c.Name(), store.PermRead); err == nil {
		page.PinsShown = true
		if page.Pins, _, err = h.svc.Pins(ctx, c); err != nil {
			return err
		}
	}
	h.render(q, http.StatusOK, "cache", page)
	return nil
}

// historyJSON is the history of a cache as the plots read it: one array
// per series, index by index.
type historyJSON struct {
	Time     []int64    `json:"t"`        // unix seconds
	Bytes    []int64    `json:"bytes"`    // NAR bytes stored
	Paths    []int64    `json:"paths"`    // paths stored
	Requests []float64  `json:"requests"` // narinfo lookups per hour
	HitRatio []*float64 `json:"hitRatio"` // share of lookups that found a narinfo; null without lookups
}

// history answers the history of a cache as JSON.
func (h *Handler) history(q *request, name string) error {
	c, err := h.cacheOf(q, name)
	if err != nil {
		return err
	}
	samples, err := h.svc.History(q.r.Context(), c)
	if err != nil {
		return err
	}
	out := historyJSON{Time: []int64{}, Bytes: []int64{}, Paths: []int64{}, Requests: []float64{}, HitRatio: []*float64{}}
	for _, sm := range samples {
		out.Time = append(out.Time, sm.At.Unix())
		out.Bytes = append(out.Bytes, sm.Bytes)
		out.Paths = append(out.Paths, sm.Paths)
		perHour := 0.0
		if sm.Span > 0 {
			perHour = float64(sm.Requests) * float64(time.Hour) / float64(sm.Span)
		}
		out.Requests = append(out.Requests, perHour)
		var ratio *float64
		if sm.Requests > 0 {
			r := float64(sm.Hits) / float64(sm.Requests)
			ratio = &r
		}
		out.HitRatio = append(out.HitRatio, ratio)
	}
	hdr := q.w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	q.w.WriteHeader(http.StatusOK)
	if q.r.Method != http.MethodHead {
		return json.NewEncoder(q.w).Encode(out)
	}
	return nil
}

type searchPage struct {
	Cache   string
	Query   string
	Found   []store.NarInfo
	Limited bool // as many as a search returns: there may be more
}

func (p searchPage) title() string { return "Search " + p.Cache }

// search finds paths of a cache by the start of their name or hash.
func (h *Handler) search(q *request, name string) error {
	c, err := h.cacheOf(q, name)
	if err != nil {
		return err
	}
	query := q.r.URL.Query().Get("q")
	found, err := h.svc.FindPaths(q.r.Context(), c, query)
	if err != nil {
		return err
	}
	h.render(q, http.StatusOK, "search", searchPage{Cache: c.Name(), Query: query, Found: found, Limited: len(found) == service.MaxFound})
	return nil
}

// maxSearchedCaches bounds the caches one search of every cache asks, so
// that one request costs at most that many lookups however many caches
// there are.
const maxSearchedCaches = 32

type searchAllPage struct {
	Query   string
	Groups  []searchPage // the caches where something was found, by name
	Skipped int          // caches the visitor may see that were not searched
}

func (searchAllPage) title() string { return "Search" }

// searchAll finds paths by the start of their name or hash in every cache
// the visitor may see (the first maxSearchedCaches of them, by name).
func (h *Handler) searchAll(q *request) error {
	query := q.r.URL.Query().Get("q")
	if _, err := service.CheckQuery(query); err != nil {
		return err
	}
	caches, err := h.visibleCaches(q)
	if err != nil {
		return err
	}
	page := searchAllPage{Query: query}
	if len(caches) > maxSearchedCaches {
		page.Skipped, caches = len(caches)-maxSearchedCaches, caches[:maxSearchedCaches]
	}
	for _, sc := range caches {
		c, err := h.cacheOf(q, sc.Name)
		if service.CodeOf(err) == service.CodeNotFound {
			continue // deleted since it was listed
		}
		if err != nil {
			return err
		}
		found, err := h.svc.FindPaths(q.r.Context(), c, query)
		if err != nil {
			return err
		}
		if len(found) > 0 {
			page.Groups = append(page.Groups, searchPage{Cache: c.Name(), Query: query, Found: found,
				Limited: len(found) == service.MaxFound})
		}
	}
	h.render(q, http.StatusOK, "searchall", page)
	return nil
}

type pathPage struct {
	Cache   string
	Private bool
	service.PathDetails
}

func (p pathPage) title() string { return pathName(p.NarInfo.StorePath) }

// pathPage shows one path of a cache.
func (h *Handler) pathPage(q *request, name, hash string) error {
	c, err := h.cacheOf(q, name)
	if err != nil {
		return err
	}
	d, err := h.svc.Path(q.r.Context(), c, hash)
	if err != nil {
		return err
	}
	h.render(q, http.StatusOK, "path", pathPage{Cache: c.Name(), Private: c.Private(), PathDetails: d})
	return nil
}

type gcPage struct {
	Cache  string
	Policy store.Policy
	service.CollectionPlan
	MaxPlanned int
}

func (p gcPage) title() string { return "Collection of " + p.Cache }

// gcPage shows what the next collection of a cache would remove: a dry run.
// It needs a session whose token administers the cache.
func (h *Handler) gcPage(q *request, name string) error {
	c, err := h.svc.Authorize(q.r.Context(), q.principal(), name, store.PermAdmin)
	if err != nil {
		return err
	}
	plan, err := h.svc.PlanCollection(q.r.Context(), c)
	if err != nil {
		return err
	}
	h.render(q, http.StatusOK, "gc", gcPage{Cache: c.Name(), Policy: c.Policy(), CollectionPlan: plan, MaxPlanned: service.MaxPlanned})
	return nil
}

type loginPage struct {
	CSRF, Next, Problem string
}

func (loginPage) title() string { return "Log in" }

type errorPage struct {
	Status     int
	StatusText string
	Message    string
	LoginHint  bool
}

func (p errorPage) title() string { return p.StatusText }

// pathName returns the base name of a store path.
func pathName(storePath string) string { return path.Base(storePath) }

// humanBytes writes a size in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// humanCount writes a count with thousands separated.
func humanCount(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// percent writes part of whole as a percentage, or "–" without a whole.
func percent(part, whole int64) string {
	if whole <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", float64(part)*100/float64(whole))
}

// ago writes how long ago t was, or "never".
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return humanDuration(time.Since(t)) + " ago"
}

// humanDuration writes a duration in its largest sensible unit.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

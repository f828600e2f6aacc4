package nixhttp

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/httpx"
	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/service"
)

// Header fields of the answers of ServeLookup, made once.
var (
	fieldNosniff         = httpx.Field{Name: "X-Content-Type-Options", Value: nosniff[0]}
	fieldTypeNarInfo     = httpx.Field{Name: "Content-Type", Value: typeNarInfo[0]}
	fieldTypeText        = httpx.Field{Name: "Content-Type", Value: typeText[0]}
	fieldNoStore         = httpx.Field{Name: "Cache-Control", Value: noStore[0]}
	fieldNarInfoLifetime = httpx.Field{Name: "Cache-Control", Value: maxAgeNarInfo.public[0]}
)

// ServeLookup answers a lookup of a narinfo of a public cache from memory
// (see httpx.Lookup and service.QuickNarInfo), with the answer ServeHTTP
// gives the same request, and counts and logs it as ServeHTTP does. It
// declines everything else: other files, private caches, lookups an
// upstream may answer and narinfos not rendered at the moment.
func (h *Handler) ServeLookup(l *httpx.Lookup) bool {
	start := time.Now()
	cacheName, file, ok := strings.Cut(strings.TrimPrefix(l.Path, "/"), "/")
	if !ok || !strings.HasSuffix(file, ".narinfo") {
		return false
	}
	key, err := nixkey.Parse(file)
	if err != nil || key.Kind != nixkey.NarInfo {
		return false
	}
	t, answered, err := h.svc.QuickNarInfo(cacheName, key.Hash)
	if !answered {
		return false
	}
	l.Header = append(l.Header, fieldNosniff)
	switch {
	case err != nil: // as writeError answers a miss
		l.Status = status(err)
		l.Header = append(l.Header, fieldTypeText, fieldNoStore)
		l.Body = []byte(service.Message(err) + "\n")
	case l.IfNoneMatch != "" && httpx.ETagMatches(l.IfNoneMatch, t.ETag): // as notModified
		l.Status = http.StatusNotModified
		l.Header = append(l.Header, httpx.Field{Name: "Etag", Value: t.ETag}, fieldNarInfoLifetime)
	default: // as serveBytes
		l.Status = http.StatusOK
		l.Header = append(l.Header, httpx.Field{Name: "Etag", Value: t.ETag}, fieldNarInfoLifetime, fieldTypeNarInfo)
		l.Body = t.Body
	}
	info := requestInfo{cache: cacheName, kind: key.Kind.String(), err: err}
	method, sent := http.MethodGet, int64(len(l.Body))
	if l.Head {
		method, sent = http.MethodHead, 0
	}
	h.logAnswer(context.Background(), method, l.Status, sent, &info, time.Since(start), l.Remote.String)
	h.countLookup(cacheName, l.Status)
	return true
}

// serveQuick answers through ServeLookup a lookup that net/http read (over
// TLS, HTTP/2, or plain HTTP without the fasthttp front end), and reports
// whether it did.
func (h *Handler) serveQuick(w http.ResponseWriter, r *http.Request) bool {
	if h.noQuick || r.Method != http.MethodGet && r.Method != http.MethodHead || r.URL.RawQuery != "" ||
		!strings.HasSuffix(r.URL.Path, ".narinfo") {
		return false
	}
	l := httpx.NewLookup()
	defer l.Release()
	l.Head, l.Path, l.Remote = r.Method == http.MethodHead, r.URL.Path, httpx.RemoteAddr(r.RemoteAddr)
	if inm := r.Header["If-None-Match"]; len(inm) > 0 {
		l.IfNoneMatch = inm[0]
	}
	if !h.ServeLookup(l) {
		return false
	}
	hdr := w.Header()
	for _, f := range l.Header {
		hdr[f.Name] = []string{f.Value}
	}
	if l.Status != http.StatusNotModified {
		hdr["Content-Length"] = []string{strconv.Itoa(len(l.Body))}
	}
	w.WriteHeader(l.Status)
	if !l.Head {
		_, _ = w.Write(l.Body)
	}
	return true
}

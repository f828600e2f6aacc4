package nixhttp

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"

	"github.com/larder-cache/larder/internal/httpx"
	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// Cache lifetimes. NAR files are content addressed and never change;
// narinfos and other files can gain signatures or be replaced.
var (
	maxAgeCacheInfo = newLifetime("max-age=3600")
	maxAgeNarInfo   = newLifetime("max-age=300")
	maxAgeNar       = newLifetime("max-age=31536000, immutable")
	maxAgeFile      = newLifetime("max-age=300")
)

// A lifetime is the Cache-Control header of a kind of file, for public
// caches (shared caches may keep the file) and for private ones. Header
// values that every response of a kind repeats are made once and shared:
// net/http only reads them, and Header's methods replace a value rather
// than change it.
type lifetime struct{ public, private []string }

func newLifetime(maxAge string) lifetime {
	return lifetime{public: []string{"public, " + maxAge}, private: []string{"private, " + maxAge}}
}

// of returns the Cache-Control value for a response of the cache c.
func (l lifetime) of(c service.Cache) []string {
	if c.Private() {
		return l.private
	}
	return l.public
}

// Header values shared by every response that sends them.
var (
	typeCacheInfo = []string{"text/x-nix-cache-info"}
	typeNarInfo   = []string{"text/x-nix-narinfo"}
	typeText      = []string{"text/plain; charset=utf-8"}
	noStore       = []string{"no-store"}
	nosniff       = []string{"nosniff"}
)

// serveRead answers GET and HEAD of a file of a cache.
func (h *Handler) serveRead(w http.ResponseWriter, r *http.Request, info *requestInfo, cacheName string, key nixkey.Key) {
	c, err := h.access(r, cacheName, store.PermRead)
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	switch key.Kind {
	case nixkey.CacheInfo:
		body := c.CacheInfo()
		sum := sha256.Sum256(body)
		h.serveBytes(w, r, c, body, `"`+hex.EncodeToString(sum[:16])+`"`, typeCacheInfo, maxAgeCacheInfo)
	case nixkey.NarInfo:
		t, err := h.svc.NarInfoFor(r.Context(), c, key.Hash, credentials(r))
		if err != nil {
			h.writeError(w, r, info, err)
			return
		}
		h.serveBytes(w, r, c, t.Body, t.ETag, typeNarInfo, maxAgeNarInfo)
	case nixkey.Nar:
		h.serveNar(w, r, info, c, key)
	default:
		h.serveFile(w, r, info, c, key)
	}
}

// notModified sets the validators of a response (ETag, Cache-Control) and
// answers 304 if the request's If-None-Match matches; it reports whether it
// did.
func notModified(w http.ResponseWriter, r *http.Request, c service.Cache, etag string, maxAge lifetime) bool {
	hdr := w.Header()
	hdr["Etag"] = []string{etag}
	hdr["Cache-Control"] = maxAge.of(c)
	if inm := r.Header["If-None-Match"]; len(inm) > 0 && httpx.ETagMatches(inm[0], etag) {
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	return false
}

// serveBytes answers with a small body held in memory, named by etag
// (quoted), honouring If-None-Match.
func (h *Handler) serveBytes(w http.ResponseWriter, r *http.Request, c service.Cache, body []byte, etag string, ctype []string, maxAge lifetime) {
	if notModified(w, r, c, etag, maxAge) {
		return
	}
	hdr := w.Header()
	hdr["Content-Type"] = ctype
	hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// serveNar streams a NAR file, honouring Range, If-Range and If-None-Match.
// It never sets Content-Encoding, so the client neither decodes the file
// nor loses the ability to resume it. A file the cache serves from an
// upstream is named by the path it belongs to, in the query of the URL the
// narinfo gave (?hash=…).
func (h *Handler) serveNar(w http.ResponseWriter, r *http.Request, info *requestInfo, c service.Cache, key nixkey.Key) {
	var size int64
	var tag string // unquoted ETag
	var open func(off, length int64) (io.ReadCloser, error)
	fromUpstream := false
	n, err := h.svc.Nar(r.Context(), c, key)
	if hash := r.URL.Query().Get("hash"); service.CodeOf(err) == service.CodeNotFound && hash != "" {
		var u service.UpstreamNar
		if u, err = h.svc.UpstreamNar(r.Context(), c, key, hash); err == nil {
			size, tag, fromUpstream = u.Size, u.FileHash, true
			open = func(off, length int64) (io.ReadCloser, error) {
				return h.svc.ReadUpstreamNar(r.Context(), c, u, off, length)
			}
		}
	} else if err == nil {
		size, tag = n.Size, n.ETag
		open = func(off, length int64) (io.ReadCloser, error) { return h.svc.ReadNar(r.Context(), c, n, off, length) }
	}
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	etag := `"` + tag + `"`
	hdr := w.Header()
	hdr.Set("Accept-Ranges", "bytes")
	if notModified(w, r, c, etag, maxAgeNar) {
		return
	}
	hdr.Set("Content-Type", "application/x-nix-nar")
	off, length, status := int64(0), size, http.StatusOK
	if size < 0 {
		// Compressed as it is sent (see service.NarFile): no length to
		// give, no ranges to take.
		hdr.Set("Accept-Ranges", "none")
	} else if rg := r.Header.Get("Range"); rg != "" && httpx.IfRangeAllows(r.Header.Get("If-Range"), etag) {
		var ok, satisfiable bool
		off, length, ok, satisfiable = httpx.ParseRange(rg, size)
		switch {
		case ok && !satisfiable:
			hdr.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			hdr.Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			if r.Method == http.MethodGet {
				_, _ = io.WriteString(w, "the range is outside the file\n")
			}
			return
		case ok:
			status = http.StatusPartialContent
			hdr.Set("Content-Range", httpx.ContentRange(off, length, size))
		default:
			off, length = 0, size // unparsable or multiple ranges: send it all
		}
	}
	if length >= 0 {
		hdr.Set("Content-Length", strconv.FormatInt(length, 10))
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	body, err := open(off, length)
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	defer body.Close()
	var src io.Reader = body
	if fromUpstream {
		// The first bytes come before the status line: a fetch that fails
		// before any byte can be sent is answered as such, not with a
		// connection cut before the answer (which HTTP clients retry).
		first, err := readFirst(body)
		if err != nil {
			h.upstreamFailed(w, r, info, err)
			return
		}
		src = io.MultiReader(bytes.NewReader(first), body)
	}
	w.WriteHeader(status)
	if _, err := io.Copy(w, src); err != nil {
		info.err = err // the client went away, or the store or upstream failed mid-stream
		if fromUpstream {
			// Cut the answer short for certain, so that no client takes
			// a file that failed its checks for whole.
			panic(http.ErrAbortHandler)
		}
	}
}

// readFirst reads the first bytes of r: at least one, or none at its end.
func readFirst(r io.Reader) ([]byte, error) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		switch {
		case n > 0:
			return buf[:n], nil
		case err == io.EOF:
			return nil, nil
		case err != nil:
			return nil, err
		}
	}
}

// upstreamFailed answers a read of an upstream's NAR file that failed
// before its first byte: 502 if the file failed its checks or the fetch
// went wrong, as writeError for what it maps (an upstream unreachable for
// now, a client gone).
func (h *Handler) upstreamFailed(w http.ResponseWriter, r *http.Request, info *requestInfo, err error) {
	switch service.CodeOf(err) {
	case service.CodeUnavailable, service.CodeClientGone, service.CodeNotFound:
		h.writeError(w, r, info, err)
		return
	}
	info.err = err
	msg := service.Message(err)
	if msg == "" {
		msg = "the fetch from the upstream failed"
	}
	hdr := w.Header()
	hdr.Del("Content-Length")
	hdr.Del("Accept-Ranges")
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = io.WriteString(w, "502 Bad Gateway: the upstream's NAR file was refused, and nothing of it is served: "+msg+"\n")
}

// serveFile answers a listing, log, realisation or debuginfo file.
func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, info *requestInfo, c service.Cache, key nixkey.Key) {
	f, err := h.svc.File(r.Context(), c, key)
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	if notModified(w, r, c, `"`+f.SHA256+`"`, maxAgeFile) {
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", f.ContentType)
	hdr.Set("Content-Length", strconv.FormatInt(f.Size, 10))
	if r.Method == http.MethodHead {
		return
	}
	body, err := h.svc.ReadFile(r.Context(), f)
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	defer body.Close()
	if _, err := io.Copy(w, body); err != nil {
		info.err = err
	}
}

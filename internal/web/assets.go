package web

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
)

// asset is one embedded file the dashboard serves.
type asset struct {
	body  []byte
	ctype string
	hash  string // of the body, in its URL, so that a changed file has a new URL
}

// assets are the embedded files, by their path under assets/.
type assets struct{ files map[string]asset }

// loadAssets reads every embedded file. Only these paths are served.
func loadAssets(fsys fs.FS) (*assets, error) {
	a := &assets{files: map[string]asset{}}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		ctype := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) {
		case ".js":
			ctype = "text/javascript; charset=utf-8"
		case ".css":
			ctype = "text/css; charset=utf-8"
		case ".md", "":
			ctype = "text/plain; charset=utf-8"
		}
		sum := sha256.Sum256(body)
		a.files[p] = asset{body: body, ctype: ctype, hash: hex.EncodeToString(sum[:8])}
		return nil
	})
	return a, err
}

// url returns the URL of the asset at p, with its hash.
func (a *assets) url(p string) (string, error) {
	f, ok := a.files[p]
	if !ok {
		return "", fs.ErrNotExist
	}
	return Prefix + "assets/" + p + "?v=" + f.hash, nil
}

// serveAsset answers an embedded file. One asked for with its current
// hash may be kept for ever.
func (h *Handler) serveAsset(q *request, p string) {
	f, ok := h.assets.files[p]
	switch {
	case q.r.Method != http.MethodGet && q.r.Method != http.MethodHead:
		q.w.Header().Set("Allow", "GET, HEAD")
		h.fail(q, errMethod)
		return
	case !ok:
		h.fail(q, notFound("no such file"))
		return
	}
	hdr := q.w.Header()
	hdr.Set("Content-Type", f.ctype)
	hdr.Set("Content-Length", strconv.Itoa(len(f.body)))
	hdr.Set("ETag", `"`+f.hash+`"`)
	if q.r.URL.Query().Get("v") == f.hash {
		hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hdr.Set("Cache-Control", "no-cache")
	}
	if q.r.Header.Get("If-None-Match") == `"`+f.hash+`"` {
		q.w.WriteHeader(http.StatusNotModified)
		return
	}
	if q.r.Method == http.MethodGet {
		_, _ = q.w.Write(f.body)
	}
}

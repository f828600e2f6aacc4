package nixhttp

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// serveWrite answers PUT of a file of a cache. Nix sends every upload with a
// Content-Length and the whole body; a body that ends early stores nothing.
func (h *Handler) serveWrite(w http.ResponseWriter, r *http.Request, info *requestInfo, cacheName string, key nixkey.Key) {
	c, err := h.access(r, cacheName, store.PermWrite)
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != "identity" {
		h.writeError(w, r, info, &service.Error{Code: service.CodeUnsupported,
			Msg: fmt.Sprintf("Content-Encoding %q is not supported; upload files as they are", enc)})
		return
	}
	body := h.bodyReader(w, r, info)
	var created bool
	switch key.Kind {
	case nixkey.Nar:
		created, err = h.svc.PutNar(r.Context(), c, key, body, r.ContentLength)
	case nixkey.NarInfo:
		var data []byte
		if data, err = readBody(body, r.ContentLength, h.svc.Limits().MaxNarInfoSize); err == nil {
			created, err = h.svc.PutNarInfo(r.Context(), c, key, data)
		}
	case nixkey.CacheInfo:
		var data []byte
		if data, err = readBody(body, r.ContentLength, 64<<10); err == nil {
			err = h.svc.PutCacheInfo(c, data)
		}
	default:
		var data []byte
		if data, err = readBody(body, r.ContentLength, h.svc.Limits().MaxFileSize); err == nil {
			err = h.svc.PutFile(r.Context(), c, key, data)
			created = err == nil
		}
	}
	if err != nil {
		h.writeError(w, r, info, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if created {
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusOK)
	}
}

// bodyReader returns the request body, abandoned when the client sends
// nothing for the body timeout, and counted for the access log.
func (h *Handler) bodyReader(w http.ResponseWriter, r *http.Request, info *requestInfo) io.Reader {
	return &idleReader{r: r.Body, rc: http.NewResponseController(w), timeout: h.opts.BodyTimeout, n: &info.bodyBytes}
}

type idleReader struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
	n       *int64
}

func (b *idleReader) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	n, err := b.r.Read(p)
	*b.n += int64(n)
	return n, err
}

// readBody reads a whole body of the declared length, at most max bytes.
func readBody(r io.Reader, length, max int64) ([]byte, error) {
	switch {
	case length < 0:
		return nil, &service.Error{Code: service.CodeLengthRequired, Msg: "the upload needs a Content-Length"}
	case length > max:
		return nil, &service.Error{Code: service.CodeTooLarge,
			Msg: fmt.Sprintf("the body is %d bytes, more than the limit of %d", length, max)}
	}
	buf := make([]byte, length)
	n, err := io.ReadFull(r, buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return nil, &service.Error{Code: service.CodeInvalid,
			Msg: fmt.Sprintf("the body ended after %d of %d bytes", n, length)}
	case err != nil:
		return nil, &service.Error{Code: service.CodeClientGone,
			Msg: fmt.Sprintf("the upload stopped after %d of %d bytes", n, length), Err: err}
	}
	return buf, nil
}

package nixhttp

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/larder-cache/larder/internal/httpx"
	"github.com/larder-cache/larder/internal/service"
)

// methodError is the one error this front end makes itself: a method the
// protocol does not have.
type methodError struct{ method string }

func (e methodError) Error() string {
	return e.method + " is not supported here; use GET, HEAD or PUT"
}

// status maps an error to the HTTP status this front end answers with. It is
// the only place that does.
func status(err error) int {
	if _, ok := err.(*service.Error); !ok && errors.As(err, new(methodError)) {
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
	case service.CodeConflict:
		return http.StatusConflict
	case service.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case service.CodeLengthRequired:
		return http.StatusLengthRequired
	case service.CodeUnsupported:
		return http.StatusUnsupportedMediaType
	case service.CodeClientGone:
		return http.StatusRequestTimeout
	case service.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// writeError answers a request with err. A 4xx body is the error's one-line
// message; a 5xx body is generic, with a request ID that finds the detail in
// the log.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, info *requestInfo, err error) {
	code := status(err)
	info.err = err
	msg := service.Message(err)
	if code == http.StatusMethodNotAllowed {
		msg = err.Error()
	}
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5") // Nix retries 5xx with backoff
		h.log.Warn("unavailable for now; the client is asked to retry", "method", r.Method, "path", r.URL.Path, "err", err)
	} else if code >= 500 || msg == "" {
		id := httpx.RequestID()
		info.requestID = id
		msg = "internal server error (request " + id + ")"
		h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "request_id", id, "err", err)
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="larder"`)
	}
	if (code == http.StatusUnauthorized || code == http.StatusForbidden) &&
		(r.Method == http.MethodGet || r.Method == http.MethodHead) {
		// Nix reads 401 and 403 as "not there": say why in the log, since
		// the client will not. The reason is the error's whole text, which
		// says what a refusal must not tell the client: whether the cache
		// exists.
		h.log.Warn("read denied", "cache", info.cache, "kind", info.kind, "path", r.URL.Path,
			"remote", r.RemoteAddr, "reason", err.Error())
	}
	hdr := w.Header()
	hdr.Del("Content-Length")
	hdr.Del("Content-Range")
	hdr.Del("ETag")
	hdr["Content-Type"] = typeText
	hdr["Cache-Control"] = noStore
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(msg + "\n"))
	}
}

// logRequest writes the access log line of a request begun at start and
// counts it in the metrics.
func (h *Handler) logRequest(r *http.Request, w *httpx.ResponseWriter, info *requestInfo, start time.Time) {
	h.logAnswer(r.Context(), r.Method, w.Status(), w.Bytes(), info, time.Since(start), func() string { return r.RemoteAddr })
}

// logAnswer writes the access log line of a request answered with status
// and bytes of body in d, and counts it in the metrics; remote gives the
// client's address, only if the line is written.
func (h *Handler) logAnswer(ctx context.Context, method string, st int, bytes int64, info *requestInfo, d time.Duration, remote func() string) {
	h.accessLog.Answered(ctx, method, st, info.kind, d, func() []slog.Attr {
		attrs := []slog.Attr{
			slog.String("method", method),
			slog.String("cache", info.cache),
			slog.String("kind", info.kind),
			slog.Int("status", st),
			slog.Int64("bytes", bytes),
			slog.Int64("in", info.bodyBytes),
			slog.Duration("duration", d.Round(time.Microsecond)),
			slog.String("remote", remote()),
		}
		if info.requestID != "" {
			attrs = append(attrs, slog.String("request_id", info.requestID))
		}
		if info.err != nil && st < 500 {
			attrs = append(attrs, slog.String("reason", service.Message(info.err)))
		}
		return attrs
	})
}

// request is what the access log needs of a request, allocated once.
type request struct {
	w    httpx.ResponseWriter
	info requestInfo
}

// requestInfo collects what the access log says about a request.
type requestInfo struct {
	cache     string
	kind      string
	bodyBytes int64
	requestID string
	err       error
}

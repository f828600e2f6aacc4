package s3api

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/sigv4"
)

// s3Error is an error this front end makes itself, already in S3's terms.
type s3Error struct {
	Status  int
	Code    string
	Message string
}

func (e *s3Error) Error() string { return e.Code + ": " + e.Message }

func notImplemented(r *http.Request) *s3Error {
	return &s3Error{Status: http.StatusNotImplemented, Code: "NotImplemented",
		Message: "larder does not implement " + r.Method + " " + r.URL.Path + "?" + r.URL.RawQuery}
}

// s3Status maps an error to the S3 status and error code this front end
// answers with. It is the only place that does.
func s3Status(err error) (status int, code, msg string) {
	var se *s3Error
	var ae *sigv4.Error
	switch {
	case errors.As(err, &se):
		return se.Status, se.Code, se.Message
	case errors.As(err, &ae):
		return ae.Status, ae.Code, ae.Message
	}
	msg = service.Message(err)
	reason := string(service.ReasonOf(err))
	pick := func(status int, def string) (int, string, string) {
		if reason != "" {
			return status, reason, msg
		}
		return status, def, msg
	}
	switch service.CodeOf(err) {
	case service.CodeInvalid:
		return pick(http.StatusBadRequest, "InvalidRequest")
	case service.CodeNotFound:
		return pick(http.StatusNotFound, "NoSuchKey")
	case service.CodeUnauthenticated, service.CodeForbidden:
		return http.StatusForbidden, "AccessDenied", msg
	case service.CodeConflict:
		return pick(http.StatusConflict, "InvalidRequest")
	case service.CodeTooLarge:
		return http.StatusBadRequest, "EntityTooLarge", msg
	case service.CodeLengthRequired:
		return http.StatusLengthRequired, "MissingContentLength", msg
	case service.CodeUnsupported:
		return http.StatusBadRequest, "InvalidRequest", msg
	case service.CodeClientGone:
		return http.StatusBadRequest, "IncompleteBody", msg
	case service.CodeUnavailable:
		return http.StatusServiceUnavailable, "ServiceUnavailable", msg
	}
	return http.StatusInternalServerError, "InternalError", ""
}

// fail answers a request with an S3 error document (no body for HEAD).
func (h *Handler) fail(q *request, err error) {
	q.err = err
	status, code, msg := s3Status(err)
	if status == http.StatusServiceUnavailable {
		q.w.Header().Set("Retry-After", "5")
		h.log.Warn("store unavailable", "method", q.r.Method, "path", q.r.URL.Path, "request_id", q.id, "err", err)
	} else if status >= 500 && status != http.StatusNotImplemented {
		msg = "We encountered an internal error. Please try again. (request " + q.id + ")"
		h.log.Error("s3 request failed", "method", q.r.Method, "path", q.r.URL.Path, "request_id", q.id, "err", err)
	}
	if status == http.StatusNotFound && code == "NoSuchKey" && q.key == "" {
		code = "NoSuchBucket"
	}
	hdr := q.w.Header()
	for _, k := range []string{"Content-Length", "Content-Range", "ETag", "Last-Modified"} {
		if k == "Content-Range" && status == http.StatusRequestedRangeNotSatisfiable {
			continue // "bytes */SIZE" tells the client the object's size
		}
		hdr.Del(k)
	}
	if q.r.Method == http.MethodHead {
		q.w.WriteHeader(status)
		return
	}
	body, _ := xml.Marshal(errorResponse{Code: code, Message: msg, Resource: q.resource(), RequestID: q.id})
	hdr.Set("Content-Type", "application/xml")
	q.w.WriteHeader(status)
	_, _ = q.w.Write([]byte(xml.Header))
	_, _ = q.w.Write(body)
}

func requestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// logRequest writes the access log line of a request and counts it in the
// metrics.
func (h *Handler) logRequest(q *request, d time.Duration) {
	st := q.w.status
	if st == 0 {
		st = http.StatusOK
	}
	h.opts.Metrics.Request("s3", q.op, q.r.Method, st, d)
	if !h.log.Enabled(q.r.Context(), slog.LevelInfo) {
		return // spare building the line
	}
	key := ""
	if q.auth != nil {
		key = q.auth.AccessKeyID
	}
	attrs := []slog.Attr{
		slog.String("method", q.r.Method),
		slog.String("cache", q.bucket),
		slog.String("op", q.op),
		slog.String("key", q.key),
		slog.Int("status", st),
		slog.Int64("bytes", q.w.bytes),
		slog.Duration("duration", d.Round(time.Microsecond)),
		slog.String("access_key", key),
		slog.String("remote", q.r.RemoteAddr),
		slog.String("request_id", q.id),
	}
	if q.err != nil && st < 500 {
		_, code, msg := s3Status(q.err)
		attrs = append(attrs, slog.String("code", code), slog.String("reason", msg))
	}
	h.log.LogAttrs(q.r.Context(), slog.LevelInfo, "s3 request", attrs...)
}

// responseWriter records the status and size of a response.
type responseWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

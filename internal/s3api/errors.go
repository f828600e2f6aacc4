package s3api

import (
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

// reasonCodes are the S3 error codes of the service's reasons, which refine
// the code s3Status picks by the error's class.
var reasonCodes = map[service.Reason]string{
	service.ReasonUploadNotFound: "NoSuchUpload",
	service.ReasonPartNotFound:   "InvalidPart",
	service.ReasonPartOrder:      "InvalidPartOrder",
	service.ReasonPartTooSmall:   "EntityTooSmall",
	service.ReasonNoParts:        "MalformedXML",
	service.ReasonCacheNotEmpty:  "BucketNotEmpty",
	service.ReasonCacheNotFound:  "NoSuchBucket",
	service.ReasonKeyNotFound:    "NoSuchKey",
	service.ReasonCacheExists:    "BucketAlreadyOwnedByYou",
	service.ReasonBadCacheName:   "InvalidBucketName",
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
	pick := func(status int, def string) (int, string, string) {
		if code, ok := reasonCodes[service.ReasonOf(err)]; ok {
			return status, code, msg
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
		h.log.Warn("unavailable for now; the client is asked to retry", "method", q.r.Method, "path", q.r.URL.Path, "request_id", q.id, "err", err)
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

// logRequest writes the access log line of a request and counts it in the
// metrics.
func (h *Handler) logRequest(q *request, d time.Duration) {
	h.accessLog.Done(q.r, q.w, q.op, d, func() []slog.Attr {
		st := q.w.Status()
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
			slog.Int64("bytes", q.w.Bytes()),
			slog.Duration("duration", d.Round(time.Microsecond)),
			slog.String("access_key", key),
			slog.String("remote", q.r.RemoteAddr),
			slog.String("request_id", q.id),
		}
		if q.err != nil && st < 500 {
			_, code, msg := s3Status(q.err)
			attrs = append(attrs, slog.String("code", code), slog.String("reason", logReason(q.err, msg)))
		}
		return attrs
	})
}

// logReason is what the log says of a refusal with msg: msg, but for a
// refused credential the error's whole text, which says what the client
// must not be told (whether a cache it may not see exists).
func logReason(err error, msg string) string {
	switch service.CodeOf(err) {
	case service.CodeUnauthenticated, service.CodeForbidden:
		return err.Error()
	}
	return msg
}

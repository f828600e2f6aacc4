package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/larder-cache/larder/internal/metrics"
)

// ResponseWriter records the status and size of a response, for the access
// log.
type ResponseWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

// WriteHeader records the first status sent.
func (w *ResponseWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write counts the bytes of the body.
func (w *ResponseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom copies the body from r with the wrapped writer's ReadFrom, if
// it has one: net/http's sends a file, or a limited read of one, from the
// file to a plain TCP connection with sendfile.
func (w *ResponseWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := io.Copy(w.ResponseWriter, r)
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *ResponseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Status returns the status sent: 200 if the handler sent none, as net/http
// does then.
func (w *ResponseWriter) Status() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Bytes returns the bytes of the body sent.
func (w *ResponseWriter) Bytes() int64 { return w.bytes }

// RequestID returns a new random request ID, 16 hexadecimal digits, that
// an error answer carries and the log line of the request repeats.
func RequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// AccessLog counts every answered request in the metrics and writes its
// line to the log.
type AccessLog struct {
	Logger   *slog.Logger
	Metrics  *metrics.Metrics // nil counts nothing
	Protocol string           // the metrics' protocol label: "nix" or "s3"
	Message  string           // the message of every line
}

// Done counts the request r, answered through w in d, as one of kind (a
// value from the fixed set package metrics knows, never a key or other
// text of the client's) and, if the logger writes Info, logs the line whose
// attributes line returns; it is not called otherwise.
func (a *AccessLog) Done(r *http.Request, w *ResponseWriter, kind string, d time.Duration, line func() []slog.Attr) {
	a.Answered(r.Context(), r.Method, w.Status(), kind, d, line)
}

// Answered is Done for a request answered without net/http (see Lookup):
// its method and the status of its answer.
func (a *AccessLog) Answered(ctx context.Context, method string, status int, kind string, d time.Duration, line func() []slog.Attr) {
	a.Metrics.Request(a.Protocol, kind, method, status, d)
	if !a.Logger.Enabled(ctx, slog.LevelInfo) {
		return // spare building the line
	}
	a.Logger.LogAttrs(ctx, slog.LevelInfo, a.Message, line()...)
}

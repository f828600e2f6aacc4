// Package plainhttp serves larder's plain-HTTP listener: narinfo lookups
// at the rate of a static web server, everything else exactly as net/http
// serves it.
//
// Nix asks every substituter for the narinfo of every path it needs, and
// most of those lookups are misses: they are larder's hot path. Go's
// net/http spends most of a lookup's time on its own per-request machinery
// (a goroutine reading the connection in the background, deadlines reset,
// the request and its headers allocated afresh), and peaks at about 0.8 of
// nginx serving the same files; valyala/fasthttp, which reuses all of that
// per connection, serves them faster than nginx on the same machine.
//
// So fasthttp reads every request on the listener, and answers itself only
// lookups: a GET or HEAD without a body of /CACHE/HASH.narinfo or
// /CACHE/nix-cache-info, with no query, over HTTP/1.1. Those not signed for
// S3 it offers first to the quick handler, if there is one, which answers
// what it can from memory without net/http's request and response (see
// httpx.Lookup; for larder, the hits it has rendered and the misses of
// public caches). The others go to the same http.Handler as every other
// request, which answers into a buffer (these answers are small). At the
// first request of a connection that is anything else, the connection
// itself goes to net/http, with that request's bytes replayed ahead of
// what the client sends next: uploads, NAR downloads (with sendfile), the
// S3 API, the dashboard and the API keep net/http's streaming, timeouts,
// 100-continue and error answers, and nothing of HTTP is parsed here.
package plainhttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/larder-cache/larder/internal/httpx"
	"github.com/larder-cache/larder/internal/sigv4"
	"github.com/valyala/fasthttp"
)

// Options configure a Server.
type Options struct {
	Logger *slog.Logger
	// ReadHeaderTimeout bounds the wait for a request's headers, and
	// IdleTimeout the wait for the next request on a kept-alive
	// connection, on both servers.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// MaxHeaderBytes bounds a request's headers: past it, 431.
	MaxHeaderBytes int
	// Quick, if set, answers the lookups it can from memory, without
	// net/http's request and response; the handler answers the others.
	Quick httpx.QuickHandler
}

// Server serves one plain-HTTP listener with fasthttp and net/http.
type Server struct {
	handler http.Handler
	quick   httpx.QuickHandler
	log     *slog.Logger
	fast    *fasthttp.Server
	slow    *http.Server
	handoff *handoffListener
	// lookups and handedOver count the requests fasthttp answered and the
	// connections it handed over.
	lookups, handedOver atomic.Int64
}

// New returns a Server of handler. slow is the net/http server that takes
// over connections; New sets its Handler to handler.
func New(handler http.Handler, slow *http.Server, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	slow.Handler = handler
	s := &Server{handler: handler, quick: opts.Quick, log: opts.Logger, slow: slow}
	s.fast = &fasthttp.Server{
		Handler:                       s.serve,
		ReadTimeout:                   opts.ReadHeaderTimeout,
		IdleTimeout:                   opts.IdleTimeout,
		ReadBufferSize:                opts.MaxHeaderBytes + 4096, // the headers and the request line
		StreamRequestBody:             true,
		MaxRequestBodySize:            1, // see handOver
		DisablePreParseMultipartForm:  true,
		DisableHeaderNamesNormalizing: false,
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		KeepHijackedConns:             true,
		ReduceMemoryUsage:             true, // idle connections hold no read buffer
		CloseOnShutdown:               true,
		Logger:                        fastLogger{opts.Logger},
		ErrorHandler:                  refuse,
	}
	return s
}

// Serve serves ln until Shutdown, and returns http.ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	s.handoff = newHandoffListener(ln.Addr())
	slow := make(chan error, 1)
	go func() { slow <- s.slow.Serve(s.handoff) }()
	err := s.fast.Serve(ln)
	if err == nil {
		err = http.ErrServerClosed // fasthttp returns nil once shut down
	}
	s.handoff.Close()
	if serr := <-slow; !errors.Is(serr, http.ErrServerClosed) && !errors.Is(serr, net.ErrClosed) {
		return serr
	}
	return err
}

// Shutdown stops both servers gracefully: no new connections, each open
// one closed once its request is answered, until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	var wg sync.WaitGroup
	var fastErr, slowErr error
	wg.Go(func() { fastErr = s.fast.ShutdownWithContext(ctx) })
	wg.Go(func() { slowErr = s.slow.Shutdown(ctx) })
	wg.Wait()
	return errors.Join(fastErr, slowErr)
}

// serve answers a request fasthttp read: a lookup itself, anything else by
// handing the connection over.
func (s *Server) serve(ctx *fasthttp.RequestCtx) {
	if !isLookup(ctx) {
		s.handOver(ctx)
		return
	}
	if s.quick != nil {
		answered, ok := s.serveQuick(ctx)
		if !ok {
			ctx.Error("internal server error\n", http.StatusInternalServerError)
		}
		if answered || !ok {
			s.lookups.Add(1)
			return
		}
	}
	r, err := request(ctx)
	if err != nil {
		s.handOver(ctx)
		return
	}
	s.lookups.Add(1)
	w := &bufferWriter{hdr: make(http.Header, 8)}
	if !s.run(r.URL.Path, func() { s.handler.ServeHTTP(w, r) }) {
		ctx.Error("internal server error\n", http.StatusInternalServerError)
		return
	}
	w.send(ctx, r.Method == http.MethodHead)
}

// serveQuick asks the quick handler to answer the lookup of ctx, and sets
// its answer as fasthttp's response; ok is false if the handler panicked.
func (s *Server) serveQuick(ctx *fasthttp.RequestCtx) (answered, ok bool) {
	h := &ctx.Request.Header
	if auth := h.Peek("Authorization"); len(auth) > 0 && sigv4.SignedAuthorization(string(auth)) {
		return false, true // for the S3 API
	}
	l := httpx.NewLookup()
	defer l.Release()
	l.Head = h.IsHead()
	l.Path = string(h.RequestURI()) // isLookup checked it has no query
	if inm := h.Peek("If-None-Match"); len(inm) > 0 {
		l.IfNoneMatch = string(inm)
	}
	l.Remote = ctx.RemoteAddr()
	ok = s.run(l.Path, func() { answered = s.quick.ServeLookup(l) })
	if !ok || !answered {
		return answered, ok
	}
	resp := &ctx.Response
	resp.SetStatusCode(l.Status)
	for _, f := range l.Header {
		resp.Header.Set(f.Name, f.Value)
	}
	switch {
	case l.Status == http.StatusNotModified:
	case l.Head:
		resp.SkipBody = true
		resp.Header.SetContentLength(len(l.Body))
	default:
		resp.SetBodyRaw(l.Body) // the handler does not change it any more
	}
	return true, true
}

// run calls serve, and reports whether it returned: a panic is logged and
// answered with 500, as net/http does.
func (s *Server) run(path string, serve func()) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				s.log.Error("handler panicked", "path", path, "panic", fmt.Sprint(v))
			}
			ok = false
		}
	}()
	serve()
	return true
}

// handOver gives the connection of ctx, from its current request on, to
// net/http. fasthttp has read the request's head and, as MaxRequestBodySize
// is 1, at most one byte of its body: that byte is read back from the body
// stream, and the head rebuilt from the bytes the client sent (request
// line, then its header lines as received), so that net/http reads the
// very request the client sent, and then the connection.
func (s *Server) handOver(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	var head bytes.Buffer
	head.Write(h.Method())
	head.WriteByte(' ')
	head.Write(h.RequestURI())
	head.WriteByte(' ')
	head.Write(h.Protocol())
	head.WriteString("\r\n")
	// The header lines as received, with the empty line that ends them.
	if raw := h.RawHeaders(); len(raw) > 0 {
		head.Write(raw)
	} else {
		head.WriteString("\r\n")
	}
	if h.ContentLength() > 0 {
		var b [1]byte
		if n, _ := io.ReadFull(ctx.RequestBodyStream(), b[:]); n == 1 {
			head.WriteByte(b[0])
		}
	}
	raw := ctx.Conn()
	s.handedOver.Add(1)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		s.handoff.give(&replayConn{Conn: c, raw: raw, r: io.MultiReader(&head, c)})
	})
}

// isLookup reports whether fasthttp may answer the request itself: a GET
// or HEAD over HTTP/1.1, without a body, of a path of the form
// /CACHE/HASH.narinfo or /CACHE/nix-cache-info and no query. This only
// chooses the way; the handler checks the request as it checks any other.
func isLookup(ctx *fasthttp.RequestCtx) bool {
	h := &ctx.Request.Header
	if !(h.IsGet() || h.IsHead()) || !h.IsHTTP11() || hasBody(h) {
		return false
	}
	return lookupPath(h.RequestURI())
}

// hasBody reports whether the request announces a body: a Content-Length
// past zero, or chunks (-1). fasthttp reports -2 for neither.
func hasBody(h *fasthttp.RequestHeader) bool {
	n := h.ContentLength()
	return n > 0 || n == -1 || len(h.Peek("Transfer-Encoding")) > 0
}

// lookupPath reports whether uri is /CACHE/HASH.narinfo or
// /CACHE/nix-cache-info, with a cache name of lower-case letters, digits,
// hyphens and dots and a hash of 32 letters and digits: nothing that URL
// decoding or path cleaning could change.
func lookupPath(uri []byte) bool {
	if len(uri) < 2 || uri[0] != '/' {
		return false
	}
	name, file, ok := bytes.Cut(uri[1:], []byte("/"))
	if !ok || len(name) == 0 || len(name) > 63 {
		return false
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	if string(file) == "nix-cache-info" {
		return true
	}
	hash, ok := bytes.CutSuffix(file, []byte(".narinfo"))
	if !ok || len(hash) != 32 {
		return false
	}
	for _, c := range hash {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// request builds the net/http request of a lookup: its method, path, host,
// headers and the client's address; no body, as isLookup checked.
func request(ctx *fasthttp.RequestCtx) (*http.Request, error) {
	h := &ctx.Request.Header
	method := http.MethodGet
	if h.IsHead() {
		method = http.MethodHead
	}
	uri := string(h.RequestURI())
	r := &http.Request{
		Method:     method,
		URL:        &url.URL{Path: uri},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, 8),
		Body:       http.NoBody,
		Host:       string(h.Host()),
		RemoteAddr: ctx.RemoteAddr().String(),
		RequestURI: uri,
	}
	var err error
	for k, v := range h.All() {
		key := http.CanonicalHeaderKey(string(k))
		if key == "Host" {
			continue
		}
		if len(r.Header[key]) >= 32 {
			err = errors.New("too many values of one header") // let net/http judge
		}
		r.Header[key] = append(r.Header[key], string(v))
	}
	return r, err
}

// bufferWriter is the http.ResponseWriter of a lookup: it keeps the answer
// until the handler returns.
type bufferWriter struct {
	hdr    http.Header
	status int
	body   []byte
}

func (w *bufferWriter) Header() http.Header { return w.hdr }

func (w *bufferWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *bufferWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body = append(w.body, p...)
	return len(p), nil
}

// send sets the answer as fasthttp's response; head says the request was
// a HEAD, whose Content-Length is the handler's, without a body.
func (w *bufferWriter) send(ctx *fasthttp.RequestCtx, head bool) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	resp := &ctx.Response
	resp.SetStatusCode(w.status)
	length := -1
	for k, vs := range w.hdr {
		if k == "Content-Length" {
			if len(vs) == 1 {
				length, _ = strconv.Atoi(vs[0])
			}
			continue
		}
		for _, v := range vs {
			resp.Header.Add(k, v)
		}
	}
	if head {
		resp.SkipBody = true
		if length >= 0 {
			resp.Header.SetContentLength(length)
		}
		return
	}
	resp.SetBody(w.body)
}

// refuse answers a request fasthttp could not read, as net/http answers
// one: the status and its text, then what was wrong.
func refuse(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	code := http.StatusBadRequest
	switch {
	case errors.As(err, &small):
		code = http.StatusRequestHeaderFieldsTooLarge
		err = errors.New("the request line and headers are too long")
	case errors.As(err, &netErr) && netErr.Timeout():
		code = http.StatusRequestTimeout
	}
	msg := err.Error()
	if len(msg) > 200 { // it may quote what the client sent
		msg = msg[:200] + "…"
	}
	ctx.Error(fmt.Sprintf("%d %s: %s", code, http.StatusText(code), msg), code)
}

// fastLogger passes fasthttp's messages (connection errors) to the log at
// debug level.
type fastLogger struct{ log *slog.Logger }

func (l fastLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "fasthttp")
}

// Package client talks to a larder server over HTTP, as any other client
// would: the Nix binary cache protocol for uploads and larder's JSON API
// for what that protocol lacks (which of many paths a cache misses, NAR
// files uploaded in parts, pins). It retries what a server under restart
// or load refuses for now, and explains what it refuses for good. It knows
// nothing of the server's internals: it must not import the service or the
// stores.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client is a client of one larder server. It is safe for concurrent use.
type Client struct {
	base  *url.URL // the server, without a trailing slash
	token string
	http  *http.Client
	log   *slog.Logger
	// Attempts is how many times a call is tried when the server answers
	// 5xx, 408 or 429 or cannot be reached; Backoff the wait before the
	// second try, doubled for each one after.
	Attempts int
	Backoff  time.Duration
}

// Options configure a Client.
type Options struct {
	Token  string       // sent as a Bearer token; "" sends none
	HTTP   *http.Client // nil: one with sensible timeouts
	Logger *slog.Logger // where retries are reported; nil: nowhere
}

// New returns a client of the server at base (http://HOST:PORT, or with a
// path prefix).
func New(base string, opts Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server %q is not an http(s) URL", base)
	}
	hc := opts.HTTP
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 5 * time.Minute, // a big NAR is verified before the answer
			MaxIdleConnsPerHost:   16,
			ForceAttemptHTTP2:     true,
		}}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{base: u, token: opts.Token, http: hc, log: log, Attempts: 7, Backoff: 250 * time.Millisecond}, nil
}

// Host returns the host the client talks to, as a netrc file names it.
func (c *Client) Host() string { return c.base.Hostname() }

// Error is a refusal by the server.
type Error struct {
	Method, Path string
	Status       int
	Msg          string // the server's one-line message
}

func (e *Error) Error() string {
	switch e.Status {
	case http.StatusUnauthorized:
		return fmt.Sprintf("the server refused the token (401): %s", e.Msg)
	case http.StatusForbidden:
		return fmt.Sprintf("the token may not do this (403): %s", e.Msg)
	}
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, e.Msg)
}

// StatusOf returns the HTTP status of a refusal in err's chain, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// retryable reports whether a call that failed with err may succeed if
// tried again.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status >= 500 || e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests
	}
	return true // the server could not be reached or broke off
}

// request is one call: body, if set, makes a fresh body for each try.
type request struct {
	method, path string
	ctype        string
	body         func() (io.Reader, int64)
}

// do makes the call, trying again while the failure is retryable, and
// returns the answer's body (at most 64 MiB).
func (c *Client) do(ctx context.Context, req request) ([]byte, error) {
	var err error
	wait := c.Backoff
	for attempt := 1; ; attempt++ {
		var data []byte
		if data, err = c.once(ctx, req); err == nil {
			return data, nil
		}
		if attempt >= c.Attempts || !retryable(ctx, err) {
			return nil, err
		}
		c.log.Warn("trying again", "call", req.method+" "+req.path, "attempt", attempt, "wait", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// once makes one try of a call.
func (c *Client) once(ctx context.Context, req request) ([]byte, error) {
	var body io.Reader
	size := int64(0)
	if req.body != nil {
		body, size = req.body()
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, c.base.String()+req.path, body)
	if err != nil {
		return nil, err
	}
	if req.body != nil {
		hr.ContentLength = size
		if size == 0 {
			hr.Body = http.NoBody
		}
	}
	if req.ctype != "" {
		hr.Header.Set("Content-Type", req.ctype)
	}
	if c.token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %w", req.method, req.path, err)
	}
	if resp.StatusCode >= 300 {
		return nil, &Error{Method: req.method, Path: req.path, Status: resp.StatusCode,
			Msg: strings.TrimSpace(string(data))}
	}
	return data, nil
}

// jsonBody returns a body maker for v encoded as JSON.
func jsonBody(v any) (func() (io.Reader, int64), error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return bytesBody(data), nil
}

// bytesBody returns a body maker for data.
func bytesBody(data []byte) func() (io.Reader, int64) {
	return func() (io.Reader, int64) { return bytes.NewReader(data), int64(len(data)) }
}

// cachePath returns the path of a file of a cache.
func cachePath(cache, key string) string { return "/" + url.PathEscape(cache) + "/" + key }

// apiPath returns the path of an API call about a cache.
func apiPath(cache string, rest ...string) string {
	p := "/_larder/api/caches/" + url.PathEscape(cache)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// MaxMissingQuery is the most hashes the client puts in one question; a
// longer list is asked in several.
const MaxMissingQuery = 50_000

// Missing returns those of the store path hashes that the cache does not
// hold, and those it holds only because an upstream cache does (which a
// server without upstreams never reports).
func (c *Client) Missing(ctx context.Context, cache string, hashes []string) (missing, upstream []string, err error) {
	missing = []string{}
	for len(hashes) > 0 {
		n := min(len(hashes), MaxMissingQuery)
		body, err := jsonBody(map[string][]string{"hashes": hashes[:n]})
		if err != nil {
			return nil, nil, err
		}
		data, err := c.do(ctx, request{method: http.MethodPost, path: apiPath(cache, "missing"), ctype: "application/json", body: body})
		if err != nil {
			return nil, nil, err
		}
		var ans struct {
			Missing  []string `json:"missing"`
			Upstream []string `json:"upstream"`
		}
		if err := json.Unmarshal(data, &ans); err != nil {
			return nil, nil, fmt.Errorf("the server's list of missing paths: %w", err)
		}
		missing = append(missing, ans.Missing...)
		upstream = append(upstream, ans.Upstream...)
		hashes = hashes[n:]
	}
	return missing, upstream, nil
}

// Put uploads data under a cache-relative key, as nix copy does.
func (c *Client) Put(ctx context.Context, cache, key, contentType string, data []byte) error {
	_, err := c.do(ctx, request{method: http.MethodPut, path: cachePath(cache, key), ctype: contentType, body: bytesBody(data)})
	return err
}

// CreateUpload starts an upload in parts of a NAR file under key and
// returns its ID.
func (c *Client) CreateUpload(ctx context.Context, cache, key string) (string, error) {
	body, err := jsonBody(map[string]string{"key": key})
	if err != nil {
		return "", err
	}
	data, err := c.do(ctx, request{method: http.MethodPost, path: apiPath(cache, "uploads"), ctype: "application/json", body: body})
	if err != nil {
		return "", err
	}
	var ans struct {
		UploadID string `json:"uploadId"`
	}
	if err := json.Unmarshal(data, &ans); err != nil || ans.UploadID == "" {
		return "", fmt.Errorf("the server's answer to a new upload has no upload ID: %q", data)
	}
	return ans.UploadID, nil
}

// Part is an uploaded part of an upload.
type Part struct {
	Number int    `json:"number"`
	ETag   string `json:"etag"`
}

// UploadPart uploads part number n of an upload and returns it.
func (c *Client) UploadPart(ctx context.Context, cache, id string, n int, data []byte) (Part, error) {
	ans, err := c.do(ctx, request{method: http.MethodPut, path: apiPath(cache, "uploads", id, "parts", strconv.Itoa(n)),
		ctype: "application/octet-stream", body: bytesBody(data)})
	if err != nil {
		return Part{}, err
	}
	var p Part
	if err := json.Unmarshal(ans, &p); err != nil || p.ETag == "" {
		return Part{}, fmt.Errorf("the server's answer to part %d has no ETag: %q", n, ans)
	}
	return p, nil
}

// CompleteUpload assembles an upload from its parts, which the server then
// verifies as it verifies a NAR file sent whole.
func (c *Client) CompleteUpload(ctx context.Context, cache, id string, parts []Part) error {
	body, err := jsonBody(map[string][]Part{"parts": parts})
	if err != nil {
		return err
	}
	_, err = c.do(ctx, request{method: http.MethodPost, path: apiPath(cache, "uploads", id, "complete"), ctype: "application/json", body: body})
	return err
}

// AbortUpload abandons an upload and its parts.
func (c *Client) AbortUpload(ctx context.Context, cache, id string) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: apiPath(cache, "uploads", id)})
	return err
}

// Pin pins a store path, with its closure, as a revision of the named pin,
// keeping keepRevisions of them (0: all).
func (c *Client) Pin(ctx context.Context, cache, name, storePath string, keepRevisions int) error {
	body, err := jsonBody(map[string]any{"storePath": storePath, "keepRevisions": keepRevisions})
	if err != nil {
		return err
	}
	_, err = c.do(ctx, request{method: http.MethodPut, path: apiPath(cache, "pins", url.PathEscape(name)), ctype: "application/json", body: body})
	return err
}

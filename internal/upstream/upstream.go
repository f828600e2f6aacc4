// Package upstream is a client of other Nix binary caches, the upstreams of
// larder's caches: it looks narinfos up in them and fetches their NAR
// files. It believes a narinfo only if it parses strictly, names the path
// asked for, is signed by one of its upstream's keys and names a NAR file
// larder could verify; every other answer is refused, with a log line.
//
// A lookup asks every upstream at once and ends within its timeout,
// however slow or dead an upstream is: an upstream that failed is left
// alone for a while, so that it costs later lookups nothing. Answers are
// remembered for a short time (misses in a bounded negative cache), and
// concurrent lookups of one path share one request per upstream.
//
// It knows nothing of larder's caches and stores: only the service calls
// it. It must not import the service, a store or a front end.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/larder-cache/larder/internal/compression"
	"github.com/larder-cache/larder/internal/metrics"
	"github.com/larder-cache/larder/internal/narinfo"
)

// Defaults of Options.
const (
	DefaultTimeout      = time.Second
	DefaultNegativeTTL  = time.Minute
	DefaultPositiveTTL  = 10 * time.Second
	DefaultFetchTimeout = 30 * time.Second
)

// maxInflight bounds the narinfo requests in flight to all upstreams
// together: a lookup that would start one more finds that upstream's
// answer unknown.
const maxInflight = 256

// Upstream is one upstream cache: where it is and the keys that sign it.
type Upstream struct {
	URL  string // root URL, without a trailing slash
	Keys []narinfo.PublicKey
}

// Parse checks an upstream's URL (http or https, no query, fragment or
// credentials) and public keys, "<keyname>:<base64 of 32 bytes>", of
// which it needs at least one.
func Parse(rawURL string, keys []string) (Upstream, error) {
	u, err := url.Parse(rawURL)
	switch {
	case err != nil:
		return Upstream{}, fmt.Errorf("upstream %q is not a URL: %v", rawURL, err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Opaque != "":
		return Upstream{}, fmt.Errorf("upstream %q is not an http:// or https:// URL", rawURL)
	case u.User != nil:
		return Upstream{}, fmt.Errorf("upstream %q: credentials in the URL are not supported", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(rawURL, "?") || strings.HasSuffix(rawURL, "#"):
		return Upstream{}, fmt.Errorf("upstream %q: a binary cache's URL has no query or fragment", rawURL)
	}
	if len(keys) == 0 {
		return Upstream{}, fmt.Errorf("upstream %s: give the public key that signs it (URL=KEY)", rawURL)
	}
	up := Upstream{URL: strings.TrimRight(rawURL, "/")}
	for _, k := range keys {
		pk, err := narinfo.ParsePublicKey(k)
		if err != nil {
			return Upstream{}, fmt.Errorf("upstream %s: %w", rawURL, err)
		}
		up.Keys = append(up.Keys, pk)
	}
	return up, nil
}

// Outcome says what a lookup found.
type Outcome int

// The outcomes of a lookup.
const (
	// Unknown: no upstream had the path, and some could not say (it
	// failed, timed out, or was left alone after failing).
	Unknown Outcome = iota
	// Absent: every upstream said it does not have the path, or gave an
	// answer that was refused.
	Absent
	// Found: an upstream holds the path.
	Found
)

func (o Outcome) String() string {
	switch o {
	case Found:
		return "found"
	case Absent:
		return "absent"
	}
	return "unknown"
}

// Hit is a narinfo an upstream holds, signed by one of its keys, whose NAR
// file has a FileHash, a FileSize and a compression larder supports.
type Hit struct {
	Upstream string           // the upstream's URL
	NarInfo  *narinfo.NarInfo // as the upstream serves it; shared, never to be changed
	Keys     []narinfo.PublicKey
	narURL   string // where its NAR file is
	size     int    // bytes of the narinfo as served
}

// FileKey returns the key larder serves the NAR file under,
// "nar/<file hash>.nar<ext>".
func (h *Hit) FileKey() string {
	ext, _ := compression.Ext(h.NarInfo.Compression)
	return "nar/" + h.NarInfo.FileHash.Nix32() + ".nar" + ext
}

// ValidSigs returns the signatures of the narinfo that its upstream's
// keys make valid: what a client that trusts the upstream needs.
func (h *Hit) ValidSigs() []string {
	fp := h.NarInfo.Fingerprint()
	var out []string
	for _, sig := range h.NarInfo.Sigs {
		if narinfo.Verify(h.Keys, fp, sig) {
			out = append(out, sig)
		}
	}
	return out
}

// Options configure a Client.
type Options struct {
	// Timeout bounds a lookup, all upstreams together; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// NegativeTTL is how long a miss is remembered; 0 means
	// DefaultNegativeTTL.
	NegativeTTL time.Duration
	// PositiveTTL is how long a hit is remembered; 0 means
	// DefaultPositiveTTL.
	PositiveTTL time.Duration
	// FetchTimeout is how long a NAR fetch waits for an upstream to
	// answer, and then for each of its next bytes; 0 means
	// DefaultFetchTimeout.
	FetchTimeout time.Duration
	// MaxNarInfoSize is the largest narinfo believed; 0: 1 MiB.
	MaxNarInfoSize int64
	// Transport makes the requests; nil: one of the client's own.
	Transport http.RoundTripper
	Logger    *slog.Logger
	Metrics   *metrics.Metrics
}

// Client asks upstreams. It is safe for concurrent use.
type Client struct {
	opts    Options
	http    *http.Client
	log     *slog.Logger
	metrics *metrics.Metrics
	answers *answerCache

	mu       sync.Mutex
	inflight map[answerKey]*call
	down     map[string]*health // by upstream URL
}

// New returns a Client.
func New(opts Options) *Client {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = DefaultNegativeTTL
	}
	if opts.PositiveTTL <= 0 {
		opts.PositiveTTL = DefaultPositiveTTL
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	if opts.MaxNarInfoSize <= 0 {
		opts.MaxNarInfoSize = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Transport == nil {
		opts.Transport = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	return &Client{
		opts:    opts,
		http:    &http.Client{Transport: opts.Transport, CheckRedirect: sameHostRedirect},
		log:     opts.Logger,
		metrics: opts.Metrics,
		answers: newAnswerCache(),

		inflight: map[answerKey]*call{},
		down:     map[string]*health{},
	}
}

// Timeout returns the bound of a lookup.
func (c *Client) Timeout() time.Duration { return c.opts.Timeout }

// sameHostRedirect follows a few redirects within the upstream's host
// only, so that an upstream cannot send larder's requests elsewhere.
func sameHostRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("too many redirects")
	}
	if req.URL.Host != via[0].URL.Host || req.URL.Scheme != via[0].URL.Scheme && req.URL.Scheme != "https" {
		return fmt.Errorf("redirect to %s leaves the upstream", req.URL.Redacted())
	}
	return nil
}

// Lookup asks the upstreams, at once, for the narinfo of the store path
// hash, and returns the first hit, or what it found of the others once
// all have answered or the timeout has passed. Recent answers are
// reused.
func (c *Client) Lookup(ctx context.Context, ups []Upstream, hash string) (*Hit, Outcome) {
	return c.lookup(ctx, ups, hash, true)
}

// Check is Lookup without the answers remembered before: it asks every
// upstream again (and remembers what they say).
func (c *Client) Check(ctx context.Context, ups []Upstream, hash string) (*Hit, Outcome) {
	return c.lookup(ctx, ups, hash, false)
}

func (c *Client) lookup(ctx context.Context, ups []Upstream, hash string, cached bool) (*Hit, Outcome) {
	if len(ups) == 0 {
		return nil, Absent
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	results := make(chan answer, len(ups))
	for _, up := range ups {
		go func() { results <- c.ask(ctx, up, hash, cached) }()
	}
	outcome := Absent
	for range ups {
		select {
		case a := <-results:
			switch {
			case a.hit != nil:
				return a.hit, Found
			case !a.absent:
				outcome = Unknown
			}
		case <-ctx.Done():
			return nil, Unknown
		}
	}
	return nil, outcome
}

// ask asks one upstream, unless a recent answer, a request in flight or
// its being down answers for it.
func (c *Client) ask(ctx context.Context, up Upstream, hash string, cached bool) answer {
	k := answerKey{up.URL, hash}
	now := time.Now()
	if cached {
		if a, ok := c.answers.get(k, now); ok {
			return a
		}
	}
	c.mu.Lock()
	if h := c.down[up.URL]; h != nil && now.Before(h.until) {
		c.mu.Unlock()
		c.metrics.UpstreamLookup(metrics.LookupError, 0)
		return answer{}
	}
	cl, joined := c.inflight[k]
	if !joined {
		if len(c.inflight) >= maxInflight {
			c.mu.Unlock()
			c.metrics.UpstreamLookup(metrics.LookupError, 0)
			return answer{}
		}
		cl = &call{done: make(chan struct{})}
		c.inflight[k] = cl
	}
	c.mu.Unlock()
	if !joined {
		// The request is not the asker's: it goes on for those who join
		// it, until the asker's lookup times out, however the asker's
		// request ends.
		deadline, _ := ctx.Deadline()
		go c.request(context.WithoutCancel(ctx), deadline, up, hash, k, cl)
	}
	select {
	case <-cl.done:
		return cl.a
	case <-ctx.Done():
		return answer{}
	}
}

// request asks up for the narinfo of hash, remembers the answer and hands
// it to the lookups waiting for it.
func (c *Client) request(ctx context.Context, deadline time.Time, up Upstream, hash string, k answerKey, cl *call) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	start := time.Now()
	a, result, err := c.fetchNarInfo(ctx, up, hash)
	took := time.Since(start)
	c.metrics.UpstreamLookup(result, took)
	switch result {
	case metrics.LookupHit:
		c.answers.put(k, a, time.Now().Add(c.opts.PositiveTTL))
	case metrics.LookupMiss, metrics.LookupRefused:
		c.answers.put(k, a, time.Now().Add(c.opts.NegativeTTL))
	}
	c.mu.Lock()
	switch result {
	case metrics.LookupError:
		h := c.down[up.URL]
		if h == nil {
			h = &health{}
			c.down[up.URL] = h
		}
		h.backoff = min(max(2*h.backoff, time.Second), 30*time.Second)
		h.until = time.Now().Add(h.backoff)
		c.log.Warn("upstream did not answer; asking it again later", "upstream", up.URL, "hash", hash,
			"after", took.Round(time.Millisecond), "retry_in", h.backoff, "err", err)
	default:
		delete(c.down, up.URL)
	}
	delete(c.inflight, k)
	c.mu.Unlock()
	if result == metrics.LookupRefused {
		c.log.Warn("upstream narinfo refused: nothing of it is served or stored", "upstream", up.URL, "hash", hash,
			"reason", err.Error())
	}
	cl.a = a
	close(cl.done)
}

// fetchNarInfo makes the request of request and judges the answer, which
// it returns with the result to count it as; err says why an answer was
// refused or failed.
func (c *Client) fetchNarInfo(ctx context.Context, up Upstream, hash string) (answer, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, up.URL+"/"+hash+".narinfo", nil)
	if err != nil {
		return answer{}, metrics.LookupError, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{}, metrics.LookupError, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden ||
		resp.StatusCode == http.StatusGone || resp.StatusCode == http.StatusUnauthorized:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return answer{absent: true}, metrics.LookupMiss, nil
	case resp.StatusCode != http.StatusOK:
		return answer{}, metrics.LookupError, fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxNarInfoSize+1))
	if err != nil {
		return answer{}, metrics.LookupError, fmt.Errorf("read the narinfo: %w", err)
	}
	refused := answer{absent: true}
	if int64(len(body)) > c.opts.MaxNarInfoSize {
		return refused, metrics.LookupRefused, fmt.Errorf("the narinfo is larger than %d bytes", c.opts.MaxNarInfoSize)
	}
	hit, err := c.judge(up, hash, body)
	if err != nil {
		return refused, metrics.LookupRefused, err
	}
	return answer{hit: hit}, metrics.LookupHit, nil
}

// judge parses an upstream's narinfo of hash and checks it, returning the
// hit it is or why it is refused.
func (c *Client) judge(up Upstream, hash string, body []byte) (*Hit, error) {
	ni, err := narinfo.Parse(body)
	if err != nil {
		return nil, err
	}
	if h := ni.HashPart(); h != hash {
		return nil, fmt.Errorf("StorePath %s is not the path asked for, %s", ni.StorePath, hash)
	}
	if !ni.Verify(up.Keys) {
		return nil, fmt.Errorf("no signature of %s is valid for the upstream's keys (%s)", ni.StorePath, keyNames(up.Keys))
	}
	if !compression.Supported(ni.Compression) {
		return nil, fmt.Errorf("larder does not support the Compression %s of %s", ni.Compression, ni.StorePath)
	}
	if ni.FileHash.IsZero() || ni.FileSize == 0 {
		return nil, fmt.Errorf("the narinfo of %s has no FileHash or FileSize, which larder needs to serve its NAR file", ni.StorePath)
	}
	narURL, err := resolve(up.URL, ni.URL)
	if err != nil {
		return nil, err
	}
	return &Hit{Upstream: up.URL, NarInfo: ni, Keys: up.Keys, narURL: narURL, size: len(body)}, nil
}

// keyNames lists the names of keys, for messages.
func keyNames(keys []narinfo.PublicKey) string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name()
	}
	return strings.Join(names, ", ")
}

// Distrust makes the client refuse hit's path at its upstream, as if the
// upstream had not answered it, for the negative TTL: its NAR file was not
// what its narinfo says, so the narinfo must not be served either.
func (c *Client) Distrust(hit *Hit, err error) {
	c.answers.put(answerKey{hit.Upstream, hit.NarInfo.HashPart()}, answer{absent: true}, time.Now().Add(c.opts.NegativeTTL))
	c.log.Warn("upstream narinfo refused: its NAR file is not the one it describes", "upstream", hit.Upstream,
		"store_path", hit.NarInfo.StorePath, "reason", err.Error())
}

// resolve returns the URL of a narinfo's NAR file, which must be a path
// below the upstream's root: the URL field is not signed, so it may not
// send larder elsewhere.
func resolve(root, rel string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("URL %q %s", rel, why)
	}
	if len(rel) > 1024 {
		return bad("is too long")
	}
	for seg := range strings.SplitSeq(rel, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return bad("is not a relative path below the upstream")
		}
		for _, r := range seg {
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("._+-=", r)) {
				return bad("has a character larder does not follow")
			}
		}
	}
	return root + "/" + rel, nil
}

// Fetch opens the NAR file of hit. The upstream must answer within the
// fetch timeout, and then send each of its next bytes within it, or the
// reader fails. The caller checks the bytes and closes the reader.
func (c *Client) Fetch(ctx context.Context, hit *Hit) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	watch := time.AfterFunc(c.opts.FetchTimeout, cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, hit.narURL, nil)
	if err != nil {
		watch.Stop()
		cancel()
		return nil, err
	}
	// Asked for as they are: a NAR file is compressed already, and its
	// hash is that of the bytes the upstream stores.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := c.http.Do(req)
	if err != nil {
		if fired := !watch.Stop(); fired {
			err = fmt.Errorf("no answer within %s", c.opts.FetchTimeout)
		}
		cancel()
		return nil, fmt.Errorf("fetch %s: %w", hit.narURL, err)
	}
	fail := func(format string, args ...any) (io.ReadCloser, error) {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("fetch %s: "+format, append([]any{hit.narURL}, args...)...)
	}
	switch {
	case resp.StatusCode != http.StatusOK:
		return fail("status %s", resp.Status)
	case resp.Header.Get("Content-Encoding") != "" && resp.Header.Get("Content-Encoding") != "identity":
		return fail("the upstream sent it with Content-Encoding %s", resp.Header.Get("Content-Encoding"))
	case resp.ContentLength >= 0 && uint64(resp.ContentLength) != hit.NarInfo.FileSize:
		return fail("it is %d bytes, but the narinfo's FileSize is %d", resp.ContentLength, hit.NarInfo.FileSize)
	}
	watch.Reset(c.opts.FetchTimeout)
	return &idleBody{body: resp.Body, watch: watch, idle: c.opts.FetchTimeout, cancel: cancel}, nil
}

// idleBody is a NAR file's body that fails once the upstream has sent
// nothing for idle.
type idleBody struct {
	body   io.ReadCloser
	watch  *time.Timer
	idle   time.Duration
	cancel context.CancelFunc
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if n > 0 {
		b.watch.Reset(b.idle)
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.watch.Stop()
	err := b.body.Close()
	b.cancel()
	return err
}

// answer is what one upstream said of one path: a hit, absent (a miss or
// a refused answer), or neither (unknown).
type answer struct {
	hit    *Hit
	absent bool
}

type answerKey struct {
	upstream, hash string
}

// call is a narinfo request in flight, which lookups of the same path
// share; a is set before done is closed.
type call struct {
	done chan struct{}
	a    answer
}

// health is what is known of an upstream that failed: it is left alone
// until until, for a backoff that doubles with each failure in a row.
type health struct {
	until   time.Time
	backoff time.Duration
}

// Package push uploads store paths from the local Nix store to a larder
// cache: it asks the cache once which paths of a closure it lacks, uploads
// those, several at a time and each after the paths it refers to, as NAR
// files compressed with zstd on the fly (in parts when they are large),
// then checks that the cache holds the whole closure. It talks to the
// server only through package client.
package push

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/larder-cache/larder/internal/client"
	"github.com/larder-cache/larder/internal/narinfo"
)

// Options choose how Push uploads.
type Options struct {
	Cache     string
	Jobs      int   // paths uploaded at once; 0: 4
	PartSize  int64 // NAR files larger than this go in parts of this size; 0: 32 MiB
	ZstdLevel int   // zstd's level, 1 to 22; 0: 3
	// Reporter, if set, is told of each path's progress.
	Reporter Reporter
}

// Reporter is told what Push does, from several goroutines at once.
type Reporter interface {
	// Planned is called once the cache has said what it lacks: of the
	// paths, cached are there already and toPush (narBytes of NARs) go.
	Planned(paths, cached int, toPush []PathInfo, narBytes int64)
	// Started is called when a path's upload starts.
	Started(p PathInfo)
	// Advanced is called now and then as a path's NAR is read, with how
	// much of the work on it is done, of total, in bytes of NAR read: a
	// NAR is read once, or twice if it is larger than a part (once to
	// name its file, once to send it), and total grows when that shows.
	Advanced(p PathInfo, done, total int64)
	// Finished is called when a path is in the cache (err nil, with the
	// bytes sent), could not be pushed, or was skipped for a reference
	// that could not.
	Finished(p PathInfo, sent int64, took time.Duration, err error)
}

// Result says what Push did.
type Result struct {
	Paths    int           // store paths asked for, closures included
	Cached   int           // of them already in the cache
	Upstream int           // of those, the ones the cache holds only because an upstream cache does
	Pushed   int           // uploaded
	Failed   int           // not uploaded, for an error or a reference that failed
	Sent     int64         // bytes of NAR files sent (compressed)
	NarBytes int64         // bytes of the NARs uploaded (uncompressed)
	Took     time.Duration //
}

// MinPartSize is the smallest part the server takes but for the last.
const MinPartSize = 5 << 20

// Push uploads what the cache lacks of paths (whose references outside
// paths the cache must hold already), and returns an error unless the
// cache holds every one of them at the end.
func Push(ctx context.Context, c *client.Client, st Store, paths []PathInfo, opts Options) (Result, error) {
	start := time.Now()
	if opts.Jobs <= 0 {
		opts.Jobs = 4
	}
	if opts.PartSize <= 0 {
		opts.PartSize = 32 << 20
	}
	if opts.PartSize < MinPartSize {
		return Result{}, fmt.Errorf("parts of %d bytes are smaller than the %d the server takes", opts.PartSize, MinPartSize)
	}
	if opts.ZstdLevel <= 0 {
		opts.ZstdLevel = 3
	}
	if opts.Reporter == nil {
		opts.Reporter = nopReporter{}
	}
	paths = uniquePaths(paths)
	res := Result{Paths: len(paths)}
	hashes := make([]string, len(paths))
	for i, p := range paths {
		hashes[i] = hashPart(p.Path)
	}
	missing, upstream, err := c.Missing(ctx, opts.Cache, hashes)
	if err != nil {
		return res, fmt.Errorf("ask cache %s what it lacks: %w", opts.Cache, err)
	}
	asked := map[string]bool{}
	for _, h := range hashes {
		asked[h] = true
	}
	for _, h := range upstream {
		if asked[h] {
			res.Upstream++
			asked[h] = false
		}
	}
	lacks := map[string]bool{}
	for _, h := range missing {
		lacks[h] = true
	}
	var todo []PathInfo
	var narBytes int64
	for _, p := range paths {
		if lacks[hashPart(p.Path)] {
			todo = append(todo, p)
			narBytes += p.NarSize
		}
	}
	res.Cached = len(paths) - len(todo)
	opts.Reporter.Planned(len(paths), res.Cached, todo, narBytes)

	u := &uploader{c: c, st: st, opts: opts}
	u.run(ctx, todo, &res)
	res.Took = time.Since(start)
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	// What counts is what the cache holds now.
	still, _, err := c.Missing(ctx, opts.Cache, hashes)
	if err != nil {
		return res, fmt.Errorf("check that cache %s holds the paths: %w", opts.Cache, err)
	}
	if len(still) > 0 {
		return res, fmt.Errorf("cache %s lacks %d of the %d paths after the push", opts.Cache, len(still), len(paths))
	}
	return res, nil
}

// uniquePaths drops repeated paths, keeping the first.
func uniquePaths(paths []PathInfo) []PathInfo {
	seen := map[string]bool{}
	var out []PathInfo
	for _, p := range paths {
		if !seen[p.Path] {
			seen[p.Path] = true
			out = append(out, p)
		}
	}
	return out
}

// hashPart returns the hash part of a store path.
func hashPart(storePath string) string {
	base := path.Base(storePath)
	if len(base) < 32 {
		return base
	}
	return base[:32]
}

// uploader uploads paths: their NAR files several at a time in any
// order, largest first, and each narinfo, which makes its path visible,
// once the path's NAR file is up and the narinfos of the paths of the same
// push it refers to are: so the cache never shows a path whose references
// it lacks, and a deep chain of dependencies does not make the uploads
// wait on one another.
type uploader struct {
	c    *client.Client
	st   Store
	opts Options
}

// node is a path of the push, as the uploader follows it.
type node struct {
	p         PathInfo
	m         measurement
	started   time.Time
	refs      []*node // the paths of this push it refers to
	uploaded  bool    // its NAR file is up
	claimed   bool    // its narinfo is being sent
	published bool    // its narinfo is up
	failed    error
}

// run uploads todo and counts the outcome in res.
func (u *uploader) run(ctx context.Context, todo []PathInfo, res *Result) {
	sc := newSchedule(u, todo, res)
	jobs := make(chan *node, len(sc.order))
	for _, n := range sc.order {
		jobs <- n
	}
	close(jobs)
	var wg sync.WaitGroup
	for range u.opts.Jobs {
		wg.Go(func() {
			for n := range jobs {
				if ctx.Err() != nil {
					return
				}
				n.started = time.Now()
				u.opts.Reporter.Started(n.p)
				m, err := u.uploadNar(ctx, n.p)
				sc.mu.Lock()
				n.m = m
				if err != nil {
					n.claimed = true
					sc.finish(n, err)
				} else {
					n.uploaded = true
				}
				sc.mu.Unlock()
				sc.publish(ctx)
			}
		})
	}
	wg.Wait()
	sc.stop()
}

// schedule is the state of a push's paths, which the uploader's workers
// share under mu.
type schedule struct {
	u     *uploader
	res   *Result
	mu    sync.Mutex
	order []*node // largest NAR first
}

// newSchedule links the paths of todo to those of todo they refer to.
func newSchedule(u *uploader, todo []PathInfo, res *Result) *schedule {
	nodes := make(map[string]*node, len(todo))
	order := make([]*node, 0, len(todo))
	for _, p := range todo {
		n := &node{p: p}
		nodes[p.Path] = n
		order = append(order, n)
	}
	for _, n := range order {
		for _, r := range n.p.References {
			if d, ok := nodes[r]; ok && r != n.p.Path {
				n.refs = append(n.refs, d)
			}
		}
	}
	slices.SortStableFunc(order, func(a, b *node) int { return cmp.Compare(b.p.NarSize, a.p.NarSize) })
	return &schedule{u: u, res: res, order: order}
}

// finish records a path's outcome; called with mu held.
func (sc *schedule) finish(n *node, err error) {
	if err != nil {
		n.failed = err
		sc.res.Failed++
	} else {
		n.published = true
		sc.res.Pushed++
		sc.res.Sent += n.m.fileSize
		sc.res.NarBytes += n.p.NarSize
	}
	sc.u.opts.Reporter.Finished(n.p, n.m.fileSize, time.Since(n.started), err)
}

// next claims a path whose narinfo may go now, failing those that never
// can; called with mu held.
func (sc *schedule) next() *node {
	for _, n := range sc.order {
		if !n.uploaded || n.claimed || n.failed != nil {
			continue
		}
		ready := true
		for _, r := range n.refs {
			switch {
			case r.failed != nil:
				n.claimed = true
				sc.finish(n, fmt.Errorf("%s, which it refers to, could not be pushed", r.p.Path))
				return sc.next()
			case !r.published:
				ready = false
			}
		}
		if ready {
			n.claimed = true
			return n
		}
	}
	return nil
}

// publish sends every narinfo that may go.
func (sc *schedule) publish(ctx context.Context) {
	for {
		sc.mu.Lock()
		n := sc.next()
		sc.mu.Unlock()
		if n == nil {
			return
		}
		err := sc.u.publish(ctx, n.p, n.m)
		sc.mu.Lock()
		sc.finish(n, err)
		sc.mu.Unlock()
	}
}

// stop fails what is left once the workers are done: what failed keeps
// what refers to it from being published, and the push may have been
// stopped.
func (sc *schedule) stop() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for sc.next() != nil {
	}
	for _, n := range sc.order {
		if !n.published && n.failed == nil {
			sc.finish(n, errors.New("not pushed: the push was stopped"))
		}
	}
}

// uploadNar uploads the NAR file of one path and returns what it measured
// of it.
func (u *uploader) uploadNar(ctx context.Context, p PathInfo) (measurement, error) {
	want, err := narinfo.ParseHash(p.NarHash)
	if err != nil {
		return measurement{}, fmt.Errorf("%s: the NAR hash Nix gives: %w", p.Path, err)
	}
	// First pass: the hashes and sizes of the NAR and of its compressed
	// form, which names the file; a file that fits in a part is kept.
	m, err := u.measure(ctx, p)
	if err != nil {
		return measurement{}, err
	}
	if m.narHash != want || m.narSize != p.NarSize {
		return measurement{}, fmt.Errorf("%s: its NAR has sha256:%s and %d bytes, but Nix records %s and %d bytes: the store is damaged",
			p.Path, m.narHash.Nix32(), m.narSize, want, p.NarSize)
	}
	m.key = "nar/" + m.fileHash.Nix32() + ".nar.zst"
	if m.small != nil {
		err = u.c.Put(ctx, u.opts.Cache, m.key, "application/x-nix-nar", m.small)
		m.small = nil // sent: let it go
	} else {
		err = u.inParts(ctx, p, m.key, m)
	}
	if err != nil {
		return measurement{}, fmt.Errorf("%s: upload %s: %w", p.Path, m.key, err)
	}
	return m, nil
}

// publish uploads the narinfo of a path whose NAR file is up.
func (u *uploader) publish(ctx context.Context, p PathInfo, m measurement) error {
	ni, err := narInfoOf(p, m.key, m)
	if err != nil {
		return err
	}
	if err := u.c.Put(ctx, u.opts.Cache, hashPart(p.Path)+".narinfo", "text/x-nix-narinfo", ni); err != nil {
		return fmt.Errorf("%s: upload its narinfo: %w", p.Path, err)
	}
	return nil
}

// measurement is what the first pass over a NAR found.
type measurement struct {
	narHash, fileHash narinfo.Hash
	narSize, fileSize int64
	small             []byte // the compressed file, if it fits in a part
	key               string // the file's cache-relative key
}

// compress streams the NAR of p through zstd into w, reporting progress as
// pass 1 or 2 of passes, and returns the NAR's hash and size.
func (u *uploader) compress(ctx context.Context, p PathInfo, w io.Writer, pass, passes int64) (narinfo.Hash, int64, error) {
	r, err := u.st.Dump(ctx, p.Path)
	if err != nil {
		return narinfo.Hash{}, 0, err
	}
	enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(u.opts.ZstdLevel)),
		// One goroutine: the output depends on nothing but the input and
		// the level, so that the second pass yields the first's bytes.
		zstd.WithEncoderConcurrency(1))
	if err != nil {
		r.Close()
		return narinfo.Hash{}, 0, err
	}
	h := sha256.New()
	pr := &progressReader{r: r, report: func(n int64) {
		u.opts.Reporter.Advanced(p, (pass-1)*p.NarSize+n, passes*p.NarSize)
	}}
	n, err := io.Copy(enc, io.TeeReader(pr, h))
	cerr := enc.Close()
	derr := r.Close()
	if err = errors.Join(err, cerr, derr); err != nil {
		return narinfo.Hash{}, 0, fmt.Errorf("%s: compress its NAR: %w", p.Path, err)
	}
	return sum(h), n, nil
}

// measure makes the first pass.
func (u *uploader) measure(ctx context.Context, p PathInfo) (measurement, error) {
	cw := &capWriter{h: sha256.New(), max: u.opts.PartSize}
	narHash, narSize, err := u.compress(ctx, p, cw, 1, 1)
	if err != nil {
		return measurement{}, err
	}
	m := measurement{narHash: narHash, narSize: narSize, fileHash: sum(cw.h), fileSize: cw.n}
	if !cw.over {
		m.small = cw.buf
	}
	return m, nil
}

// inParts makes the second pass, uploading the compressed NAR in parts.
func (u *uploader) inParts(ctx context.Context, p PathInfo, key string, m measurement) error {
	id, err := u.c.CreateUpload(ctx, u.opts.Cache, key)
	if err != nil {
		return err
	}
	pw := &partWriter{ctx: ctx, c: u.c, cache: u.opts.Cache, id: id, size: int(u.opts.PartSize), h: sha256.New()}
	_, _, err = u.compress(ctx, p, pw, 2, 2)
	if err == nil {
		err = pw.flush()
	}
	if err == nil && (sum(pw.h) != m.fileHash || pw.n != m.fileSize) {
		err = fmt.Errorf("the second compression of its NAR gave other bytes than the first (%d, not %d)", pw.n, m.fileSize)
	}
	if err == nil {
		err = u.c.CompleteUpload(ctx, u.opts.Cache, id, pw.parts)
	}
	if err != nil {
		if aerr := u.c.AbortUpload(context.WithoutCancel(ctx), u.opts.Cache, id); aerr != nil {
			err = errors.Join(err, fmt.Errorf("abort the upload: %w", aerr))
		}
	}
	return err
}

// narInfoOf renders the narinfo of p served by the NAR file key.
func narInfoOf(p PathInfo, key string, m measurement) ([]byte, error) {
	ni := &narinfo.NarInfo{
		StorePath:   p.Path,
		URL:         key,
		Compression: "zstd",
		FileHash:    m.fileHash,
		FileSize:    uint64(m.fileSize),
		NarHash:     m.narHash,
		NarSize:     uint64(m.narSize),
		Sigs:        slices.Clone(p.Signatures),
		CA:          p.CA,
	}
	for _, r := range p.References {
		ni.References = append(ni.References, path.Base(r))
	}
	slices.Sort(ni.References)
	if p.Deriver != "" {
		ni.Deriver = path.Base(p.Deriver)
	}
	slices.Sort(ni.Sigs)
	if err := ni.Validate(); err != nil {
		return nil, fmt.Errorf("%s: the narinfo Nix's metadata makes: %w", p.Path, err)
	}
	return ni.Bytes(), nil
}

func sum(h hash.Hash) narinfo.Hash {
	var out narinfo.Hash
	copy(out[:], h.Sum(nil))
	return out
}

// capWriter hashes and counts what it is given and keeps it while it fits
// in max bytes.
type capWriter struct {
	h    hash.Hash
	n    int64
	max  int64
	buf  []byte
	over bool
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.n += int64(len(p))
	if !w.over {
		if w.n > w.max {
			w.over, w.buf = true, nil
		} else {
			w.buf = append(w.buf, p...)
		}
	}
	return len(p), nil
}

// partWriter cuts what it is given into parts of size bytes and uploads
// each (the client retries a part that fails for now).
type partWriter struct {
	ctx       context.Context
	c         *client.Client
	cache, id string
	size      int
	buf       []byte
	h         hash.Hash
	n         int64
	parts     []client.Part
}

func (w *partWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.n += int64(len(p))
	written := len(p)
	for len(p) > 0 {
		k := min(len(p), w.size-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == w.size {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return written, nil
}

// flush uploads what is buffered as the next part.
func (w *partWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	part, err := w.c.UploadPart(w.ctx, w.cache, w.id, len(w.parts)+1, w.buf)
	if err != nil {
		return fmt.Errorf("part %d: %w", len(w.parts)+1, err)
	}
	w.parts = append(w.parts, part)
	w.buf = w.buf[:0]
	return nil
}

// progressReader reports how much has been read, now and then.
type progressReader struct {
	r      io.Reader
	n      int64
	last   time.Time
	report func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if now := time.Now(); err != nil || now.Sub(p.last) > 100*time.Millisecond {
		p.last = now
		p.report(p.n)
	}
	return n, err
}

type nopReporter struct{}

func (nopReporter) Planned(int, int, []PathInfo, int64)            {}
func (nopReporter) Started(PathInfo)                               {}
func (nopReporter) Advanced(PathInfo, int64, int64)                {}
func (nopReporter) Finished(PathInfo, int64, time.Duration, error) {}

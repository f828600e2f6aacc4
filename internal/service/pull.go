package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/larder-cache/larder/internal/metrics"
	"github.com/larder-cache/larder/internal/narinfo"
	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/upstream"
)

// A NAR file only an upstream holds is fetched once for all the readers
// that want it at the same time: the fetch writes it to a spool file as
// it verifies it (and stores it, if the cache pulls through), and each
// reader follows the spool file from its own offset, so that a reader
// that comes late reads what has arrived so far, and a range request is
// served as its bytes arrive. The last byte of the file is held back from
// every reader until the whole file is verified: a reader of a file that
// fails gets an answer cut short, never a whole forged file.

// Bounds of what readers can make the service hold: NAR files fetched at
// once (each one spool file, of at most max_upload_size bytes), and readers
// of one.
const (
	maxPulls       = 32
	maxPullReaders = 64
)

// UpstreamNar is a NAR file of a path that only an upstream of a cache
// holds, as the cache serves it.
type UpstreamNar struct {
	FileHash string // nix32
	Size     int64
	key      nixkey.Key
	hit      *upstream.Hit
	keep     bool // the cache pulls through: the file is stored
}

// UpstreamNar returns the NAR file under key of the store path hash (which
// the URL of the narinfo the cache served names), if the cache serves it
// from an upstream: the path is upstream-only in the cache, or the cache
// pulls through and does not hold the path. The upstream must hold the
// path now, with that NAR file.
func (s *Service) UpstreamNar(ctx context.Context, c Cache, key nixkey.Key, hash string) (UpstreamNar, error) {
	none := errorf(CodeNotFound, "cache %s has no %s", c.entry.Name, key)
	u := c.entry.up
	if k, err := nixkey.Parse(hash + ".narinfo"); err != nil || k.Kind != nixkey.NarInfo || len(u.list) == 0 {
		return UpstreamNar{}, none
	}
	rec, _, err := s.meta.GetNarInfo(ctx, c.entry.ID, hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if !u.pull {
			return UpstreamNar{}, none
		}
	case err != nil:
		return UpstreamNar{}, internal(err, "look up %s.narinfo", hash)
	case rec.Upstream == "":
		return UpstreamNar{}, none // stored: its file is the cache's own
	}
	hit, _ := s.up.Lookup(ctx, u.list, hash)
	if hit == nil || hit.FileKey() != key.String() || rec.Upstream != "" && !sameContents(hit.NarInfo, rec) {
		return UpstreamNar{}, none
	}
	return UpstreamNar{FileHash: key.Hash, Size: int64(hit.NarInfo.FileSize), key: key, hit: hit, keep: u.pull}, nil
}

// ReadUpstreamNar returns the bytes of n from offset, at most length of
// them (length < 0: to the end), as they arrive from the upstream: it joins
// the fetch of the file in progress, or starts one. A read fails if the
// file fails (the upstream fails, or the file is not the one its signed
// narinfo describes): the caller must then cut its answer short, so that
// the client cannot take it for whole.
func (s *Service) ReadUpstreamNar(ctx context.Context, c Cache, n UpstreamNar, offset, length int64) (io.ReadCloser, error) {
	end := n.Size
	if length >= 0 {
		end = min(n.Size, offset+length)
	}
	k := pullKey{c.entry.ID, n.FileHash}
	s.pulls.mu.Lock()
	if p := s.pulls.m[k]; p != nil {
		defer s.pulls.mu.Unlock()
		return p.join(ctx, offset, end)
	}
	s.pulls.mu.Unlock()
	// None in progress: perhaps one stored it and ended.
	if nar, err := s.meta.CacheNar(ctx, c.entry.ID, n.FileHash); err == nil && !nar.Missing {
		return s.ReadNar(ctx, c, uploadedFile(nar, n.key), offset, end-offset)
	}
	s.pulls.mu.Lock()
	defer s.pulls.mu.Unlock()
	if p := s.pulls.m[k]; p != nil {
		return p.join(ctx, offset, end)
	}
	if len(s.pulls.m) >= maxPulls {
		return nil, errorf(CodeUnavailable, "%d NAR files are being fetched from upstreams, the most at once; try again", maxPulls)
	}
	f, err := os.CreateTemp(s.spoolDir, "larder-pull-*")
	if err != nil {
		return nil, internal(err, "make a spool file")
	}
	pctx, cancel := context.WithCancel(context.Background())
	p := &pull{size: n.Size, f: f, changed: make(chan struct{}), refs: 1, cancel: cancel, keep: n.keep}
	r, err := p.join(ctx, offset, end)
	if err != nil {
		p.release()
		return nil, err
	}
	s.pulls.m[k] = p
	go s.runPull(pctx, c, n, p, k)
	return r, nil
}

// runPull fetches n into p, verifies it, stores it if the cache pulls
// through, and tells p's readers how it ended.
func (s *Service) runPull(ctx context.Context, c Cache, n UpstreamNar, p *pull, k pullKey) {
	defer p.release()
	ni := n.hit.NarInfo
	counted := &countingReader{}
	err := func() error {
		body, err := s.up.Fetch(ctx, n.hit)
		if err != nil {
			return err
		}
		defer body.Close()
		counted.r = body
		in := io.TeeReader(counted, p)
		check := func(got store.Nar) error { return matchesNarInfo(got, ni) }
		if !n.keep {
			got, err := s.verifyNar(ctx, n.key, in, n.Size, func(r io.Reader) error {
				_, err := io.Copy(io.Discard, r)
				return err
			})
			if err == nil {
				err = check(got)
			}
			return err
		}
		if err := s.storeNar(ctx, c, n.key, in, n.Size, check); err != nil {
			return err
		}
		return s.recordPulled(ctx, c, n)
	}()
	s.pulls.mu.Lock()
	delete(s.pulls.m, k)
	s.pulls.mu.Unlock()
	// The readers learn the end last: by then a forged path is distrusted
	// and logged, so that what a reader does next sees it so.
	defer p.finish(err)
	switch {
	case err != nil:
		s.metrics.UpstreamNar(metrics.NarFailed, counted.n)
		var se *Error
		if errors.As(err, &se) && se.Code == CodeInvalid || errors.Is(err, errNotAsSigned) {
			s.up.Distrust(n.hit, err)
		}
		s.log.Error("NAR file from an upstream refused: nothing of it is stored or served", "cache", c.entry.Name,
			"store_path", ni.StorePath, "upstream", n.hit.Upstream, "nar", n.key.String(), "bytes", counted.n, "err", err)
	case n.keep:
		s.metrics.UpstreamNar(metrics.NarStored, counted.n)
		s.log.Info("NAR file pulled through from an upstream", "cache", c.entry.Name, "store_path", ni.StorePath,
			"upstream", n.hit.Upstream, "bytes", counted.n)
	default:
		s.metrics.UpstreamNar(metrics.NarServed, counted.n)
	}
}

// errNotAsSigned marks a NAR file whose contents are not those its
// upstream's signed narinfo describes.
var errNotAsSigned = errors.New("the NAR file is not the one its signed narinfo describes")

// matchesNarInfo checks a verified NAR file against the narinfo of its
// upstream, whose signature covers NarHash and NarSize.
func matchesNarInfo(got store.Nar, ni *narinfo.NarInfo) error {
	switch {
	case got.NarHash != ni.NarHash.Nix32():
		return fmt.Errorf("%w: its NAR hashes to sha256:%s, the narinfo of %s says %s", errNotAsSigned, got.NarHash, ni.StorePath, ni.NarHash)
	case got.NarSize != int64(ni.NarSize):
		return fmt.Errorf("%w: its NAR is %d bytes, the narinfo of %s says %d", errNotAsSigned, got.NarSize, ni.StorePath, ni.NarSize)
	case got.Compression != ni.Compression:
		return fmt.Errorf("%w: it is compressed with %s, the narinfo of %s says %s", errNotAsSigned, got.Compression, ni.StorePath, ni.Compression)
	}
	return nil
}

// recordPulled records the narinfo of a NAR file pulled through and
// stored: it replaces an upstream-only narinfo of the path, and leaves
// one stored meanwhile.
func (s *Service) recordPulled(ctx context.Context, c Cache, n UpstreamNar) error {
	ni := n.hit.NarInfo
	hash := ni.HashPart()
	rec := store.NarInfo{
		CacheID:    c.entry.ID,
		Hash:       hash,
		Key:        hash + ".narinfo",
		StorePath:  ni.StorePath,
		FileHash:   n.FileHash,
		NarHash:    ni.NarHash.Nix32(),
		NarSize:    int64(ni.NarSize),
		References: ni.References,
		Deriver:    ni.Deriver,
		System:     ni.System,
		CA:         ni.CA,
		Sigs:       withoutKey(n.hit.ValidSigs(), c.entry.key.Name()),
	}
	created := false
	_, err := s.meta.PutNarInfo(ctx, rec, func(old *store.NarInfo) (store.NarInfo, error) {
		created = old == nil
		switch {
		case old == nil:
			return rec, nil
		case old.Upstream == "":
			return *old, nil // stored meanwhile
		}
		m := rec
		m.CreatedAt = old.CreatedAt
		for _, sig := range old.Sigs {
			if len(m.Sigs) < s.limits.MaxSignatures && !slices.Contains(m.Sigs, sig) {
				m.Sigs = append(m.Sigs, sig)
			}
		}
		return m, nil
	})
	if err != nil {
		return s.writeFailed(ctx, c, err, "record %s pulled through to cache %s", ni.StorePath, c.entry.Name)
	}
	s.rendered.forget(c.entry.ID, hash)
	if created {
		s.index.Add(c.entry.ID, hash)
	}
	s.access.note(c.entry.ID, hash)
	return nil
}

type pullKey struct {
	cacheID  int64
	fileHash string
}

// pulls are the fetches in progress.
type pulls struct {
	mu sync.Mutex
	m  map[pullKey]*pull
}

// pull is the fetch of one NAR file into a spool file that its readers
// follow. The spool file goes once the fetch and every reader are done.
type pull struct {
	size   int64
	keep   bool
	f      *os.File
	cancel context.CancelFunc

	mu      sync.Mutex
	written int64
	done    bool
	err     error
	changed chan struct{} // closed, and replaced, when written or done change
	readers int
	refs    int // the readers and the fetch
}

// Write appends fetched bytes to the spool file and wakes the readers.
func (p *pull) Write(b []byte) (int, error) {
	n, err := p.f.Write(b)
	p.mu.Lock()
	p.written += int64(n)
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	return n, err
}

// finish records how the fetch ended.
func (p *pull) finish(err error) {
	p.mu.Lock()
	p.done, p.err = true, err
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// join adds a reader of the bytes from offset to end. It is called with
// the pulls locked, so that the pull is not dropped in between.
func (p *pull) join(ctx context.Context, offset, end int64) (io.ReadCloser, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.readers >= maxPullReaders {
		return nil, errorf(CodeUnavailable, "%d readers are waiting for this NAR file, the most at once; try again", maxPullReaders)
	}
	p.readers++
	p.refs++
	return &pullReader{p: p, ctx: ctx, pos: offset, end: end}, nil
}

// release drops a reference, and the spool file with the last one. A
// fetch that is not kept stops when its last reader goes.
func (p *pull) release() {
	p.mu.Lock()
	p.refs--
	last := p.refs == 0
	p.mu.Unlock()
	if last {
		p.cancel()
		name := p.f.Name()
		p.f.Close()
		os.Remove(name)
	}
}

// pullReader reads a pull's spool file as it grows.
type pullReader struct {
	p        *pull
	ctx      context.Context
	pos, end int64
	closed   bool
}

func (r *pullReader) Read(b []byte) (int, error) {
	p := r.p
	for {
		if r.pos >= r.end {
			return 0, io.EOF
		}
		p.mu.Lock()
		if p.err != nil {
			p.mu.Unlock()
			return 0, fmt.Errorf("the NAR file failed: %w", p.err)
		}
		avail := p.written
		if !p.done {
			avail = min(avail, p.size-1) // the last byte waits for the verdict
		}
		avail = min(avail, r.end)
		changed := p.changed
		p.mu.Unlock()
		if r.pos < avail {
			n, err := p.f.ReadAt(b[:min(int64(len(b)), avail-r.pos)], r.pos)
			r.pos += int64(n)
			if err == io.EOF && n > 0 {
				err = nil
			}
			return n, err
		}
		select {
		case <-changed:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		case <-time.After(time.Minute):
			// Nothing for a minute: the fetch has a timeout of its own,
			// this only keeps a reader from waiting on a lost wake-up.
		}
	}
}

func (r *pullReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	p := r.p
	p.mu.Lock()
	p.readers--
	stop := p.readers == 0 && !p.done && !p.keep
	p.mu.Unlock()
	if stop {
		p.cancel() // nobody wants what is not stored
	}
	p.release()
	return nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

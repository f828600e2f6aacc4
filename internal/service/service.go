// Package service is larder's core: the only code that combines the
// BlobStore and the MetaStore. It owns every invariant of the cache: uploads
// are verified before they become visible, each NAR file is stored once,
// narinfos are signed with their cache's key, and tokens decide who reads and
// writes which cache.
//
// Front ends (the Nix HTTP protocol with larder's JSON API, the S3 API, the
// CLI) translate their protocol into calls of Service and map its errors,
// whose codes are defined in errors.go, back. This package must not import a front
// end or a store implementation.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/larder-cache/larder/internal/compression"
	"github.com/larder-cache/larder/internal/metrics"
	"github.com/larder-cache/larder/internal/presence"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/upstream"
)

// Limits bound what an upload may be.
type Limits struct {
	MaxNarInfoSize int64   // bytes of a narinfo, as uploaded and as served
	MaxSignatures  int     // signatures a narinfo keeps besides the cache's; 0: DefaultMaxSignatures
	MaxUploadSize  int64   // bytes of a NAR file as uploaded
	MaxNarSize     int64   // bytes of a NAR after decompression
	MaxFileSize    int64   // bytes of a listing, log, realisation or debuginfo
	MaxRatio       float64 // NarSize/FileSize once NarSize passes RatioFloor; 0: none
	RatioFloor     int64
	// MaxDecoderWindow is the largest window or dictionary a compressed
	// NAR may need; 0 means compression.DefaultMaxWindow.
	MaxDecoderWindow int64
	// DecoderMemory is the memory the decompressors of all uploads may
	// hold at once; 0 means DefaultDecoderMemory.
	DecoderMemory int64
	// DecoderMemoryWait is how long an upload waits for decoder memory;
	// 0 means DefaultDecoderMemoryWait.
	DecoderMemoryWait time.Duration
}

// DefaultMaxSignatures is how many signatures a narinfo keeps, besides the
// cache's own, unless Limits.MaxSignatures says otherwise: enough for every
// builder and re-signer a team has, few enough that merging the signatures
// of re-uploads cannot grow a narinfo every substituter reads.
const DefaultMaxSignatures = 16

// Options configure a Service.
type Options struct {
	Meta   store.MetaStore
	Blobs  store.BlobStore
	Logger *slog.Logger
	Limits Limits
	// KeyHost is part of the names of signing keys made for new caches
	// ("<cache>.<KeyHost>-1"), so that caches of different servers have
	// different key names.
	KeyHost string
	// HeldTTL is how long a narinfo uploaded before its NAR waits for it.
	HeldTTL time.Duration
	// GCInterval is how often Run collects garbage; 0: never.
	GCInterval time.Duration
	// GCGrace is how long anything recently pushed, read or uploaded is
	// kept whatever a cache's policy says; 0 means DefaultGCGrace.
	GCGrace time.Duration
	// Metrics records collections and the use of upstreams; nil records
	// nothing.
	Metrics *metrics.Metrics
	// HistoryInterval is how often Run samples the history of caches; 0
	// means DefaultHistoryInterval.
	HistoryInterval time.Duration
	// Upstream configures how caches use their upstreams.
	Upstream UpstreamOptions
	// Chunking configures the storage of NAR files as chunks.
	Chunking ChunkOptions
	// SnapshotPath is the file the presence index is kept in between runs
	// (see snapshot.go): New starts from it, Run writes it. Empty: none.
	SnapshotPath string
}

// Service is the cache service. It is safe for concurrent use.
type Service struct {
	meta    store.MetaStore
	blobs   store.BlobStore
	log     *slog.Logger
	limits  Limits
	decoder compression.Options // every verifying upload decompresses within it
	keyHost string
	heldTTL time.Duration
	gcEvery time.Duration
	gcGrace time.Duration
	index   *presence.Index
	access  *tracker
	// rendered keeps narinfos as recently served; whatever changes or
	// removes a narinfo must forget its rendering.
	rendered *renderCache
	metrics  *metrics.Metrics
	// lookups counts narinfo lookups between samples of the history.
	lookups      *lookups
	historyEvery time.Duration
	// gcMu keeps collections of this process, and dry runs of the
	// dashboard, from running at once: they share this process's lease.
	gcMu sync.Mutex
	// up asks the upstreams of caches; pulls are the NAR files being
	// fetched from them, into spool files in spoolDir.
	up       *upstream.Client
	pulls    pulls
	spoolDir string
	recheck  time.Duration
	// chunking says how NAR files are stored as chunks; packs queues
	// those that arrived, and packMu lets one be chunked at a time.
	// uploads tracks NAR uploads, which queued chunking waits for.
	chunking ChunkOptions
	packs    chan queuedPack
	packMu   sync.Mutex
	uploads  activity

	mu     sync.RWMutex
	caches map[string]*cacheEntry // by name

	syncMu  sync.Mutex       // serialises Sync
	lastSeq int64            // highest narinfo Seq in the index
	lastKey store.NarInfoKey // the key with that Seq, named by snapshots
	// base is when the index was last loaded in full from the store.
	base time.Time
	// snapPath is the snapshot file; snapSeq and snapChanges are lastSeq
	// and the index's count of changes when it was last written or read,
	// and fromSnapshot says whether New started from it.
	snapPath     string
	snapSeq      int64
	snapChanges  uint64
	fromSnapshot bool
}

// New returns a Service over the given stores, with its cache list and
// presence index loaded.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Meta == nil || opts.Blobs == nil {
		return nil, errors.New("service needs a metadata store and a blob store")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		meta:     opts.Meta,
		blobs:    opts.Blobs,
		log:      log,
		limits:   opts.Limits,
		keyHost:  opts.KeyHost,
		heldTTL:  opts.HeldTTL,
		gcEvery:  opts.GCInterval,
		gcGrace:  opts.GCGrace,
		index:    presence.New(),
		access:   newTracker(),
		rendered: newRenderCache(),
		metrics:  opts.Metrics,
		caches:   map[string]*cacheEntry{},
		lookups:  newLookups(),

		historyEvery: opts.HistoryInterval,
		up: upstream.New(upstream.Options{
			Timeout:        opts.Upstream.Timeout,
			NegativeTTL:    opts.Upstream.NegativeTTL,
			PositiveTTL:    opts.Upstream.PositiveTTL,
			MaxNarInfoSize: opts.Limits.MaxNarInfoSize,
			Transport:      opts.Upstream.Transport,
			Logger:         log.With("part", "upstream"),
			Metrics:        opts.Metrics,
		}),
		pulls:    pulls{m: map[pullKey]*pull{}},
		spoolDir: opts.Upstream.SpoolDir,
		recheck:  opts.Upstream.Recheck,
		chunking: opts.Chunking,
		packs:    make(chan queuedPack, packQueue),
		snapPath: opts.SnapshotPath,
	}
	if err := opts.Chunking.Chunk.Check(); err != nil {
		return nil, err
	}
	if s.recheck <= 0 {
		s.recheck = DefaultUpstreamRecheck
	}
	if s.historyEvery <= 0 {
		s.historyEvery = DefaultHistoryInterval
	}
	if s.keyHost == "" {
		s.keyHost = "larder"
	}
	if s.heldTTL <= 0 {
		s.heldTTL = time.Hour
	}
	if s.gcGrace <= 0 {
		s.gcGrace = DefaultGCGrace
	}
	if s.limits.MaxSignatures <= 0 {
		s.limits.MaxSignatures = DefaultMaxSignatures
	}
	s.decoder = newDecoderOptions(opts.Limits)
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	// Loading the presence index leaves garbage about its own size (the
	// pages of keys read, the buckets outgrown): hand it back now rather
	// than keep it resident (at ten million paths, ~180 MB instead of ~110).
	debug.FreeOSMemory()
	return s, nil
}

// load loads the cache list and the presence index: from the snapshot and
// the keys committed since if it can, else every key.
func (s *Service) load(ctx context.Context) error {
	began := time.Now()
	s.loadSnapshot(ctx)
	if !s.fromSnapshot {
		s.base = began // keys removed once the load began may be in the index
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if err := s.reloadCaches(ctx); err != nil {
		return err
	}
	if err := s.syncKeys(ctx, true); err != nil {
		return err
	}
	s.log.Info("loaded presence index", "from_snapshot", s.fromSnapshot, "seq", s.lastSeq,
		"took", time.Since(began).Round(time.Millisecond))
	return nil
}

// IndexBytes returns the memory the presence index holds.
func (s *Service) IndexBytes() int64 { return s.index.Bytes() }

// Run keeps the service in step with changes other processes make to the
// stores (the CLI, other replicas), drops narinfos held too long and
// expired login sessions, checks upstream-only paths again as they age,
// records reads, samples the history of caches every HistoryInterval,
// stores NAR files as chunks as they arrive (see packPeriodically) and
// collects garbage every GCInterval, until ctx ends. A collection runs
// beside the rest, which it does not hold up; Run returns once it has
// stopped and the last reads and counts are recorded.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	var collecting sync.WaitGroup
	collecting.Go(func() { s.recordHistory(ctx) })
	collecting.Go(func() { s.packPeriodically(ctx) })
	busy, checking := false, false
	collected, checked := make(chan struct{}, 1), make(chan struct{}, 1)
	defer func() {
		collecting.Wait()
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.FlushAccess(flushCtx); err != nil {
			s.log.Error("record the last reads", "err", err)
		}
		// The next start loads it rather than every narinfo.
		if err := s.writeSnapshot(flushCtx); err != nil {
			s.log.Error("write presence snapshot", "err", err)
		}
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	housekeeping := time.NewTicker(time.Minute)
	defer housekeeping.Stop()
	flush := time.NewTicker(accessFlush)
	defer flush.Stop()
	snapshot := time.NewTicker(snapshotEvery)
	defer snapshot.Stop()
	var gc <-chan time.Time // nil, and so never ready, without an interval
	if s.gcEvery > 0 {
		t := time.NewTicker(s.gcEvery)
		defer t.Stop()
		gc = t.C
	}
	var changes <-chan struct{} // nil, and so never ready, without a notifier
	if n, ok := s.meta.(store.ChangeNotifier); ok {
		c, err := n.Changes(ctx)
		if err != nil {
			s.log.Error("listen for changes; polling only", "err", err)
		}
		changes = c
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case _, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
		case <-housekeeping.C:
			s.expireHeld(ctx, s.heldTTL)
			s.expireSessions(ctx)
			if !checking {
				checking = true
				collecting.Add(1)
				go func() {
					defer collecting.Done()
					s.recheckPeriodically(ctx)
					checked <- struct{}{}
				}()
			}
			continue
		case <-checked:
			checking = false
			continue
		case <-snapshot.C:
			s.writeSnapshotIfChanged(ctx)
			continue
		case <-flush.C:
			if err := s.FlushAccess(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("record narinfo reads", "err", err)
			}
			continue
		case <-gc:
			if !busy {
				busy = true
				collecting.Add(1)
				go func() {
					defer collecting.Done()
					s.collectPeriodically(ctx)
					collected <- struct{}{}
				}()
			}
			continue
		case <-collected:
			busy = false
			continue
		}
		if err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("sync with metadata store", "err", err)
		}
	}
}

// collectPeriodically runs the periodic collection, unless another process
// is running one.
func (s *Service) collectPeriodically(ctx context.Context) {
	_, err := s.Collect(ctx, CollectOptions{})
	switch {
	case errors.Is(err, ErrCollecting):
		s.log.Info("skipping the periodic collection: another is running")
	case err != nil && ctx.Err() == nil:
		s.log.Error("collect garbage", "err", err)
	}
}

// Sync rereads the cache list and adds narinfos committed since the last
// Sync to the presence index.
func (s *Service) Sync(ctx context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if err := s.reloadCaches(ctx); err != nil {
		return err
	}
	return s.syncKeys(ctx, false)
}

// syncKeys adds the narinfo keys committed after lastSeq to the index. A
// few are added one at a time; many (every key at a first start, those
// committed since a snapshot, a burst another process wrote) in bulk, in
// large pages, through a Builder: Add moves half a bucket per key. New
// starts in bulk; otherwise a full page switches to it.
func (s *Service) syncKeys(ctx context.Context, bulk bool) error {
	page := 10000
	// Nothing was rendered before New's load: no renderings to forget, at
	// some tens of nanoseconds a key.
	rendered := !bulk
	var bl *presence.Builder
	// Installs also what was read before an error: lastSeq has moved past it.
	defer func() {
		if bl != nil {
			s.index.Install(bl)
		}
	}()
	for {
		if bulk && bl == nil {
			page, bl = 100_000, presence.NewBuilder()
		}
		keys, err := s.meta.ListNarInfoKeys(ctx, s.lastSeq, page)
		if err != nil {
			return fmt.Errorf("list narinfos after %d: %w", s.lastSeq, err)
		}
		for _, k := range keys {
			if bl != nil {
				bl.Add(k.CacheID, k.Hash)
			} else {
				s.index.Add(k.CacheID, k.Hash)
			}
			if rendered {
				s.rendered.forget(k.CacheID, k.Hash) // changed by another process
			}
		}
		if len(keys) > 0 {
			s.lastKey = keys[len(keys)-1]
			s.lastSeq = s.lastKey.Seq
		}
		if len(keys) < page {
			return nil
		}
		bulk = true
	}
}

// reloadCaches replaces the in-memory cache list with the store's.
func (s *Service) reloadCaches(ctx context.Context) error {
	list, err := s.meta.ListCaches(ctx)
	if err != nil {
		return fmt.Errorf("list caches: %w", err)
	}
	next := make(map[string]*cacheEntry, len(list))
	for _, c := range list {
		e, err := newCacheEntry(c)
		if err != nil {
			return err
		}
		next[c.Name] = e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, old := range s.caches {
		if e, ok := next[name]; !ok || e.ID != old.ID {
			s.index.DropCache(old.ID)
			s.rendered.dropCache(old.ID)
		}
	}
	s.caches = next
	return nil
}

// cache returns the cache called name. A name the service does not know is
// looked up in the store, so that caches created by another process (the
// CLI, another replica) are found at once.
func (s *Service) cache(ctx context.Context, name string) (*cacheEntry, error) {
	s.mu.RLock()
	e, ok := s.caches[name]
	s.mu.RUnlock()
	if ok {
		return e, nil
	}
	c, err := s.meta.GetCache(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, noSuchCache(name)
	}
	if err != nil {
		return nil, internal(err, "look up cache %s", name)
	}
	if e, err = newCacheEntry(c); err != nil {
		return nil, internal(err, "load cache %s", name)
	}
	s.mu.Lock()
	if cur, ok := s.caches[name]; ok {
		e = cur
	} else {
		s.caches[name] = e
	}
	s.mu.Unlock()
	return e, nil
}

// Limits returns the upload limits the service enforces.
func (s *Service) Limits() Limits { return s.limits }

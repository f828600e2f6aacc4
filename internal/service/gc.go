package service

import (
	"context"
	"errors"
	"iter"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// Garbage collection keeps what people still use, and everything needed to
// use it, and frees the rest. For each cache the roots are its pins (the
// revisions their rules keep) and, when the cache has a retention, the
// paths pushed or read within it; the store keeps the closure of the roots
// within the cache (dropping the least recently used roots while a size
// quota is exceeded) and removes every other narinfo. NAR files that no
// cache links to any more are then deleted from the blob store.
//
// Everything pushed or read within the grace period is kept whatever the
// policy says, which protects a push in progress: Nix reads the narinfos of
// a path's references (which marks them used) before it uploads the path,
// and a NAR uploaded before its narinfo stays linked for as long.

// DefaultGCGrace is how long anything recently pushed, read or uploaded is
// kept whatever a cache's policy says, unless Options.GCGrace sets another.
const DefaultGCGrace = time.Hour

// staleUploadAge is how long a multipart upload may stay unfinished before
// a collection aborts it.
const staleUploadAge = 24 * time.Hour

// gcLease names the lease that keeps collections from running at once, on
// one server or across replicas.
const gcLease = "gc"

// ErrCollecting is returned when another collection holds the lease.
var ErrCollecting = errors.New("another collection is running")

// CollectReport says what a collection did to one cache.
type CollectReport struct {
	Cache        string
	Result       store.CollectResult
	PinsExpired  int
	Policy       store.Policy
	PinnedPaths  int
	NarsDeleted  int   // only on the first report: NAR files freed in every cache
	BytesDeleted int64 // their bytes
	BlobsSwept   int   // only on the first report: orphaned blobs deleted (see sweepBlobs)
	SweptBytes   int64 // their bytes
	PacksDeleted int   // only on the first report: packs of chunks left empty, deleted
	Repacked     int   // only on the first report: packs mostly of removed chunks, rewritten
}

// CollectOptions choose what a collection does.
type CollectOptions struct {
	Cache    string // "" collects every cache
	DryRun   bool   // compute and report, change nothing
	Progress func(cache string, done, total int)
	// Removed, if set, is given the hashes of the narinfos removed from a
	// cache (or that would be), a batch at a time.
	Removed func(cache string, hashes []string)
}

// Collect runs one garbage collection now. It returns ErrCollecting when
// another one (in this process or another replica) is running.
func (s *Service) Collect(ctx context.Context, opts CollectOptions) ([]CollectReport, error) {
	start := time.Now()
	reports, err := s.collect(ctx, opts)
	if !opts.DryRun && !errors.Is(err, ErrCollecting) {
		nars, bytes := 0, int64(0)
		if len(reports) > 0 {
			nars, bytes = reports[0].NarsDeleted, reports[0].BytesDeleted
		}
		s.metrics.Collected(err, time.Since(start), nars, bytes)
	}
	return reports, err
}

// collect does the work of Collect.
func (s *Service) collect(ctx context.Context, opts CollectOptions) ([]CollectReport, error) {
	if !s.gcMu.TryLock() {
		return nil, ErrCollecting
	}
	defer s.gcMu.Unlock()
	release, err := s.holdLease(ctx, gcLease)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := s.FlushAccess(ctx); err != nil {
		return nil, err
	}
	caches, err := s.ListCaches(ctx)
	if err != nil {
		return nil, err
	}
	var reports []CollectReport
	for i, c := range caches {
		if opts.Cache != "" && c.Name != opts.Cache {
			continue
		}
		if opts.Progress != nil {
			opts.Progress(c.Name, i, len(caches))
		}
		r, err := s.collectCache(ctx, c, opts)
		if err != nil {
			return reports, err
		}
		reports = append(reports, r)
	}
	if opts.Cache != "" && len(reports) == 0 {
		return nil, noSuchCache(opts.Cache)
	}
	nars, bytes, err := s.deleteUnusedNars(ctx, opts.DryRun)
	if opts.DryRun {
		// A dry run unlinks nothing, so the files its removals would free
		// are not unused yet: count each link it would remove, which is
		// exact unless another cache links the same file.
		for _, r := range reports {
			nars += r.Result.Unlinked
			bytes += r.Result.RemovedBytes
		}
	}
	if len(reports) > 0 {
		reports[0].NarsDeleted, reports[0].BytesDeleted = nars, bytes
	}
	if err != nil {
		return reports, err
	}
	packs, err := s.deleteUnusedChunks(ctx, opts.DryRun)
	repacked := 0
	if err == nil {
		repacked, err = s.repack(ctx, opts.DryRun)
	}
	if len(reports) > 0 {
		reports[0].PacksDeleted, reports[0].Repacked = packs, repacked
	}
	if err != nil {
		return reports, err
	}
	if !opts.DryRun {
		s.abortStaleUploads(ctx)
	}
	swept, sweptBytes, err := s.sweepBlobs(ctx, opts.DryRun)
	if len(reports) > 0 {
		reports[0].BlobsSwept, reports[0].SweptBytes = swept, sweptBytes
	}
	return reports, err
}

// collectCache collects one cache according to its policy and pins.
func (s *Service) collectCache(ctx context.Context, c store.Cache, opts CollectOptions) (CollectReport, error) {
	dryRun := opts.DryRun
	now := time.Now()
	rep := CollectReport{Cache: c.Name, Policy: c.Policy}
	pinned, expired, err := s.pinnedHashes(ctx, c, now, dryRun)
	if err != nil {
		return rep, err
	}
	rep.PinsExpired, rep.PinnedPaths = expired, len(pinned)
	plan := store.CollectPlan{CacheID: c.ID, Pinned: pinned, MaxSize: c.Policy.MaxSize,
		LinkedBefore: now.Add(-s.gcGrace), DryRun: dryRun, Flush: s.FlushAccess,
		OnRemove: func(ctx context.Context, hashes []string) error {
			if opts.Removed != nil {
				opts.Removed(c.Name, hashes)
			}
			if dryRun {
				return nil
			}
			// Whatever the S3 API kept as written of a removed narinfo
			// goes too, and the index forgets it (other replicas' indexes
			// keep it until they restart, which costs them a lookup).
			for _, h := range hashes {
				s.index.Remove(c.ID, h)
				s.rendered.forget(c.ID, h)
				if err := ignoreNotFound(s.meta.DeleteObject(ctx, c.ID, h+".narinfo")); err != nil {
					return internal(err, "delete %s.narinfo", h)
				}
			}
			return nil
		}}
	if c.Policy.Retention > 0 {
		plan.UsedSince = now.Add(-max(c.Policy.Retention, s.gcGrace))
	}
	res, err := s.meta.Collect(ctx, plan)
	if err != nil {
		return rep, internal(err, "collect cache %s", c.Name)
	}
	rep.Result = res
	if res.OverQuota {
		s.log.Warn("the pins of a cache alone exceed its size limit", "cache", c.Name,
			"max_size", c.Policy.MaxSize, "kept_bytes", res.KeptBytes)
	}
	if !dryRun {
		s.metrics.CacheCollected(c.Name, res.KeptPaths, res.KeptBytes, res.RemovedPaths, res.RemovedBytes, res.OverQuota)
	}
	s.log.Info("collected cache", "cache", c.Name, "dry_run", dryRun, "kept_paths", res.KeptPaths,
		"kept_bytes", res.KeptBytes, "removed_paths", res.RemovedPaths, "removed_bytes", res.RemovedBytes,
		"unlinked_nars", res.Unlinked, "dropped_roots", res.DroppedRoots)
	return rep, nil
}

// pinnedHashes returns the hashes the cache's pins keep, and removes the
// revisions their rules no longer keep (unless dryRun), counting them.
func (s *Service) pinnedHashes(ctx context.Context, c store.Cache, now time.Time, dryRun bool) ([]string, int, error) {
	pins, rules, err := s.meta.ListPins(ctx, c.ID)
	if err != nil {
		return nil, 0, internal(err, "list pins of cache %s", c.Name)
	}
	var keep []string
	expired := 0
	for p, kept := range pinsKept(pins, rules, now) {
		if kept {
			keep = append(keep, p.Hash)
			continue
		}
		expired++
		if !dryRun {
			if err := s.meta.DeletePins(ctx, c.ID, p.Name, p.Hash); err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, 0, internal(err, "expire pin %s", p.Name)
			}
		}
	}
	return keep, expired, nil
}

// pinsKept yields each of pins, as ListPins returns them (by name, newest
// first), and whether the rule of its name keeps it at now.
func pinsKept(pins []store.Pin, rules map[string]store.PinRule, now time.Time) iter.Seq2[store.Pin, bool] {
	return func(yield func(store.Pin, bool) bool) {
		seen := map[string]int{} // revisions kept so far, by name
		for _, p := range pins {
			rule := rules[p.Name]
			n := seen[p.Name]
			tooMany := rule.KeepRevisions > 0 && n >= rule.KeepRevisions
			tooOld := rule.KeepFor > 0 && now.Sub(p.CreatedAt) > rule.KeepFor && n > 0
			kept := !tooMany && !tooOld
			if kept {
				seen[p.Name] = n + 1
			}
			if !yield(p, kept) {
				return
			}
		}
	}
}

// deleteUnusedNars deletes the NAR files no cache links to any more.
// Records go before their blobs: once a record is gone no upload can claim
// the file, and a collection stopped before a blob is deleted leaves a blob
// without a record, which a later sweep finds.
func (s *Service) deleteUnusedNars(ctx context.Context, dryRun bool) (int, int64, error) {
	before := time.Now().Add(-s.gcGrace)
	n, bytes := 0, int64(0)
	for {
		nars, err := s.meta.UnusedNars(ctx, before, 1000, dryRun)
		if err != nil {
			return n, bytes, internal(err, "find unused NAR files")
		}
		for _, nar := range nars {
			n, bytes = n+1, bytes+nar.FileSize
			if dryRun || nar.BlobKey == "" { // chunked: its chunks go with deleteUnusedChunks
				continue
			}
			if err := ignoreNotFound(s.blobs.Delete(ctx, nar.BlobKey)); err != nil {
				s.log.Warn("delete the blob of an unused NAR file; a later sweep will", "file_hash", nar.FileHash, "err", err)
			}
		}
		if dryRun || len(nars) < 1000 {
			return n, bytes, nil
		}
	}
}

// abortStaleUploads abandons multipart uploads left unfinished for long.
func (s *Service) abortStaleUploads(ctx context.Context) {
	uploads, err := s.meta.StaleUploads(ctx, time.Now().Add(-staleUploadAge), 1000)
	if err != nil {
		s.log.Error("find stale uploads", "err", err)
		return
	}
	for _, u := range uploads {
		s.dropUpload(ctx, u.ID)
	}
	if len(uploads) > 0 {
		s.log.Info("aborted stale multipart uploads", "count", len(uploads))
	}
}

// SetPolicy changes what garbage collection keeps of a cache.
func (s *Service) SetPolicy(ctx context.Context, name string, p store.Policy) error {
	if p.Retention < 0 || p.MaxSize < 0 {
		return errorf(CodeInvalid, "retention and max size must not be negative")
	}
	c, err := s.GetCache(ctx, name)
	if err != nil {
		return err
	}
	if err := s.meta.SetPolicy(ctx, c.ID, p); err != nil {
		return internal(err, "set policy of cache %s", name)
	}
	return s.reloadAfterChange(ctx)
}

// CacheUsage returns the number of paths of a cache and the bytes of their
// NAR files.
func (s *Service) CacheUsage(ctx context.Context, c store.Cache) (int64, int64, error) {
	paths, bytes, err := s.meta.Usage(ctx, c.ID)
	if err != nil {
		return 0, 0, internal(err, "usage of cache %s", c.Name)
	}
	return paths, bytes, nil
}

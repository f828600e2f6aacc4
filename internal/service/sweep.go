package service

import (
	"context"
	"errors"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// A blob is garbage once no record names it: an object overwritten or
// deleted, a cache deleted with its objects and uploads, a part of an
// upload that was aborted, the bytes of an upload whose process died before
// it recorded them, a NAR file whose blob a collection could not delete.
// Each collection sweeps the blob store for such blobs and deletes those
// that were already orphans when an earlier sweep, at least gcGrace
// before, listed them. Two sightings that far apart, rather than the age
// the blob store gives, decide: an upload records its blob as soon as it is
// written, and the blob store's clock and idea of a blob's age (S3 dates a
// multipart upload from its start) do not enter into it. Blob keys are
// never reused, so a blob that stayed an orphan that long stays one.

// sweptPrefixes are the blob key prefixes of everything the service
// writes: NAR files, small files of the Nix layout, plain objects, parts
// of multipart uploads and packs of chunks (written before the chunk list
// that records them, which commits within the grace period: chunking a
// NAR takes well under one).
var sweptPrefixes = []string{"nar/", "file/", "object/", "upload/", "pack/"}

// sweepBatch is how many listed blobs the sweep checks at once.
const sweepBatch = 1000

// sweepBlobs deletes the blobs that have been orphans for at least the
// grace period and returns how many it deleted (in a dry run, would
// delete) and their bytes.
func (s *Service) sweepBlobs(ctx context.Context, dryRun bool) (int, int64, error) {
	start := time.Now()
	before := start.Add(-s.gcGrace)
	n, bytes := 0, int64(0)
	batch := make([]store.BlobInfo, 0, sweepBatch)
	flush := func() error {
		keys := make([]string, 0, len(batch))
		sizes := make(map[string]int64, len(batch))
		for _, b := range batch {
			// A blob written within the grace period cannot have been an
			// orphan for so long; leave its upload the time to record it.
			if b.ModTime.Before(before) {
				keys = append(keys, b.Key)
				sizes[b.Key] = b.Size
			}
		}
		batch = batch[:0]
		old, err := s.meta.OrphanBlobs(ctx, keys, start, before, dryRun)
		if err != nil {
			return internal(err, "find orphaned blobs")
		}
		for _, key := range old {
			if !dryRun {
				if err := ignoreNotFound(s.blobs.Delete(ctx, key)); err != nil {
					s.log.Warn("delete an orphaned blob", "key", key, "err", err)
					continue
				}
			}
			n, bytes = n+1, bytes+sizes[key]
		}
		return nil
	}
	for _, prefix := range sweptPrefixes {
		err := s.blobs.List(ctx, prefix, func(b store.BlobInfo) error {
			batch = append(batch, b)
			if len(batch) == sweepBatch {
				return flush()
			}
			return nil
		})
		if err == nil && len(batch) > 0 {
			err = flush()
		}
		if err != nil {
			if !errors.As(err, new(*Error)) {
				err = internal(err, "list blobs under %s", prefix)
			}
			return n, bytes, err
		}
	}
	if !dryRun {
		// Orphans not listed by this whole sweep are gone.
		if err := s.meta.PruneOrphans(ctx, start); err != nil {
			return n, bytes, internal(err, "forget deleted orphans")
		}
	}
	if n > 0 {
		s.log.Info("swept orphaned blobs", "dry_run", dryRun, "blobs", n, "bytes", bytes)
	}
	return n, bytes, nil
}

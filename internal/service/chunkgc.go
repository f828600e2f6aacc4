package service

import (
	"context"
	"io"
	"time"

	"github.com/larder-cache/larder/internal/chunk"
	"github.com/larder-cache/larder/internal/store"
)

// Repacking bounds: a pack whose live frames take less than repackBelow of
// it is rewritten with only those, at most repackPerRun packs (and so
// about repackPerRun × repackBelow × the pack size of reads and writes)
// per collection.
const (
	repackBelow  = 0.5
	repackPerRun = 8
)

// deleteUnusedChunks removes the chunks no NAR file lists any more and the
// packs left without chunks, records before blobs, as deleteUnusedNars
// does. It returns how many packs it deleted.
func (s *Service) deleteUnusedChunks(ctx context.Context, dryRun bool) (int, error) {
	if dryRun {
		return 0, nil
	}
	packs := 0
	for {
		n, keys, err := s.meta.UnusedChunks(ctx, 1000)
		if err != nil {
			return packs, internal(err, "remove unused chunks")
		}
		for _, k := range keys {
			if err := ignoreNotFound(s.blobs.Delete(ctx, k)); err != nil {
				s.log.Warn("delete an empty pack; a later sweep will", "pack", k, "err", err)
			}
		}
		packs += len(keys)
		if n < 1000 && len(keys) < 1000 {
			return packs, nil
		}
	}
}

// repack rewrites the packs mostly made of removed chunks' frames with the
// frames still used, bounded by repackPerRun. The old pack's blob is left
// to the sweep of orphans, so that a reader that looked up its chunks
// before they moved can still read them for the grace period.
func (s *Service) repack(ctx context.Context, dryRun bool) (int, error) {
	if dryRun {
		return 0, nil
	}
	sparse, err := s.meta.SparsePacks(ctx, time.Now().Add(-s.gcGrace), repackBelow, repackPerRun)
	if err != nil {
		return 0, internal(err, "find sparse packs")
	}
	done := 0
	for _, p := range sparse {
		if p.Chunks == 0 {
			continue // removed with its last chunk, by deleteUnusedChunks
		}
		if err := s.repackOne(ctx, p); err != nil {
			return done, err
		}
		done++
	}
	return done, nil
}

// repackOne moves the live chunks of pack p into a new pack.
func (s *Service) repackOne(ctx context.Context, p store.PackUsage) error {
	chunks, err := s.meta.PackChunks(ctx, p.Key)
	if err != nil {
		return internal(err, "list the chunks of pack %s", p.Key)
	}
	pw := chunk.NewPackWriter(s.blobs, max(p.Live, 1))
	r := chunk.Frames(ctx, s.blobs, chunks, 0, -1)
	defer r.Close()
	var frame []byte
	for _, c := range chunks {
		if int64(cap(frame)) < c.Length {
			frame = make([]byte, c.Length)
		}
		frame = frame[:c.Length]
		if _, err := io.ReadFull(r, frame); err != nil {
			pw.Abandon(context.WithoutCancel(ctx))
			return internal(err, "read chunk %s of pack %s", c.Hash, p.Key)
		}
		if _, err := pw.Add(ctx, c.Hash, c.Size, frame); err != nil {
			pw.Abandon(context.WithoutCancel(ctx))
			return internal(err, "repack %s", p.Key)
		}
	}
	if err := pw.Flush(ctx); err != nil {
		return internal(err, "repack %s", p.Key)
	}
	var to store.Pack
	if len(pw.Packs) > 0 {
		to = pw.Packs[0]
	} else {
		to = store.Pack{Key: chunk.NewPackKey(), CreatedAt: time.Now()} // no chunk left: an empty record, removed at once
	}
	if _, err := s.meta.MoveChunks(ctx, p.Key, to, pw.Chunks); err != nil {
		pw.Abandon(context.WithoutCancel(ctx))
		return internal(err, "move the chunks of pack %s", p.Key)
	}
	s.log.Info("repacked a sparse pack", "pack", p.Key, "live_bytes", p.Live, "of", p.Size, "into", to.Key)
	return nil
}

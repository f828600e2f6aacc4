package service

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/larder-cache/larder/internal/chunk"
	"github.com/larder-cache/larder/internal/compression"
	"github.com/larder-cache/larder/internal/store"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// ChunkOptions configure the storage of NAR files as chunks.
type ChunkOptions struct {
	// Enabled turns chunking on: NAR files are cut into chunks soon after
	// they arrive, and those stored whole before are, in the background.
	Enabled bool
	// Chunk says how the chunks are cut and compressed.
	Chunk chunk.Options
	// MinNarSize is the size below which a NAR stays whole; 0 means
	// DefaultChunkMinNarSize.
	MinNarSize int64
	// PackSize is the size packs are filled to; 0 means
	// chunk.DefaultPackSize.
	PackSize int64
}

// DefaultChunkMinNarSize is the NAR size below which chunking a NAR could
// save little: it would be one or two chunks anyway.
const DefaultChunkMinNarSize = 256 << 10

// packQueue bounds the NAR files waiting to be chunked after they arrived;
// past it, the periodic pass finds the rest.
const packQueue = 1024

// packEvery is how often Run looks for NAR files stored whole (migrating
// a cache stored before chunking was on, or catching what the queue
// dropped).
const packEvery = time.Hour

// queuePack asks for the NAR file with the given file hash to be chunked.
func (s *Service) queuePack(fileHash string) {
	if !s.chunking.Enabled {
		return
	}
	select {
	case s.packs <- fileHash:
	default: // full: the periodic pass will find it
	}
}

// packPeriodically chunks NAR files as they arrive, and every packEvery
// those stored whole, until ctx ends.
func (s *Service) packPeriodically(ctx context.Context) {
	if !s.chunking.Enabled {
		return
	}
	t := time.NewTimer(time.Second) // a first pass soon after start
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case h := <-s.packs:
			n, err := s.meta.GetNar(ctx, h)
			if err == nil {
				_, err = s.packNar(ctx, n)
			}
			if err != nil && !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
				s.log.Warn("chunk a NAR file; it stays whole for now", "file_hash", h, "err", err)
			}
		case <-t.C:
			if _, err := s.Rechunk(ctx, nil); err != nil && ctx.Err() == nil {
				s.log.Error("chunk the NAR files stored whole", "err", err)
			}
			t.Reset(packEvery)
		}
	}
}

// RechunkReport says what Rechunk did.
type RechunkReport struct {
	Nars     int   // NAR files chunked
	NarBytes int64 // their uncompressed bytes
	Before   int64 // their bytes as stored whole
	After    int64 // the bytes of the new chunks' frames they added
	Failed   int   // NAR files that could not be chunked, and stay whole
}

// Rechunk chunks every NAR file stored whole that is large enough, one at
// a time. It can be stopped and run again: what it chunked stays chunked.
// progress, if set, is given the report after each file.
func (s *Service) Rechunk(ctx context.Context, progress func(RechunkReport)) (RechunkReport, error) {
	var rep RechunkReport
	after := ""
	for {
		nars, err := s.meta.WholeNars(ctx, after, s.minChunkedNar(), 100)
		if err != nil {
			return rep, internal(err, "list the NAR files stored whole")
		}
		for _, n := range nars {
			after = n.FileHash
			if !compression.Writable(n.Compression) {
				continue // could not be served again as uploaded
			}
			added, err := s.packNar(ctx, n)
			switch {
			case ctx.Err() != nil:
				return rep, ctx.Err()
			case errors.Is(err, store.ErrNotFound):
				continue // gone, or chunked by another process
			case err != nil:
				rep.Failed++
				s.log.Warn("chunk a NAR file; it stays whole", "file_hash", n.FileHash, "err", err)
				continue
			}
			rep.Nars++
			rep.NarBytes += n.NarSize
			rep.Before += n.FileSize
			rep.After += added
			if progress != nil {
				progress(rep)
			}
		}
		if len(nars) < 100 {
			return rep, nil
		}
	}
}

func (s *Service) minChunkedNar() int64 {
	if s.chunking.MinNarSize > 0 {
		return s.chunking.MinNarSize
	}
	return DefaultChunkMinNarSize
}

// packNar stores the NAR file n, stored whole, as chunks: it cuts the NAR
// into chunks, writes the frames of those the store lacks into new packs,
// reads the whole NAR back from its frames and checks it against n's hash
// and size, and only then records its chunk list and deletes its whole
// blob. It returns the bytes of the frames it added. Should anything fail,
// n stays whole and the new packs are deleted (or, past a crash, swept as
// orphans). It returns an error wrapping store.ErrNotFound if n is gone,
// or was chunked meanwhile.
func (s *Service) packNar(ctx context.Context, n store.Nar) (int64, error) {
	if n.PackedHash != "" || n.Missing || n.NarSize < s.minChunkedNar() || !compression.Writable(n.Compression) {
		return 0, nil
	}
	s.packMu.Lock() // one at a time: each holds a pack in memory
	defer s.packMu.Unlock()
	for attempt := 0; ; attempt++ {
		added, err := s.packOnce(ctx, n)
		if errors.Is(err, store.ErrChunkGone) && attempt < 2 {
			continue // a collection removed a chunk it meant to reuse
		}
		if err == nil {
			s.rendered.dropAll() // narinfos of any cache may serve it
			if err := ignoreNotFound(s.blobs.Delete(ctx, n.BlobKey)); err != nil {
				s.log.Warn("delete the whole blob of a chunked NAR file; a sweep will", "file_hash", n.FileHash, "err", err)
			}
		}
		return added, err
	}
}

// packOnce is one attempt of packNar.
func (s *Service) packOnce(ctx context.Context, n store.Nar) (int64, error) {
	pw := chunk.NewPackWriter(s.blobs, s.chunking.PackSize)
	hashes, err := s.cutNar(ctx, n, pw)
	if err == nil {
		err = pw.Flush(ctx)
	}
	var p store.PackedNar
	if err == nil {
		p, err = s.checkPacked(ctx, n, hashes, pw)
	}
	if err == nil {
		err = s.meta.PackNar(ctx, p)
	}
	if err != nil {
		pw.Abandon(context.WithoutCancel(ctx))
		return 0, err
	}
	return chunk.FramesSize(pw.Chunks), nil
}

// cutNar reads the whole blob of n, cuts the NAR it holds into chunks and
// adds the frames of the chunks the store lacks to pw. It returns the
// hashes of all of its chunks in order.
func (s *Service) cutNar(ctx context.Context, n store.Nar, pw *chunk.PackWriter) ([]string, error) {
	blob, err := s.blobs.Get(ctx, n.BlobKey, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("open the blob of %s: %w", n.FileHash, err)
	}
	defer blob.Close()
	nar, err := compression.Open(ctx, n.Compression, blob, s.decoder)
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", n.FileHash, err)
	}
	defer nar.Close()
	enc, err := chunk.NewEncoder(s.chunking.Chunk)
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	var hashes []string
	seen := map[string]bool{} // the chunks of this NAR so far
	var frame []byte
	err = chunk.Cut(nar, s.chunking.Chunk, func(c chunk.Piece) error {
		hashes = append(hashes, c.Hash)
		if seen[c.Hash] {
			return nil
		}
		seen[c.Hash] = true
		found, err := s.meta.FindChunks(ctx, []string{c.Hash})
		if err != nil || len(found) > 0 {
			return err
		}
		frame = enc.Frame(frame[:0], c.Data)
		return pw.Add(ctx, c.Hash, int64(len(c.Data)), frame)
	})
	if err != nil {
		return nil, fmt.Errorf("cut %s into chunks: %w", n.FileHash, err)
	}
	return hashes, nil
}

// checkPacked reads the NAR back from the frames of its chunks, the stored
// ones and the new ones in pw, and checks that it is n's. It returns the
// record of the chunked form.
func (s *Service) checkPacked(ctx context.Context, n store.Nar, hashes []string, pw *chunk.PackWriter) (store.PackedNar, error) {
	byHash := make(map[string]store.Chunk, len(pw.Chunks))
	for _, c := range pw.Chunks {
		byHash[c.Hash] = c
	}
	var lookup []string
	for _, h := range hashes {
		if _, ok := byHash[h]; !ok {
			lookup = append(lookup, h)
		}
	}
	for len(lookup) > 0 {
		batch := lookup[:min(len(lookup), 500)]
		lookup = lookup[len(batch):]
		found, err := s.meta.FindChunks(ctx, batch)
		if err != nil {
			return store.PackedNar{}, err
		}
		for h, c := range found {
			byHash[h] = c
		}
	}
	list := make([]store.Chunk, len(hashes))
	for i, h := range hashes {
		c, ok := byHash[h]
		if !ok {
			return store.PackedNar{}, fmt.Errorf("chunk %s: %w", h, store.ErrChunkGone)
		}
		list[i] = c
	}
	fileSum, narSum, narSize, err := hashFrames(ctx, s.blobs, list)
	if err != nil {
		return store.PackedNar{}, fmt.Errorf("read %s back from its chunks: %w", n.FileHash, err)
	}
	if nixbase32.EncodeToString(narSum) != n.NarHash || narSize != n.NarSize {
		return store.PackedNar{}, fmt.Errorf("%s read back from its chunks is a NAR of %d bytes with sha256:%s, not %d bytes with sha256:%s",
			n.FileHash, narSize, nixbase32.EncodeToString(narSum), n.NarSize, n.NarHash)
	}
	return store.PackedNar{FileHash: n.FileHash, BlobKey: n.BlobKey,
		PackedHash: nixbase32.EncodeToString(fileSum), PackedSize: chunk.FramesSize(list),
		Chunks: hashes, New: pw.Chunks, Packs: pw.Packs}, nil
}

// hashFrames reads the file the frames of chunks make and returns its
// sha256, and the sha256 and size of the NAR it decompresses to.
func hashFrames(ctx context.Context, blobs store.BlobStore, chunks []store.Chunk) ([]byte, []byte, int64, error) {
	frames := chunk.Frames(ctx, blobs, chunks, 0, -1)
	defer frames.Close()
	fileSum := sha256.New()
	dec, err := zstd.NewReader(io.TeeReader(frames, fileSum), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(16*chunk.MaxAverage))
	if err != nil {
		return nil, nil, 0, err
	}
	defer dec.Close()
	narSum := sha256.New()
	size, err := io.Copy(narSum, dec)
	if err != nil {
		return nil, nil, 0, err
	}
	// The decoder may stop before the end of the last frame's checksum.
	if _, err := io.Copy(fileSum, frames); err != nil {
		return nil, nil, 0, err
	}
	return fileSum.Sum(nil), narSum.Sum(nil), size, nil
}

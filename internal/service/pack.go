package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync/atomic"
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

// queuedPack is a NAR file waiting to be chunked, since at.
type queuedPack struct {
	fileHash string
	at       time.Time
}

// queuePack asks for the NAR file with the given file hash to be chunked.
func (s *Service) queuePack(fileHash string) {
	if !s.chunking.Enabled {
		return
	}
	select {
	case s.packs <- queuedPack{fileHash, time.Now()}:
	default: // full: the periodic pass will find it
	}
}

// Chunking a NAR file takes as much CPU as receiving it, so a NAR file
// that arrived is chunked once no NAR upload has run for packQuiet, or
// packMaxWait after it arrived if uploads never stop: pushes keep the
// machine's cores, and what they stored is chunked in the pauses.
const (
	packQuiet   = time.Second
	packMaxWait = 2 * time.Minute
)

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
		case q := <-s.packs:
			if !s.uploads.waitQuiet(ctx, packQuiet, q.at.Add(packMaxWait)) {
				return
			}
			n, err := s.meta.GetNar(ctx, q.fileHash)
			if err == nil {
				_, err = s.packNar(ctx, n)
			}
			if err != nil && !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
				s.log.Warn("chunk a NAR file; it stays whole for now", "file_hash", q.fileHash, "err", err)
			}
		case <-t.C:
			if _, err := s.Rechunk(ctx, nil); err != nil && ctx.Err() == nil {
				s.log.Error("chunk the NAR files stored whole", "err", err)
			}
			t.Reset(packEvery)
		}
	}
}

// activity tracks the operations running and when the last one ended.
type activity struct {
	running atomic.Int64
	ended   atomic.Int64 // unix nanoseconds
}

// start marks an operation running; the function it returns marks it
// ended.
func (a *activity) start() func() {
	a.running.Add(1)
	return func() {
		a.ended.Store(time.Now().UnixNano())
		a.running.Add(-1)
	}
}

// waitQuiet waits until no operation has run for quiet, or until
// deadline, and reports false if ctx ended first.
func (a *activity) waitQuiet(ctx context.Context, quiet time.Duration, deadline time.Time) bool {
	for {
		now := time.Now()
		idle := a.running.Load() == 0 && now.Sub(time.Unix(0, a.ended.Load())) >= quiet
		if idle || !now.Before(deadline) {
			return ctx.Err() == nil
		}
		wait := min(quiet/4, deadline.Sub(now))
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
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
	p, err := s.newNarPacker(ctx)
	if err != nil {
		return 0, err
	}
	defer p.close()
	rec, err := p.pack(n)
	if err == nil {
		err = s.meta.PackNar(ctx, rec)
	}
	if err != nil {
		p.pw.Abandon(context.WithoutCancel(ctx))
		return 0, err
	}
	return chunk.FramesSize(p.pw.Chunks), nil
}

// narPacker chunks one NAR in one pass: it cuts the NAR read from its whole
// blob, writes the frames of new chunks into packs, and checks, as it
// goes, that every frame the chunked form is made of decompresses to its
// chunk (a new one right after it is written, a stored one by reading it
// back), while it hashes the NAR as read (to check it against its
// NarHash) and the file the frames make in order (the FileHash larder
// publishes).
type narPacker struct {
	s       *Service
	ctx     context.Context
	pw      *chunk.PackWriter
	enc     *chunk.Encoder
	dec     *zstd.Decoder
	fileSum hash.Hash
	hashes  []string               // of every chunk, in order
	chunks  map[string]store.Chunk // the chunks of the NAR so far, by hash
	run     []store.Chunk          // stored chunks whose frames are to be read next
	frame   []byte
	plain   []byte
}

func (s *Service) newNarPacker(ctx context.Context) (*narPacker, error) {
	enc, err := chunk.NewEncoder(s.chunking.Chunk)
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(16*chunk.MaxAverage))
	if err != nil {
		enc.Close()
		return nil, err
	}
	return &narPacker{s: s, ctx: ctx, pw: chunk.NewPackWriter(s.blobs, s.chunking.PackSize), enc: enc, dec: dec,
		fileSum: sha256.New(), chunks: map[string]store.Chunk{}}, nil
}

func (p *narPacker) close() {
	p.enc.Close()
	p.dec.Close()
}

// pack chunks n and returns the record of its chunked form.
func (p *narPacker) pack(n store.Nar) (store.PackedNar, error) {
	blob, err := p.s.blobs.Get(p.ctx, n.BlobKey, 0, -1)
	if err != nil {
		return store.PackedNar{}, fmt.Errorf("open the blob of %s: %w", n.FileHash, err)
	}
	defer blob.Close()
	nar, err := compression.Open(p.ctx, n.Compression, blob, p.s.decoder)
	if err != nil {
		return store.PackedNar{}, fmt.Errorf("decompress %s: %w", n.FileHash, err)
	}
	defer nar.Close()
	narSum := sha256.New()
	counted := &countingReader{r: io.TeeReader(nar, narSum)}
	err = chunk.Cut(counted, p.s.chunking.Chunk, p.add)
	if err == nil {
		err = p.readRun()
	}
	if err == nil {
		err = p.pw.Flush(p.ctx)
	}
	if err != nil {
		return store.PackedNar{}, fmt.Errorf("chunk %s: %w", n.FileHash, err)
	}
	if got := nixbase32.EncodeToString(narSum.Sum(nil)); got != n.NarHash || counted.n != n.NarSize {
		return store.PackedNar{}, fmt.Errorf("%s holds a NAR of %d bytes with sha256:%s, not %d bytes with sha256:%s",
			n.FileHash, counted.n, got, n.NarSize, n.NarHash)
	}
	var size int64
	for _, h := range p.hashes {
		size += p.chunks[h].Length
	}
	return store.PackedNar{FileHash: n.FileHash, BlobKey: n.BlobKey,
		PackedHash: nixbase32.EncodeToString(p.fileSum.Sum(nil)), PackedSize: size,
		Chunks: p.hashes, New: p.pw.Chunks, Packs: p.pw.Packs}, nil
}

// add takes the next chunk of the NAR.
func (p *narPacker) add(c chunk.Piece) error {
	p.hashes = append(p.hashes, c.Hash)
	if known, ok := p.chunks[c.Hash]; ok { // again in this NAR
		return p.emit(known)
	}
	found, err := p.s.meta.FindChunks(p.ctx, []string{c.Hash})
	if err != nil {
		return err
	}
	if stored, ok := found[c.Hash]; ok {
		p.chunks[c.Hash] = stored
		p.run = append(p.run, stored)
		return nil
	}
	if err := p.readRun(); err != nil {
		return err
	}
	p.frame = p.enc.Frame(p.frame[:0], c.Data)
	if err := p.check(c.Hash, p.frame, c.Data); err != nil {
		return err
	}
	stored, err := p.pw.Add(p.ctx, c.Hash, int64(len(c.Data)), p.frame)
	if err != nil {
		return err
	}
	p.chunks[c.Hash] = stored
	p.fileSum.Write(p.frame)
	return nil
}

// emit adds the frame of a chunk seen before in this NAR to the file.
func (p *narPacker) emit(c store.Chunk) error {
	if f, ok := p.pw.Filling(c); ok {
		if err := p.readRun(); err != nil {
			return err
		}
		p.fileSum.Write(f)
		return nil
	}
	p.run = append(p.run, c)
	return nil
}

// readRun reads the frames of the stored chunks in the run, in one request
// for each stretch of a pack, checks each and adds it to the file.
func (p *narPacker) readRun() error {
	if len(p.run) == 0 {
		return nil
	}
	r := chunk.Frames(p.ctx, p.s.blobs, p.run, 0, -1)
	defer r.Close()
	for _, c := range p.run {
		if int64(cap(p.frame)) < c.Length {
			p.frame = make([]byte, c.Length)
		}
		p.frame = p.frame[:c.Length]
		if _, err := io.ReadFull(r, p.frame); errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("chunk %s: %w", c.Hash, store.ErrChunkGone) // collected since it was found
		} else if err != nil {
			return fmt.Errorf("read chunk %s: %w", c.Hash, err)
		}
		if err := p.check(c.Hash, p.frame, nil); err != nil {
			return err
		}
		p.fileSum.Write(p.frame)
	}
	p.run = p.run[:0]
	return nil
}

// check decompresses frame and checks that it is the chunk: want, if
// given, or the bytes with the given sha256.
func (p *narPacker) check(h string, frame, want []byte) error {
	var err error
	p.plain, err = p.dec.DecodeAll(frame, p.plain[:0])
	if err != nil {
		return fmt.Errorf("chunk %s does not decompress: %w", h, err)
	}
	if want != nil {
		if !bytes.Equal(p.plain, want) {
			return fmt.Errorf("chunk %s decompresses to other bytes", h)
		}
		return nil
	}
	if sum := sha256.Sum256(p.plain); hex.EncodeToString(sum[:]) != h {
		return fmt.Errorf("stored chunk %s decompresses to other bytes", h)
	}
	return nil
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

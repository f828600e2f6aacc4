package chunk

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// DefaultPackSize is the size a pack is filled to before it is written:
// large enough that an S3 store holds few objects, small enough to be held
// in memory while it fills.
const DefaultPackSize = 32 << 20

// NewPackKey returns a blob key for a new pack, never used before, so that
// deleting an earlier blob can never reach a later one.
func NewPackKey() string {
	b := make([]byte, 17)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return "pack/" + h[:2] + "/" + h[2:]
}

// PackWriter gathers new frames into packs and puts each pack into the
// blob store once it reaches its size, and on Flush. A pack is durable in
// the blob store before it is listed in Packs, and has no record until the
// caller makes one (store.ChunkStore.PackNar): should that never happen,
// the pack is an orphan blob, for the sweep of orphans to delete. It holds
// at most one pack's bytes (plus one frame). It is not safe for concurrent
// use.
type PackWriter struct {
	blobs store.BlobStore
	size  int64
	buf   []byte
	key   string
	open  []store.Chunk // the chunks of the pack being filled

	// Packs are the packs put so far, Chunks the chunks in them.
	Packs  []store.Pack
	Chunks []store.Chunk
}

// NewPackWriter returns a writer of packs of about size bytes (0:
// DefaultPackSize) into blobs.
func NewPackWriter(blobs store.BlobStore, size int64) *PackWriter {
	if size <= 0 {
		size = DefaultPackSize
	}
	return &PackWriter{blobs: blobs, size: size}
}

// Add appends the frame of the chunk with the given hash and uncompressed
// size to the pack being filled, putting the pack first if the frame would
// take it past its size.
// It returns the record of the chunk.
func (w *PackWriter) Add(ctx context.Context, hash string, size int64, frame []byte) (store.Chunk, error) {
	if len(w.buf) > 0 && int64(len(w.buf)+len(frame)) > w.size {
		if err := w.Flush(ctx); err != nil {
			return store.Chunk{}, err
		}
	}
	if w.key == "" {
		w.key = NewPackKey()
		if w.buf == nil {
			w.buf = make([]byte, 0, min(w.size, 1<<20))
		}
	}
	c := store.Chunk{Hash: hash, Size: size, Pack: w.key, Offset: int64(len(w.buf)), Length: int64(len(frame))}
	w.open = append(w.open, c)
	w.buf = append(w.buf, frame...)
	return c, nil
}

// Filling returns the frame of c if c lies in the pack being filled, whose
// bytes are not in the blob store yet. The bytes are valid until the next
// Add or Flush.
func (w *PackWriter) Filling(c store.Chunk) ([]byte, bool) {
	if c.Pack == "" || c.Pack != w.key {
		return nil, false
	}
	return w.buf[c.Offset : c.Offset+c.Length], true
}

// Flush puts the pack being filled, if it holds anything.
func (w *PackWriter) Flush(ctx context.Context) error {
	if len(w.open) == 0 {
		return nil
	}
	if err := w.blobs.Put(ctx, w.key, bytes.NewReader(w.buf), int64(len(w.buf))); err != nil {
		return fmt.Errorf("put pack %s: %w", w.key, err)
	}
	w.Packs = append(w.Packs, store.Pack{Key: w.key, Size: int64(len(w.buf)), CreatedAt: time.Now()})
	w.Chunks = append(w.Chunks, w.open...)
	w.key, w.open, w.buf = "", nil, w.buf[:0]
	return nil
}

// Abandon deletes the packs put so far (the caller could not record them)
// and drops the one being filled.
func (w *PackWriter) Abandon(ctx context.Context) {
	for _, p := range w.Packs {
		_ = w.blobs.Delete(ctx, p.Key) // a pack left behind is an orphan, swept later
	}
	w.Packs, w.Chunks, w.key, w.open, w.buf = nil, nil, "", nil, w.buf[:0]
}

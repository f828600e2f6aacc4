package store

import (
	"context"
	"errors"
	"time"
)

// ErrChunkGone is returned, possibly wrapped, by ChunkStore.PackNar when
// the chunk list names a chunk the store no longer holds (a collection
// removed it after it was looked up): the caller stores it again and
// retries.
var ErrChunkGone = errors.New("chunk gone")

// Chunk is one piece of a NAR, cut by its content, stored once however
// many NARs hold it: a zstd frame of its bytes, in a pack.
type Chunk struct {
	Hash   string // hex sha256 of the uncompressed bytes; unique
	Size   int64  // uncompressed bytes
	Pack   string // the blob key of the pack its frame is in
	Offset int64  // where the frame starts in the pack
	Length int64  // the frame's bytes
}

// Pack is one blob that holds the frames of many chunks.
type Pack struct {
	Key       string // its blob key, never used for another blob
	Size      int64
	CreatedAt time.Time
}

// PackUsage is a pack with the bytes its chunks still take in it.
type PackUsage struct {
	Pack
	Live   int64 // bytes of the frames of its chunks
	Chunks int   // how many chunks lie in it
}

// PackedNar is the chunked form of a Nar, as ChunkStore.PackNar records it.
type PackedNar struct {
	FileHash string // the Nar
	// BlobKey is the blob the Nar has while whole: the record changes
	// only if it still names that blob.
	BlobKey    string
	PackedHash string   // nix32 sha256 of the concatenated frames of Chunks
	PackedSize int64    // their bytes
	Chunks     []string // the hashes of its chunks in order, repeats allowed
	New        []Chunk  // chunks new to the store, each in one of Packs
	Packs      []Pack   // the packs written for New
}

// ChunkStats counts what the chunk index holds.
type ChunkStats struct {
	Chunks    int64 // chunks stored
	Packs     int64 // pack records
	PackBytes int64 // bytes of the packs
	LiveBytes int64 // bytes of the frames of the chunks
	NarChunks int64 // chunk references of Nars, repeats counted
}

// ChunkStore keeps the index of chunked NARs: which chunks each Nar is made
// of, where each chunk's frame lies, and which packs hold them.
//
// A pack's blob is written, durably, before PackNar records it, under a
// key no other blob ever had; a pack record is removed (by UnusedChunks or
// MoveChunks) only once no chunk lies in it, and its blob is deleted after
// that. A chunk is removed only while no Nar lists it.
type ChunkStore interface {
	// FindChunks returns those of the chunks with the given hashes that
	// the store holds, by hash. Unknown hashes are left out.
	FindChunks(ctx context.Context, hashes []string) (map[string]Chunk, error)
	// PackNar records p in one transaction: its packs, its new chunks (a
	// chunk already stored under the same hash stays as it is, and the new
	// frame is not used), the chunk list of the Nar, and its PackedHash
	// and PackedSize; the Nar's BlobKey becomes "", so the caller deletes
	// the whole blob afterwards. It returns ErrNotFound, recording
	// nothing, if there is no Nar p.FileHash, or it is Missing or packed
	// already, or its BlobKey is not p.BlobKey; and ErrChunkGone,
	// recording nothing, if a hash of p.Chunks names a chunk neither
	// stored nor in p.New. An empty p.Chunks or p.PackedHash, or a chunk
	// of p.New in none of p.Packs, is another error, recording nothing:
	// the Nar would be left with nothing to serve.
	PackNar(ctx context.Context, p PackedNar) error
	// NarChunks returns the chunks of the packed Nar with file hash
	// fileHash in order, repeats included, or ErrNotFound if there is no
	// such Nar or it is not packed.
	NarChunks(ctx context.Context, fileHash string) ([]Chunk, error)
	// CachePackedNar returns the packed Nar whose PackedHash is
	// packedHash if it is linked to the cache, as CacheNar does, or
	// ErrNotFound. Several Nars can have one PackedHash (a NAR uploaded
	// with two compressions is cut into the same chunks): it returns one
	// that is not Missing if the cache links one, the first by file hash.
	CachePackedNar(ctx context.Context, cacheID int64, packedHash string) (Nar, error)
	// WholeNars returns up to limit Nars stored whole (not packed, not
	// Missing) whose NarSize is at least minSize and whose file hashes
	// sort after after, ordered by file hash.
	WholeNars(ctx context.Context, after string, minSize int64, limit int) ([]Nar, error)
	// UnusedChunks removes up to limit chunks that no Nar lists, then the
	// records of the packs no chunk lies in (up to limit), and returns how
	// many chunks it removed and the keys of those packs, whose blobs the
	// caller deletes. Should it stop before, the blobs stay without
	// records, for OrphanBlobs to find.
	UnusedChunks(ctx context.Context, limit int) (int, []string, error)
	// SparsePacks returns up to limit packs created before before in which
	// the frames of their chunks take less than frac of the pack's size,
	// emptiest first.
	SparsePacks(ctx context.Context, before time.Time, frac float64, limit int) ([]PackUsage, error)
	// PackChunks returns the chunks whose frames lie in the pack with key
	// pack, ordered by offset.
	PackChunks(ctx context.Context, pack string) ([]Chunk, error)
	// MoveChunks records the new pack p and moves to it those of moved
	// whose chunks still lie in the pack from (each with the Offset and
	// Length given; Pack is p.Key). It then removes the record of from if
	// no chunk lies in it, and reports whether it did; its blob is then
	// the caller's to delete, once no reader needs it. It returns
	// ErrNotFound, recording nothing, if there is no pack from.
	MoveChunks(ctx context.Context, from string, p Pack, moved []Chunk) (bool, error)
	// ChunkStats counts what the index holds.
	ChunkStats(ctx context.Context) (ChunkStats, error)
}

// Package chunk owns the chunked form of a NAR: how its bytes are cut into
// content-defined chunks, how each chunk becomes a zstd frame of its own,
// how new frames are gathered into pack blobs, and how the frames of a NAR
// are read back, as the zstd file they make in order or as the NAR they
// decompress to. It knows the blob store and the records of store.Chunk
// and store.Pack, nothing of caches or of Nix.
//
// The frames of a NAR's chunks, concatenated in order, are one valid zstd
// stream (a zstd stream may hold any number of frames), so a packed NAR is
// served to Nix as a file compressed with zstd, byte ranges included,
// without any recompression.
package chunk

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers the algorithm
	"github.com/klauspost/compress/zstd"
)

// algorithm finds chunk boundaries: FastCDC as its paper specifies it, in a
// version its library keeps stable, so that every process and every
// version of larder cuts the same bytes at the same places, and a chunk
// stored once is found again.
const algorithm = "fastcdc-v1.0.0"

// Sizes bound the chunks: the average is a power of two; a chunk is never
// smaller than a quarter of it nor larger than eight times it.
const (
	MinAverage     = 16 << 10
	MaxAverage     = 4 << 20
	DefaultAverage = 128 << 10
)

// Options say how to cut and compress.
type Options struct {
	// Average is the average size of a chunk, a power of two within
	// [MinAverage, MaxAverage]; 0 means DefaultAverage.
	Average int64
	// Level is the zstd level the frames are written with; 0 means
	// zstd.SpeedDefault.
	Level zstd.EncoderLevel
}

// Check reports whether the options are usable.
func (o Options) Check() error {
	if o.Average == 0 {
		return nil
	}
	if o.Average < MinAverage || o.Average > MaxAverage || o.Average&(o.Average-1) != 0 {
		return fmt.Errorf("chunk average size %d is not a power of two from %d to %d", o.Average, MinAverage, MaxAverage)
	}
	return nil
}

func (o Options) average() int64 {
	if o.Average == 0 {
		return DefaultAverage
	}
	return o.Average
}

// Piece is one chunk as Cut yields it: its bytes (valid only during the
// call) and the hex sha256 that names it.
type Piece struct {
	Data []byte
	Hash string
}

// Cut reads r to its end and calls fn with each chunk in order. Only one
// chunk's bytes are held at a time (at most MaxChunk).
func Cut(r io.Reader, o Options, fn func(Piece) error) error {
	if err := o.Check(); err != nil {
		return err
	}
	avg := int(o.average())
	c, err := chunkers.NewChunker(algorithm, r, &chunkers.ChunkerOpts{MinSize: avg / 4, NormalSize: avg, MaxSize: 8 * avg})
	if err != nil {
		return err
	}
	for {
		data, err := c.Next()
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if len(data) > 0 { // the last chunk may come with io.EOF
			sum := sha256.Sum256(data)
			if err := fn(Piece{Data: data, Hash: hex.EncodeToString(sum[:])}); err != nil {
				return err
			}
		}
		if err != nil {
			return nil
		}
	}
}

// Encoder writes chunks as zstd frames. It is not safe for concurrent use.
type Encoder struct {
	enc *zstd.Encoder
}

// NewEncoder returns an encoder for the options.
func NewEncoder(o Options) (*Encoder, error) {
	level := o.Level
	if level == 0 {
		level = zstd.SpeedDefault
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(true), zstd.WithZeroFrames(false))
	if err != nil {
		return nil, err
	}
	return &Encoder{enc: enc}, nil
}

// Frame appends the zstd frame of data to dst and returns it. The frame
// records its content size, so a reader can tell where it ends.
func (e *Encoder) Frame(dst, data []byte) []byte { return e.enc.EncodeAll(data, dst) }

// Close releases the encoder.
func (e *Encoder) Close() error { return e.enc.Close() }

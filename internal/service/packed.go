package service

import (
	"context"
	"errors"
	"io"

	"github.com/larder-cache/larder/internal/chunk"
	"github.com/larder-cache/larder/internal/compression"
	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/store"
)

// packedExt is the extension of the key larder publishes for a NAR stored
// as chunks: the frames of its chunks make a zstd file.
const packedExt = ".zst"

// NarFile is a NAR file as a cache serves it under one key.
//
// A NAR stored whole is served as uploaded. One stored as chunks is
// published (in the narinfos larder serves) as the zstd file its chunks'
// frames make in order, under nar/<PackedHash>.nar.zst, byte ranges
// included. Under the key it was uploaded with, which clients that read
// its narinfo before it was chunked still ask for, it is served in the
// method it was uploaded with: uncompressed, the very bytes uploaded;
// zstd, the frames; any other method, compressed again on the fly, whose
// size is not known until it is sent, so such an answer has no length and
// takes no ranges.
type NarFile struct {
	store.Nar
	Key  nixkey.Key // the key it is served under
	Size int64      // the bytes served; -1 if not known until they are sent
	ETag string     // unquoted; changes when the bytes served do
	form narForm
}

type narForm int

const (
	formWhole        narForm = iota // the blob as uploaded
	formFrames                      // the zstd frames of its chunks
	formNar                         // the NAR its chunks make, uncompressed
	formRecompressed                // the NAR its chunks make, compressed again
)

// uploadedFile returns the file n served under the key it was uploaded
// with.
func uploadedFile(n store.Nar, key nixkey.Key) NarFile {
	f := NarFile{Nar: n, Key: key, Size: n.FileSize, ETag: n.FileHash, form: formWhole}
	if n.PackedHash == "" {
		return f
	}
	switch n.Compression {
	case compression.None:
		f.Size, f.form = n.NarSize, formNar
	case compression.Zstd:
		f.Size, f.ETag, f.form = n.PackedSize, n.PackedHash, formFrames
	default:
		f.Size, f.ETag, f.form = -1, "re-"+n.FileHash, formRecompressed
	}
	return f
}

// readPacked opens the bytes of a NAR file stored as chunks.
func (s *Service) readPacked(ctx context.Context, f NarFile, offset, length int64) (io.ReadCloser, error) {
	chunks, err := s.meta.NarChunks(ctx, f.FileHash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(CodeNotFound, "%s is gone", f.Key)
	}
	if err != nil {
		return nil, internal(err, "look up the chunks of %s", f.Key)
	}
	switch f.form {
	case formFrames:
		return chunk.Frames(ctx, s.blobs, chunks, offset, length), nil
	case formNar:
		r, err := chunk.NAR(ctx, s.blobs, chunks, offset, length)
		if err != nil {
			return nil, internal(err, "read %s", f.Key)
		}
		return r, nil
	}
	return s.recompress(ctx, f, chunks, offset, length)
}

// recompress streams the NAR the chunks make compressed with the method it
// was uploaded with, from offset of the compressed bytes, for length.
func (s *Service) recompress(ctx context.Context, f NarFile, chunks []store.Chunk, offset, length int64) (io.ReadCloser, error) {
	nar, err := chunk.NAR(ctx, s.blobs, chunks, 0, -1)
	if err != nil {
		return nil, internal(err, "read %s", f.Key)
	}
	pr, pw := io.Pipe()
	go func() {
		defer nar.Close()
		w, err := compression.NewWriter(f.Compression, pw)
		if err == nil {
			_, err = io.Copy(w, nar)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err)
	}()
	var r io.Reader = pr
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, pr, offset); err != nil {
			pr.CloseWithError(err)
			return nil, internal(err, "skip to byte %d of %s", offset, f.Key)
		}
	}
	if length >= 0 {
		r = io.LimitReader(pr, length)
	}
	return readCloser{r, pr}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

package chunk

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/larder-cache/larder/internal/store"
)

// FramesSize is the size of the file the frames of chunks make in order.
func FramesSize(chunks []store.Chunk) int64 {
	var n int64
	for _, c := range chunks {
		n += c.Length
	}
	return n
}

// NarSize is the size of the NAR the chunks make in order.
func NarSize(chunks []store.Chunk) int64 {
	var n int64
	for _, c := range chunks {
		n += c.Size
	}
	return n
}

// span is a run of bytes of one pack that the reader reads in one request.
type span struct {
	pack        string
	off, length int64
}

// spans returns the byte ranges of packs that hold the bytes from offset,
// for length, of the file the frames of chunks make, joining the frames
// that follow each other in the same pack, as the frames of the new chunks
// of one NAR do, so that such a run is read with one request.
func spans(chunks []store.Chunk, offset, length int64) []span {
	var l []span
	var pos int64 // where chunk c starts in the file
	end := offset + length
	for _, c := range chunks {
		cs, ce := pos, pos+c.Length
		pos = ce
		if ce <= offset || c.Length == 0 {
			continue
		}
		if cs >= end {
			break
		}
		from, to := max(cs, offset)-cs, min(ce, end)-cs
		s := span{pack: c.Pack, off: c.Offset + from, length: to - from}
		if n := len(l); n > 0 && l[n-1].pack == s.pack && l[n-1].off+l[n-1].length == s.off {
			l[n-1].length += s.length
			continue
		}
		l = append(l, s)
	}
	return l
}

// Frames returns a reader of length bytes from offset (length < 0: to the
// end) of the file the frames of chunks make in order: a zstd stream of
// the NAR. It reads the packs as it goes; a pack that is gone, or shorter
// than its record says, is an error wrapping store.ErrNotFound or
// io.ErrUnexpectedEOF.
func Frames(ctx context.Context, blobs store.BlobStore, chunks []store.Chunk, offset, length int64) io.ReadCloser {
	size := FramesSize(chunks)
	offset = min(max(offset, 0), size)
	if length < 0 || offset+length > size {
		length = size - offset
	}
	return &framesReader{ctx: ctx, blobs: blobs, spans: spans(chunks, offset, length)}
}

type framesReader struct {
	ctx   context.Context
	blobs store.BlobStore
	spans []span
	cur   io.ReadCloser
	left  int64 // bytes of the current span not read yet
}

func (r *framesReader) Read(p []byte) (int, error) {
	for {
		if r.cur == nil {
			if err := r.next(); err != nil {
				return 0, err
			}
		}
		if len(p) == 0 {
			return 0, nil
		}
		n, err := r.cur.Read(p[:min(int64(len(p)), r.left)])
		r.left -= int64(n)
		if r.left == 0 {
			r.cur.Close()
			r.cur = nil
			return n, nil
		}
		if errors.Is(err, io.EOF) {
			return n, fmt.Errorf("read pack: %w", io.ErrUnexpectedEOF)
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// WriteTo copies the rest of the file to w span by span, each with
// io.Copy, so that a pack the blob store reads from a local file goes out
// of a plain HTTP connection with sendfile.
func (r *framesReader) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for {
		if r.cur == nil {
			if err := r.next(); err == io.EOF {
				return n, nil
			} else if err != nil {
				return n, err
			}
		}
		m, err := io.Copy(w, r.cur) // Get reads at most the span's bytes
		n += m
		r.left -= m
		if err != nil {
			return n, err
		}
		if r.left > 0 {
			return n, fmt.Errorf("read pack: %w", io.ErrUnexpectedEOF)
		}
		r.cur.Close()
		r.cur = nil
	}
}

// next opens the next span, or reports io.EOF after the last.
func (r *framesReader) next() error {
	if len(r.spans) == 0 {
		return io.EOF
	}
	s := r.spans[0]
	r.spans = r.spans[1:]
	rc, err := r.blobs.Get(r.ctx, s.pack, s.off, s.length)
	if err != nil {
		return fmt.Errorf("read pack %s: %w", s.pack, err)
	}
	r.cur, r.left = rc, s.length
	return nil
}

func (r *framesReader) Close() error {
	r.spans = nil
	if r.cur != nil {
		err := r.cur.Close()
		r.cur = nil
		return err
	}
	return nil
}

// NAR returns a reader of length bytes from offset (length < 0: to the
// end) of the NAR the chunks decompress to. It starts decompressing at the
// chunk that holds offset, so a range far into a large NAR costs only the
// chunk it starts in.
func NAR(ctx context.Context, blobs store.BlobStore, chunks []store.Chunk, offset, length int64) (io.ReadCloser, error) {
	size := NarSize(chunks)
	offset = min(max(offset, 0), size)
	if length < 0 || offset+length > size {
		length = size - offset
	}
	var pos, framePos int64
	first := 0
	for first < len(chunks) && pos+chunks[first].Size <= offset {
		pos += chunks[first].Size
		framePos += chunks[first].Length
		first++
	}
	frames := Frames(ctx, blobs, chunks, framePos, -1)
	dec, err := zstd.NewReader(frames, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(16*MaxAverage))
	if err != nil {
		frames.Close()
		return nil, err
	}
	if _, err := io.CopyN(io.Discard, dec, offset-pos); err != nil {
		dec.Close()
		frames.Close()
		return nil, fmt.Errorf("skip to byte %d of the NAR: %w", offset, err)
	}
	return &narReader{Reader: io.LimitReader(dec, length), dec: dec, frames: frames}, nil
}

type narReader struct {
	io.Reader
	dec    *zstd.Decoder
	frames io.ReadCloser
}

func (r *narReader) Close() error {
	r.dec.Close()
	return r.frames.Close()
}

package s3blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/larder-cache/larder/internal/store"
)

// abortTimeout bounds the requests that clean up after a failed upload,
// which run even when the caller's context has ended.
const abortTimeout = time.Minute

// partSource reads the parts of a Put from its reader, counting the bytes
// and checking them against the announced size.
type partSource struct {
	r    io.Reader
	ctx  context.Context
	size int64 // announced size, or -1
	read int64 // bytes read so far
}

// fill reads into buf until it is full or r ends, and returns the bytes
// read and whether r has ended. It fails if r fails, if r yields more or
// (at its end) fewer bytes than announced, or if ctx ends.
func (p *partSource) fill(buf []byte) ([]byte, bool, error) {
	n, stalls := 0, 0
	for n < len(buf) {
		if err := p.ctx.Err(); err != nil {
			return nil, false, err
		}
		m, err := p.r.Read(buf[n:])
		n += m
		p.read += int64(m)
		switch {
		case p.size >= 0 && p.read > p.size:
			return nil, false, fmt.Errorf("reader yields more than %d bytes", p.size)
		case err == io.EOF:
			if p.size >= 0 && p.read != p.size {
				return nil, false, fmt.Errorf("reader yields %d bytes, want %d", p.read, p.size)
			}
			return buf[:n], true, p.ctx.Err()
		case err != nil:
			return nil, false, fmt.Errorf("read: %w", err)
		case m == 0:
			if stalls++; stalls > maxStalls {
				return nil, false, fmt.Errorf("read: %w", io.ErrNoProgress)
			}
		default:
			stalls = 0
		}
	}
	return buf, false, p.ctx.Err()
}

// partSizeFor returns the size of the parts of a Put of size bytes: the
// store's part size, or more if that would take more than maxParts parts.
func (s *Store) partSizeFor(size int64) int {
	ps := int64(s.partSize)
	if size > ps*maxParts {
		const mib = 1 << 20
		ps = ((size+maxParts-1)/maxParts + mib - 1) / mib * mib
	}
	return int(ps)
}

// putParts stores the bytes of r, read in parts: in one PUT if r ends
// within the first part, else in a multipart upload.
func (s *Store) putParts(ctx context.Context, name string, r io.Reader, size int64) error {
	ps := s.partSizeFor(size)
	bufs, release := partBuffers(ps)
	defer release()
	src := &partSource{r: r, ctx: ctx, size: size}
	first, end, err := src.fill(bufs[0])
	if err != nil {
		return err
	}
	if end {
		return s.putBuffer(ctx, name, first)
	}
	return s.multipart(ctx, name, src, bufs, first)
}

// partBuffers returns two buffers of n bytes, from the pool when they have
// its size, and a function that gives them back.
func partBuffers(n int) ([2][]byte, func()) {
	if n != defaultPartSize {
		return [2][]byte{make([]byte, n), make([]byte, n)}, func() {}
	}
	a, b := partPool.Get().(*[]byte), partPool.Get().(*[]byte)
	return [2][]byte{*a, *b}, func() { partPool.Put(a); partPool.Put(b) }
}

// partResult is the outcome of the upload of one part.
type partResult struct {
	part minio.CompletePart
	err  error
}

// multipart stores first and the rest of src in a multipart upload. It
// sends each part while reading the next into the other buffer. It
// completes the upload only once src has ended with the announced size,
// and aborts it on any failure, even when ctx has ended.
func (s *Store) multipart(ctx context.Context, name string, src *partSource, bufs [2][]byte, first []byte) (err error) {
	marker, err := s.putMarker(ctx, name)
	if err != nil {
		return err
	}
	id, err := s.core.NewMultipartUpload(ctx, s.bucket, name, s.putOptions())
	if err != nil {
		err = fmt.Errorf("start upload: %w", translate(ctx, err))
		if !errors.Is(err, store.ErrUnavailable) {
			// Else the upload may have started: Reclaim will look.
			s.deleteMarker(ctx, marker)
		}
		return err
	}
	defer func() {
		if err != nil {
			err = s.abort(ctx, name, id, marker, err)
		}
	}()
	parts, err := s.sendParts(ctx, name, id, src, bufs, first)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err = s.core.CompleteMultipartUpload(ctx, s.bucket, name, id, parts, s.putOptions())
	if err != nil {
		return fmt.Errorf("complete upload: %w", translate(ctx, err))
	}
	s.deleteMarker(ctx, marker)
	return nil
}

// sendParts uploads first and the rest of src as the parts of upload id,
// and returns the parts to complete it with.
func (s *Store) sendParts(ctx context.Context, name, id string, src *partSource, bufs [2][]byte, first []byte) ([]minio.CompletePart, error) {
	// Parts are cancelled as soon as the reader fails: the upload is lost.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan partResult, 1)
	var parts []minio.CompletePart
	data, ended := first, false
	for num := 1; ; num++ {
		if num > maxParts {
			return nil, fmt.Errorf("more than %d parts of %d bytes", maxParts, len(bufs[0]))
		}
		go func(num int, data []byte) { results <- s.sendPart(pctx, name, id, num, data) }(num, data)
		var next []byte
		nextEnded, ferr := true, error(nil)
		if !ended {
			next, nextEnded, ferr = src.fill(bufs[num%2])
			if ferr != nil {
				cancel()
			}
		}
		res := <-results // the part's buffer is free again
		if ferr != nil {
			return nil, ferr
		}
		if res.err != nil {
			return nil, res.err
		}
		parts = append(parts, res.part)
		if ended || nextEnded && len(next) == 0 {
			return parts, nil
		}
		data, ended = next, nextEnded
	}
}

// sendPart uploads data as part num of upload id. The body can be sent
// again, so minio-go may retry it.
func (s *Store) sendPart(ctx context.Context, name, id string, num int, data []byte) partResult {
	p, err := s.core.PutObjectPart(ctx, s.bucket, name, id, num, bytes.NewReader(data), int64(len(data)), s.partOptions())
	if err != nil {
		return partResult{err: fmt.Errorf("upload part %d: %w", num, translate(ctx, err))}
	}
	return partResult{part: minio.CompletePart{PartNumber: num, ETag: p.ETag}}
}

// partOptions returns the options of every part upload, signed as
// putOptions says.
func (s *Store) partOptions() minio.PutObjectPartOptions {
	return minio.PutObjectPartOptions{DisableContentSha256: s.secure}
}

// abort aborts upload id after cause made it fail, and returns cause,
// noting a failure to abort. Its marker goes only once the upload is gone,
// so that Reclaim finds what the abort could not remove.
func (s *Store) abort(ctx context.Context, name, id, marker string, cause error) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	err := s.core.AbortMultipartUpload(actx, s.bucket, name, id)
	if err != nil && !notFound(err) {
		return fmt.Errorf("%w (abort upload: %v; Reclaim removes it later)", cause, translate(actx, err))
	}
	s.deleteMarker(ctx, marker)
	return cause
}

package s3blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/minio/minio-go/v7"
)

const (
	// singlePutMax is the largest size, when it is known, that Put sends in
	// one PUT request, streaming the reader's bytes as they come.
	singlePutMax = 64 << 20
	// defaultPartSize is the size of the parts of a multipart upload. Put
	// holds two parts in memory: one being read while the other is sent.
	defaultPartSize = 16 << 20
	// minPartSize is the least size S3 accepts for a part but the last.
	minPartSize = 5 << 20
	// maxParts is the most parts S3 accepts in one upload.
	maxParts = 10000
	// maxStalls is how many reads in a row may return nothing and no error
	// before Put gives up on its reader.
	maxStalls = 100
)

// errClosed is returned by a reader Put handed to the HTTP client when the
// client reads it after Put has returned.
var errClosed = errors.New("put has returned")

// partPool keeps part buffers of defaultPartSize between uploads.
var partPool = sync.Pool{New: func() any { b := make([]byte, defaultPartSize); return &b }}

// Put stores the bytes read from r under key.
//
// A known size up to 64 MiB goes in one PUT, streamed: the reader never
// hands over the last byte before r has reported its end with exactly size
// bytes, r has returned no error and ctx has not ended, so S3 receives a
// whole body only when Put is to succeed; otherwise the request breaks off
// and S3 discards it. Anything else is read in parts of 16 MiB: a stream
// that ends within the first part goes in one PUT of the buffered bytes,
// and a longer one in a multipart upload, completed only after r has ended
// with the right number of bytes and aborted on any failure. Put thus holds
// at most two parts, 32 MiB, whatever the size of the blob.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	name, err := s.object(key)
	if err != nil {
		return fmt.Errorf("put blob %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put blob %s: %w", key, err)
	}
	if size >= 0 && size <= s.singleMax {
		err = s.putStream(ctx, name, r, size)
	} else {
		err = s.putParts(ctx, name, r, size)
	}
	if err != nil {
		return fmt.Errorf("put blob %s: %w", key, err)
	}
	return nil
}

// putOptions returns the options of every PUT of the store. Over https the
// body is not hashed for the signature (TLS protects it); over http it is,
// chunk by chunk, so that the server checks what it receives.
func (s *Store) putOptions() minio.PutObjectOptions {
	return minio.PutObjectOptions{
		ContentType:          "application/octet-stream",
		DisableContentSha256: s.secure,
	}
}

// putStream stores size bytes of r in one PUT request whose body streams
// from r through an exactReader.
func (s *Store) putStream(ctx context.Context, name string, r io.Reader, size int64) error {
	er := &exactReader{r: r, ctx: ctx, size: size, left: size}
	if size == 0 {
		// An empty body is never read: check r now.
		er.mu.Lock()
		er.checkEnd()
		er.mu.Unlock()
	}
	var err error
	if er.err == nil {
		_, err = s.core.PutObject(ctx, s.bucket, name, er, size, "", "", s.putOptions())
	}
	// The reader's own failure explains the failed request best.
	if rerr := er.close(); rerr != nil {
		return rerr
	}
	if err != nil {
		return translate(ctx, err)
	}
	return nil
}

// putBuffer stores data in one PUT request. The body can be sent again, so
// minio-go may retry it.
func (s *Store) putBuffer(ctx context.Context, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := s.core.PutObject(ctx, s.bucket, name, bytes.NewReader(data), int64(len(data)), "", "", s.putOptions())
	return translate(ctx, err)
}

// exactReader hands over the bytes of r, up to size, and fails unless r
// yields exactly size bytes. It keeps the last of them back until it has
// seen r end, and fails once ctx has ended, so that a request it is the
// body of can complete only with the whole, right content. After close it
// no longer touches r.
type exactReader struct {
	mu     sync.Mutex
	r      io.Reader
	ctx    context.Context
	size   int64
	left   int64 // bytes not yet read from r
	end    bool  // r has ended after exactly size bytes
	err    error // why the reader failed; sticky
	closed bool
}

// Read reads from r.
func (e *exactReader) Read(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.closed:
		return 0, errClosed
	case e.err != nil:
		return 0, e.err
	case e.end:
		return 0, io.EOF
	case e.left == 0:
		e.checkEnd()
		if e.err != nil {
			return 0, e.err
		}
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), e.left)]
	n, err := e.r.Read(p)
	e.left -= int64(n)
	switch {
	case err != nil && err != io.EOF:
		e.err = fmt.Errorf("read: %w", err)
	case err == io.EOF && e.left > 0:
		e.err = fmt.Errorf("reader yields %d bytes, want %d", e.size-e.left, e.size)
	case e.left == 0:
		e.checkEndAfter(err == io.EOF)
	default:
		e.err = e.ctx.Err()
	}
	if e.err != nil {
		return 0, e.err // the bytes of a failed read are never handed over
	}
	return n, nil
}

// checkEnd makes sure r has nothing more to give, then that ctx has not
// ended. It records the outcome in e.end or e.err. e.mu is held.
func (e *exactReader) checkEnd() { e.checkEndAfter(false) }

// checkEndAfter is checkEnd, told whether r has already reported its end.
func (e *exactReader) checkEndAfter(eof bool) {
	var b [1]byte
	for stalls := 0; !eof; stalls++ {
		n, err := e.r.Read(b[:])
		switch {
		case n > 0:
			e.err = fmt.Errorf("reader yields more than %d bytes", e.size)
			return
		case err == io.EOF:
			eof = true
		case err != nil:
			e.err = fmt.Errorf("read: %w", err)
			return
		case stalls >= maxStalls:
			e.err = fmt.Errorf("read: %w", io.ErrNoProgress)
			return
		}
	}
	if err := e.ctx.Err(); err != nil {
		e.err = err
		return
	}
	e.end = true
}

// close stops the reader, waiting for a read in progress, and returns why
// it failed, if it did.
func (e *exactReader) close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return e.err
}

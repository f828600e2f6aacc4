// Package s3blob owns the store.BlobStore kept in an S3 bucket (AWS S3,
// MinIO, Garage, Ceph RGW and other servers that speak the S3 API).
//
// A blob with key "nar/abc.nar.xz" is the object PREFIX/nar/abc.nar.xz of
// the bucket. Keys follow the rules of store.BlobStore, checked before any
// request, so no key names an object outside PREFIX.
//
// Put is atomic because S3 makes an object visible only when its upload
// completes: a single PUT whose body ends early or fails is discarded by
// the server, and a multipart upload shows nothing until it is completed.
// Put completes an upload only after its reader has reached its end with
// exactly the announced number of bytes, and aborts it otherwise (see
// Put). Uploads that a crash leaves incomplete stay invisible but take
// space until Reclaim aborts them.
//
// Errors that say S3 could not be reached or answered with a transient
// failure (a refused or reset connection, a timeout, a 5xx status,
// SlowDown) wrap store.ErrUnavailable; a missing object wraps
// store.ErrNotFound.
package s3blob

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/larder-cache/larder/internal/store"
)

// Store is a store.BlobStore in an S3 bucket, under an optional prefix. It
// is safe for concurrent use, also by several processes on the same bucket.
type Store struct {
	core   minio.Core
	bucket string
	prefix string // "" or a valid key followed by "/"
	secure bool   // the endpoint is https

	singleMax int64 // the largest known size sent in one streamed PUT
	partSize  int   // the size of the parts of multipart uploads
}

var _ store.BlobStore = (*Store)(nil)

// New returns a store on the bucket that client reaches, keeping its blobs
// under prefix ("" for the whole bucket; a prefix follows the key rules).
// It makes no request; Open also checks that the bucket exists.
func New(client *minio.Client, bucket, prefix string) (*Store, error) {
	if err := s3utils.CheckValidBucketName(bucket); err != nil {
		return nil, fmt.Errorf("bucket %q: %w", bucket, err)
	}
	p, err := storePrefix(prefix)
	if err != nil {
		return nil, err
	}
	return &Store{
		core:   minio.Core{Client: client},
		bucket: bucket,
		prefix: p,
		secure: client.EndpointURL().Scheme == "https",

		singleMax: singlePutMax,
		partSize:  defaultPartSize,
	}, nil
}

// Bucket returns the name of the store's bucket.
func (s *Store) Bucket() string { return s.bucket }

// Prefix returns what the names of the store's objects start with: "" or
// the store's prefix followed by a slash.
func (s *Store) Prefix() string { return s.prefix }

// checkBucket fails unless the store's bucket exists and can be reached.
func (s *Store) checkBucket(ctx context.Context) error {
	ok, err := s.core.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("check bucket %s: %w", s.bucket, translate(ctx, err))
	}
	if !ok {
		return fmt.Errorf("bucket %s does not exist", s.bucket)
	}
	return nil
}

// Get opens the blob under key for reading from offset, at most length
// bytes (length < 0 reads to the end). Read errors of the returned reader
// that say the connection broke wrap store.ErrUnavailable.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	name, err := s.object(key)
	if err != nil {
		return nil, fmt.Errorf("get blob %q: %w", key, err)
	}
	if offset < 0 {
		return nil, fmt.Errorf("get blob %s: negative offset %d", key, offset)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get blob %s: %w", key, err)
	}
	if length == 0 {
		// No range asks for nothing; only whether the blob exists matters.
		if _, err := s.stat(ctx, name); err != nil {
			return nil, fmt.Errorf("get blob %s: %w", key, err)
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	var opts minio.GetObjectOptions
	if r := rangeHeader(offset, length); r != "" {
		opts.Set("Range", r)
	}
	body, _, _, err := s.core.GetObject(ctx, s.bucket, name, opts)
	if invalidRange(err) {
		// S3 answers 416 to a range that starts at or past the end of an
		// object that exists (a missing one is 404 whatever the range).
		return io.NopCloser(strings.NewReader("")), nil
	}
	if err != nil {
		return nil, fmt.Errorf("get blob %s: %w", key, translate(ctx, err))
	}
	return &bodyReader{rc: body, ctx: ctx, key: key}, nil
}

// rangeHeader returns the HTTP Range of length bytes from offset, or ""
// for the whole object. Ranges past the end are cut by the server.
func rangeHeader(offset, length int64) string {
	switch {
	case length < 0 || length > math.MaxInt64-offset: // to the end
		if offset == 0 {
			return ""
		}
		return "bytes=" + strconv.FormatInt(offset, 10) + "-"
	default:
		return "bytes=" + strconv.FormatInt(offset, 10) + "-" + strconv.FormatInt(offset+length-1, 10)
	}
}

// bodyReader is the body of a GET. It translates the errors of a broken
// connection into ones wrapping store.ErrUnavailable.
type bodyReader struct {
	rc  io.ReadCloser
	ctx context.Context
	key string
}

// Read reads from the body.
func (r *bodyReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("read blob %s: %w", r.key, translate(r.ctx, err))
	}
	return n, err
}

// Close closes the body.
func (r *bodyReader) Close() error { return r.rc.Close() }

// Stat returns the size and modification time of the blob under key.
func (s *Store) Stat(ctx context.Context, key string) (store.BlobInfo, error) {
	name, err := s.object(key)
	if err != nil {
		return store.BlobInfo{}, fmt.Errorf("stat blob %q: %w", key, err)
	}
	info, err := s.stat(ctx, name)
	if err != nil {
		return store.BlobInfo{}, fmt.Errorf("stat blob %s: %w", key, err)
	}
	info.Key = key
	return info, nil
}

// stat asks S3 for the object called name.
func (s *Store) stat(ctx context.Context, name string) (store.BlobInfo, error) {
	if err := ctx.Err(); err != nil {
		return store.BlobInfo{}, err
	}
	oi, err := s.core.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return store.BlobInfo{}, translate(ctx, err)
	}
	return store.BlobInfo{Size: oi.Size, ModTime: oi.LastModified.UTC()}, nil
}

// Delete removes the blob under key; a missing blob is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.object(key)
	if err != nil {
		return fmt.Errorf("delete blob %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete blob %s: %w", key, err)
	}
	err = s.core.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{})
	if err != nil && !notFound(err) {
		return fmt.Errorf("delete blob %s: %w", key, translate(ctx, err))
	}
	return nil
}

// List calls fn for every blob whose key starts with prefix. Objects under
// the store's prefix whose names are not valid keys (put there by other
// programs) are skipped.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.BlobInfo) error) error {
	if err := store.CheckPrefix(prefix); err != nil {
		return fmt.Errorf("list blobs %q: %w", prefix, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list blobs %q: %w", prefix, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	noOwner := false
	opts := minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true, FetchOwner: &noOwner}
	for oi := range s.core.ListObjectsIter(ctx, s.bucket, opts) {
		if oi.Err != nil {
			return fmt.Errorf("list blobs %q: %w", prefix, translate(ctx, oi.Err))
		}
		key, ok := strings.CutPrefix(oi.Key, s.prefix)
		if !ok || store.CheckKey(key) != nil {
			continue
		}
		err := fn(store.BlobInfo{Key: key, Size: oi.Size, ModTime: oi.LastModified.UTC()})
		if err != nil {
			return fmt.Errorf("list blobs %q: %w", prefix, err)
		}
	}
	// The iterator ends quietly when ctx ends: a cut listing is no listing.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list blobs %q: %w", prefix, err)
	}
	return nil
}

package s3blob

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/store"
	"github.com/minio/minio-go/v7"
)

// markerDir is the directory, under the store's prefix, of the markers of
// multipart uploads: small objects that name the object an upload is for.
// Its name has a character no key may contain, so no key reaches it and
// List skips it.
//
// Markers exist because S3 servers differ in how they list uploads: AWS
// lists those under a prefix, MinIO only those of one object name. Put
// writes a marker before it starts an upload and removes it once the
// upload is completed or aborted, so a marker left behind names an object
// that may have an upload a crash interrupted.
const markerDir = "uploads~/"

// putMarker records that a multipart upload of the object called name is
// about to start, and returns the marker's object name.
func (s *Store) putMarker(ctx context.Context, name string) (string, error) {
	marker := s.prefix + markerDir + strconv.FormatInt(time.Now().UnixNano(), 36) +
		"-" + strings.ToLower(rand.Text())
	opts := minio.PutObjectOptions{ContentType: "text/plain", DisableContentSha256: s.secure}
	_, err := s.core.PutObject(ctx, s.bucket, marker, strings.NewReader(name), int64(len(name)), "", "", opts)
	if err != nil {
		return "", fmt.Errorf("record upload: %w", translate(ctx, err))
	}
	return marker, nil
}

// deleteMarker removes a marker, even when ctx has ended. A failure is
// ignored: a marker left behind only costs Reclaim a few requests.
func (s *Store) deleteMarker(ctx context.Context, marker string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_ = s.core.RemoveObject(ctx, s.bucket, marker, minio.RemoveObjectOptions{})
}

// Reclaim aborts the incomplete multipart uploads under the store's prefix
// that were started more than olderThan ago, and returns how many it
// aborted. They are what a Put leaves when its process dies or S3 cannot
// be reached to abort: invisible, but taking space. An upload still in
// progress that is older than olderThan is aborted too, and its Put fails;
// olderThan should be well above the time the largest Put takes.
//
// Reclaim finds uploads both through the markers Put writes and, on
// servers that can list uploads by prefix, through such a listing. MinIO
// also expires uploads by itself, after a day by default. Ages are
// compared with the server's clock.
func (s *Store) Reclaim(ctx context.Context, olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	n, err := s.reclaimMarked(ctx, cutoff)
	if err != nil {
		return n, fmt.Errorf("reclaim uploads: %w", err)
	}
	m, err := s.abortUploads(ctx, cutoff, s.prefix, false)
	n += m
	if err != nil {
		return n, fmt.Errorf("reclaim uploads: %w", err)
	}
	return n, nil
}

// reclaimMarked aborts the uploads named by markers older than cutoff that
// were started before cutoff, removes the markers, and returns how many
// uploads it aborted.
func (s *Store) reclaimMarked(ctx context.Context, cutoff time.Time) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	noOwner := false
	opts := minio.ListObjectsOptions{Prefix: s.prefix + markerDir, Recursive: true, FetchOwner: &noOwner}
	n := 0
	for oi := range s.core.ListObjectsIter(ctx, s.bucket, opts) {
		if oi.Err != nil {
			return n, translate(ctx, oi.Err)
		}
		if !oi.LastModified.Before(cutoff) {
			continue
		}
		name, err := s.readMarker(ctx, oi.Key)
		if err != nil {
			return n, err
		}
		if name != "" {
			m, err := s.abortUploads(ctx, cutoff, name, true)
			n += m
			if err != nil {
				return n, err
			}
		}
		if err := s.core.RemoveObject(ctx, s.bucket, oi.Key, minio.RemoveObjectOptions{}); err != nil {
			return n, fmt.Errorf("remove marker %s: %w", oi.Key, translate(ctx, err))
		}
	}
	return n, ctx.Err()
}

// readMarker returns the object name a marker holds, or "" if it holds no
// object name of the store.
func (s *Store) readMarker(ctx context.Context, marker string) (string, error) {
	body, _, _, err := s.core.GetObject(ctx, s.bucket, marker, minio.GetObjectOptions{})
	if notFound(err) {
		return "", nil // its Put has just finished
	}
	if err != nil {
		return "", fmt.Errorf("read marker %s: %w", marker, translate(ctx, err))
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, maxObjectLen+1))
	if err != nil {
		return "", fmt.Errorf("read marker %s: %w", marker, translate(ctx, err))
	}
	name := string(b)
	key, ok := strings.CutPrefix(name, s.prefix)
	if !ok || len(name) > maxObjectLen || store.CheckKey(key) != nil {
		return "", nil
	}
	return name, nil
}

// abortUploads aborts the uploads started before cutoff whose object names
// start with prefix, or are prefix if exact, and returns how many.
func (s *Store) abortUploads(ctx context.Context, cutoff time.Time, prefix string, exact bool) (int, error) {
	n := 0
	keyMarker, idMarker := "", ""
	for {
		res, err := s.core.ListMultipartUploads(ctx, s.bucket, prefix, keyMarker, idMarker, "", 1000)
		if err != nil {
			return n, fmt.Errorf("list uploads: %w", translate(ctx, err))
		}
		for _, up := range res.Uploads {
			if exact && up.Key != prefix || !up.Initiated.Before(cutoff) {
				continue
			}
			err := s.core.AbortMultipartUpload(ctx, s.bucket, up.Key, up.UploadID)
			if notFound(err) {
				continue // completed or aborted meanwhile
			}
			if err != nil {
				return n, fmt.Errorf("abort upload of %s: %w", up.Key, translate(ctx, err))
			}
			n++
		}
		if !res.IsTruncated {
			return n, nil
		}
		if res.NextKeyMarker == keyMarker && res.NextUploadIDMarker == idMarker {
			return n, fmt.Errorf("list uploads: truncated listing without a next marker")
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

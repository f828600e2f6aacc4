package s3blob

import (
	"context"
	"fmt"

	"github.com/minio/minio-go/v7"
)

// Compose stores the concatenation of the blobs under parts under key by
// a server-side copy (UploadPartCopy, or CopyObject for one part): the
// bytes stay in the S3 store. Every part but the last must be at least
// 5 MiB, as in any multipart upload.
func (s *Store) Compose(ctx context.Context, key string, parts []string, size int64) error {
	name, err := s.object(key)
	if err != nil {
		return fmt.Errorf("compose blob %q: %w", key, err)
	}
	srcs := make([]minio.CopySrcOptions, len(parts))
	for i, p := range parts {
		pn, err := s.object(p)
		if err != nil {
			return fmt.Errorf("compose blob %s: part %q: %w", key, p, err)
		}
		srcs[i] = minio.CopySrcOptions{Bucket: s.bucket, Object: pn}
	}
	info, err := s.core.ComposeObject(ctx, minio.CopyDestOptions{Bucket: s.bucket, Object: name}, srcs...)
	if err != nil {
		return fmt.Errorf("compose blob %s: %w", key, translate(ctx, err))
	}
	if info.Size != size {
		_ = s.core.RemoveObject(context.WithoutCancel(ctx), s.bucket, name, minio.RemoveObjectOptions{})
		return fmt.Errorf("compose blob %s: the parts hold %d bytes, want %d", key, info.Size, size)
	}
	return nil
}

package compression

import (
	"fmt"
	"io"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// NewWriter returns a writer that compresses what is written to it with
// method into w, at a fast setting: it serves a stored NAR again in the
// method it was uploaded in, for clients that still ask for it that way.
// Close flushes it; it does not close w. Bzip2 has no encoder here and is
// ErrUnsupported.
func NewWriter(method string, w io.Writer) (io.WriteCloser, error) {
	switch method {
	case None:
		return nopCloser{w}, nil
	case XZ:
		return xz.WriterConfig{DictCap: 1 << 20}.NewWriter(w)
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	case Gzip:
		return gzip.NewWriterLevel(w, gzip.BestSpeed)
	case LZ4:
		return lz4.NewWriter(w), nil
	case Brotli:
		return brotli.NewWriterLevel(w, 1), nil
	}
	return nil, fmt.Errorf("%w for writing: %q", ErrUnsupported, method)
}

// Writable reports whether NewWriter supports method.
func Writable(method string) bool { return method != Bzip2 && Supported(method) }

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

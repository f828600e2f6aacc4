package compression

import (
	"bufio"
	"compress/bzip2"
	"fmt"
	"io"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// MaxZstdWindow is the largest zstd window (back-reference distance, and so
// the decoder's history buffer) NewReader accepts: 128 MiB, window log 27.
// It is the limit libzstd's decoder applies by default, and the window of
// the highest compression level ("zstd --ultra -22"), so every NAR Nix
// writes, at any level, fits. Frames asking for more, such as those
// written with "--long=31", are rejected before any memory is allocated
// for them, which bounds a decoder to about this much memory where the
// library's own default (512 MiB, and 64 GiB for single-segment frames)
// would let a few hostile uploads exhaust the server.
const MaxZstdWindow = 128 << 20

// MaxXZDict is the largest xz (LZMA2) dictionary NewReader accepts: 64 MiB,
// the size used by the largest xz presets (-8, -9 and their extreme
// variants), so every NAR Nix or the xz tool writes with a preset fits.
// ulikunitz/xz allocates whatever dictionary a block header asks for, up to
// 4 GiB, so NewReader checks each header before the decoder sees it.
const MaxXZDict = 64 << 20

// DecodeError reports that compressed data could not be decoded: it is
// corrupt, truncated, followed by garbage or exceeds a memory limit.
type DecodeError struct {
	// Method is the name of the method being decoded.
	Method string
	// Err is the decoder's error.
	Err error
}

// Error returns the method and the decoder's message.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("decoding %s data: %v", e.Method, e.Err)
}

// Unwrap returns the decoder's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// NewReader returns a reader of the decompressed content of r, which holds
// data compressed with the named method; "none" passes r through.
//
// Every decoder reads concatenated streams (several xz streams, gzip
// members, zstd or lz4 frames or bzip2 streams one after the other) as one,
// verifies every checksum the format carries and reports truncation and
// trailing garbage as errors, never as a short, clean end. The exception
// no decoder can see is input cut exactly between two concatenated
// streams; and brotli has no checksum, so damage may decode into other
// bytes. Checksums are checked at the end of the data they cover, so
// damaged data may be passed on before the error. Errors other than io.EOF
// from the returned reader are *DecodeError. Decoding runs in
// the caller's goroutine; memory is bounded by MaxZstdWindow, MaxXZDict and
// the formats' own limits (brotli 16 MiB, bzip2 900 kB blocks, lz4 4 MiB
// blocks). Closing the returned reader releases the decoder, not r.
func NewReader(name string, r io.Reader) (io.ReadCloser, error) {
	if name == None {
		return io.NopCloser(r), nil
	}
	src := &nonEmpty{r: r}
	var rc io.ReadCloser
	var err error
	switch name {
	case XZ:
		rc, err = newXZReader(src)
	case Zstd:
		rc, err = newZstdReader(src)
	case Bzip2:
		rc = io.NopCloser(bzip2.NewReader(src))
	case Gzip:
		rc, err = gzip.NewReader(src)
	case LZ4:
		rc = io.NopCloser(lz4.NewReader(src))
	case Brotli:
		rc = io.NopCloser(brotli.NewReader(newHoldTail(src)))
	default:
		return nil, fmt.Errorf("opening a %q decompressor: %w", name, ErrUnsupported)
	}
	if err != nil {
		return nil, &DecodeError{Method: name, Err: err}
	}
	return &decoder{method: name, rc: rc}, nil
}

func newZstdReader(r io.Reader) (io.ReadCloser, error) {
	d, err := zstd.NewReader(r,
		// One decoder, decoding synchronously in the reader's goroutine.
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(MaxZstdWindow),
		// Also bounds the window of single-segment frames, which is their
		// declared content size.
		zstd.WithDecoderMaxMemory(MaxZstdWindow),
	)
	if err != nil {
		return nil, err
	}
	return d.IOReadCloser(), nil
}

func newXZReader(r io.Reader) (io.ReadCloser, error) {
	guard := newXZGuard(bufio.NewReaderSize(r, 64<<10), MaxXZDict)
	// DictCap is a lower bound in ulikunitz/xz: the decoder allocates the
	// larger of it and the block's dictionary, so ask for the minimum and
	// leave the upper bound to the guard.
	cfg := xz.ReaderConfig{DictCap: lzma.MinDictCap}
	x, err := cfg.NewReader(guard)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(x), nil
}

// decoder marks the errors of a decompressing reader as *DecodeError.
type decoder struct {
	method string
	rc     io.ReadCloser
}

func (d *decoder) Read(p []byte) (int, error) {
	n, err := d.rc.Read(p)
	if err != nil && err != io.EOF {
		err = &DecodeError{Method: d.method, Err: err}
	}
	return n, err
}

func (d *decoder) Close() error {
	if err := d.rc.Close(); err != nil {
		return fmt.Errorf("closing the %s decoder: %w", d.method, err)
	}
	return nil
}

// errNoData reports compressed input without a single byte. It wraps
// io.ErrUnexpectedEOF without being equal to it, as decoders that take a
// bare io.ErrUnexpectedEOF between frames for the end of the input would
// otherwise still report a clean, empty result.
var errNoData = fmt.Errorf("no compressed data: %w", io.ErrUnexpectedEOF)

// nonEmpty turns the end of an input that held no byte at all into
// errNoData: some decoders take empty input for an empty stream, but no
// compressed stream is zero bytes long.
type nonEmpty struct {
	r    io.Reader
	seen bool
}

func (n *nonEmpty) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	if k > 0 {
		n.seen = true
	} else if err == io.EOF && !n.seen && len(p) > 0 {
		return 0, errNoData
	}
	return k, err
}

// holdLen is how many bytes holdTail holds back: twice the 8 bytes of the
// brotli decoder's internal buffer for reads that span two inputs.
const holdLen = 16

// holdTail hands its input on with the last holdLen bytes held back until
// the input ends, so that the final bytes always arrive in one Read of at
// least holdLen bytes (or the whole input). andybalholm/brotli reports a
// spurious "excessive input" when a stream's final read spans two pieces of
// input, which would reject valid uploads that happen to arrive in small
// pieces at their very end.
type holdTail struct {
	r          io.Reader
	buf        []byte
	start, end int
	eof        bool
}

func newHoldTail(r io.Reader) *holdTail {
	return &holdTail{r: r, buf: make([]byte, 64<<10)}
}

func (h *holdTail) Read(p []byte) (int, error) {
	for !h.eof && h.end-h.start <= holdLen {
		if h.start > 0 {
			h.end = copy(h.buf, h.buf[h.start:h.end])
			h.start = 0
		}
		n, err := h.r.Read(h.buf[h.end:])
		h.end += n
		if err == io.EOF {
			h.eof = true
		} else if err != nil {
			return 0, err
		}
	}
	pending := h.end - h.start
	if pending == 0 {
		return 0, io.EOF
	}
	n := min(len(p), pending)
	switch {
	case !h.eof:
		n = min(n, pending-holdLen)
	case pending-n > 0 && pending-n < holdLen && pending > holdLen:
		// Do not leave a final piece shorter than holdLen.
		n = pending - holdLen
	}
	copy(p, h.buf[h.start:h.start+n])
	h.start += n
	return n, nil
}

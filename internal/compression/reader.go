package compression

import (
	"bufio"
	"compress/bzip2"
	"context"
	"fmt"
	"io"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// DefaultMaxWindow is the largest window (zstd, brotli) or dictionary
// (xz) a stream may need when Options.MaxWindow is not set: 64 MiB. It is
// the dictionary of the largest xz presets (-8, -9 and their extreme
// variants) and the window of zstd up to level 21, so every NAR Nix or the
// xz and zstd tools write with a preset fits; "zstd --ultra -22" and
// "--long=27" or more (128 MiB and up) do not. A decoder allocates about
// this much, at once, for a stream that asks for it, however short the
// stream is, so the limit is checked before the decoder sees the header.
const DefaultMaxWindow = 64 << 20

// Options bound the memory of a decoder.
type Options struct {
	// MaxWindow is the largest window (zstd, brotli) or dictionary (xz) a
	// stream may need; 0 means DefaultMaxWindow.
	MaxWindow int64
	// Budget, if not nil, is where the decoder reserves its memory from
	// before allocating it.
	Budget *Budget
}

func (o Options) maxWindow() int64 {
	if o.MaxWindow > 0 {
		return o.MaxWindow
	}
	return DefaultMaxWindow
}

// LimitError reports a stream that needs more memory to decode than is
// allowed: a window or dictionary larger than Options.MaxWindow, or more
// memory than the whole Budget holds. Unlike a *BusyError it will not go
// away by trying again.
type LimitError struct {
	// Method is the name of the method being decoded.
	Method string
	// What is the thing too large: "window", "dictionary" or, for the
	// budget, "decoder memory".
	What string
	// Need is what the stream asks for; Max is what is allowed.
	Need, Max int64
	// Budget tells that Max is the budget's size, not Options.MaxWindow.
	Budget bool
}

// Error says what was asked for and what is allowed.
func (e *LimitError) Error() string {
	if e.Budget {
		return fmt.Sprintf("needs %s of decoder memory, more than all %s of the budget", mib(e.Need), mib(e.Max))
	}
	return fmt.Sprintf("needs a %s of %s, more than the %s allowed", e.What, mib(e.Need), mib(e.Max))
}

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
// data compressed with the named method; "none" passes r through. It is
// Open without a context or a budget, with the default window limit.
func NewReader(name string, r io.Reader) (io.ReadCloser, error) {
	return Open(context.Background(), name, r, Options{})
}

// Open returns a reader of the decompressed content of r, which holds data
// compressed with the named method; "none" passes r through.
//
// Every decoder reads concatenated streams (several xz streams, gzip
// members, zstd or lz4 frames or bzip2 streams one after the other) as one,
// verifies every checksum the format carries and reports truncation and
// trailing garbage as errors, never as a short, clean end. The exception
// no decoder can see is input cut exactly between two concatenated
// streams; and brotli has no checksum, so damage may decode into other
// bytes. Checksums are checked at the end of the data they cover, so
// damaged data may be passed on before the error. Errors other than io.EOF
// from Open and the returned reader are *DecodeError. Decoding runs in the
// caller's goroutine. Closing the returned reader releases the decoder,
// and what it reserved of the budget, but not r.
//
// Memory is bounded before it is allocated. The headers that make a
// decoder allocate (a zstd or lz4 frame header, an xz block header, a
// brotli stream's window) are read and checked before the decoder sees
// them: a window or dictionary larger than opts.MaxWindow fails with a
// *LimitError. With opts.Budget, each header's need is then reserved from
// the budget, waiting as it allows (a *BusyError if there is no room in
// time; ctx ends the wait early). An lz4 frame needs two of the blocks its
// header names (4 MiB at most, 8 MiB for legacy frames); bzip2 and gzip,
// which need little, reserve what their formats allow at most (900 kB
// blocks, the 32 KiB deflate window) when opened. A frame of a
// concatenated stream needing more than those before it grows the
// reservation, waiting as the first did.
func Open(ctx context.Context, name string, r io.Reader, opts Options) (io.ReadCloser, error) {
	if name == None {
		return io.NopCloser(r), nil
	}
	if !Supported(name) {
		return nil, fmt.Errorf("opening a %q decompressor: %w", name, ErrUnsupported)
	}
	res := &reservation{ctx: ctx, budget: opts.Budget}
	rc, err := openDecoder(name, &nonEmpty{r: r}, opts.maxWindow(), res)
	if err != nil {
		res.release()
		if res.err != nil {
			err = res.err
		}
		return nil, &DecodeError{Method: name, Err: err}
	}
	return &decoder{method: name, rc: rc, res: res}, nil
}

// openDecoder reserves what the decoder of the named method needs for the
// start of src, then opens it.
func openDecoder(name string, src io.Reader, maxWindow int64, res *reservation) (io.ReadCloser, error) {
	switch name {
	case XZ:
		return newXZReader(src, maxWindow, res)
	case Zstd:
		return newZstdReader(src, maxWindow, res)
	case LZ4:
		return newLZ4Reader(src, res)
	case Brotli:
		return newBrotliReader(src, maxWindow, res)
	case Bzip2:
		if err := res.need(bzip2Need); err != nil {
			return nil, err
		}
		return io.NopCloser(bzip2.NewReader(src)), nil
	case Gzip:
		if err := res.need(gzipNeed); err != nil {
			return nil, err
		}
		return gzip.NewReader(src)
	}
	return nil, fmt.Errorf("opening a %q decompressor: %w", name, ErrUnsupported)
}

// What the decoders allocate, as measured with the versions in go.mod
// (TestReservationsCoverDecoders checks each against the heap): the
// history of a zstd frame is its window plus two blocks of room, an xz
// block its dictionary, a brotli stream its window, an lz4 frame two
// blocks; each decoder adds buffers and tables of its own.
const (
	zstdOverhead   = 640 << 10
	xzOverhead     = 256 << 10
	brotliOverhead = 512 << 10
	lz4Overhead    = 256 << 10
	lz4LegacyNeed  = 25 << 20 // three buffers of the 8 MiB blocks of legacy frames
	bzip2Need      = 4 << 20  // 900 kB blocks of 32-bit entries, and tables
	gzipNeed       = 256 << 10
)

func zstdNeed(window int64) int64 { return window + 2*min(window, 128<<10) + zstdOverhead }

func xzNeed(dict int64) int64 { return dict + xzOverhead }

func newZstdReader(r io.Reader, maxWindow int64, res *reservation) (io.ReadCloser, error) {
	g := newZstdGuard(r, maxWindow, res)
	// Check and reserve the first frame before the decoder allocates.
	if err := g.prime(); err != nil {
		return nil, err
	}
	d, err := zstd.NewReader(g,
		// One decoder, decoding synchronously in the reader's goroutine.
		zstd.WithDecoderConcurrency(1),
		// The guard refuses larger windows first; the decoder's own limits
		// stay as a second line.
		zstd.WithDecoderMaxWindow(uint64(maxWindow)),
		// Also bounds the window of single-segment frames, which is their
		// declared content size.
		zstd.WithDecoderMaxMemory(uint64(maxWindow)),
	)
	if err != nil {
		return nil, err
	}
	return d.IOReadCloser(), nil
}

func newXZReader(r io.Reader, maxWindow int64, res *reservation) (io.ReadCloser, error) {
	g := newXZGuard(bufio.NewReaderSize(r, 64<<10), maxWindow, res)
	if err := g.prime(); err != nil {
		return nil, err
	}
	// DictCap is a lower bound in ulikunitz/xz: the decoder allocates the
	// larger of it and the block's dictionary, so ask for the minimum and
	// leave the upper bound to the guard.
	cfg := xz.ReaderConfig{DictCap: lzma.MinDictCap}
	x, err := cfg.NewReader(g)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(x), nil
}

func newLZ4Reader(r io.Reader, res *reservation) (io.ReadCloser, error) {
	g := newLZ4Guard(r, res)
	if err := g.prime(); err != nil {
		return nil, err
	}
	return io.NopCloser(lz4.NewReader(g)), nil
}

func newBrotliReader(r io.Reader, maxWindow int64, res *reservation) (io.ReadCloser, error) {
	src := bufio.NewReaderSize(r, 16)
	// A brotli stream is one stream, whose first bits give its window.
	b, err := src.Peek(1)
	if err != nil {
		return nil, err
	}
	// Values the decoder refuses at once need nothing but the decoder.
	var window int64
	if bits, ok := brotliWindowBits(b[0]); ok {
		window = 1 << bits
	}
	if err := res.frame(Brotli, "window", window, maxWindow, window+brotliOverhead); err != nil {
		return nil, err
	}
	return io.NopCloser(brotli.NewReader(newHoldTail(src))), nil
}

// brotliWindowBits decodes the WBITS field that opens a brotli stream (RFC
// 7932, section 9.1) from its first byte. It reports false for the values
// the format reserves, and for the large-window extension, which the
// decoder does not support.
func brotliWindowBits(b byte) (uint, bool) {
	switch {
	case b&1 == 0:
		return 16, true
	case b>>1&7 != 0:
		return 17 + uint(b>>1&7), true
	case b>>4&7 == 1:
		return 0, false
	case b>>4&7 != 0:
		return 8 + uint(b>>4&7), true
	}
	return 17, true
}

// decoder marks the errors of a decompressing reader as *DecodeError and
// gives back its reservation when closed.
type decoder struct {
	method string
	rc     io.ReadCloser
	res    *reservation
}

func (d *decoder) Read(p []byte) (int, error) {
	n, err := d.rc.Read(p)
	if err != nil && err != io.EOF {
		if g := d.res.err; g != nil {
			// A guard's refusal, whatever the decoder made of it.
			err = g
		}
		err = &DecodeError{Method: d.method, Err: err}
	}
	return n, err
}

func (d *decoder) Close() error {
	err := d.rc.Close()
	d.res.release()
	if err != nil {
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

package compression

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// errTruncatedZstd reports input that ends inside a zstd frame.
var errTruncatedZstd = fmt.Errorf("zstd data ends early: %w", io.ErrUnexpectedEOF)

// zstdGuard follows zstd frames (RFC 8878): frame headers, block headers
// and checksums. It refuses a frame whose window exceeds maxWindow and
// reserves each frame's need before the decoder reads its header.
// Skippable frames carry nothing the decoder uses, so the guard consumes
// them itself.
type zstdGuard struct {
	guard
	maxWindow int64
	res       *reservation
	inFrame   bool
	checksum  bool // the current frame ends with a 4-byte checksum
	last      bool // the current block is the frame's last
}

func newZstdGuard(r io.Reader, maxWindow int64, res *reservation) *zstdGuard {
	g := &zstdGuard{maxWindow: maxWindow, res: res}
	g.guard = guard{src: bufio.NewReaderSize(r, 64<<10), step: g.next, truncated: errTruncatedZstd}
	return g
}

func (g *zstdGuard) next() error {
	if !g.inFrame {
		return g.frameStart()
	}
	if g.last {
		g.inFrame = false
		if g.checksum {
			g.pass = 4
		}
		return nil
	}
	return g.block()
}

const (
	zstdMagic     = 0xfd2fb528
	zstdSkipMagic = 0x184d2a50 // and the 15 values above it
)

func (g *zstdGuard) frameStart() error {
	h, err := g.peekUpTo(4)
	switch {
	case err != nil:
		return err
	case len(h) == 0:
		return io.EOF
	case len(h) < 4:
		return g.truncated
	}
	switch magic := binary.LittleEndian.Uint32(h); {
	case magic == zstdMagic:
	case magic&^0xf == zstdSkipMagic:
		h, err := g.peek(8)
		if err != nil {
			return err
		}
		return g.discard(8 + int64(binary.LittleEndian.Uint32(h[4:])))
	default:
		return errors.New("reading a zstd frame: bad magic bytes")
	}
	h, err = g.peekUpTo(zstdMaxHeader)
	if err != nil {
		return err
	}
	f, err := parseZstdHeader(h)
	if err != nil {
		return err
	}
	if err := g.res.frame(Zstd, "window", f.window, g.maxWindow, zstdNeed(f.window)); err != nil {
		return err
	}
	g.pass = int64(f.headerLen)
	g.inFrame, g.last, g.checksum = true, false, f.checksum
	return nil
}

// block reads a block header and hands through the whole block.
func (g *zstdGuard) block() error {
	h, err := g.peek(3)
	if err != nil {
		return err
	}
	bh := uint32(h[0]) | uint32(h[1])<<8 | uint32(h[2])<<16
	g.last = bh&1 != 0
	size := int64(bh >> 3)
	switch bh >> 1 & 3 {
	case 0: // raw
		g.pass = 3 + size
	case 1: // RLE: one byte, repeated size times
		g.pass = 3 + 1
	case 2: // compressed
		g.pass = 3 + size
	default:
		return errors.New("reading a zstd block: reserved block type")
	}
	return nil
}

// zstdMaxHeader is the longest zstd frame header: magic, descriptor,
// window descriptor, 4-byte dictionary ID and 8-byte content size.
const zstdMaxHeader = 4 + 1 + 1 + 4 + 8

// zstdHeader is what the guard needs of a zstd frame header.
type zstdHeader struct {
	headerLen int
	window    int64 // as the decoder sizes its history
	checksum  bool
}

// parseZstdHeader parses the frame header at the start of h, which holds
// up to zstdMaxHeader bytes (fewer only at the end of the input), the
// magic bytes first.
func parseZstdHeader(h []byte) (zstdHeader, error) {
	if len(h) < 5 {
		return zstdHeader{}, errTruncatedZstd
	}
	fhd := h[4]
	single := fhd&0x20 != 0
	if fhd&0x08 != 0 {
		return zstdHeader{}, errors.New("reading a zstd frame header: reserved bit set")
	}
	dictLen := [4]int{0, 1, 2, 4}[fhd&3]
	sizeLen := [4]int{0, 2, 4, 8}[fhd>>6]
	if sizeLen == 0 && single {
		sizeLen = 1
	}
	f := zstdHeader{headerLen: 5 + dictLen + sizeLen, checksum: fhd&0x04 != 0}
	if !single {
		f.headerLen++
	}
	if len(h) < f.headerLen {
		return zstdHeader{}, errTruncatedZstd
	}
	if !single {
		wd := h[5]
		base := int64(1) << (10 + wd>>3)
		f.window = base + base/8*int64(wd&7)
		return f, nil
	}
	// A single-segment frame's window is its content size.
	b := h[f.headerLen-sizeLen : f.headerLen]
	var size uint64
	switch sizeLen {
	case 1:
		size = uint64(b[0])
	case 2:
		size = uint64(binary.LittleEndian.Uint16(b)) + 256
	case 4:
		size = uint64(binary.LittleEndian.Uint32(b))
	case 8:
		size = binary.LittleEndian.Uint64(b)
	}
	f.window = int64(min(max(size, 1<<10), 1<<62))
	return f, nil
}

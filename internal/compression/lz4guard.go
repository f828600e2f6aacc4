package compression

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// errTruncatedLZ4 reports input that ends inside an lz4 frame.
var errTruncatedLZ4 = fmt.Errorf("lz4 data ends early: %w", io.ErrUnexpectedEOF)

// lz4Guard follows lz4 frames (the LZ4 frame format 1.6.x): frame
// descriptors, block sizes, checksums and end marks. It reserves each
// frame's need, two of its blocks, before the decoder reads its
// descriptor. Skippable frames carry nothing the decoder uses, so the
// guard consumes them itself. A legacy frame runs to the end of the input
// (the decoder allows nothing but more legacy frames after it), and its
// blocks all have the largest size, so the guard hands the rest through.
type lz4Guard struct {
	guard
	res       *reservation
	inFrame   bool
	blockSums bool // blocks are followed by a 4-byte checksum
	frameSum  bool // the end mark is followed by a 4-byte checksum
}

func newLZ4Guard(r io.Reader, res *reservation) *lz4Guard {
	g := &lz4Guard{res: res}
	g.guard = guard{src: bufio.NewReaderSize(r, 64<<10), step: g.next, truncated: errTruncatedLZ4}
	return g
}

const (
	lz4Magic       = 0x184d2204
	lz4LegacyMagic = 0x184c2102
	lz4SkipMagic   = 0x184d2a50 // and the 15 values above it
)

func (g *lz4Guard) next() error {
	if g.inFrame {
		return g.block()
	}
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
	case magic == lz4Magic:
		return g.frameHeader()
	case magic == lz4LegacyMagic:
		if err := g.res.need(lz4LegacyNeed); err != nil {
			return err
		}
		g.pass = math.MaxInt64
		g.truncated = nil // the input may end anywhere: the decoder checks
		return nil
	case magic&^0xf == lz4SkipMagic:
		h, err := g.peek(8)
		if err != nil {
			return err
		}
		return g.discard(8 + int64(binary.LittleEndian.Uint32(h[4:])))
	}
	return errors.New("reading an lz4 frame: bad magic bytes")
}

// frameHeader checks a frame descriptor and reserves the frame's need.
func (g *lz4Guard) frameHeader() error {
	h, err := g.peek(7) // magic, FLG, BD and the descriptor checksum
	if err != nil {
		return err
	}
	flg, bd := h[4], h[5]
	n := 7
	if flg&0x08 != 0 { // content size
		n += 8
	}
	if flg&0x01 != 0 { // dictionary ID
		n += 4
	}
	idx := bd >> 4 & 7
	if idx < 4 {
		return fmt.Errorf("reading an lz4 frame descriptor: bad block size code %d", idx)
	}
	block := int64(1) << (8 + 2*idx) // 64 KiB, 256 KiB, 1 MiB, 4 MiB
	if err := g.res.need(2*block + lz4Overhead); err != nil {
		return err
	}
	g.pass = int64(n)
	g.inFrame = true
	g.blockSums, g.frameSum = flg&0x10 != 0, flg&0x04 != 0
	return nil
}

// block reads a block size and hands through the block, or the end mark.
func (g *lz4Guard) block() error {
	h, err := g.peek(4)
	if err != nil {
		return err
	}
	size := int64(binary.LittleEndian.Uint32(h) &^ (1 << 31)) // high bit: stored uncompressed
	if binary.LittleEndian.Uint32(h) == 0 {
		g.inFrame = false
		g.pass = 4
		if g.frameSum {
			g.pass += 4
		}
		return nil
	}
	g.pass = 4 + size
	if g.blockSums {
		g.pass += 4
	}
	return nil
}

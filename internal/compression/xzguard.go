package compression

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// xzState names the structure of an xz file that starts at the guard's
// position once the bytes of the previous one have been handed through.
type xzState int

const (
	xzStreamHeader xzState = iota // 12-byte stream header
	xzBlockOrIndex                // block header, or the index indicator
	xzChunk                       // LZMA2 chunk header (or end marker)
	xzBlockTail                   // block padding and check
	xzIndexRecord                 // one index record
	xzIndexTail                   // index padding, CRC32 and stream footer
	xzAfterStream                 // end of input, stream padding or a new stream
)

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

// xzCheckLen gives the length of a block's check field for each check type
// of the stream flags (xz file format 1.0.4, section 3.4).
var xzCheckLen = [16]int64{0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64}

// errTruncatedXZ reports input that ends inside an xz structure.
var errTruncatedXZ = fmt.Errorf("xz data ends early: %w", io.ErrUnexpectedEOF)

// xzGuard follows the xz container format (stream headers, block headers,
// LZMA2 chunk headers, block checks, indexes, footers and stream padding)
// by their headers alone, so that it can refuse a block whose dictionary
// exceeds maxDict, and reserve the dictionary of each block, before the
// decoder sees the header and allocates the dictionary. It also reports
// input that ends anywhere but after a complete stream as
// io.ErrUnexpectedEOF, which the decoder does not do for input that ends
// right after a stream header. Checking checksums and sizes is left to the
// decoder.
type xzGuard struct {
	guard    // src needs at least 1024 bytes of buffer, for block headers
	maxDict  int64
	res      *reservation
	state    xzState
	checkLen int64  // check field length of the current stream's blocks
	unpadded int64  // block header and compressed size of the current block
	records  uint64 // index records still to read
	indexLen int64  // bytes of the current index read so far
}

func newXZGuard(src *bufio.Reader, maxDict int64, res *reservation) *xzGuard {
	g := &xzGuard{maxDict: maxDict, res: res}
	g.guard = guard{src: src, step: g.next, truncated: errTruncatedXZ}
	return g
}

// next reads the header of the structure at the current position, checks
// it and sets how many bytes to hand through and what comes next. It
// returns io.EOF when the input ends cleanly after a stream.
func (g *xzGuard) next() error {
	switch g.state {
	case xzStreamHeader:
		return g.streamHeader()
	case xzBlockOrIndex:
		return g.blockOrIndex()
	case xzChunk:
		return g.chunk()
	case xzBlockTail:
		g.pass = (4-g.unpadded%4)%4 + g.checkLen
		g.state = xzBlockOrIndex
		return nil
	case xzIndexRecord:
		return g.indexRecord()
	case xzIndexTail:
		g.pass = (4-g.indexLen%4)%4 + 4 + 12
		g.state = xzAfterStream
		return nil
	default:
		return g.afterStream()
	}
}

func (g *xzGuard) streamHeader() error {
	h, err := g.peek(12)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(h, xzMagic) {
		return errors.New("reading an xz stream header: bad magic bytes")
	}
	g.checkLen = xzCheckLen[h[7]&0x0f]
	g.pass = 12
	g.state = xzBlockOrIndex
	return g.lookAhead()
}

// lookAhead checks and reserves the block header that follows the stream
// header at the current position, if there is one, so that the first
// block's dictionary is reserved before the decoder is made. The checks
// are those blockHeader makes again when the block is reached; what cannot
// be read now is left to it.
func (g *xzGuard) lookAhead() error {
	h, err := g.src.Peek(12 + 1)
	if err != nil || h[12] == 0 {
		return nil
	}
	size := int(h[12])*4 + 4
	if h, err = g.src.Peek(12 + size); err != nil {
		return nil
	}
	if err := g.checkBlockHeader(h[12:]); err != nil && g.res.err != nil {
		return err
	}
	return nil
}

func (g *xzGuard) blockOrIndex() error {
	b, err := g.peek(1)
	if err != nil {
		return err
	}
	if b[0] != 0 {
		return g.blockHeader(int(b[0])*4 + 4)
	}
	// Index: indicator, number of records, records, padding, CRC32.
	h, err := g.peekUpTo(1 + 9)
	if err != nil {
		return err
	}
	count, n, err := xzVarint(h[1:], len(h) < 10)
	if err != nil {
		return fmt.Errorf("reading the xz index: %w", err)
	}
	g.records = count
	g.indexLen = int64(1 + n)
	g.pass = g.indexLen
	g.state = xzIndexRecord
	if count == 0 {
		g.state = xzIndexTail
	}
	return nil
}

func (g *xzGuard) indexRecord() error {
	h, err := g.peekUpTo(18)
	if err != nil {
		return err
	}
	short := len(h) < 18
	_, n1, err := xzVarint(h, short)
	if err == nil {
		_, n2, err2 := xzVarint(h[n1:], short)
		n1, err = n1+n2, err2
	}
	if err != nil {
		return fmt.Errorf("reading an xz index record: %w", err)
	}
	g.indexLen += int64(n1)
	g.pass = int64(n1)
	g.records--
	if g.records == 0 {
		g.state = xzIndexTail
	}
	return nil
}

// blockHeader checks the block header of size bytes at the current
// position and hands it through.
func (g *xzGuard) blockHeader(size int) error {
	h, err := g.peek(size)
	if err != nil {
		return err
	}
	if err := g.checkBlockHeader(h); err != nil {
		return err
	}
	g.pass = int64(size)
	g.unpadded = int64(size)
	g.state = xzChunk
	return nil
}

// checkBlockHeader checks a block header, h: the dictionary of its LZMA2
// filter must not exceed maxDict, and is reserved.
func (g *xzGuard) checkBlockHeader(h []byte) error {
	flags := h[1]
	fields := h[2 : len(h)-4] // without the CRC32
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
		if !present {
			continue
		}
		_, n, err := xzVarint(fields, false)
		if err != nil {
			return fmt.Errorf("reading an xz block header: %w", err)
		}
		fields = fields[n:]
	}
	for range int(flags&0x03) + 1 {
		var err error
		if fields, err = g.filterFlags(fields); err != nil {
			if g.res.err != nil {
				return err // a refusal: no need to say where it was read
			}
			return fmt.Errorf("reading an xz block header: %w", err)
		}
	}
	return nil
}

// filterFlags checks one filter's flags at the start of fields and returns
// the fields after them.
func (g *xzGuard) filterFlags(fields []byte) ([]byte, error) {
	id, n, err := xzVarint(fields, false)
	if err != nil {
		return nil, err
	}
	fields = fields[n:]
	propsLen, n, err := xzVarint(fields, false)
	if err != nil {
		return nil, err
	}
	fields = fields[n:]
	if propsLen > uint64(len(fields)) {
		return nil, errors.New("filter properties overrun the header")
	}
	props := fields[:propsLen]
	const lzma2ID = 0x21
	if id == lzma2ID {
		if len(props) != 1 {
			return nil, errors.New("bad LZMA2 filter properties")
		}
		dict, err := lzma2Dict(props[0])
		if err != nil {
			return nil, err
		}
		if err := g.res.frame(XZ, "dictionary", dict, g.maxDict, xzNeed(dict)); err != nil {
			return nil, err
		}
	}
	return fields[propsLen:], nil
}

// lzma2Dict decodes the dictionary size byte of the LZMA2 filter.
func lzma2Dict(b byte) (int64, error) {
	switch {
	case b > 40:
		return 0, fmt.Errorf("bad LZMA2 dictionary size byte %d", b)
	case b == 40:
		return 1<<32 - 1, nil
	}
	return int64(2|b&1) << (b/2 + 11), nil
}

// chunk reads an LZMA2 chunk header and hands through the whole chunk.
func (g *xzGuard) chunk() error {
	b, err := g.peek(1)
	if err != nil {
		return err
	}
	c := b[0]
	switch {
	case c == 0x00: // end of the block's data
		g.pass = 1
		g.state = xzBlockTail
	case c == 0x01 || c == 0x02: // uncompressed chunk
		h, err := g.peek(3)
		if err != nil {
			return err
		}
		g.pass = 3 + int64(binary.BigEndian.Uint16(h[1:3])) + 1
	case c >= 0x80: // LZMA chunk; a properties byte follows from 0xc0 on
		h, err := g.peek(5)
		if err != nil {
			return err
		}
		g.pass = 5 + int64(binary.BigEndian.Uint16(h[3:5])) + 1
		if c >= 0xc0 {
			g.pass++
		}
	default:
		return fmt.Errorf("reading an LZMA2 chunk: bad control byte %#02x", c)
	}
	g.unpadded += g.pass
	return nil
}

func (g *xzGuard) afterStream() error {
	b, err := g.src.Peek(1)
	switch {
	case len(b) == 0 && err == io.EOF:
		return io.EOF
	case len(b) == 0:
		return err
	case b[0] == 0: // stream padding comes in groups of four zero bytes
		g.pass = 4
	case b[0] == xzMagic[0]:
		g.state = xzStreamHeader
	default:
		return errors.New("unexpected data after the xz stream")
	}
	return nil
}

// xzVarint decodes an xz multibyte integer at the start of b. short tells
// that b holds all that is left of the input.
func xzVarint(b []byte, short bool) (v uint64, n int, err error) {
	for i := 0; i < len(b) && i < 9; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1, nil
		}
	}
	if short && len(b) < 9 {
		return 0, 0, errTruncatedXZ
	}
	return 0, 0, errors.New("bad multibyte integer")
}

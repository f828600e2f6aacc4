package compression

import (
	"bufio"
	"io"
)

// guard stands between compressed input and a decoder. It follows the
// structure of the format by its headers alone, handing the bytes of each
// structure through unchanged, so that it can check the next header that
// would make the decoder allocate (and reserve what it needs) before the
// decoder sees it. step, given by each format, reads the header at the
// current position and sets pass to the bytes to hand through before the
// next step (or leaves it 0 to step again, having consumed the header
// itself); it returns io.EOF at a clean end of the input. Input that ends
// inside a structure is reported as truncated, unless truncated is nil.
type guard struct {
	src       *bufio.Reader
	step      func() error
	pass      int64 // bytes of the current structure still to hand through
	truncated error
	err       error
}

// Read hands through the input up to the end of the current structure,
// checking the next structure's header first when it is reached.
func (g *guard) Read(p []byte) (int, error) {
	if err := g.fill(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > g.pass {
		p = p[:g.pass]
	}
	n, err := g.src.Read(p)
	g.pass -= int64(n)
	if err == io.EOF {
		switch {
		case g.pass == 0:
			err = nil // the next step sees the end
		case g.truncated != nil:
			err = g.truncated
		}
	}
	if err != nil {
		g.err = err
	}
	return n, err
}

// fill steps until there are bytes to hand through.
func (g *guard) fill() error {
	if g.err != nil {
		return g.err
	}
	for g.pass == 0 {
		if err := g.step(); err != nil {
			g.err = err
			return err
		}
	}
	return nil
}

// prime checks (and reserves) the first structure before the decoder is
// made. An input that ends at once is not an error here: the decoder
// will see the end and say what it makes of it.
func (g *guard) prime() error {
	if err := g.fill(); err != nil && err != io.EOF {
		return err
	}
	return nil
}

// peek returns the next n bytes without consuming them.
func (g *guard) peek(n int) ([]byte, error) {
	b, err := g.src.Peek(n)
	if len(b) == n {
		return b, nil
	}
	if err == io.EOF {
		return nil, g.truncated
	}
	return nil, err
}

// peekUpTo returns up to n next bytes, fewer only at the end of the input.
func (g *guard) peekUpTo(n int) ([]byte, error) {
	b, err := g.src.Peek(n)
	if len(b) < n && err != io.EOF {
		return nil, err
	}
	return b, nil
}

// discard consumes the next n bytes, which the decoder does not need to
// see.
func (g *guard) discard(n int64) error {
	for n > 0 {
		k, err := g.src.Discard(int(min(n, 1<<30)))
		n -= int64(k)
		if err == io.EOF && n > 0 {
			return g.truncated
		} else if err != nil {
			return err
		}
	}
	return nil
}

package narverify

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"
)

// The NAR format, in Nix's wire format where every string is a
// little-endian uint64 length followed by the bytes, zero-padded to a
// multiple of eight:
//
//	nar       = "nix-archive-1" node
//	node      = "(" "type" ( regular | symlink | directory ) ")"
//	regular   = "regular" [ "executable" "" ] "contents" <bytes>
//	symlink   = "symlink" "target" <target>
//	directory = "directory" { "entry" "(" "name" <name> "node" node ")" }
//
// Entries are sorted by name, strictly (so without duplicates). The parser
// below accepts exactly the canonical form Nix writes and checks what Nix's
// own parser checks: names are not empty, ".", ".." and hold no "/" or NUL,
// entries are sorted, padding is zero. It runs without recursion and
// without goroutines, so neither deep nesting nor an early stop can make it
// exhaust the stack or leak.

const (
	narMagic = "nix-archive-1"
	// maxTokenLen bounds the keywords; the longest is "nix-archive-1".
	maxTokenLen = 16
	// maxNameLen bounds entry names; Linux allows 255 bytes, other systems
	// somewhat more in UTF-8.
	maxNameLen = 1024
	// maxTargetLen bounds symlink targets: Linux's PATH_MAX.
	maxTargetLen = 4096
	// maxDepth bounds directory nesting; no real path comes near it.
	maxDepth = 4096
)

// narParser checks one NAR read from r. The data is not copied except for
// keywords, names and targets: file contents are skipped in the buffer.
type narParser struct {
	r    *bufio.Reader
	buf  []byte     // scratch for strings
	dirs []dirState // open directories, the root first
	name string     // name of the entry being parsed, for error messages
}

// dirState is an open directory: its name in its parent and the name of its
// last entry so far.
type dirState struct {
	name, last string
}

// parseNAR reads exactly one NAR from r, leaving r just after it.
func parseNAR(r *bufio.Reader) error {
	p := &narParser{r: r, buf: make([]byte, maxTargetLen+8)}
	if err := p.expect(narMagic); err != nil {
		return fmt.Errorf("reading the NAR magic: %w", err)
	}
	if err := p.node(); err != nil {
		return p.at(err)
	}
	for len(p.dirs) > 0 {
		if err := p.dirItem(); err != nil {
			return p.at(err)
		}
	}
	return nil
}

// at adds to err the path of the node being parsed.
func (p *narParser) at(err error) error {
	var b strings.Builder
	for _, d := range p.dirs[min(1, len(p.dirs)):] {
		b.WriteString("/" + d.name)
	}
	if p.name != "" {
		b.WriteString("/" + p.name)
	}
	if b.Len() == 0 {
		b.WriteString("/")
	}
	return fmt.Errorf("at %s: %w", b.String(), err)
}

// node parses a node up to its type. A regular file or symlink is parsed
// whole, together with the ")" of the entry holding it; a directory is
// opened, and dirItem parses its entries.
func (p *narParser) node() error {
	if err := p.expect("("); err != nil {
		return err
	}
	if err := p.expect("type"); err != nil {
		return err
	}
	typ, err := p.token()
	if err != nil {
		return err
	}
	switch typ {
	case "regular":
		err = p.regular()
	case "symlink":
		err = p.symlink()
	case "directory":
		if len(p.dirs) == maxDepth {
			return fmt.Errorf("directories nested more than %d deep", maxDepth)
		}
		p.dirs = append(p.dirs, dirState{name: p.name})
		p.name = ""
		return nil
	default:
		return fmt.Errorf("unknown node type %q", typ)
	}
	if err != nil {
		return err
	}
	return p.endNode()
}

// endNode reads the ")" closing a node and, inside a directory, the ")"
// closing its entry.
func (p *narParser) endNode() error {
	if err := p.expect(")"); err != nil {
		return err
	}
	if len(p.dirs) == 0 {
		return nil
	}
	if err := p.expect(")"); err != nil {
		return err
	}
	p.name = ""
	return nil
}

// dirItem parses the next entry of the innermost open directory, or its end.
func (p *narParser) dirItem() error {
	tok, err := p.token()
	if err != nil {
		return err
	}
	switch tok {
	case ")":
		d := p.dirs[len(p.dirs)-1]
		p.dirs = p.dirs[:len(p.dirs)-1]
		if len(p.dirs) == 0 {
			return nil
		}
		p.name = d.name
		if err := p.expect(")"); err != nil {
			return err
		}
		p.name = ""
		return nil
	case "entry":
		return p.entry()
	}
	return fmt.Errorf("expected \"entry\" or \")\", found %q", tok)
}

func (p *narParser) entry() error {
	if err := p.expect("("); err != nil {
		return err
	}
	if err := p.expect("name"); err != nil {
		return err
	}
	b, err := p.bytes(maxNameLen, "entry name")
	if err != nil {
		return err
	}
	name := string(b)
	if err := checkName(name); err != nil {
		return err
	}
	d := &p.dirs[len(p.dirs)-1]
	switch {
	case d.last == "":
	case name == d.last:
		return fmt.Errorf("duplicate entry %q", name)
	case name < d.last:
		return fmt.Errorf("entries are not sorted: %q comes after %q", name, d.last)
	}
	d.last = name
	p.name = name
	if err := p.expect("node"); err != nil {
		return err
	}
	return p.node()
}

// checkName applies Nix's rules for entry names.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid entry name %q", name)
	}
	return nil
}

func (p *narParser) regular() error {
	tok, err := p.token()
	if err != nil {
		return err
	}
	if tok == "executable" {
		b, err := p.bytes(maxTokenLen, "executable marker")
		if err != nil {
			return err
		}
		if len(b) != 0 {
			return fmt.Errorf("executable marker has the value %q, not \"\"", b)
		}
		if tok, err = p.token(); err != nil {
			return err
		}
	}
	if tok != "contents" {
		return fmt.Errorf("expected \"contents\", found %q", tok)
	}
	return p.contents()
}

func (p *narParser) symlink() error {
	if err := p.expect("target"); err != nil {
		return err
	}
	b, err := p.bytes(maxTargetLen, "symlink target")
	if err != nil {
		return err
	}
	if len(b) == 0 || strings.ContainsRune(string(b), 0) {
		return fmt.Errorf("invalid symlink target %q", b)
	}
	return nil
}

// contents skips a file's contents without copying them.
func (p *narParser) contents() error {
	n, err := p.uint64()
	if err != nil {
		return err
	}
	if n > math.MaxInt64-8 {
		return fmt.Errorf("file size %d is out of range", n)
	}
	for left := int64(n); left > 0; {
		k, err := p.r.Discard(int(min(left, 1<<30)))
		left -= int64(k)
		if err != nil {
			return fmt.Errorf("reading %d bytes of file contents: %w", n, noEOF(err))
		}
	}
	return p.padding(n, "file contents")
}

// padding checks the zero bytes after a string of n bytes.
func (p *narParser) padding(n uint64, what string) error {
	pad := int((8 - n%8) % 8)
	if pad == 0 {
		return nil
	}
	b, err := p.r.Peek(pad)
	if err != nil {
		return fmt.Errorf("reading the padding after the %s: %w", what, noEOF(err))
	}
	for _, c := range b {
		if c != 0 {
			return fmt.Errorf("non-zero padding after the %s", what)
		}
	}
	_, err = p.r.Discard(pad)
	return err
}

func (p *narParser) uint64() (uint64, error) {
	b, err := p.r.Peek(8)
	if err != nil {
		return 0, noEOF(err)
	}
	v := binary.LittleEndian.Uint64(b)
	_, err = p.r.Discard(8)
	return v, err
}

// bytes reads a string of at most max bytes. The result is valid until the
// next read.
func (p *narParser) bytes(max int, what string) ([]byte, error) {
	n, err := p.uint64()
	if err != nil {
		return nil, fmt.Errorf("reading the length of the %s: %w", what, err)
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%s of %d bytes is longer than the %d allowed", what, n, max)
	}
	b := p.buf[:n]
	if _, err := io.ReadFull(p.r, b); err != nil {
		return nil, fmt.Errorf("reading the %s: %w", what, noEOF(err))
	}
	return b, p.padding(n, what)
}

// token reads a keyword.
func (p *narParser) token() (string, error) {
	b, err := p.bytes(maxTokenLen, "keyword")
	return string(b), err
}

// expect reads the keyword want.
func (p *narParser) expect(want string) error {
	b, err := p.bytes(maxTokenLen, "keyword")
	if err != nil {
		return fmt.Errorf("expected %q: %w", want, err)
	}
	if string(b) != want {
		return fmt.Errorf("expected %q, found %q", want, b)
	}
	return nil
}

// errNAREnd reports a NAR that ends before it is complete.
var errNAREnd = fmt.Errorf("the NAR ends early: %w", io.ErrUnexpectedEOF)

// noEOF turns the end of the input inside a NAR into errNAREnd. Other
// errors, such as a decoder's, pass unchanged.
func noEOF(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errNAREnd
	}
	return err
}

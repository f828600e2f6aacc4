// Package compression owns the compression methods a Nix binary cache uses:
// the names Nix writes in a narinfo's Compression field, the extensions it
// appends to ".nar" in NAR URLs, recognising a method from the first bytes
// of a file, bounded, strictly checking decompressors for each method, and
// the budget that bounds the memory of all decoders at once.
package compression

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Method names, exactly as Nix writes them in a narinfo's Compression field.
const (
	None   = "none"
	XZ     = "xz"
	Zstd   = "zstd"
	Bzip2  = "bzip2"
	Gzip   = "gzip"
	LZ4    = "lz4"
	Brotli = "br"
)

// ErrUnsupported is returned, wrapped, for a method name or NAR URL
// extension this package does not support (for example Nix's "lzip").
var ErrUnsupported = errors.New("unsupported compression")

// MagicLen is the number of leading bytes Detect and Resolve need to see to
// recognise every method; the longest signature is the one of an
// uncompressed NAR.
const MagicLen = 24

// methods lists the supported methods with their NAR URL extensions, in the
// order Names reports them.
var methods = []struct{ name, ext string }{
	{None, ""},
	{XZ, ".xz"},
	{Zstd, ".zst"},
	{Bzip2, ".bz2"},
	{Gzip, ""},
	{LZ4, ".lz4"},
	{Brotli, ".br"},
}

// Names returns the supported method names.
func Names() []string {
	names := make([]string, len(methods))
	for i, m := range methods {
		names[i] = m.name
	}
	return names
}

// Supported reports whether name is a supported method.
func Supported(name string) bool {
	_, err := Ext(name)
	return err == nil
}

// Ext returns the extension Nix appends after ".nar" in the URL of a NAR
// compressed with the named method: ".xz" for xz, ".bz2" for bzip2, ".zst"
// for zstd, ".lz4" for lz4 and ".br" for br. Nix gives gzip no extension, so
// both "gzip" and "none" yield "".
func Ext(name string) (string, error) {
	for _, m := range methods {
		if m.name == name {
			return m.ext, nil
		}
	}
	return "", fmt.Errorf("looking up the extension of compression %q: %w", name, ErrUnsupported)
}

// ForExt returns the methods a NAR URL extension (the part after ".nar",
// with its leading dot) can stand for. Every extension names one method
// except "", which stands for an uncompressed NAR or, as Nix names them, a
// gzip-compressed one; Resolve tells the two apart by content.
func ForExt(ext string) ([]string, error) {
	if ext == "" {
		return []string{None, Gzip}, nil
	}
	for _, m := range methods {
		if m.ext == ext {
			return []string{m.name}, nil
		}
	}
	return nil, fmt.Errorf("looking up the compression of extension %q: %w", ext, ErrUnsupported)
}

// signatures are the magic bytes that open data of each method. Brotli has
// none: it is only ever known from the extension.
var signatures = []struct {
	name  string
	magic []byte
}{
	{XZ, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{Zstd, []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{LZ4, []byte{0x04, 0x22, 0x4d, 0x18}},
	{Bzip2, []byte("BZh")},
	{Gzip, []byte{0x1f, 0x8b}},
	// An uncompressed NAR starts with the string "nix-archive-1" in Nix's
	// wire format: its length as a little-endian uint64, then the bytes
	// padded with zeros to a multiple of eight.
	{None, []byte("\x0d\x00\x00\x00\x00\x00\x00\x00nix-archive-1\x00\x00\x00")},
}

// Detect recognises the method of data starting with head by its magic
// bytes. It reports false when head matches no signature, including when
// head is shorter than the signature it would match. Brotli data is never
// detected, as brotli has no magic bytes.
func Detect(head []byte) (name string, ok bool) {
	for _, s := range signatures {
		if bytes.HasPrefix(head, s.magic) {
			return s.name, true
		}
	}
	return "", false
}

// MismatchError reports that a file's content is of another method than its
// extension names.
type MismatchError struct {
	// Ext is the extension after ".nar", "" for none.
	Ext string
	// Named lists the methods Ext stands for.
	Named []string
	// Found is the method the content was recognised as.
	Found string
}

// Error describes the mismatch in one line.
func (e *MismatchError) Error() string {
	found := e.Found + " data"
	if e.Found == None {
		found = "an uncompressed NAR"
	}
	return fmt.Sprintf("extension \".nar%s\" means %s but the content is %s",
		e.Ext, describe(e.Named), found)
}

func describe(names []string) string {
	if slices.Equal(names, []string{None, Gzip}) {
		return "an uncompressed or gzip NAR"
	}
	if len(names) == 1 && names[0] == None {
		return "an uncompressed NAR"
	}
	return strings.Join(names, " or ") + " compression"
}

// Resolve decides the method of a NAR from its URL extension (the part after
// ".nar", e.g. ".xz" or "") and its first bytes (MagicLen of them, or all of
// a shorter file). For "" it returns gzip when head has the gzip magic and
// none otherwise. It returns a *MismatchError when head carries the
// signature of another method than ext names, and an error wrapping
// ErrUnsupported for an unknown extension. Content that matches no
// signature resolves to the named method: its decompressor will reject it.
func Resolve(ext string, head []byte) (string, error) {
	named, err := ForExt(ext)
	if err != nil {
		return "", err
	}
	found, ok := Detect(head)
	switch {
	case !ok:
		return named[0], nil
	case slices.Contains(named, found):
		return found, nil
	case named[0] == Brotli && !strongSignature(found):
		// A brotli stream can begin with the two or three bytes of the
		// gzip or bzip2 magic, so only longer signatures prove a mismatch.
		return Brotli, nil
	}
	return "", &MismatchError{Ext: ext, Named: named, Found: found}
}

// strongSignature reports whether the signature of the named method is long
// enough that brotli data cannot be expected to start with it by chance.
func strongSignature(name string) bool {
	for _, s := range signatures {
		if s.name == name {
			return len(s.magic) >= 4
		}
	}
	return false
}

// Package narinfo owns the narinfo format of Nix binary caches: strict
// parsing of untrusted uploads, canonical rendering byte for byte as Nix
// writes it, fingerprints, and the ed25519 signing keys and signatures that
// Nix uses to sign store paths.
package narinfo

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on the lines of a narinfo. Nix has no limits of its own; these
// leave ample room for anything Nix writes.
const (
	// MaxLineLen is the maximum length in bytes of any line other than
	// the References line, including its key.
	MaxLineLen = 4096
	// MaxReferencesLineLen is the maximum length in bytes of the
	// References line; it allows about 20000 references.
	MaxReferencesLineLen = 1 << 20
)

// ErrInvalid is wrapped by every error that Parse and Validate return, so
// that callers can classify them as invalid input.
var ErrInvalid = errors.New("invalid narinfo")

// ParseError says what is wrong with a narinfo and where.
type ParseError struct {
	// Line is the 1-based number of the offending line, or 0 if the
	// problem concerns the narinfo as a whole.
	Line int
	// Msg says what is wrong.
	Msg string
	// Err is the underlying error, or nil.
	Err error
}

// Error returns the message, prefixed with "invalid narinfo" and the line.
func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalid.Error())
	b.WriteString(": ")
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString(e.Msg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns ErrInvalid and the underlying error, if any.
func (e *ParseError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrInvalid}
	}
	return []error{ErrInvalid, e.Err}
}

// NarInfo is the metadata of one store path in a binary cache.
type NarInfo struct {
	// StorePath is the full store path, "/nix/store/<hash32>-<name>".
	StorePath string
	// URL is the location of the NAR file relative to the cache root,
	// usually "nar/<nix32 FileHash>.nar<ext>". It is not checked here.
	URL string
	// Compression is the compression method of the NAR file, such as
	// "xz", "zstd" or "none". Parse sets "bzip2" when it is missing.
	Compression string
	// FileHash is the SHA-256 of the NAR file; zero if not given.
	FileHash Hash
	// FileSize is the size in bytes of the NAR file.
	FileSize uint64
	// NarHash is the SHA-256 of the uncompressed NAR.
	NarHash Hash
	// NarSize is the size in bytes of the uncompressed NAR; never 0.
	NarSize uint64
	// References are the base names ("<hash32>-<name>") of the store
	// paths this path refers to, sorted and without duplicates.
	References []string
	// Deriver is the base name of the derivation that built the path,
	// ending in ".drv", or "" if unknown.
	Deriver string
	// System is the system type the path was built for, or "".
	System string
	// Sigs are the signatures, "<key name>:<base64>", sorted and without
	// duplicates.
	Sigs []string
	// CA is the content address, "text:sha256:<nix32>" or
	// "fixed:[r:]<algo>:<nix32>", or "" for an input-addressed path.
	CA string
}

// Parse parses a narinfo strictly. The caller limits the size of b. Every
// error is a *ParseError wrapping ErrInvalid and, where it helps, names the
// line. Hashes in any form Nix accepts are converted to nix32, References
// and Sigs are sorted, and identical Sig lines are merged, as Nix does.
func Parse(b []byte) (*NarInfo, error) {
	if err := checkBytes(b); err != nil {
		return nil, err
	}
	p := parser{n: &NarInfo{}, seen: map[string]int{}}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	for i, line := range lines {
		if err := p.parseLine(i+1, line); err != nil {
			return nil, err
		}
	}
	return p.finish()
}

// checkBytes checks the narinfo as a whole: it must end with a newline, be
// valid UTF-8 and have no control characters other than newlines.
func checkBytes(b []byte) error {
	if len(b) == 0 {
		return &ParseError{Msg: "narinfo is empty"}
	}
	if b[len(b)-1] != '\n' {
		return &ParseError{Msg: "narinfo is truncated: it does not end with a newline"}
	}
	line := 1
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return &ParseError{Line: line, Msg: fmt.Sprintf("invalid UTF-8 at byte offset %d", i)}
		case r == '\n':
			line++
		case r == '\r':
			return &ParseError{Line: line, Msg: "carriage return: lines must end with \"\\n\", not \"\\r\\n\""}
		case unicode.IsControl(r):
			return &ParseError{Line: line, Msg: fmt.Sprintf("control character %U", r)}
		}
		i += size
	}
	return nil
}

// parser holds the state of Parse.
type parser struct {
	n *NarInfo
	// seen maps each single-valued key to the line it was first seen on.
	seen map[string]int
}

// singleValued lists the keys that may appear only once.
var singleValued = []string{
	"StorePath", "URL", "Compression", "FileHash", "FileSize", "NarHash",
	"NarSize", "References", "Deriver", "System", "CA",
}

// parseLine parses one line, without its newline.
func (p *parser) parseLine(no int, line string) error {
	if line == "" {
		return &ParseError{Line: no, Msg: "empty line"}
	}
	key, value, err := splitLine(line)
	if err != nil {
		return &ParseError{Line: no, Msg: err.Error()}
	}
	limit := MaxLineLen
	if key == "References" {
		limit = MaxReferencesLineLen
	}
	if len(line) > limit {
		return &ParseError{Line: no, Msg: fmt.Sprintf("%s line is %d bytes long, more than the maximum of %d", key, len(line), limit)}
	}
	if slices.Contains(singleValued, key) {
		if first, dup := p.seen[key]; dup {
			return &ParseError{Line: no, Msg: fmt.Sprintf("duplicate %s (first on line %d)", key, first)}
		}
		p.seen[key] = no
	}
	if err := p.setField(key, value); err != nil {
		return &ParseError{Line: no, Msg: "invalid " + key, Err: err}
	}
	return nil
}

// splitLine splits a line "Key: value". As in Nix, the key ends at the
// first colon, and the value starts two bytes later; unlike Nix, the byte
// after the colon must be a space and keys must look like keys.
func splitLine(line string) (key, value string, err error) {
	i := strings.IndexByte(line, ':')
	if i < 0 || !strings.HasPrefix(line[i+1:], " ") {
		return "", "", errors.New(`expected "Key: value"`)
	}
	key, value = line[:i], line[i+2:]
	if key == "" {
		return "", "", errors.New(`expected "Key: value", found an empty key`)
	}
	for _, r := range key {
		if !isKeyRune(r) {
			return "", "", fmt.Errorf(`expected "Key: value", found key %s with invalid character %q`, quote(key), r)
		}
	}
	return key, value, nil
}

// isKeyRune reports whether r may appear in a narinfo key.
func isKeyRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// setField stores the value of one known key; unknown keys are ignored, as
// Nix ignores them.
func (p *parser) setField(key, value string) error {
	var err error
	n := p.n
	switch key {
	case "StorePath":
		err = checkStorePath(value)
		n.StorePath = value
	case "URL":
		err = checkURL(value)
		n.URL = value
	case "Compression":
		err = checkCompression(value)
		n.Compression = value
	case "FileHash":
		n.FileHash, err = parseHashField(value)
	case "FileSize":
		n.FileSize, err = parseSize(value)
	case "NarHash":
		n.NarHash, err = parseHashField(value)
	case "NarSize":
		n.NarSize, err = parseNarSize(value)
	case "References":
		n.References, err = parseReferences(value)
	case "Deriver":
		n.Deriver, err = parseDeriver(value)
	case "System":
		n.System = value
	case "Sig":
		err = p.addSig(value)
	case "CA":
		n.CA, err = parseCA(value)
	}
	return err
}

// addSig checks a signature and adds its canonical form.
func (p *parser) addSig(value string) error {
	sig, err := parseSig(value)
	if err != nil {
		return err
	}
	p.n.Sigs = append(p.n.Sigs, sig)
	return nil
}

// finish checks for required fields and normalises the result.
func (p *parser) finish() (*NarInfo, error) {
	for _, key := range []string{"StorePath", "URL", "NarHash", "NarSize"} {
		if _, ok := p.seen[key]; !ok {
			return nil, &ParseError{Msg: fmt.Sprintf("narinfo has no %s line", key)}
		}
	}
	n := p.n
	if n.Compression == "" {
		n.Compression = DefaultCompression
	}
	n.Sigs = sortedUnique(n.Sigs)
	return n, nil
}

// sortedUnique sorts s in place and removes duplicates.
func sortedUnique(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// quote quotes s for an error message, shortening it if it is long.
func quote(s string) string {
	const maxQuoted = 80
	if len(s) > maxQuoted {
		return fmt.Sprintf("%q...", s[:maxQuoted])
	}
	return fmt.Sprintf("%q", s)
}

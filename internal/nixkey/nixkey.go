// Package nixkey owns the grammar of cache-relative keys: the part of a
// binary cache URL after the cache name, such as "<hash>.narinfo" or
// "nar/<filehash>.nar.xz". Both the HTTP front end and storage back ends use
// it to turn an untrusted, already percent-decoded request path into a Key.
//
// Parse is strict: a string is accepted only if it matches exactly one of the
// key forms that Nix itself reads and writes, and a parsed Key names its
// object by its parts, never by a file system path, so it cannot refer to
// anything outside the cache. Every accepted key is canonical: Key.String
// returns the parsed string unchanged.
package nixkey

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// MaxLen is the maximum length in bytes of a key. The longest legitimate key
// is a build log key: "log/", a 32-character hash, '-' and a 211-character
// name, 248 bytes in all.
const MaxLen = 512

// ErrInvalid is wrapped by every error that Parse returns, so callers can map
// all of them to one "bad request" answer with errors.Is.
var ErrInvalid = errors.New("invalid cache key")

// Kind says which kind of cache object a Key names.
type Kind int

// The kinds of keys. The zero Kind is not a valid kind.
const (
	// CacheInfo is the "nix-cache-info" file.
	CacheInfo Kind = iota + 1
	// NarInfo is "<hash32>.narinfo", the metadata of one store path.
	NarInfo
	// Listing is "<hash32>.ls", the JSON listing of a NAR.
	Listing
	// Nar is "nar/<nix32 file hash>.nar<ext>", a possibly compressed NAR.
	Nar
	// Log is "log/<drv base name>", the build log of a derivation.
	Log
	// Realisation is "realisations/<drv output id>.doi", the realisation of
	// an output of a content-addressed derivation.
	Realisation
	// DebugInfo is "debuginfo/<build id>.debug", a JSON link from an ELF
	// build id to the NAR member holding its debug symbols.
	DebugInfo
)

// String returns the short name of the kind used in logs, such as "narinfo".
func (k Kind) String() string {
	switch k {
	case CacheInfo:
		return "cache-info"
	case NarInfo:
		return "narinfo"
	case Listing:
		return "listing"
	case Nar:
		return "nar"
	case Log:
		return "log"
	case Realisation:
		return "realisation"
	case DebugInfo:
		return "debuginfo"
	default:
		return fmt.Sprintf("kind(%d)", int(k))
	}
}

// Key is a parsed cache key. Which fields are set depends on Kind.
type Key struct {
	// Kind is the kind of object the key names.
	Kind Kind
	// Hash is the 32-character store path hash part for NarInfo and
	// Listing, and the 52-character nix32 SHA-256 file hash for Nar.
	Hash string
	// Ext is the compression extension of a Nar key including its dot
	// (".xz", ".zst", ".bz2", ".lz4", ".br" or ".lzip"), or "" when the NAR
	// file has no extension.
	Ext string
	// Name is the derivation base name ("<hash32>-<name>.drv") for Log,
	// the derivation output id ("sha256:<hex>!<output>") for Realisation
	// and the lower-case hex build id for DebugInfo.
	Name string
}

// String returns the canonical form of the key; for a key returned by Parse
// it is the parsed string. It returns "" for a Key with an invalid Kind.
func (k Key) String() string {
	switch k.Kind {
	case CacheInfo:
		return cacheInfoKey
	case NarInfo:
		return k.Hash + narInfoSuffix
	case Listing:
		return k.Hash + listingSuffix
	case Nar:
		return narPrefix + k.Hash + narSuffix + k.Ext
	case Log:
		return logPrefix + k.Name
	case Realisation:
		return realisationPrefix + k.Name + realisationSuffix
	case DebugInfo:
		return debugInfoPrefix + k.Name + debugInfoSuffix
	default:
		return ""
	}
}

// narExts are the NAR file extensions Nix writes after ".nar", one per
// compression method that has one (gzip and none have none). ".lzip" is
// recognised so that callers can say it is unsupported.
var narExts = []string{".xz", ".bz2", ".zst", ".lzip", ".lz4", ".br"}

const (
	cacheInfoKey      = "nix-cache-info"
	narInfoSuffix     = ".narinfo"
	listingSuffix     = ".ls"
	narPrefix         = "nar/"
	narSuffix         = ".nar"
	logPrefix         = "log/"
	realisationPrefix = "realisations/"
	realisationSuffix = ".doi"
	debugInfoPrefix   = "debuginfo/"
	debugInfoSuffix   = ".debug"

	// storeHashLen is the length of the hash part of a store path.
	storeHashLen = 32
	// sha256Nix32Len is the length of a nix32-encoded SHA-256 digest.
	sha256Nix32Len = 52
	// sha256HexLen is the length of a hex-encoded SHA-256 digest.
	sha256HexLen = 64
	// maxNameLen is the maximum length of a store path name.
	maxNameLen = 211
	// minBuildIDLen and maxBuildIDLen bound the hex build id of a
	// debuginfo key.
	minBuildIDLen = 2
	maxBuildIDLen = 128
)

// Parse parses a cache-relative key, already percent-decoded. Every error
// wraps ErrInvalid and says what is wrong with the key.
func Parse(s string) (Key, error) {
	k, err := parse(s)
	if err != nil {
		return Key{}, fmt.Errorf("%w %s: %w", ErrInvalid, quote(s), err)
	}
	return k, nil
}

// parse does the work of Parse; its errors say what is wrong without
// repeating the key.
func parse(s string) (Key, error) {
	if err := checkShape(s); err != nil {
		return Key{}, err
	}
	dir, rest, nested := strings.Cut(s, "/")
	if !nested {
		return parseTopLevel(s)
	}
	if strings.Contains(rest, "/") {
		return Key{}, errors.New("key has more than two path segments")
	}
	switch dir + "/" {
	case narPrefix:
		return parseNar(rest)
	case logPrefix:
		return parseLog(rest)
	case realisationPrefix:
		return parseRealisation(rest)
	case debugInfoPrefix:
		return parseDebugInfo(rest)
	default:
		return Key{}, fmt.Errorf("unknown directory %s", quote(dir))
	}
}

// checkShape rejects keys that could be misread as paths or that carry
// bytes no valid key has, before the grammar of each kind is applied.
func checkShape(s string) error {
	switch {
	case s == "":
		return errors.New("key is empty")
	case len(s) > MaxLen:
		return fmt.Errorf("key is %d bytes long, more than the maximum of %d", len(s), MaxLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x80:
			return fmt.Errorf("non-ASCII byte 0x%02x at offset %d", c, i)
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("control byte 0x%02x at offset %d", c, i)
		case c == '\\':
			return fmt.Errorf("backslash at offset %d", i)
		case c == '%':
			return fmt.Errorf("'%%' at offset %d: the key is still percent-encoded (encoded twice?)", i)
		}
	}
	switch {
	case s[0] == '/':
		return errors.New("key starts with '/'")
	case s[len(s)-1] == '/':
		return errors.New("key ends with '/'")
	case strings.Contains(s, "//"):
		return errors.New("key has an empty path segment")
	case strings.Contains(s, ".."):
		return errors.New("key contains \"..\"")
	case s == "." || strings.HasPrefix(s, "./") || strings.Contains(s, "/./") || strings.HasSuffix(s, "/."):
		return errors.New("key has a \".\" path segment")
	}
	return nil
}

// parseTopLevel parses a key without a directory.
func parseTopLevel(s string) (Key, error) {
	if s == cacheInfoKey {
		return Key{Kind: CacheInfo}, nil
	}
	kind := NarInfo
	hash, ok := strings.CutSuffix(s, narInfoSuffix)
	if !ok {
		kind = Listing
		hash, ok = strings.CutSuffix(s, listingSuffix)
	}
	if !ok {
		return Key{}, errors.New("unknown key: want nix-cache-info, <hash>.narinfo, <hash>.ls or a key under nar/, log/, realisations/ or debuginfo/")
	}
	if err := checkNix32(hash, storeHashLen, "store path hash"); err != nil {
		return Key{}, err
	}
	return Key{Kind: kind, Hash: hash}, nil
}

// parseNar parses the part of a NAR key after "nar/".
func parseNar(rest string) (Key, error) {
	hash, tail, ok := strings.Cut(rest, ".")
	if !ok {
		return Key{}, errors.New("NAR key has no \".nar\" extension")
	}
	if err := checkNix32(hash, sha256Nix32Len, "NAR file hash"); err != nil {
		return Key{}, err
	}
	ext, ok := strings.CutPrefix("."+tail, narSuffix)
	if !ok {
		return Key{}, fmt.Errorf("NAR key extension %s does not start with \".nar\"", quote("."+tail))
	}
	if ext != "" && !slices.Contains(narExts, ext) {
		return Key{}, fmt.Errorf("unknown NAR compression extension %s", quote(ext))
	}
	return Key{Kind: Nar, Hash: hash, Ext: ext}, nil
}

// parseLog parses the part of a build log key after "log/".
func parseLog(rest string) (Key, error) {
	if err := checkStorePathBase(rest); err != nil {
		return Key{}, fmt.Errorf("build log key: %w", err)
	}
	if !strings.HasSuffix(rest, ".drv") {
		return Key{}, fmt.Errorf("build log key: %s is not a derivation (no \".drv\" suffix)", quote(rest))
	}
	return Key{Kind: Log, Name: rest}, nil
}

// parseRealisation parses the part of a realisation key after
// "realisations/". Nix writes the derivation output id as
// "sha256:<hex of the derivation hash>!<output name>".
func parseRealisation(rest string) (Key, error) {
	id, ok := strings.CutSuffix(rest, realisationSuffix)
	if !ok {
		return Key{}, errors.New("realisation key does not end with \".doi\"")
	}
	hash, output, ok := strings.Cut(id, "!")
	if !ok {
		return Key{}, errors.New("realisation id has no \"!<output name>\"")
	}
	hex, ok := strings.CutPrefix(hash, "sha256:")
	if !ok {
		return Key{}, errors.New("realisation id does not start with \"sha256:\"")
	}
	if err := checkHex(hex, sha256HexLen, sha256HexLen, "realisation derivation hash"); err != nil {
		return Key{}, err
	}
	if output == "" {
		return Key{}, errors.New("realisation id has an empty output name")
	}
	if len(output) > maxNameLen {
		return Key{}, fmt.Errorf("realisation output name is %d bytes long, more than the maximum of %d", len(output), maxNameLen)
	}
	if i := strings.IndexFunc(output, isNotNameRune); i >= 0 {
		return Key{}, fmt.Errorf("realisation output name contains invalid character %q", output[i])
	}
	return Key{Kind: Realisation, Name: id}, nil
}

// parseDebugInfo parses the part of a debuginfo key after "debuginfo/".
func parseDebugInfo(rest string) (Key, error) {
	id, ok := strings.CutSuffix(rest, debugInfoSuffix)
	if !ok {
		return Key{}, errors.New("debuginfo key does not end with \".debug\"")
	}
	if err := checkHex(id, minBuildIDLen, maxBuildIDLen, "build id"); err != nil {
		return Key{}, err
	}
	return Key{Kind: DebugInfo, Name: id}, nil
}

// checkNix32 checks that s is a canonical nix32 string of length n.
func checkNix32(s string, n int, what string) error {
	if len(s) != n {
		return fmt.Errorf("%s %s has %d characters, want %d", what, quote(s), len(s), n)
	}
	for i := 0; i < len(s); i++ {
		if !nixbase32.Is(s[i]) {
			return fmt.Errorf("%s contains %q, which is not in the nix32 alphabet %q", what, s[i], nixbase32.Alphabet)
		}
	}
	if !canonicalNix32(s) {
		return fmt.Errorf("%s %s is not canonical nix32", what, quote(s))
	}
	return nil
}

// canonicalNix32 reports whether s, of nix32 characters only, is how
// nix32 encodes len(s)*5/8 bytes: its first character, which holds the
// most significant bits, sets none beyond them. Lookups check every key
// this way, so it decodes nothing.
func canonicalNix32(s string) bool {
	spare := len(s)*5 - len(s)*5/8*8 // bits of the first character no byte holds
	return strings.IndexByte(nixbase32.Alphabet, s[0]) < 1<<(5-spare)
}

// checkHex checks that s is lower-case hex with a length in [minLen, maxLen].
func checkHex(s string, minLen, maxLen int, what string) error {
	if len(s) < minLen || len(s) > maxLen {
		if minLen == maxLen {
			return fmt.Errorf("%s has %d characters, want %d", what, len(s), minLen)
		}
		return fmt.Errorf("%s has %d characters, want %d to %d", what, len(s), minLen, maxLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%s contains %q, want lower-case hex", what, c)
		}
	}
	return nil
}

// checkStorePathBase checks that s is a store path base name
// "<hash32>-<name>" as Nix's StorePath constructor accepts it.
func checkStorePathBase(s string) error {
	if len(s) < storeHashLen+2 || s[storeHashLen] != '-' {
		return fmt.Errorf("%s is not a store path base name \"<hash>-<name>\"", quote(s))
	}
	if err := checkNix32(s[:storeHashLen], storeHashLen, "store path hash"); err != nil {
		return err
	}
	name := s[storeHashLen+1:]
	switch {
	case len(name) > maxNameLen:
		return fmt.Errorf("store path name is %d bytes long, more than the maximum of %d", len(name), maxNameLen)
	case name[0] == '.':
		return errors.New("store path name starts with '.'")
	}
	if i := strings.IndexFunc(name, isNotNameRune); i >= 0 {
		return fmt.Errorf("store path name contains invalid character %q", name[i])
	}
	return nil
}

// isNotNameRune reports whether r may not appear in a store path name.
func isNotNameRune(r rune) bool {
	switch {
	case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		return false
	}
	return !strings.ContainsRune("+-._?=", r)
}

// quote quotes s for an error message, shortening it if it is long.
func quote(s string) string {
	const maxQuoted = 80
	if len(s) > maxQuoted {
		return fmt.Sprintf("%q...", s[:maxQuoted])
	}
	return fmt.Sprintf("%q", s)
}

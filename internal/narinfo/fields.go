package narinfo

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/nix-community/go-nix/pkg/nixhash"
	"github.com/nix-community/go-nix/pkg/storepath"
)

// DefaultCompression is the compression method of a narinfo without a
// Compression line.
const DefaultCompression = "bzip2"

// compressions are the compression methods that Nix 2.8 can write and read:
// "none", "br" and the methods it delegates to libarchive.
var compressions = []string{
	"none", "br", "bzip2", "compress", "grzip", "gzip", "lrzip", "lz4",
	"lzip", "lzma", "lzop", "xz", "zstd",
}

// KnownCompression reports whether Nix knows the compression method.
func KnownCompression(method string) bool {
	return slices.Contains(compressions, method)
}

const (
	// hashPartLen is the length of the hash part of a store path.
	hashPartLen = 32
	// maxNameLen is the maximum length of the name of a store path.
	maxNameLen = 211
	// deriverSuffix ends the base name of a derivation.
	deriverSuffix = ".drv"
	// unknownDeriver is what older Nix writes for an unknown deriver.
	unknownDeriver = "unknown-deriver"
)

// Hash is a SHA-256 digest, the only algorithm Nix uses for NarHash and
// FileHash. The zero Hash means "not given".
type Hash [sha256.Size]byte

// ParseHash parses a SHA-256 hash in any form Nix accepts in a narinfo:
// "sha256:" followed by nix32, base16 or base64, or the SRI form
// "sha256-<base64>".
func ParseHash(s string) (Hash, error) {
	var h Hash
	i := strings.IndexAny(s, ":-")
	if i <= 0 {
		return h, fmt.Errorf("hash %s has no \"sha256:\" prefix", quote(s))
	}
	algo, digest, sri := s[:i], s[i+1:], s[i] == '-'
	if algo != "sha256" {
		if _, err := nixhash.ParseAlgorithm(algo); err == nil {
			return h, fmt.Errorf("hash %s uses %s, want sha256", quote(s), algo)
		}
		return h, fmt.Errorf("hash %s has unknown algorithm %s", quote(s), quote(algo))
	}
	if sri && len(digest) != base64.StdEncoding.EncodedLen(sha256.Size) {
		return h, fmt.Errorf("SRI hash %s is not %d characters of base64", quote(s), base64.StdEncoding.EncodedLen(sha256.Size))
	}
	b, err := decodeDigest(digest, sha256.Size)
	if err != nil {
		return h, fmt.Errorf("hash %s: %w", quote(s), err)
	}
	copy(h[:], b)
	return h, nil
}

// String returns the hash as Nix writes it in a narinfo, "sha256:<nix32>".
func (h Hash) String() string {
	return "sha256:" + h.Nix32()
}

// Nix32 returns the nix32 encoding of the digest, 52 characters.
func (h Hash) Nix32() string {
	return nixbase32.EncodeToString(h[:])
}

// IsZero reports whether h is the zero Hash.
func (h Hash) IsZero() bool {
	return h == Hash{}
}

// decodeDigest decodes a digest of size bytes written in base16, nix32 or
// base64; like Nix, it tells them apart by their length.
func decodeDigest(s string, size int) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	switch len(s) {
	case hex.EncodedLen(size):
		b, err = hex.DecodeString(s)
	case nixbase32.EncodedLen(size):
		b, err = nixbase32.DecodeString(s)
	case base64.StdEncoding.EncodedLen(size):
		b, err = base64.StdEncoding.DecodeString(s)
	default:
		return nil, fmt.Errorf("digest has %d characters, want %d (base16), %d (nix32) or %d (base64)",
			len(s), hex.EncodedLen(size), nixbase32.EncodedLen(size), base64.StdEncoding.EncodedLen(size))
	}
	if err != nil {
		return nil, fmt.Errorf("digest is corrupt: %w", err)
	}
	if len(b) != size {
		return nil, fmt.Errorf("digest has %d bytes, want %d", len(b), size)
	}
	return b, nil
}

// parseHashField parses a FileHash or NarHash value.
func parseHashField(s string) (Hash, error) {
	h, err := ParseHash(s)
	if err != nil {
		return Hash{}, err
	}
	if h.IsZero() {
		return Hash{}, errors.New("hash is all zeros")
	}
	return h, nil
}

// parseSize parses a size: decimal digits only, fitting in 64 bits.
func parseSize(s string) (uint64, error) {
	if s == "" {
		return 0, errors.New("size is empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("size %s is not a non-negative decimal integer", quote(s))
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %s is out of range: %w", quote(s), err)
	}
	return v, nil
}

// parseNarSize parses a NarSize value, which may not be 0.
func parseNarSize(s string) (uint64, error) {
	v, err := parseSize(s)
	if err == nil && v == 0 {
		err = errors.New("size is 0")
	}
	return v, err
}

// checkStorePath checks that s is a store path "/nix/store/<hash32>-<name>".
func checkStorePath(s string) error {
	base, ok := strings.CutPrefix(s, storepath.StoreDir+"/")
	if !ok {
		return fmt.Errorf("%s is not in %s", quote(s), storepath.StoreDir)
	}
	return checkBaseName(base)
}

// checkBaseName checks that s is a store path base name "<hash32>-<name>"
// as Nix's StorePath constructor accepts it.
func checkBaseName(s string) error {
	if len(s) < hashPartLen+2 || s[hashPartLen] != '-' {
		return fmt.Errorf("%s is not a store path base name \"<hash>-<name>\"", quote(s))
	}
	for i := 0; i < hashPartLen; i++ {
		if !nixbase32.Is(s[i]) {
			return fmt.Errorf("store path hash in %s contains %q, which is not in the nix32 alphabet", quote(s), s[i])
		}
	}
	name := s[hashPartLen+1:]
	switch {
	case len(name) > maxNameLen:
		return fmt.Errorf("store path name in %s is %d bytes long, more than the maximum of %d", quote(s), len(name), maxNameLen)
	case name[0] == '.':
		return fmt.Errorf("store path name in %s starts with '.'", quote(s))
	}
	for _, r := range name {
		if !isNameRune(r) {
			return fmt.Errorf("store path name in %s contains invalid character %q", quote(s), r)
		}
	}
	return nil
}

// isNameRune reports whether r may appear in a store path name.
func isNameRune(r rune) bool {
	switch {
	case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		return true
	}
	return strings.ContainsRune("+-._?=", r)
}

// checkURL checks that the URL is present; its grammar is the caller's.
func checkURL(s string) error {
	if s == "" {
		return errors.New("URL is empty")
	}
	return nil
}

// checkCompression checks that Nix knows the compression method.
func checkCompression(s string) error {
	if !KnownCompression(s) {
		return fmt.Errorf("unknown compression method %s", quote(s))
	}
	return nil
}

// parseReferences parses the space-separated base names of a References
// value. Like Nix, it skips empty tokens; unlike Nix, it rejects duplicates.
// The result is sorted.
func parseReferences(s string) ([]string, error) {
	refs := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' })
	if len(refs) == 0 {
		return nil, nil
	}
	if err := checkReferences(refs); err != nil {
		return nil, err
	}
	slices.Sort(refs)
	return refs, nil
}

// checkReferences checks that refs are store path base names without
// duplicates.
func checkReferences(refs []string) error {
	seen := make(map[string]bool, len(refs))
	for _, r := range refs {
		if err := checkBaseName(r); err != nil {
			return fmt.Errorf("reference: %w", err)
		}
		if seen[r] {
			return fmt.Errorf("reference %s is listed twice", quote(r))
		}
		seen[r] = true
	}
	return nil
}

// parseDeriver parses a Deriver value; "unknown-deriver" means none.
func parseDeriver(s string) (string, error) {
	if s == unknownDeriver {
		return "", nil
	}
	return s, checkDeriver(s)
}

// checkDeriver checks that s is the base name of a derivation.
func checkDeriver(s string) error {
	if err := checkBaseName(s); err != nil {
		return err
	}
	if !strings.HasSuffix(s, deriverSuffix) {
		return fmt.Errorf("%s is not a derivation (no %q suffix)", quote(s), deriverSuffix)
	}
	return nil
}

// parseCA checks a content address "text:sha256:<hash>" or
// "fixed:[r:]<algo>:<hash>", with the hash in base16, nix32 or base64, and
// returns it as Nix renders it, with a nix32 hash.
func parseCA(s string) (string, error) {
	method, rest := "", ""
	switch {
	case strings.HasPrefix(s, "text:"):
		method, rest = "text:", s[len("text:"):]
	case strings.HasPrefix(s, "fixed:r:"):
		method, rest = "fixed:r:", s[len("fixed:r:"):]
	case strings.HasPrefix(s, "fixed:"):
		method, rest = "fixed:", s[len("fixed:"):]
	default:
		return "", fmt.Errorf("content address %s does not start with \"text:\" or \"fixed:\"", quote(s))
	}
	algoName, digest, ok := strings.Cut(rest, ":")
	if !ok {
		return "", fmt.Errorf("content address %s has no \"<algorithm>:\" before its hash", quote(s))
	}
	algo, err := nixhash.ParseAlgorithm(algoName)
	if err != nil {
		return "", fmt.Errorf("content address %s: %w", quote(s), err)
	}
	if method == "text:" && algo != nixhash.SHA256 {
		return "", fmt.Errorf("text content address %s uses %s, want sha256", quote(s), algoName)
	}
	b, err := decodeDigest(digest, algo.Func().Size())
	if err != nil {
		return "", fmt.Errorf("content address %s: %w", quote(s), err)
	}
	h, err := nixhash.NewHash(algo, b)
	if err != nil {
		return "", fmt.Errorf("content address %s: %w", quote(s), err)
	}
	return method + h.Format(nixhash.NixBase32, true), nil
}

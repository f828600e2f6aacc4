package s3blob

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidKey is returned, wrapped, for a key, a List prefix or a store
// prefix that does not follow the key rules of store.BlobStore.
var ErrInvalidKey = errors.New("invalid key")

const (
	// maxKeyLen is the longest key accepted, as in S3 (and in the local
	// store, so that blobs can move between the two).
	maxKeyLen = 1024
	// maxSegmentLen is the longest segment accepted, as in the local store.
	maxSegmentLen = 255
	// maxObjectLen is the longest object name S3 accepts: a key under a
	// prefix of p bytes may have at most maxObjectLen-p-1.
	maxObjectLen = 1024
	// maxPrefixLen is the longest store prefix accepted, so that keys of
	// nearly 900 bytes still fit.
	maxPrefixLen = 100
)

// checkKey reports whether key is a valid blob key: segments of
// [a-z0-9._-] separated by single slashes, none empty, "." or "..", at most
// maxSegmentLen bytes each and maxKeyLen in all. These are the rules of the
// local store, so a key valid here is valid there.
func checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > maxKeyLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidKey, maxKeyLen)
	}
	for seg := range strings.SplitSeq(key, "/") {
		if err := checkSegment(seg); err != nil {
			return err
		}
	}
	return nil
}

// checkSegment reports whether seg is a valid segment of a key.
func checkSegment(seg string) error {
	switch {
	case seg == "":
		return fmt.Errorf("%w: empty segment", ErrInvalidKey)
	case seg == "." || seg == "..":
		return fmt.Errorf("%w: segment %q", ErrInvalidKey, seg)
	case len(seg) > maxSegmentLen:
		return fmt.Errorf("%w: segment longer than %d bytes", ErrInvalidKey, maxSegmentLen)
	}
	return checkChars(seg)
}

// checkChars reports whether s has only characters allowed in a segment.
func checkChars(s string) error {
	for i := 0; i < len(s); i++ {
		if !keyChar(s[i]) {
			return fmt.Errorf("%w: character %q", ErrInvalidKey, s[i])
		}
	}
	return nil
}

// keyChar reports whether c may appear in a key segment.
func keyChar(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// checkPrefix reports whether prefix may start a key: its part up to the
// last slash is a valid key and the rest has only key characters. Every key
// that starts with a valid prefix lies below it, so a List never reaches
// outside the store's own prefix.
func checkPrefix(prefix string) error {
	i := strings.LastIndexByte(prefix, '/')
	if i < 0 {
		return checkChars(prefix)
	}
	if err := checkKey(prefix[:i]); err != nil {
		return err
	}
	return checkChars(prefix[i+1:])
}

// object returns the S3 object name of key, after checking key. Only a
// checked key is ever joined to the store's prefix, so no key can name an
// object outside it.
func (s *Store) object(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	name := s.prefix + key
	if len(name) > maxObjectLen {
		return "", fmt.Errorf("%w: longer than %d bytes with the store's prefix", ErrInvalidKey, maxObjectLen)
	}
	return name, nil
}

// storePrefix turns the PREFIX of a store into the string object names
// start with: "" for none, else the prefix with one trailing slash. The
// prefix follows the key rules; a leading or trailing slash is ignored.
func storePrefix(prefix string) (string, error) {
	p := strings.TrimPrefix(strings.TrimSuffix(prefix, "/"), "/")
	if p == "" {
		return "", nil
	}
	if err := checkKey(p); err != nil {
		return "", fmt.Errorf("prefix %q: %w", prefix, err)
	}
	if len(p) > maxPrefixLen {
		return "", fmt.Errorf("prefix %q: %w: longer than %d bytes", prefix, ErrInvalidKey, maxPrefixLen)
	}
	return p + "/", nil
}

package local

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// ErrInvalidKey is returned, wrapped, for a key or a List prefix that does
// not follow the key rules of store.BlobStore.
var ErrInvalidKey = errors.New("invalid key")

const (
	// maxKeyLen is the longest key accepted, as in S3.
	maxKeyLen = 1024
	// maxSegmentLen is the longest file name most file systems take.
	maxSegmentLen = 255
)

// checkKey reports whether key is a valid blob key: segments of
// [a-z0-9._-] separated by single slashes, none empty, "." or "..", at most
// maxSegmentLen bytes each and maxKeyLen in all.
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

// path returns the file that holds key, after checking key. Only a checked
// key is ever joined to the root, so no key can name a file outside it.
func (s *Store) path(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// splitPrefix checks a List prefix and splits it into the key of the
// directory to walk ("" for the root) and the start of the names to match
// in it.
func splitPrefix(prefix string) (dir, start string, err error) {
	i := strings.LastIndexByte(prefix, '/')
	if i < 0 {
		return "", prefix, checkChars(prefix)
	}
	dir, start = prefix[:i], prefix[i+1:]
	if err := checkKey(dir); err != nil {
		return "", "", err
	}
	return dir, start, checkChars(start)
}

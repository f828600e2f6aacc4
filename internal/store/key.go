package store

import (
	"errors"
	"fmt"
	"strings"
)

// The key rules of BlobStore, which every implementation checks with
// CheckKey and CheckPrefix, so that a key valid in one store is valid in
// all and blobs can move between them.

// ErrInvalidKey is returned, wrapped, for a key or a List prefix that does
// not follow the key rules of BlobStore.
var ErrInvalidKey = errors.New("invalid key")

const (
	// MaxKeyLen is the longest key, as in S3.
	MaxKeyLen = 1024
	// MaxSegmentLen is the longest segment of a key: the longest file name
	// most file systems take.
	MaxSegmentLen = 255
)

// CheckKey reports whether key is a valid blob key: segments of
// [a-z0-9._-] separated by single slashes, none empty, "." or "..", at most
// MaxSegmentLen bytes each and MaxKeyLen in all.
func CheckKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidKey, MaxKeyLen)
	}
	for seg := range strings.SplitSeq(key, "/") {
		if err := checkSegment(seg); err != nil {
			return err
		}
	}
	return nil
}

// CheckPrefix reports whether prefix may start a key: its part up to the
// last slash is a valid key and the rest has only key characters. Every key
// that starts with a valid prefix lies below it, so a List never reaches
// outside the store's own root.
func CheckPrefix(prefix string) error {
	i := strings.LastIndexByte(prefix, '/')
	if i < 0 {
		return checkChars(prefix)
	}
	if err := CheckKey(prefix[:i]); err != nil {
		return err
	}
	return checkChars(prefix[i+1:])
}

// checkSegment reports whether seg is a valid segment of a key.
func checkSegment(seg string) error {
	switch {
	case seg == "":
		return fmt.Errorf("%w: empty segment", ErrInvalidKey)
	case seg == "." || seg == "..":
		return fmt.Errorf("%w: segment %q", ErrInvalidKey, seg)
	case len(seg) > MaxSegmentLen:
		return fmt.Errorf("%w: segment longer than %d bytes", ErrInvalidKey, MaxSegmentLen)
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

package s3blob

import (
	"fmt"
	"strings"

	"github.com/larder-cache/larder/internal/store"
)

const (
	// maxObjectLen is the longest object name S3 accepts: a key under a
	// prefix of p bytes may have at most maxObjectLen-p-1.
	maxObjectLen = 1024
	// maxPrefixLen is the longest store prefix accepted, so that keys of
	// nearly 900 bytes still fit.
	maxPrefixLen = 100
)

// object returns the S3 object name of key, after checking key. Only a
// checked key is ever joined to the store's prefix, so no key can name an
// object outside it.
func (s *Store) object(key string) (string, error) {
	if err := store.CheckKey(key); err != nil {
		return "", err
	}
	name := s.prefix + key
	if len(name) > maxObjectLen {
		return "", fmt.Errorf("%w: longer than %d bytes with the store's prefix", store.ErrInvalidKey, maxObjectLen)
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
	if err := store.CheckKey(p); err != nil {
		return "", fmt.Errorf("prefix %q: %w", prefix, err)
	}
	if len(p) > maxPrefixLen {
		return "", fmt.Errorf("prefix %q: %w: longer than %d bytes", prefix, store.ErrInvalidKey, maxPrefixLen)
	}
	return p + "/", nil
}

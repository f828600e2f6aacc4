package local

import (
	"path/filepath"
	"strings"

	"github.com/larder-cache/larder/internal/store"
)

// path returns the file that holds key, after checking key. Only a checked
// key is ever joined to the root, so no key can name a file outside it.
func (s *Store) path(key string) (string, error) {
	if err := store.CheckKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// splitPrefix checks a List prefix and splits it into the key of the
// directory to walk ("" for the root) and the start of the names to match
// in it.
func splitPrefix(prefix string) (dir, start string, err error) {
	if err := store.CheckPrefix(prefix); err != nil {
		return "", "", err
	}
	i := strings.LastIndexByte(prefix, '/')
	if i < 0 {
		return "", prefix, nil
	}
	return prefix[:i], prefix[i+1:], nil
}

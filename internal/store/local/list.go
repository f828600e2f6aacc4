package local

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/larder-cache/larder/internal/store"
)

// List calls fn for every blob whose key starts with prefix. It walks only
// the directory named by prefix up to its last slash, and skips the
// temporary files and any file or directory whose name no key could have.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.BlobInfo) error) error {
	dir, _, err := splitPrefix(prefix)
	if err != nil {
		return fmt.Errorf("list blobs %q: %w", prefix, err)
	}
	start := filepath.Join(s.root, filepath.FromSlash(dir))
	err = filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if isNotExist(err) {
				return nil // the directory is not there or went away
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return s.visit(path, d, start, prefix, fn)
	})
	if err != nil {
		return fmt.Errorf("list blobs %q: %w", prefix, err)
	}
	return nil
}

// visit handles one entry of the walk of List.
func (s *Store) visit(path string, d fs.DirEntry, start, prefix string, fn func(store.BlobInfo) error) error {
	if path == start && d.IsDir() {
		return nil
	}
	if path == s.tmp || store.CheckKey(d.Name()) != nil { // a name no key segment could have
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	}
	rel, err := filepath.Rel(s.root, path)
	if err != nil {
		return err
	}
	key := filepath.ToSlash(rel)
	if d.IsDir() {
		if !strings.HasPrefix(key+"/", prefix) {
			return filepath.SkipDir
		}
		return nil
	}
	if !d.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
		return nil
	}
	info, err := d.Info()
	if isNotExist(err) {
		return nil // deleted during the walk
	}
	if err != nil {
		return err
	}
	if err := fn(store.BlobInfo{Key: key, Size: info.Size(), ModTime: info.ModTime().UTC()}); err != nil {
		return callbackError{err}
	}
	return nil
}

// callbackError carries an error of the List callback through the walk, so
// that one which happens to be filepath.SkipDir or SkipAll still stops it.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// Unwrap returns the callback's error.
func (e callbackError) Unwrap() error { return e.err }

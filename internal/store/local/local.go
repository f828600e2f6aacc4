// Package local owns the embedded default store.BlobStore: blobs kept as
// files under one directory of the local file system.
//
// A blob with key "nar/abc.nar.xz" is the file <root>/nar/abc.nar.xz. Put
// writes to a temporary file in <root>/tmp~ and renames it into place only
// once all of it is on disk, so a crash leaves at worst a temporary file
// behind, which a later Open or Reclaim removes. The name "tmp~" has a
// character no key may contain, so no key can reach the temporary files.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// StaleAfter is how long a temporary file may stay unmodified before Open
// takes it for the leftover of a crashed write. A live Put writes to its
// file at least once per megabyte read, so only a stalled one is this old;
// the grace period lets another process open the same root while a Put is
// running without breaking it.
const StaleAfter = time.Hour

const (
	// tmpDir is the directory of temporary files under the root.
	tmpDir = "tmp~"
	// filePerm and dirPerm keep blobs from other users of the host: they
	// hold the NARs of private caches. The group may read, for backups.
	filePerm fs.FileMode = 0o640
	dirPerm  fs.FileMode = 0o750
)

// Store is a store.BlobStore on a local directory. It is safe for
// concurrent use, also by several processes on the same root.
type Store struct {
	root      string // absolute
	tmp       string // root/tmpDir
	reclaimed int
}

var _ store.BlobStore = (*Store)(nil)

// Open opens the blob store rooted at root, creating the directory if
// needed, and removes temporary files left by writes that did not finish
// and are older than StaleAfter. Reclaimed reports how many it removed.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open blob store %s: %w", root, err)
	}
	abs = fsPath(abs)
	s := &Store{root: abs, tmp: filepath.Join(abs, tmpDir)}
	if err := os.MkdirAll(s.tmp, dirPerm); err != nil {
		return nil, fmt.Errorf("open blob store %s: %w", root, err)
	}
	n, err := s.Reclaim(StaleAfter)
	s.reclaimed = n
	if err != nil {
		return nil, fmt.Errorf("open blob store %s: %w", root, err)
	}
	return s, nil
}

// Reclaimed returns how many leftover temporary files Open removed.
func (s *Store) Reclaimed() int { return s.reclaimed }

// Reclaim removes the temporary files not modified for olderThan and returns
// how many it removed. A long-running server may call it now and then.
func (s *Store) Reclaim(olderThan time.Duration) (int, error) {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return 0, fmt.Errorf("reclaim temporary files: %w", err)
	}
	cutoff := time.Now().Add(-olderThan)
	n := 0
	for _, e := range entries {
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // a Put finished with it meanwhile
		}
		if err != nil {
			return n, fmt.Errorf("reclaim temporary files: %w", err)
		}
		if info.ModTime().After(cutoff) {
			continue
		}
		err = os.RemoveAll(filepath.Join(s.tmp, e.Name()))
		if err != nil {
			return n, fmt.Errorf("reclaim temporary file %s: %w", e.Name(), err)
		}
		n++
	}
	return n, nil
}

// isNotExist reports whether err says a file is missing, including when a
// key passes through what is a file, not a directory.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// rangeFile is a range of an open file, read from the file's offset, where
// Get put it.
type rangeFile struct {
	f    *os.File
	left io.LimitedReader // of f
}

func (r *rangeFile) Read(p []byte) (int, error) { return r.left.Read(p) }

// WriteTo copies the rest of the range to w as a limited read of the file
// itself, which a TCP connection (and so net/http's response to a plain
// HTTP request) sends with sendfile.
func (r *rangeFile) WriteTo(w io.Writer) (int64, error) { return io.Copy(w, &r.left) }

// Close closes the file.
func (r *rangeFile) Close() error { return r.f.Close() }

// Get opens the blob under key for reading from offset, at most length
// bytes (length < 0 reads to the end).
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	path, err := s.path(key)
	if err != nil {
		return nil, fmt.Errorf("get blob %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get blob %s: %w", key, err)
	}
	if offset < 0 {
		return nil, fmt.Errorf("get blob %s: negative offset %d", key, offset)
	}
	f, err := openRead(path)
	if isNotExist(err) {
		return nil, fmt.Errorf("get blob %s: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get blob %s: %w", key, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = store.ErrNotFound
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("get blob %s: %w", key, err)
	}
	size := fi.Size()
	if offset == 0 && (length < 0 || length >= size) {
		return f, nil // a plain file lets the HTTP server use sendfile
	}
	n := max(size-offset, 0)
	if length >= 0 {
		n = min(n, length)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("get blob %s: %w", key, err)
	}
	r := &rangeFile{f: f}
	r.left = io.LimitedReader{R: f, N: n}
	return r, nil
}

// Stat returns the size and modification time of the blob under key.
func (s *Store) Stat(ctx context.Context, key string) (store.BlobInfo, error) {
	path, err := s.path(key)
	if err != nil {
		return store.BlobInfo{}, fmt.Errorf("stat blob %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return store.BlobInfo{}, fmt.Errorf("stat blob %s: %w", key, err)
	}
	fi, err := os.Stat(path)
	if isNotExist(err) || err == nil && !fi.Mode().IsRegular() {
		return store.BlobInfo{}, fmt.Errorf("stat blob %s: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return store.BlobInfo{}, fmt.Errorf("stat blob %s: %w", key, err)
	}
	return store.BlobInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime().UTC()}, nil
}

// Delete removes the blob under key; a missing blob is not an error. The
// directories it leaves empty stay, so a concurrent Put into them cannot
// lose its directory.
func (s *Store) Delete(ctx context.Context, key string) error {
	path, err := s.path(key)
	if err != nil {
		return fmt.Errorf("delete blob %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete blob %s: %w", key, err)
	}
	fi, err := os.Lstat(path)
	if isNotExist(err) || err == nil && fi.IsDir() {
		return nil
	}
	if err == nil {
		err = os.Remove(path)
	}
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("delete blob %s: %w", key, err)
	}
	return nil
}

package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/larder-cache/larder/internal/store"
)

// copyBufSize is the size of the buffer Put copies through: large enough
// that a NAR is written in few system calls, small enough to check the
// context often.
const copyBufSize = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// Put stores the bytes read from r under key. It writes them to a temporary
// file, checks their number against size, syncs the file, renames it into
// place and syncs the directory, so a completed Put survives a crash and an
// unfinished one leaves any earlier blob under key as it was.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	path, err := s.path(key)
	if err != nil {
		return fmt.Errorf("put blob %q: %w", key, err)
	}
	fill := func(f *os.File) error { return copyExact(ctx, f, r, size) }
	if err := s.put(ctx, path, fill); err != nil {
		return fmt.Errorf("put blob %s: %w", key, err)
	}
	return nil
}

// Compose stores the concatenation of the blobs under parts under key, as
// Put would store it; they must add up to size bytes. The kernel copies
// the bytes (copy_file_range), which on a file system that shares extents
// costs no copy at all.
func (s *Store) Compose(ctx context.Context, key string, parts []string, size int64) error {
	path, err := s.path(key)
	if err != nil {
		return fmt.Errorf("compose blob %q: %w", key, err)
	}
	fill := func(f *os.File) error {
		var n int64
		for _, part := range parts {
			if err := ctx.Err(); err != nil {
				return err
			}
			pp, err := s.path(part)
			if err != nil {
				return err
			}
			src, err := openRead(pp)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("part %s: %w", part, store.ErrNotFound)
			}
			if err != nil {
				return err
			}
			m, err := io.Copy(f, src)
			src.Close()
			if err != nil {
				return fmt.Errorf("part %s: %w", part, err)
			}
			n += m
		}
		if n != size {
			return fmt.Errorf("the parts hold %d bytes, want %d", n, size)
		}
		return nil
	}
	if err := s.put(ctx, path, fill); err != nil {
		return fmt.Errorf("compose blob %s: %w", key, err)
	}
	return nil
}

// put writes a blob at path with fill, through a temporary file that it
// syncs and renames into place.
func (s *Store) put(ctx context.Context, path string, fill func(*os.File) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(filePerm); err != nil {
		return err
	}
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := s.mkdirs(dir); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// copyExact copies r to w through a pooled buffer, checking ctx between
// chunks. When size is not negative, r must yield exactly size bytes.
func copyExact(ctx context.Context, w io.Writer, r io.Reader, size int64) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, rerr := io.ReadFull(r, buf)
		n += int64(m)
		if size >= 0 && n > size {
			return fmt.Errorf("reader yields more than %d bytes", size)
		}
		if _, err := w.Write(buf[:m]); err != nil {
			return err
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read: %w", rerr)
		}
	}
	if size >= 0 && n != size {
		return fmt.Errorf("reader yields %d bytes, want %d", n, size)
	}
	return ctx.Err()
}

// mkdirs creates dir and its missing parents below the root, syncing the
// parent of each so that the new entries are durable.
func (s *Store) mkdirs(dir string) error {
	if dir == s.root {
		return nil
	}
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is a blob, not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if err := s.mkdirs(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, dirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	// Sync even when another Put made dir first: it may not have synced yet.
	return syncDir(parent)
}

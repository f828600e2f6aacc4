//go:build !windows

package local

import (
	"fmt"
	"os"
)

// fsPath returns the absolute path abs as the store's file operations take
// it; here, as it is.
func fsPath(abs string) string { return abs }

// openRead opens the file at path for reading.
func openRead(path string) (*os.File, error) { return os.Open(path) }

// rename moves the file at from to to, replacing any file there.
func rename(from, to string) error { return os.Rename(from, to) }

// syncDir flushes the entries of directory dir to stable storage.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return d.Close()
}

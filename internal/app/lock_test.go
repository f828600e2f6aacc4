package app

import (
	"errors"
	"path/filepath"
	"testing"
)

// TestLockFile: a data directory's lock is held by one file at a time,
// also within one process, and is free again once that file is closed.
func TestLockFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serve.lock")
	first, err := lockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if first == nil {
		t.Skip("no file locking on this system")
	}
	if second, err := lockFile(path); !errors.Is(err, errLocked) {
		if second != nil {
			second.Close()
		}
		first.Close()
		t.Fatalf("second lock: %v, want errLocked", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := lockFile(path)
	if err != nil {
		t.Fatalf("lock after the holder closed it: %v", err)
	}
	again.Close()
}

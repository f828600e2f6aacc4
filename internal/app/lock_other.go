//go:build !unix && !windows

package app

import "os"

// lockFile is a no-op where neither flock nor LockFileEx is available:
// there, nothing stops two servers from sharing a data directory.
func lockFile(string) (*os.File, error) { return nil, nil }

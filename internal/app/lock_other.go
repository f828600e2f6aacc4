//go:build !unix

package app

// lockFile is a no-op where flock is not available: there, nothing stops
// two servers from sharing a data directory.
func lockFile(string) error { return nil }

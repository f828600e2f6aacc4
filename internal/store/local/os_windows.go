package local

import (
	"errors"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/windows"
)

// Windows differs from Unix in what the store relies on, and this file
// bridges the differences:
//
//   - Win32 rewrites some file names: it drops trailing dots ("a." is "a")
//     and takes "con", "nul", "aux", "com1" and the like, with any
//     extension, for devices. Valid keys may have such segments, so the
//     store works on extended-length paths (\\?\C:\…), which reach the
//     file system unchanged. Only paths made by joining checked keys to the
//     absolute root are used, so none has "." or ".." to resolve.
//   - A file open without FILE_SHARE_DELETE, as os.Open opens it, cannot be
//     deleted or replaced: a blob being served could then not be collected.
//     The store opens its blobs with it.
//   - Virus scanners open a file just written for a moment, which fails a
//     rename of it; renames are tried again for a while.
//   - FlushFileBuffers refuses a directory handle opened for reading, and
//     NTFS journals the entries of directories itself: syncDir does nothing.

// fsPath returns the absolute path abs as the store's file operations take
// it: as an extended-length path.
func fsPath(abs string) string { return extendedPath(abs) }

// openRead opens the file at path for reading, letting other handles
// delete or rename over it meanwhile, as Unix does.
func openRead(path string) (*os.File, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	// FILE_FLAG_BACKUP_SEMANTICS opens a directory too, as os.Open does, so
	// that the caller finds it is not a regular file.
	h, err := windows.CreateFile(p, windows.GENERIC_READ,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE,
		nil, windows.OPEN_EXISTING, windows.FILE_ATTRIBUTE_NORMAL|windows.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(h), path), nil
}

// renameRetry is how long rename tries again while another process holds
// the file.
const renameRetry = 2 * time.Second

// rename moves the file at from to to, replacing any file there, and tries
// again while another process (a virus scanner, a backup) has either open
// without sharing.
func rename(from, to string) error {
	deadline := time.Now().Add(renameRetry)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		err := os.Rename(from, to)
		held := errors.Is(err, windows.ERROR_SHARING_VIOLATION) || errors.Is(err, windows.ERROR_ACCESS_DENIED)
		if !held || time.Now().After(deadline) {
			return err
		}
		time.Sleep(delay)
	}
}

// syncDir does nothing on Windows.
func syncDir(string) error { return nil }

package local

import "strings"

// extendedPath returns the Windows extended-length form of the absolute,
// clean path abs: \\?\C:\dir for C:\dir, \\?\UNC\server\share\dir for
// \\server\share\dir. A path already in that form, or not absolute, is
// returned as it is. It is a function of strings, apart from os_windows.go,
// so that it is tested everywhere.
func extendedPath(abs string) string {
	switch {
	case strings.HasPrefix(abs, `\\?\`) || strings.HasPrefix(abs, `\\.\`):
		return abs
	case strings.HasPrefix(abs, `\\`):
		return `\\?\UNC\` + abs[2:]
	case len(abs) >= 3 && abs[1] == ':' && abs[2] == '\\':
		return `\\?\` + abs
	}
	return abs
}

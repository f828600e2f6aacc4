package local

import "testing"

func TestExtendedPath(t *testing.T) {
	for in, want := range map[string]string{
		`C:\larder\blobs`:       `\\?\C:\larder\blobs`,
		`d:\`:                   `\\?\d:\`,
		`\\server\share\larder`: `\\?\UNC\server\share\larder`,
		`\\?\C:\larder`:         `\\?\C:\larder`,
		`\\?\UNC\server\share`:  `\\?\UNC\server\share`,
		`\\.\pipe\x`:            `\\.\pipe\x`,
		`relative\dir`:          `relative\dir`,
		`C:relative`:            `C:relative`,
		`/var/lib/larder/blobs`: `/var/lib/larder/blobs`,
	} {
		if got := extendedPath(in); got != want {
			t.Errorf("extendedPath(%q) = %q, want %q", in, got, want)
		}
	}
}

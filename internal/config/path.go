package config

import (
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
)

// LocalPath returns the file or directory that a file: (blobs) or sqlite:
// (meta) URL names, as the local operating system writes it:
// file:///var/lib/larder/blobs is /var/lib/larder/blobs, file:relative/dir
// is relative/dir, and on Windows file:///C:/larder/blobs (or
// file://C:/larder/blobs) is C:\larder\blobs and file://server/share/dir
// the UNC path \\server\share\dir. Elsewhere a URL that names a host other
// than localhost is an error: file://dir/blobs would otherwise quietly
// mean /blobs.
func LocalPath(u *url.URL) (string, error) {
	return localPath(u, runtime.GOOS == "windows")
}

// localPath is LocalPath for Windows or for the other systems.
func localPath(u *url.URL, windows bool) (string, error) {
	p, host := u.Path, u.Host
	if u.Opaque != "" {
		p = u.Opaque // file:relative/dir, sqlite:larder.db
	}
	if host == "localhost" {
		host = ""
	}
	if windows {
		switch {
		case isDrive(host): // file://C:/dir
			p, host = host+p, ""
		case len(p) >= 3 && p[0] == '/' && isDrive(p[1:3]): // file:///C:/dir
			p = p[1:]
		case host != "": // file://server/share/dir
			p, host = `\\`+host+p, ""
		}
		p = strings.ReplaceAll(p, "/", `\`)
	}
	switch {
	case host != "":
		return "", fmt.Errorf("%s URL names the host %q: write %s:///DIR for a local path", u.Scheme, host, u.Scheme)
	case p == "":
		return "", errors.New(u.Scheme + " URL names no path")
	}
	return p, nil
}

// isDrive reports whether s is a Windows drive, such as "C:".
func isDrive(s string) bool {
	return len(s) == 2 && s[1] == ':' && ('a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z')
}

package config

import (
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestLocalPath(t *testing.T) {
	cases := []struct {
		url          string
		unix, window string // "" : an error
	}{
		{"file:///var/lib/larder/blobs", "/var/lib/larder/blobs", `\var\lib\larder\blobs`},
		{"file://localhost/var/lib/larder", "/var/lib/larder", `\var\lib\larder`},
		{"file:relative/blobs", "relative/blobs", `relative\blobs`},
		{"sqlite:larder.db", "larder.db", "larder.db"},
		{"sqlite:///srv/larder.db", "/srv/larder.db", `\srv\larder.db`},
		{"file:///C:/larder/blobs", "/C:/larder/blobs", `C:\larder\blobs`},
		{"file://C:/larder/blobs", "", `C:\larder\blobs`},
		{"sqlite:///d:/larder/larder.db", "/d:/larder/larder.db", `d:\larder\larder.db`},
		{"file:C:/larder/blobs", "C:/larder/blobs", `C:\larder\blobs`},
		{"file:///C:/with%20space", "/C:/with space", `C:\with space`},
		{"file://server/share/larder", "", `\\server\share\larder`},
		{"file://larder-data/blobs", "", `\\larder-data\blobs`},
		{"file://", "", ""},
	}
	for _, c := range cases {
		u, err := url.Parse(c.url)
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		for _, sys := range []struct {
			windows bool
			want    string
		}{{false, c.unix}, {true, c.window}} {
			got, err := localPath(u, sys.windows)
			switch {
			case sys.want == "" && err == nil:
				t.Errorf("%s (windows %v): %q, want an error", c.url, sys.windows, got)
			case sys.want != "" && (err != nil || got != sys.want):
				t.Errorf("%s (windows %v): %q, %v; want %q", c.url, sys.windows, got, err, sys.want)
			}
		}
	}
}

// TestDefaultPaths: the default stores lie under the data directory, in the
// form of the local system, whatever it is.
func TestDefaultPaths(t *testing.T) {
	c := Default()
	c.Data = filepath.Join(t.TempDir(), "data dir")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*url.URL{c.BlobsURL(), c.MetaURL()} {
		p, err := LocalPath(u)
		if err != nil || !strings.HasPrefix(p, c.Data+string(filepath.Separator)) {
			t.Errorf("%s: %q, %v; want a path under %s", u.Scheme, p, err, c.Data)
		}
	}
}

func TestValidateRefusesFileURLWithHost(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("on Windows file://HOST/… is a UNC path")
	}
	c := Default()
	c.Blobs = "file://larder-data/blobs"
	c.Meta = "sqlite://db/larder.db"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "blobs:") || !strings.Contains(err.Error(), "meta:") {
		t.Fatalf("validate: %v; want errors for blobs and meta", err)
	}
	if !strings.Contains(err.Error(), `names the host "larder-data"`) {
		t.Errorf("validate: %v; want it to name the host", err)
	}
}

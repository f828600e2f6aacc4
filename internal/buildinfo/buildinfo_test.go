package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	stamped := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/larder-cache/larder", Version: "v0.3.1-0.20260101120000-0a1b2c3d4e5f+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0a1b2c3d4e5f"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	clean := &debug.BuildInfo{
		Main:     debug.Module{Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}},
	}
	cases := []struct {
		name         string
		ldV, ldC     string
		bi           *debug.BuildInfo
		wantV, wantC string
	}{
		{"linker wins", "v1.2.0", "feed", stamped, "v1.2.0", "feed"},
		{"linker version, stamped commit", "v1.2.0", "", stamped, "v1.2.0", "0a1b2c3d4e5f-dirty"},
		{"stamped", "", "", stamped, stamped.Main.Version, "0a1b2c3d4e5f-dirty"},
		{"devel, clean tree", "", "", clean, "dev", "abc"},
		{"no build info", "", "", nil, "dev", "unknown"},
		{"nothing stamped", "", "", &debug.BuildInfo{}, "dev", "unknown"},
	}
	for _, c := range cases {
		got := resolve(c.ldV, c.ldC, c.bi)
		if got.version != c.wantV || got.commit != c.wantC {
			t.Errorf("%s: got version %q commit %q, want %q %q", c.name, got.version, got.commit, c.wantV, c.wantC)
		}
	}
}

func TestString(t *testing.T) {
	s := String()
	for _, part := range []string{"larder " + Version() + " ", "commit " + Commit(), runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(s, part) {
			t.Errorf("String() = %q, lacks %q", s, part)
		}
	}
}

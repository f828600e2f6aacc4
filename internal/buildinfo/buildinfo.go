// Package buildinfo says which larder this is: its version, the commit it
// was built from, and the Go that built it. A release sets the version and
// commit with
//
//	-ldflags "-X github.com/larder-cache/larder/internal/buildinfo.version=V
//	          -X github.com/larder-cache/larder/internal/buildinfo.commit=C"
//
// (release/build does); any other build reads what the Go toolchain stamped
// into the binary (the module's version, vcs.revision and vcs.modified).
//
// It imports nothing of larder's, so that any package may use it.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Set by -ldflags -X in release builds.
var (
	version string
	commit  string
)

// build is what Version and Commit report.
type build struct{ version, commit string }

// info is the build, worked out once.
var info = sync.OnceValue(func() build {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, bi)
})

// resolve returns the version and commit the linker set, or failing that
// those bi (which may be nil) records: "dev" for a version Go did not know
// (a build outside a module or without its VCS stamp), and "unknown" for
// a commit.
func resolve(ldVersion, ldCommit string, bi *debug.BuildInfo) build {
	v, c := ldVersion, ldCommit
	if bi != nil {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		if c == "" {
			var rev, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if rev != "" && modified == "true" {
				rev += "-dirty"
			}
			c = rev
		}
	}
	if v == "" {
		v = "dev"
	}
	if c == "" {
		c = "unknown"
	}
	return build{v, c}
}

// Version is larder's version: the release's ("v1.2.0", or what git
// describe said of the commit), the module version Go stamped, or "dev".
func Version() string { return info().version }

// Commit is the commit larder was built from, with "-dirty" if its work tree
// had changes, or "unknown".
func Commit() string { return info().commit }

// String describes the build in one line:
// "larder v1.2.0 (commit 0a1b2c…, go1.26.0, linux/arm64)".
func String() string {
	return "larder " + Version() + " (commit " + Commit() + ", " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}

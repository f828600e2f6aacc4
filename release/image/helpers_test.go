//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// What the test images are built with.
const (
	testVersion  = "1.2.3-test"
	testRevision = "0123456789abcdef0123456789abcdef01234567"
	testEpoch    = 1700000000
)

var testCreated = time.Unix(testEpoch, 0).UTC()

// The three platforms the release publishes an image for.
var testPlatforms = []string{"linux/amd64", "linux/arm64", "linux/arm/v7"}

// buildDir holds what the tests build with go build, for the whole run.
var buildDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "larder-image-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	builtMu sync.Mutex
	built   = map[string]string{} // name → path
)

// goBuild builds pkg into buildDir as name, once per run, the way a release
// would: static, trimmed, with larder's version set.
func goBuild(t *testing.T, name, pkg string, env []string, flags ...string) string {
	t.Helper()
	builtMu.Lock()
	defer builtMu.Unlock()
	if path, ok := built[name]; ok {
		return path
	}
	path := filepath.Join(buildDir, name)
	args := append([]string{"build", "-trimpath", "-o", path}, flags...)
	args = append(args, "-ldflags", "-s -w -X github.com/larder-cache/larder/internal/buildinfo.version="+testVersion, pkg)
	cmd := exec.Command("go", args...)
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux"), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s (%s): %v\n%s", name, strings.Join(env, " "), err, out)
	}
	built[name] = path
	return path
}

// larderFor builds larder for one of the test platforms.
func larderFor(t *testing.T, platform string) string {
	t.Helper()
	env := map[string][]string{
		"linux/amd64":  {"GOARCH=amd64"},
		"linux/arm64":  {"GOARCH=arm64"},
		"linux/arm/v7": {"GOARCH=arm", "GOARM=7"},
	}[platform]
	if env == nil {
		t.Fatalf("no larder build for %s", platform)
	}
	return goBuild(t, "larder-"+strings.ReplaceAll(platform, "/", "-"), "github.com/larder-cache/larder/cmd/larder", env)
}

// hello builds a Go program that is not larder.
func hello(t *testing.T, name string, env []string, flags ...string) string {
	t.Helper()
	return goBuild(t, name, "./testdata/hello", env, flags...)
}

// baseArgs are the flags of every test build but --binary and --out.
func baseArgs() []string {
	return []string{"--version", testVersion, "--revision", testRevision, "--created", strconv.Itoa(testEpoch)}
}

// buildImage runs the command with args and returns what it printed.
func buildImage(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(args, &stdout, &stderr); err != nil {
		t.Fatalf("image %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// binaryArgs are --binary flags for platforms, with larder built for each.
func binaryArgs(t *testing.T, platforms ...string) []string {
	t.Helper()
	var args []string
	for _, p := range platforms {
		args = append(args, "--binary", p+"="+larderFor(t, p))
	}
	return args
}

// needOCITools returns the paths of skopeo and umoci, or skips the test
// when either is missing (and fails it instead under
// LARDER_REQUIRE_OCI_TOOLS=1, as ./test.sh sets).
func needOCITools(t *testing.T) (skopeo, umoci string) {
	t.Helper()
	var missing []string
	paths := map[string]string{}
	for _, name := range []string{"skopeo", "umoci"} {
		path, err := exec.LookPath(name)
		if err != nil {
			missing = append(missing, name)
			continue
		}
		paths[name] = path
	}
	if len(missing) > 0 {
		why := strings.Join(missing, " and ") + " not on PATH (apt-get install skopeo umoci; ./test.sh installs them)"
		if os.Getenv("LARDER_REQUIRE_OCI_TOOLS") == "1" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	return paths["skopeo"], paths["umoci"]
}

// command runs name with args and returns its standard output.
func command(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// overrides are skopeo's flags that pick platform out of an index.
func overrides(platform string) []string {
	parts := strings.Split(platform, "/")
	args := []string{"--override-os", parts[0], "--override-arch", parts[1]}
	if len(parts) == 3 {
		args = append(args, "--override-variant", parts[2])
	}
	return args
}

// errUsage reports whether err is one of a wrong command line.
func errUsage(err error) bool {
	var ue usageError
	return errors.As(err, &ue)
}

// Package nix holds the tests of larder's Nix packaging: the files of this
// directory and default.nix. Building the package needs nixpkgs, which these
// tests do without: they need only Go and Nix itself.
package nix

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nar"
)

// root is the repository's root, seen from this package's directory.
const root = ".."

// haveNix reports whether Nix's command line tools are on PATH, failing
// the test if they are not and LARDER_REQUIRE_NIX=1.
func haveNix(t *testing.T) bool {
	t.Helper()
	_, err := exec.LookPath("nix-instantiate")
	if err != nil && os.Getenv("LARDER_REQUIRE_NIX") == "1" {
		t.Fatalf("LARDER_REQUIRE_NIX=1 but nix-instantiate is not on PATH: %v", err)
	}
	return err == nil
}

// requireNix skips the test when Nix's command line tools are missing,
// unless LARDER_REQUIRE_NIX=1 makes that a failure.
func requireNix(t *testing.T) {
	t.Helper()
	if !haveNix(t) {
		t.Skip("nix-instantiate is not on PATH")
	}
}

// run runs a command in dir and returns its standard output, failing the
// test with its standard error if it fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// copyPath copies a file, or a directory and everything in it.
func copyPath(t *testing.T, from, to string) {
	t.Helper()
	fi, err := os.Stat(from)
	if err != nil {
		t.Fatal(err)
	}
	if fi.IsDir() {
		err = os.CopyFS(to, os.DirFS(from))
	} else {
		var b []byte
		if b, err = os.ReadFile(from); err == nil {
			err = os.WriteFile(to, b, 0o644)
		}
	}
	if err != nil {
		t.Fatalf("copy %s: %v", from, err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sourcePaths returns what nix/package.nix builds from: nix/source.json.
func sourcePaths(t *testing.T) []string {
	t.Helper()
	var paths []string
	if err := json.Unmarshal([]byte(readFile(t, "source.json")), &paths); err != nil {
		t.Fatalf("source.json: %v", err)
	}
	return paths
}

// narHash returns the SRI SHA-256 of the NAR serialisation of path: what
// Nix takes as the hash of a recursive fixed-output derivation, such as
// buildGoModule's vendor directory.
func narHash(t *testing.T, path string) string {
	t.Helper()
	h := sha256.New()
	if err := nar.DumpPath(h, path); err != nil {
		t.Fatalf("serialise %s as a NAR: %v", path, err)
	}
	return "sha256-" + base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// TestVendorHash recomputes the vendorHash of nix/package.nix as
// buildGoModule does: `go mod vendor` in a copy of the files the package is
// built from, then the NAR hash of the vendor directory (modules.txt
// included). It fails with the new value when go.mod, go.sum or the
// packages larder imports changed and the hash was not updated.
func TestVendorHash(t *testing.T) {
	pkg := readFile(t, "package.nix")
	m := regexp.MustCompile(`(?m)^\s*vendorHash = "(sha256-[A-Za-z0-9+/=]+)";`).FindStringSubmatch(pkg)
	if m == nil {
		t.Fatal(`nix/package.nix has no vendorHash = "sha256-…";`)
	}
	written := m[1]

	src := t.TempDir()
	for _, p := range sourcePaths(t) {
		copyPath(t, filepath.Join(root, p), filepath.Join(src, p))
	}
	vendor := filepath.Join(t.TempDir(), "vendor")
	run(t, src, []string{"GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local"}, "go", "mod", "vendor", "-o", vendor)
	if _, err := os.Stat(filepath.Join(vendor, "modules.txt")); err != nil {
		t.Fatalf("go mod vendor wrote no modules.txt: %v", err)
	}
	got := narHash(t, vendor)
	if got != written {
		t.Errorf("nix/package.nix has vendorHash = %q, but go mod vendor of %v hashes to %q: set vendorHash = \"%s\";",
			written, sourcePaths(t), got, got)
	}

	// The hash above is computed in Go; Nix must agree with it.
	if haveNix(t) {
		byNix := strings.TrimSpace(run(t, root, nil, "nix", "--extra-experimental-features", "nix-command",
			"hash", "path", "--type", "sha256", "--sri", vendor))
		if byNix != got {
			t.Errorf("nix hash path says %s, the NAR hash computed here %s", byNix, got)
		}
	}
}

// TestNARHash pins narHash to Nix's own hashing on a tree with what a
// vendor directory could hold: nested directories, an executable, a
// symlink and an empty file.
func TestNARHash(t *testing.T) {
	requireNix(t)
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"a/b/c.go": 0o644, "a/run.sh": 0o755, "empty": 0o644} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		content := "package c\n"
		if name == "empty" {
			content = ""
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("b/c.go", filepath.Join(dir, "a/link")); err != nil {
		t.Fatal(err)
	}
	byNix := strings.TrimSpace(run(t, root, nil, "nix", "--extra-experimental-features", "nix-command",
		"hash", "path", "--type", "sha256", "--sri", dir))
	if got := narHash(t, dir); got != byNix {
		t.Errorf("narHash = %s, nix hash path = %s", got, byNix)
	}
}

// TestGoVersion checks that the Go nixpkgs builds larder with is the one
// go.mod asks for: buildGoModule sets GOTOOLCHAIN=local, so an older Go
// refuses to build, and the vendor directory is hashed as that Go writes it.
func TestGoVersion(t *testing.T) {
	m := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(readFile(t, filepath.Join(root, "go.mod")))
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	want := m[1] + m[2] // 1.26 -> 126
	for file, pattern := range map[string]string{
		"package.nix": `\bbuildGo(\d+)Module\b`,
	} {
		found := regexp.MustCompile(pattern).FindAllStringSubmatch(readFile(t, file), -1)
		if len(found) == 0 {
			t.Errorf("%s names no Go version (%s)", file, pattern)
		}
		for _, f := range found {
			if got := strings.Join(f[1:], ""); got != want {
				t.Errorf("%s uses %s, but go.mod asks for go %s.%s", file, f[0], m[1], m[2])
			}
		}
	}
}

// nixFiles lists the .nix files of the repository.
func nixFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bench") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".nix") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestParse parses every .nix file of the repository.
func TestParse(t *testing.T) {
	requireNix(t)
	files := nixFiles(t)
	for _, want := range []string{"default.nix", "nix/package.nix"} {
		found := false
		for _, f := range files {
			found = found || filepath.ToSlash(f) == "../"+want
		}
		if !found {
			t.Errorf("%s is missing", want)
		}
	}
	for _, f := range files {
		run(t, ".", nil, "nix-instantiate", "--parse", f)
	}
}

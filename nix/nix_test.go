// Package nix holds the tests of larder's Nix packaging: the files of this
// directory, flake.nix and default.nix. What nixpkgs is needed for (building
// the package, evaluating the module, the VM test) is checked by the flake's
// checks, which need nixpkgs; these tests need only Go and Nix itself.
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

	"github.com/larder-cache/larder/internal/config"
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
		"package.nix":                    `\bbuildGo(\d+)Module\b`,
		filepath.Join(root, "flake.nix"): `\bgo_(\d+)_(\d+)\b`,
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
	for _, want := range []string{"flake.nix", "default.nix", "nix/package.nix", "nix/module.nix", "nix/service.nix", "nix/vm-test.nix"} {
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

// TestFlakeInputs reads what evaluates of flake.nix without nixpkgs.
func TestFlakeInputs(t *testing.T) {
	requireNix(t)
	out := run(t, root, nil, "nix-instantiate", "--eval", "--strict", "--json", "-E",
		`let f = import ./flake.nix; in { inherit (f) description; url = f.inputs.nixpkgs.url; outputs = builtins.functionArgs f.outputs; }`)
	var flake struct {
		Description string
		URL         string
		Outputs     map[string]bool
	}
	if err := json.Unmarshal([]byte(out), &flake); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(flake.URL, "github:NixOS/nixpkgs/") {
		t.Errorf("inputs.nixpkgs.url = %q", flake.URL)
	}
	if _, ok := flake.Outputs["nixpkgs"]; !ok || len(flake.Outputs) != 2 {
		t.Errorf("outputs takes %v, want self and nixpkgs", flake.Outputs)
	}
}

// service is what nix/service.nix evaluates to.
type service struct {
	Port           *int
	Privileged     bool
	ReadWritePaths []string
	ServiceConfig  map[string]any
}

// evalService evaluates nix/service.nix, the systemd settings the NixOS
// module gives larder.service, on the arguments written as a Nix attribute
// set.
func evalService(t *testing.T, args string) (svc service) {
	t.Helper()
	out := run(t, ".", nil, "nix-instantiate", "--eval", "--strict", "--json", "-E", "import ./service.nix "+args)
	if err := json.Unmarshal([]byte(out), &svc); err != nil {
		t.Fatalf("service.nix: %v\n%s", err, out)
	}
	return svc
}

// TestService evaluates the [Service] settings the module gives larder:
// the shared ones of contrib/service.json, hardening included, exactly;
// ExecStart and EnvironmentFile wired to the package, the generated file
// and the option; and the capability and writable paths the settings call
// for, and only those.
func TestService(t *testing.T) {
	requireNix(t)
	var common map[string]any
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(root, "contrib", "service.json"))), &common); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"ProtectSystem", "SystemCallFilter", "MemoryDenyWriteExecute", "CapabilityBoundingSet", "UMask", "Type", "WatchdogSec"} {
		if _, ok := common[key]; !ok {
			t.Errorf("contrib/service.json has no %s", key)
		}
	}
	const larder, configFile = "/nix/store/00000000000000000000000000000000-larder", "/nix/store/11111111111111111111111111111111-larder.toml"

	for _, tc := range []struct {
		name     string
		settings string
		envFile  string
		port     int
		rw       []string
		bindCap  bool
	}{
		{name: "defaults", settings: `{ listen = "127.0.0.1:8080"; data = "/var/lib/larder"; }`, port: 8080},
		{
			name:     "secrets and a state subdirectory",
			settings: `{ listen = "[::]:8080"; data = "/var/lib/larder"; blobs = "file:///var/lib/larder/nar"; meta = "sqlite:///var/lib/larder/db/larder.db"; }`,
			envFile:  "/run/secrets/larder.env", port: 8080,
		},
		{name: "port 80", settings: `{ listen = "0.0.0.0:80"; data = "/var/lib/larder"; }`, port: 80, bindCap: true},
		{name: "port 443 written 0443", settings: `{ listen = ":0443"; data = "/var/lib/larder"; }`, port: 443, bindCap: true},
		{name: "port 1024", settings: `{ listen = ":1024"; data = "/var/lib/larder"; }`, port: 1024},
		{
			name:     "data elsewhere",
			settings: `{ listen = ":8080"; data = "/srv/larder"; blobs = "file:///srv/blobs?x=1"; meta = "sqlite:///srv/larder/larder.db"; }`,
			port:     8080, rw: []string{"/srv/larder", "/srv/blobs"},
		},
		{name: "S3 and PostgreSQL", settings: `{ listen = ":8080"; data = "/var/lib/larder"; blobs = "s3://b/p?endpoint=https://s3.internal"; meta = "postgres://larder@db/larder"; }`, port: 8080},
		{name: "a state directory lookalike", settings: `{ listen = ":8080"; data = "/var/lib/larder2"; }`, port: 8080, rw: []string{"/var/lib/larder2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := "null"
			if tc.envFile != "" {
				env = `"` + tc.envFile + `"`
			}
			svc := evalService(t, `{ larder = "`+larder+`"; configFile = "`+configFile+`"; settings = `+tc.settings+`; environmentFile = `+env+`; }`)
			sc := svc.ServiceConfig
			if svc.Port == nil || *svc.Port != tc.port {
				t.Errorf("port = %v, want %d", svc.Port, tc.port)
			}
			for key, want := range common {
				if key == "CapabilityBoundingSet" && tc.bindCap {
					continue
				}
				if got, _ := json.Marshal(sc[key]); string(got) != mustJSON(t, want) {
					t.Errorf("%s = %s, want %s as in contrib/service.json", key, got, mustJSON(t, want))
				}
			}
			want := map[string]any{
				"ExecStart":        larder + "/bin/larder serve --config " + configFile,
				"DynamicUser":      true,
				"User":             "larder",
				"StateDirectory":   "larder",
				"WorkingDirectory": "/var/lib/larder",
			}
			if tc.envFile != "" {
				want["EnvironmentFile"] = tc.envFile
			}
			if tc.rw != nil {
				want["ReadWritePaths"] = tc.rw
			}
			if tc.bindCap {
				want["AmbientCapabilities"] = "CAP_NET_BIND_SERVICE"
				want["CapabilityBoundingSet"] = "CAP_NET_BIND_SERVICE"
			}
			for key, w := range want {
				if got, _ := json.Marshal(sc[key]); string(got) != mustJSON(t, w) {
					t.Errorf("%s = %s, want %s", key, got, mustJSON(t, w))
				}
			}
			for _, key := range []string{"EnvironmentFile", "ReadWritePaths", "AmbientCapabilities"} {
				if _, set := sc[key]; set && want[key] == nil {
					t.Errorf("%s = %v, want it unset", key, sc[key])
				}
			}
			if tc.bindCap != svc.Privileged {
				t.Errorf("privileged = %v", svc.Privileged)
			}
		})
	}

	// A service name has no port number to open or to judge.
	if svc := evalService(t, `{ larder = "/x"; configFile = "/y"; settings = { listen = ":http"; data = "/var/lib/larder"; }; }`); svc.Port != nil || svc.Privileged {
		t.Errorf("listen :http: port %v, privileged %v", svc.Port, svc.Privileged)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestModuleSettings checks the typed settings of the NixOS module against
// larder's own: each is a setting larder knows, and listen, which the
// module reads for the firewall and the capability, defaults as larder does.
func TestModuleSettings(t *testing.T) {
	module := readFile(t, "module.nix")
	start := strings.Index(module, "freeformType = settingsFormat.type;")
	end := strings.Index(module, "environmentFile = mkOption")
	if start < 0 || end < start {
		t.Fatal("module.nix: no settings submodule before environmentFile")
	}
	typed := regexp.MustCompile(`(?m)^\s+(\w+) = mkOption \{`).FindAllStringSubmatch(module[start:end], -1)
	if len(typed) == 0 {
		t.Fatal("module.nix: no typed settings")
	}
	known := map[string]config.Setting{}
	for _, s := range config.Settings() {
		known[s.Name] = s
	}
	for _, m := range typed {
		if _, ok := known[m[1]]; !ok {
			t.Errorf("module.nix declares settings.%s, which larder does not know", m[1])
		}
	}
	listen := regexp.MustCompile(`(?s)listen = mkOption \{.*?default = "([^"]*)";`).FindStringSubmatch(module)
	if listen == nil || listen[1] != config.Default().Listen {
		t.Errorf("module.nix: settings.listen defaults to %v, larder to %q", listen, config.Default().Listen)
	}
}

// TestCheckConfigOpensNothing pins what the module's build-time check
// relies on: larder check-config validates a configuration without the
// data directory, the stores or the network, none of which the build
// sandbox has, and refuses a bad setting with a message that names it.
func TestCheckConfigOpensNothing(t *testing.T) {
	dir := t.TempDir()
	larder := filepath.Join(dir, "larder")
	run(t, root, []string{"CGO_ENABLED=0"}, "go", "build", "-o", larder, "./cmd/larder")

	data := filepath.Join(dir, "no", "such", "data")
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte(`data = "`+data+`"
listen = "0.0.0.0:8080"
public_url = "https://cache.example.org"
blobs = "s3://nix-cache/larder?endpoint=https://s3.invalid&region=garage"
meta = "postgres://larder@db.invalid/larder?sslmode=require"
max_nar_size = "64GiB"
max_signatures = 4
`), 0o644); err != nil {
		t.Fatal(err)
	}
	// As in the sandbox: no HOME, no LARDER_* settings, no network.
	check := func(file string) (string, error) {
		cmd := exec.Command(larder, "check-config", "--config", file)
		cmd.Env = []string{"PATH=/nonexistent", "HOME=/homeless-shelter"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := check(good)
	if err != nil {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	for _, want := range []string{"configuration is valid", "meta = postgres://larder@db.invalid", "max_nar_size = 64GiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config printed no %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "no")); !os.IsNotExist(err) {
		t.Errorf("check-config made the data directory's parents: %v", err)
	}

	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("max_signatures = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The message the flake's check-config-refuses looks for.
	if out, err := check(bad); err == nil || !strings.Contains(out, "max_signatures: must be at least 1") {
		t.Errorf("check-config on max_signatures = 0: %v\n%s", err, out)
	}
}

//go:build linux

// Package contrib holds the tests of what larder ships for systemd outside
// NixOS: larder.service, and service.json, the [Service] settings it shares
// with the NixOS module (nix/service.nix reads them too).
package contrib

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the lines of larder.service that come from service.json")

const (
	begin = "# BEGIN service.json\n"
	end   = "# END service.json\n"
)

// maxExposure is the most systemd-analyze security (of systemd 252) may
// rate larder.service, 0 being the safest and 10 the least safe: it rates
// contrib's 1.2 and the NixOS unit that binds port 443 1.4.
const maxExposure = 1.5

// serviceLines renders service.json as unit file lines, in its order: a
// string is one Key=value line, a list one line per item.
func serviceLines(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("service.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("service.json is not an object: %v %v", tok, err)
	}
	var out strings.Builder
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("service.json: %v", err)
		}
		key := tok.(string)
		if seen[key] {
			t.Errorf("service.json sets %s twice", key)
		}
		seen[key] = true
		var value any
		if err := dec.Decode(&value); err != nil {
			t.Fatalf("service.json: %s: %v", key, err)
		}
		var items []any
		switch v := value.(type) {
		case string:
			items = []any{v}
		case []any:
			items = v
		default:
			t.Fatalf("service.json: %s is %T, want a string or a list of strings", key, value)
		}
		for _, item := range items {
			s, ok := item.(string)
			if !ok {
				t.Fatalf("service.json: %s holds %T, want strings", key, item)
			}
			out.WriteString(key + "=" + s + "\n")
		}
	}
	return out.String()
}

// TestUnitMatchesServiceJSON checks that the lines of larder.service
// between its BEGIN and END markers are service.json's; -update rewrites
// them.
func TestUnitMatchesServiceJSON(t *testing.T) {
	b, err := os.ReadFile("larder.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	i, j := strings.Index(unit, begin), strings.Index(unit, end)
	if i < 0 || j < i {
		t.Fatalf("larder.service has no %q … %q block", begin, end)
	}
	want := serviceLines(t)
	if got := unit[i+len(begin) : j]; got != want {
		if !*update {
			t.Fatalf("larder.service does not have the settings of service.json: run go test ./contrib -update\ngot:\n%swant:\n%s", got, want)
		}
		unit = unit[:i+len(begin)] + want + unit[j:]
		if err := os.WriteFile("larder.service", []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// requireSystemd skips the test when systemd-analyze is missing, unless
// LARDER_REQUIRE_SYSTEMD=1 makes that a failure.
func requireSystemd(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("LARDER_REQUIRE_SYSTEMD") == "1" {
			t.Fatalf("LARDER_REQUIRE_SYSTEMD=1 but systemd-analyze is not on PATH: %v", err)
		}
		t.Skip("systemd-analyze is not on PATH")
	}
}

// systemRoot makes a root directory for systemd-analyze --root: the
// machine's own system units (the targets larder.service depends on), the
// unit under test in /etc/systemd/system, and an executable at each path
// given, since verify checks that ExecStart's command exists.
func systemRoot(t *testing.T, name, unit string, executables ...string) string {
	t.Helper()
	root := t.TempDir()
	units := "/usr/lib/systemd/system"
	if _, err := os.Stat(units); err != nil {
		units = "/lib/systemd/system"
	}
	copyTree(t, units, filepath.Join(root, "usr/lib/systemd/system"))
	write(t, filepath.Join(root, "etc/systemd/system", name), unit, 0o644)
	for _, path := range executables {
		write(t, filepath.Join(root, path), "#!/bin/sh\n", 0o755)
	}
	return root
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies a directory of unit files, symbolic links as links.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, src); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copy %s: %v", from, err)
	}
}

// analyze runs systemd-analyze on root and returns what it printed.
func analyze(t *testing.T, root string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("systemd-analyze", append([]string{"--root=" + root}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// verify fails the test unless systemd-analyze verify accepts the unit
// without a word: it warns of an unknown key or a value it cannot parse,
// and ignores the line, yet exits 0.
func verify(t *testing.T, root, name string) {
	t.Helper()
	if out, err := analyze(t, root, "verify", "--man=no", name); err != nil || out != "" {
		t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
	}
}

// exposure returns the overall exposure level systemd-analyze security
// gives the unit: 0 is the safest, 10 the least safe.
func exposure(t *testing.T, root, name string) float64 {
	t.Helper()
	out, err := analyze(t, root, "security", "--offline=yes", "--no-pager", name)
	if err != nil {
		t.Fatalf("systemd-analyze security %s: %v\n%s", name, err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security %s printed no exposure level:\n%s", name, out)
	}
	level, _ := strconv.ParseFloat(m[1], 64)
	return level
}

func readUnit(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("larder.service")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestUnitVerifies runs systemd-analyze verify on larder.service.
func TestUnitVerifies(t *testing.T) {
	requireSystemd(t)
	unit := readUnit(t)
	verify(t, systemRoot(t, "larder.service", unit, "/usr/local/bin/larder"), "larder.service")

	// What verify reports is what the test sees: a line systemd does not
	// take is caught.
	for _, bad := range []string{"NoSuchKey=yes", "SystemCallFilter=@system-service ~@privileged", "ProtectSystem=very"} {
		broken := strings.Replace(unit, begin, begin+bad+"\n", 1)
		root := systemRoot(t, "larder.service", broken, "/usr/local/bin/larder")
		if out, err := analyze(t, root, "verify", "--man=no", "larder.service"); err == nil && out == "" {
			t.Errorf("systemd-analyze verify took %q without a word", bad)
		}
	}
}

// TestUnitExposure keeps larder.service's hardening from slipping:
// systemd-analyze security must rate it at most maxExposure.
func TestUnitExposure(t *testing.T) {
	requireSystemd(t)
	root := systemRoot(t, "larder.service", readUnit(t), "/usr/local/bin/larder")
	if level := exposure(t, root, "larder.service"); level > maxExposure {
		t.Errorf("systemd-analyze security rates larder.service %.1f, more exposed than %.1f", level, maxExposure)
	}
}

// nixOSUnit is larder.service as NixOS writes it from the settings of
// nix/service.nix (evaluated by nix-instantiate): a list is one line per
// item, true and false are written as such.
func nixOSUnit(t *testing.T, settings string) (unit, execStart string) {
	t.Helper()
	if _, err := exec.LookPath("nix-instantiate"); err != nil {
		if os.Getenv("LARDER_REQUIRE_NIX") == "1" {
			t.Fatalf("LARDER_REQUIRE_NIX=1 but nix-instantiate is not on PATH: %v", err)
		}
		t.Skip("nix-instantiate is not on PATH")
	}
	const larder = "/nix/store/00000000000000000000000000000000-larder"
	cmd := exec.Command("nix-instantiate", "--eval", "--strict", "--json", "-E",
		`(import ../nix/service.nix { larder = "`+larder+`"; configFile = "/etc/larder/larder.toml"; settings = `+settings+`; environmentFile = "/run/secrets/larder.env"; }).serviceConfig`)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix/service.nix: %v\n%s", err, stderr.String())
	}
	var sc map[string]any
	if err := json.Unmarshal(out, &sc); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("[Unit]\nDescription=larder Nix binary cache\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\n")
	for key, value := range sc {
		items, ok := value.([]any)
		if !ok {
			items = []any{value}
		}
		for _, item := range items {
			switch v := item.(type) {
			case bool:
				b.WriteString(key + "=" + strconv.FormatBool(v) + "\n")
			case string:
				b.WriteString(key + "=" + v + "\n")
			default:
				t.Fatalf("%s = %v (%T)", key, item, item)
			}
		}
	}
	b.WriteString("\n[Install]\nWantedBy=multi-user.target\n")
	return b.String(), larder + "/bin/larder"
}

// TestNixOSUnit runs the same checks on the unit the NixOS module makes,
// for the default settings and for those that add a capability and
// writable paths.
func TestNixOSUnit(t *testing.T) {
	requireSystemd(t)
	for name, settings := range map[string]string{
		"defaults":     `{ listen = "127.0.0.1:8080"; data = "/var/lib/larder"; }`,
		"port 443":     `{ listen = "[::]:443"; data = "/var/lib/larder"; }`,
		"data on /srv": `{ listen = ":8080"; data = "/srv/larder"; blobs = "file:///srv/blobs"; }`,
	} {
		t.Run(name, func(t *testing.T) {
			unit, larder := nixOSUnit(t, settings)
			root := systemRoot(t, "larder.service", unit, larder)
			for _, dir := range []string{"/srv/larder", "/srv/blobs"} {
				if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			verify(t, root, "larder.service")
			if level := exposure(t, root, "larder.service"); level > maxExposure {
				t.Errorf("systemd-analyze security rates the NixOS unit %.1f, more exposed than %.1f", level, maxExposure)
			}
		})
	}
}

// TestMain lets the test binary stand in for systemd's
// MemoryDenyWriteExecute=. With LARDER_TEST_MDWE=1 it forbids itself memory
// that is writable and executable, as the kernel's PR_SET_MDWE does for
// every program it then executes, and executes its arguments; with
// LARDER_TEST_WX=1 it asks for such memory and exits 0 only if refused.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv("LARDER_TEST_MDWE") == "1":
		const prSetMDWE, refuseExecGain = 65, 1
		if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetMDWE, refuseExecGain, 0, 0, 0, 0); errno != 0 {
			fmt.Fprintln(os.Stderr, "prctl PR_SET_MDWE:", errno)
			os.Exit(3)
		}
		env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "LARDER_TEST_MDWE=") })
		err := syscall.Exec(os.Args[1], os.Args[1:], env)
		fmt.Fprintln(os.Stderr, "exec:", err)
		os.Exit(1)
	case os.Getenv("LARDER_TEST_WX") == "1":
		_, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE|syscall.PROT_EXEC, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err == nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestMemoryDenyWriteExecute runs larder as MemoryDenyWriteExecute=yes
// would, and fetches nix-cache-info from it: larder, pure Go, needs no
// memory that is both writable and executable.
func TestMemoryDenyWriteExecute(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("PR_SET_MDWE is Linux's")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	underMDWE := func(env []string, args ...string) *exec.Cmd {
		cmd := exec.Command(self, args...)
		cmd.Env = append(append(os.Environ(), "LARDER_TEST_MDWE=1"), env...)
		return cmd
	}
	// The restriction holds in what it executes.
	err = underMDWE([]string{"LARDER_TEST_WX=1"}, self).Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == 3:
		t.Skip("this kernel has no PR_SET_MDWE (Linux 6.3)")
	case err != nil:
		t.Fatalf("writable executable memory was not refused under PR_SET_MDWE: %v", err)
	}

	dir := t.TempDir()
	larder := filepath.Join(dir, "larder")
	build := exec.Command("go", "build", "-o", larder, "./cmd/larder")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var log bytes.Buffer
	serve := underMDWE(nil, larder, "serve", "--data", filepath.Join(dir, "data"), "--listen", addr)
	serve.Stdout, serve.Stderr = &log, &log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()

	var info string
	deadline := time.Now().Add(30 * time.Second)
	for info == "" && time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("larder exited under PR_SET_MDWE: %v\n%s", err, log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if resp, err := http.Get("http://" + addr + "/main/nix-cache-info"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				info = string(b)
			}
		}
	}
	if !strings.Contains(info, "StoreDir: /nix/store") {
		t.Errorf("nix-cache-info = %q", info)
	}
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Errorf("larder stopped with %v\n%s", err, log.String())
	}
}

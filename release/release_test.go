// Package release tests release/build, the command that builds larder's
// release binaries: it runs it once per test run for every target, checks
// the layout of what it wrote and SHA256SUMS, reads each binary's header
// and build information, and runs the Linux binaries, the ARM ones under
// qemu-user-static (which ./test.sh installs; LARDER_REQUIRE_QEMU=1 makes
// its absence a failure rather than a skip).
package release

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/testserver"
)

// version is what the tests give release/build to stamp.
const version = "v9.8.7-test.1"

// build is release/build run once, for every target, into a directory of
// its own.
var build struct {
	once    sync.Once
	dir     string
	targets []string // as release/build --list-targets gives them
	stdout  string
	err     error
}

// built returns the directory release/build wrote every target to, building
// them on first use.
func built(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "larder-release-")
		if build.err != nil {
			return
		}
		var list string
		if list, build.err = runBuild("--list-targets"); build.err != nil {
			return
		}
		build.targets = strings.Fields(list)
		start := time.Now()
		build.stdout, build.err = runBuild("--version", version, "--out", build.dir)
		fmt.Fprintf(os.Stderr, "release/build of %d targets took %v\n", len(build.targets), time.Since(start).Round(time.Second))
	})
	if build.err != nil {
		t.Fatalf("release/build: %v", build.err)
	}
	return build.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// runBuild runs release/build with args and returns its standard output.
func runBuild(args ...string) (string, error) {
	cmd := exec.Command("./build", args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("release/build %s: %w\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), nil
}

// fileName is the name release/build gives a target's binary.
func fileName(target string) string {
	name := "larder-" + version + "-" + strings.ReplaceAll(target, "/", "-")
	if strings.HasPrefix(target, "windows/") {
		name += ".exe"
	}
	return name
}

// wantTargets are the platforms larder ships for.
var wantTargets = []string{"linux/amd64", "linux/386", "linux/arm64", "linux/armv6", "linux/armv7", "windows/amd64", "darwin/arm64"}

// TestLayout: one binary per target, named larder-VERSION-OS-ARCH, listed
// on standard output, and SHA256SUMS over exactly them, which sha256sum -c
// accepts.
func TestLayout(t *testing.T) {
	dir := built(t)
	if !slices.Equal(build.targets, wantTargets) {
		t.Errorf("targets %q, want %q", build.targets, wantTargets)
	}
	var want, printed []string
	for _, target := range wantTargets {
		want = append(want, fileName(target))
		printed = append(printed, filepath.Join(dir, fileName(target)))
	}
	if got := strings.Fields(build.stdout); !slices.Equal(got, printed) {
		t.Errorf("release/build printed %q, want %q", got, printed)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if wantAll := append(slices.Clone(want), "SHA256SUMS"); !slices.Equal(names, slices.Sorted(slices.Values(wantAll))) {
		t.Errorf("%s holds %q, want %q", dir, names, wantAll)
	}
	sums := readSums(t, filepath.Join(dir, "SHA256SUMS"))
	if got := slices.Sorted(maps.Keys(sums)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("SHA256SUMS lists %q, want %q", got, want)
	}
	for name, sum := range sums {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != sum {
			t.Errorf("SHA256SUMS: %s has another hash", name)
		}
		t.Logf("%s: %.1f MiB", name, float64(len(b))/(1<<20))
	}
	check := exec.Command("sha256sum", "-c", "--strict", "SHA256SUMS")
	if _, err := exec.LookPath("sha256sum"); err != nil {
		check = exec.Command("shasum", "-a", "256", "-c", "SHA256SUMS")
	}
	check.Dir = dir
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("%s: %v\n%s", strings.Join(check.Args, " "), err, out)
	}
}

// readSums parses a SHA256SUMS file: one "HASH  NAME" a line.
func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 || strings.Contains(name, "/") {
			t.Errorf("SHA256SUMS line %q is not HASH  NAME", sc.Text())
			continue
		}
		sums[name] = sum
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sums
}

// TestHeaders reads each binary as its system would: the ELF, PE or Mach-O
// header says its architecture and that it is stripped, and the build
// information Go embeds says how it was built (pure Go, trimmed, GOARM).
func TestHeaders(t *testing.T) {
	dir := built(t)
	for _, target := range wantTargets {
		t.Run(target, func(t *testing.T) {
			path := filepath.Join(dir, fileName(target))
			switch {
			case strings.HasPrefix(target, "linux/"):
				checkELF(t, path, target)
			case target == "windows/amd64":
				checkPE(t, path)
			case target == "darwin/arm64":
				checkMachO(t, path)
			default:
				t.Fatalf("no header check for %s", target)
			}
			checkBuildInfo(t, path, target)
		})
	}
}

func checkELF(t *testing.T, path, target string) {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]struct {
		class   elf.Class
		machine elf.Machine
	}{
		"linux/amd64": {elf.ELFCLASS64, elf.EM_X86_64},
		"linux/386":   {elf.ELFCLASS32, elf.EM_386},
		"linux/arm64": {elf.ELFCLASS64, elf.EM_AARCH64},
		"linux/armv6": {elf.ELFCLASS32, elf.EM_ARM},
		"linux/armv7": {elf.ELFCLASS32, elf.EM_ARM},
	}[target]
	if f.Class != want.class || f.Machine != want.machine || f.Type != elf.ET_EXEC {
		t.Errorf("ELF %v %v %v, want %v %v ET_EXEC", f.Class, f.Machine, f.Type, want.class, want.machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("ELF has %v: not a static binary", p.Type)
		}
	}
	if f.Section(".symtab") != nil {
		t.Error("ELF has a symbol table: not stripped (-s)")
	}
	for _, sec := range f.Sections {
		if isDebug(sec.Name) {
			t.Errorf("ELF has section %s: not stripped of DWARF (-w)", sec.Name)
		}
	}
}

// isDebug reports whether a section holds DWARF.
func isDebug(name string) bool {
	return strings.HasPrefix(name, ".debug_") || strings.HasPrefix(name, ".zdebug_")
}

func checkPE(t *testing.T, path string) {
	f, err := pe.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 {
		t.Errorf("PE machine %#x, want AMD64", f.Machine)
	}
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		t.Fatalf("PE optional header %T, want PE32+", f.OptionalHeader)
	}
	if oh.Subsystem != pe.IMAGE_SUBSYSTEM_WINDOWS_CUI {
		t.Errorf("PE subsystem %d, want the console", oh.Subsystem)
	}
	if len(f.Symbols) > 0 {
		t.Errorf("PE has %d symbols: not stripped (-s)", len(f.Symbols))
	}
	for _, sec := range f.Sections {
		if isDebug(sec.Name) {
			t.Errorf("PE has section %s: not stripped of DWARF (-w)", sec.Name)
		}
	}
}

// lcCodeSignature is the Mach-O load command of a code signature, which
// macOS on Apple silicon requires of every binary it runs.
const lcCodeSignature = 0x1d

func checkMachO(t *testing.T, path string) {
	f, err := macho.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Cpu != macho.CpuArm64 || f.Type != macho.TypeExec {
		t.Errorf("Mach-O %v %v, want arm64 executable", f.Cpu, f.Type)
	}
	signed := false
	for _, l := range f.Loads {
		if raw := l.Raw(); len(raw) >= 4 && f.ByteOrder.Uint32(raw) == lcCodeSignature {
			signed = true
		}
	}
	if !signed {
		t.Error("Mach-O has no code signature: macOS on arm64 will not run it")
	}
	if f.Segment("__DWARF") != nil {
		t.Error("Mach-O has a __DWARF segment: not stripped of DWARF (-w)")
	}
	libs, err := f.ImportedLibraries()
	if err != nil || !slices.Contains(libs, "/usr/lib/libSystem.B.dylib") {
		t.Errorf("Mach-O imports %q, %v; want libSystem, as every macOS program", libs, err)
	}
}

func checkBuildInfo(t *testing.T, path, target string) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bi.Path != "github.com/larder-cache/larder/cmd/larder" {
		t.Errorf("main package %s", bi.Path)
	}
	goos, arch, _ := strings.Cut(target, "/")
	want := map[string]string{"GOOS": goos, "GOARCH": arch, "CGO_ENABLED": "0", "-trimpath": "true"}
	if v, ok := strings.CutPrefix(arch, "armv"); ok {
		want["GOARCH"], want["GOARM"] = "arm", v
	}
	got := map[string]string{}
	for _, s := range bi.Settings {
		got[s.Key] = s.Value
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("built with %s=%q, want %q", k, got[k], v)
		}
	}
	// With -trimpath, Go does not record -ldflags; the version they set is
	// in the binary (and TestRun runs what it can).
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(version)) {
		t.Errorf("the binary does not hold its version %s", version)
	}
}

// emulators are how the tests run the Linux binaries: natively for the
// machine's own, under qemu-user-static with a CPU of the target's
// generation for ARM (arm1176 is the ARMv6 of the Raspberry Pi 1 and
// Zero). linux/386 is not run: qemu 7.2's i386 emulation cannot run Go
// programs, and running it natively depends on the kernel.
var emulators = map[string][]string{
	"linux/arm64": {"qemu-aarch64-static", "-cpu", "cortex-a53"},
	"linux/armv7": {"qemu-arm-static", "-cpu", "cortex-a7"},
	"linux/armv6": {"qemu-arm-static", "-cpu", "arm1176"},
}

// runner returns the command line prefix that runs a target's binary here,
// skipping or failing t if it cannot.
func runner(t *testing.T, target string) []string {
	t.Helper()
	if target == runtime.GOOS+"/"+runtime.GOARCH {
		return nil
	}
	emu, ok := emulators[target]
	if !ok {
		t.Fatalf("no way to run %s here", target)
	}
	if _, err := exec.LookPath(emu[0]); err != nil {
		if os.Getenv("LARDER_REQUIRE_QEMU") == "1" {
			t.Fatalf("%s is not on PATH and LARDER_REQUIRE_QEMU=1", emu[0])
		}
		t.Skipf("%s is not on PATH (apt-get install qemu-user-static; LARDER_REQUIRE_QEMU=1 makes this a failure)", emu[0])
	}
	return emu
}

// TestRun runs the Linux binaries: larder version prints the version the
// build was given, and larder serve on a fresh data directory answers
// nix-cache-info, then stops cleanly on SIGTERM.
func TestRun(t *testing.T) {
	dir := built(t)
	commit := wantCommit(t)
	runs := []string{"linux/arm64", "linux/armv7", "linux/armv6"}
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		runs = append(runs, "linux/amd64")
	}
	for _, target := range runs {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			prefix := runner(t, target)
			bin := filepath.Join(dir, fileName(target))
			arch := strings.TrimPrefix(target, "linux/")
			if strings.HasPrefix(arch, "armv") {
				arch = "arm"
			}
			start := time.Now()
			out, err := command(prefix, bin, "version").CombinedOutput()
			if err != nil {
				t.Fatalf("larder version: %v\n%s", err, out)
			}
			want := fmt.Sprintf("larder %s (commit %s, %s, linux/%s)\n", version, commit, runtime.Version(), arch)
			if string(out) != want {
				t.Errorf("larder version printed %q, want %q", out, want)
			}
			t.Logf("larder version took %v", time.Since(start).Round(time.Millisecond))
			serve(t, prefix, bin)
		})
	}
}

// TestARMv7NeedsARMv7 runs the armv7 binary on the ARMv6 CPU, which must
// fail: otherwise running the armv6 binary there would prove nothing.
func TestARMv7NeedsARMv7(t *testing.T) {
	dir := built(t)
	prefix := runner(t, "linux/armv6")
	bin := filepath.Join(dir, fileName("linux/armv7"))
	if out, err := command(prefix, bin, "version").CombinedOutput(); err == nil {
		t.Errorf("the armv7 binary ran on an arm1176:\n%s", out)
	}
}

// command runs bin with args, through the emulator prefix if any.
func command(prefix []string, bin string, args ...string) *exec.Cmd {
	line := append(append(slices.Clone(prefix), bin), args...)
	return exec.Command(line[0], line[1:]...)
}

// wantCommit is the commit release/build stamps: HEAD, marked dirty if the
// work tree has changes to tracked files, or unknown outside git.
func wantCommit(t *testing.T) string {
	t.Helper()
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(head))
	status, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	if err != nil {
		t.Fatal(err)
	}
	if len(bytes.TrimSpace(status)) > 0 {
		commit += "-dirty"
	}
	return commit
}

// serveWait bounds how long an emulated server may take to answer.
const serveWait = 2 * time.Minute

// serve starts larder serve on a fresh data directory and a free port,
// waits for GET /main/nix-cache-info to answer 200, and stops it with
// SIGTERM, which it must survive with exit status 0.
func serve(t *testing.T, prefix []string, bin string) {
	t.Helper()
	addr := freeAddr(t)
	cmd := command(prefix, bin, "serve", "--listen", addr, "--data", t.TempDir())
	cmd.Env = withoutLarderEnv()
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	}()
	client := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(serveWait)
	for {
		resp, err := client.Get("http://" + addr + "/main/nix-cache-info")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.HasPrefix(string(body), "StoreDir: /nix/store\n") {
				break
			}
			t.Fatalf("GET nix-cache-info: %s %q", resp.Status, body)
		}
		select {
		case err := <-exited:
			t.Fatalf("larder serve exited before answering (%v):\n%s", err, log.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("larder serve did not answer within %v:\n%s", serveWait, log.String())
		}
	}
	t.Logf("larder serve answered after %v", time.Since(start).Round(time.Millisecond))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("larder serve exited with %v after SIGTERM:\n%s", err, log.String())
		}
		close(exited) // the deferred kill finds it exited
	case <-time.After(serveWait):
		t.Fatalf("larder serve did not stop within %v of SIGTERM", serveWait)
	}
	if !strings.Contains(log.String(), "msg=starting version="+version+" ") {
		t.Errorf("serve did not log version %s as it started:\n%s", version, log.String())
	}
}

// withoutLarderEnv is the environment without LARDER_* settings, which
// would change what serve opens.
func withoutLarderEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LARDER_") {
			env = append(env, kv)
		}
	}
	return env
}

func freeAddr(t *testing.T) string { return testserver.FreeAddr(t) }

// syncBuffer is a bytes.Buffer safe for a process writing while tests read.
type syncBuffer = testserver.SyncBuffer

// TestTargetsAndVersion: --targets builds a subset, and a run replaces what
// an earlier one left in its output directory; --print-version prints the
// version from LARDER_VERSION; unknown targets and versions that cannot
// name a file are refused with status 2 before anything is built.
func TestTargetsAndVersion(t *testing.T) {
	built(t) // so that these builds find the targets in Go's cache
	out := t.TempDir()
	for _, targets := range [][]string{{"linux/amd64", "linux/arm64"}, {"linux/arm64"}} {
		printed, err := runBuild("--version", version, "--targets", strings.Join(targets, ","), "--out", out)
		if err != nil {
			t.Fatal(err)
		}
		var want, paths []string
		for _, target := range targets {
			want = append(want, fileName(target))
			paths = append(paths, filepath.Join(out, fileName(target)))
		}
		if got := strings.Fields(printed); !slices.Equal(got, paths) {
			t.Errorf("--targets %s printed %q, want %q", targets, got, paths)
		}
		entries, _ := os.ReadDir(out)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if wantAll := slices.Sorted(slices.Values(append(want, "SHA256SUMS"))); !slices.Equal(names, wantAll) {
			t.Errorf("--targets %s left %q, want %q", targets, names, wantAll)
		}
		if sums := readSums(t, filepath.Join(out, "SHA256SUMS")); len(sums) != len(targets) {
			t.Errorf("--targets %s: SHA256SUMS lists %d files", targets, len(sums))
		}
	}

	cmd := exec.Command("./build", "--print-version")
	cmd.Env = append(os.Environ(), "LARDER_VERSION=v1.2.3-rc.1")
	if got, err := cmd.Output(); err != nil || string(got) != "v1.2.3-rc.1\n" {
		t.Errorf("--print-version with LARDER_VERSION: %q, %v", got, err)
	}
	if got, err := runBuild("--print-version"); err != nil || strings.TrimSpace(got) == "" {
		t.Errorf("--print-version from git: %q, %v", got, err)
	}

	for _, bad := range [][]string{
		{"--targets", "linux/amd64,plan9/amd64"},
		{"--targets", "linux/arm"},
		{"--version", "v1/2"},
		{"--version", "-v1"},
		{"--frobnicate"},
	} {
		empty := t.TempDir()
		_, err := runBuild(append(bad, "--out", empty)...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("release/build %s: %v, want exit status 2", strings.Join(bad, " "), err)
		}
		if entries, _ := os.ReadDir(empty); len(entries) > 0 {
			t.Errorf("release/build %s wrote %d files", strings.Join(bad, " "), len(entries))
		}
	}
}

// TestWindowsTestBinariesBuild cross-compiles the tests of the packages the
// embedded default runs on Windows, which this machine cannot run, so that
// they at least build there.
func TestWindowsTestBinariesBuild(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command("go", "test", "-c", "-o", out+string(filepath.Separator),
		"../internal/store/local", "../internal/app", "../internal/config")
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=windows go test -c: %v\n%s", err, b)
	}
	for _, name := range []string{"local.test.exe", "app.test.exe", "config.test.exe"} {
		f, err := pe.Open(filepath.Join(out, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		f.Close()
	}
}

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// nix runs the real Nix client with a private configuration: its own
// narinfo cache (XDG_CACHE_HOME), no substituters but those a test names,
// and optionally a netrc file with a token.
type nix struct {
	t      *testing.T
	home   string
	extra  []string // extra nix.conf lines
	caFile string   // NIX_SSL_CERT_FILE: the CA file to trust, if any
}

// needNix returns a Nix runner, or skips the test when Nix is not installed
// (and fails it instead under LARDER_REQUIRE_NIX=1, as ./test.sh sets).
func needNix(t *testing.T) *nix {
	t.Helper()
	if _, err := exec.LookPath("nix-store"); err != nil {
		if os.Getenv("LARDER_REQUIRE_NIX") == "1" {
			t.Fatalf("nix-store is not installed (apt-get install nix-bin): %v", err)
		}
		t.Skip("nix-store is not installed; ./test.sh installs it")
	}
	return &nix{t: t, home: t.TempDir()}
}

// withNetrc returns a runner sharing n's home and narinfo cache that sends
// token as the password for host from a netrc file named in its nix.conf, as
// a user's netrc-file setting would.
func (n *nix) withNetrc(host, token string) *nix {
	n.t.Helper()
	path := n.netrcFile(host, token)
	return &nix{t: n.t, home: n.home, caFile: n.caFile, extra: append(append([]string{}, n.extra...), "netrc-file = "+path)}
}

func (n *nix) env() []string {
	conf := []string{
		"experimental-features = nix-command ca-derivations",
		"build-users-group =",
		"sandbox = false",
		"substituters =",
		"narinfo-cache-negative-ttl = 0",
		"connect-timeout = 5",
	}
	conf = append(conf, n.extra...)
	env := []string{
		"HOME=" + n.home,
		"XDG_CACHE_HOME=" + filepath.Join(n.home, "cache"),
		"NIX_CONFIG=" + strings.Join(conf, "\n"),
		"PATH=" + os.Getenv("PATH"),
	}
	if n.caFile != "" {
		env = append(env, "NIX_SSL_CERT_FILE="+n.caFile)
	}
	return env
}

// forget drops the client's narinfo cache, so the next command asks the
// server again.
func (n *nix) forget() {
	if err := os.RemoveAll(filepath.Join(n.home, "cache")); err != nil {
		n.t.Fatal(err)
	}
}

// try runs a Nix command and returns its standard output, standard error
// and error.
func (n *nix) try(args ...string) (string, string, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = n.env()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return o.String(), e.String(), err
}

// run runs a Nix command and fails the test if it fails.
func (n *nix) run(args ...string) string {
	n.t.Helper()
	out, errOut, err := n.try(args...)
	if err != nil {
		n.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// closure is a set of store paths built for one test.
type closure struct {
	Top   string   // the path whose closure is Paths
	Paths []string // every path of the closure
	// Drvs are the derivations that built them. They refer to the closure's
	// sources, so deleting the closure locally means deleting them too.
	Drvs []string
}

// buildClosure builds a closure of four paths unique to the test: a
// directory tree (executable, symlink, empty file, nested directory) added
// from disk, a 5 MB file, a directory referring to both, and a top path
// referring to that. The build logs a line, for copy-log tests.
func (n *nix) buildClosure(seed string) closure {
	n.t.Helper()
	return n.buildClosureSize(seed, 5000000)
}

// buildClosureSize is buildClosure with a random file of bigBytes bytes
// instead of 5 MB.
func (n *nix) buildClosureSize(seed string, bigBytes int) closure {
	n.t.Helper()
	tree := n.makeTree(seed)
	expr := fmt.Sprintf(`
let
  sys = builtins.currentSystem;
  tree = builtins.path { path = %q; name = "tree-%[2]s"; };
  big = derivation { name = "big-%[2]s"; system = sys; builder = "/bin/sh";
    args = [ "-c" "echo building big %[2]s; /usr/bin/head -c %[3]d /dev/urandom > $out" ]; };
  mid = derivation { name = "mid-%[2]s"; system = sys; builder = "/bin/sh";
    args = [ "-c" "/usr/bin/mkdir $out; echo ${big} > $out/big-ref; echo ${tree} > $out/tree-ref; /usr/bin/ln -s ${big} $out/big-link" ]; };
in derivation { name = "top-%[2]s"; system = sys; builder = "/bin/sh";
  args = [ "-c" "echo ${mid} ${tree} > $out" ]; }
`, tree, seed, bigBytes)
	top := strings.TrimSpace(n.run("nix-build", "--no-out-link", "-E", expr))
	paths := lines(n.run("nix-store", "--query", "--requisites", top))
	if len(paths) != 4 {
		n.t.Fatalf("closure of %s has %d paths, want 4: %v", top, len(paths), paths)
	}
	drv := strings.TrimSpace(n.run("nix-store", "--query", "--deriver", top))
	drvs := lines(n.run("nix-store", "--query", "--requisites", drv))
	var onlyDrvs []string
	for _, d := range drvs {
		if strings.HasSuffix(d, ".drv") {
			onlyDrvs = append(onlyDrvs, d)
		}
	}
	return closure{Top: top, Paths: paths, Drvs: onlyDrvs}
}

// narHashes returns the NAR hash of each path as the local store records it.
func (n *nix) narHashes(store string, paths []string) map[string]string {
	n.t.Helper()
	args := append([]string{"nix-store"}, "--query", "--hash")
	if store != "" {
		args = append(args, "--store", store)
	}
	out := lines(n.run(append(args, paths...)...))
	if len(out) != len(paths) {
		n.t.Fatalf("nix-store --query --hash gave %d lines for %d paths", len(out), len(paths))
	}
	m := map[string]string{}
	for i, p := range paths {
		m[p] = out[i]
	}
	return m
}

// netrcFile writes a netrc file giving token as the password for host and
// returns its path, for commands that take --netrc-file.
func (n *nix) netrcFile(host, token string) string {
	n.t.Helper()
	f, err := os.CreateTemp(n.home, "netrc-*")
	must(n.t, err)
	_, err = fmt.Fprintf(f, "machine %s\nlogin larder\npassword %s\n", host, token)
	must(n.t, errors.Join(err, f.Close()))
	return f.Name()
}

// fails runs a Nix command that must fail, and returns its standard error.
func (n *nix) fails(args ...string) string {
	n.t.Helper()
	out, errOut, err := n.try(args...)
	if err == nil {
		n.t.Fatalf("%s succeeded, want failure\nstdout: %s\nstderr: %s", strings.Join(args, " "), out, errOut)
	}
	return errOut
}

// deleteLocal deletes store paths from the real local store. The paths must
// be deletable together: nothing outside them may refer to them, so a closure
// goes with the derivations that refer to its inputs. It fails the test if
// any path is still there afterwards.
func (n *nix) deleteLocal(paths ...string) {
	n.t.Helper()
	n.run(append([]string{"nix-store", "--delete"}, paths...)...)
	for _, p := range paths {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			n.t.Fatalf("%s is still on disk after nix-store --delete (%v)", p, err)
		}
		if _, _, err := n.try("nix-store", "--check-validity", p); err == nil {
			n.t.Fatalf("%s is still valid after nix-store --delete", p)
		}
	}
}

// makeTree writes a directory tree unique to the seed and returns its
// path: an executable script run.sh, a symlink link to sub/deeper/text, an
// empty file empty, and the nested directory sub/deeper with a 40 kB text.
func (n *nix) makeTree(seed string) string {
	n.t.Helper()
	tree := filepath.Join(n.home, "tree-"+seed)
	must(n.t, os.MkdirAll(filepath.Join(tree, "sub", "deeper"), 0o755))
	must(n.t, os.WriteFile(filepath.Join(tree, "run.sh"), []byte("#!/bin/sh\necho "+seed+"\n"), 0o755))
	must(n.t, os.WriteFile(filepath.Join(tree, "empty"), nil, 0o644))
	must(n.t, os.WriteFile(filepath.Join(tree, "sub", "deeper", "text"), bytes.Repeat([]byte("larder "+seed+"\n"), 5000), 0o644))
	must(n.t, os.Symlink("sub/deeper/text", filepath.Join(tree, "link")))
	return tree
}

// addTree adds the tree of makeTree to the store (as nix-store --add does,
// so the path is content addressed) and returns its store path.
func (n *nix) addTree(seed string) string {
	n.t.Helper()
	return strings.TrimSpace(n.run("nix-store", "--add", n.makeTree(seed)))
}

// buildPair builds two small input-addressed paths unique to the seed: lib,
// and top, which refers to lib. It returns {top, lib} as a closure.
func (n *nix) buildPair(seed string) closure {
	n.t.Helper()
	expr := fmt.Sprintf(`
let
  sys = builtins.currentSystem;
  lib = derivation { name = "lib-%[1]s"; system = sys; builder = "/bin/sh";
    args = [ "-c" "echo lib %[1]s > $out" ]; };
in derivation { name = "app-%[1]s"; system = sys; builder = "/bin/sh";
  args = [ "-c" "echo ${lib} > $out" ]; }
`, seed)
	top := strings.TrimSpace(n.run("nix-build", "--no-out-link", "-E", expr))
	paths := lines(n.run("nix-store", "--query", "--requisites", top))
	if len(paths) != 2 {
		n.t.Fatalf("closure of %s has %d paths, want 2: %v", top, len(paths), paths)
	}
	drv := strings.TrimSpace(n.run("nix-store", "--query", "--deriver", top))
	var drvs []string
	for _, d := range lines(n.run("nix-store", "--query", "--requisites", drv)) {
		if strings.HasSuffix(d, ".drv") {
			drvs = append(drvs, d)
		}
	}
	return closure{Top: top, Paths: paths, Drvs: drvs}
}

// genKey makes a signing key pair with nix-store --generate-binary-cache-key
// and returns the secret key's file and the public key.
func (n *nix) genKey(name string) (secretFile, public string) {
	n.t.Helper()
	sk := filepath.Join(n.home, name+".sk")
	pk := filepath.Join(n.home, name+".pk")
	n.run("nix-store", "--generate-binary-cache-key", name, sk, pk)
	b, err := os.ReadFile(pk)
	must(n.t, err)
	return sk, strings.TrimSpace(string(b))
}

// pathInfo is what nix path-info --json says of a store path, less the
// fields that differ between stores (signatures, registration time, URLs).
type pathInfo struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    int64    `json:"narSize"`
	References []string `json:"references"`
	Deriver    string   `json:"deriver"`
	CA         string   `json:"ca"`
}

// pathInfos returns nix path-info --json -r of top in a store ("" for the
// local one), by path.
func (n *nix) pathInfos(store, top string) map[string]pathInfo {
	n.t.Helper()
	args := []string{"nix", "path-info", "--json", "-r", top}
	if store != "" {
		args = append(args, "--store", store)
	}
	out := n.run(args...)
	var list []pathInfo
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		n.t.Fatalf("nix path-info --json: %v\n%s", err, out)
	}
	m := map[string]pathInfo{}
	for _, pi := range list {
		sort.Strings(pi.References)
		m[pi.Path] = pi
	}
	return m
}

// snapshot describes the files of store paths as found on disk: type,
// executable bit, symlink target and the sha256 of each file's content.
func snapshot(t *testing.T, paths []string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, root := range paths {
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := os.Lstat(p)
			if err != nil {
				return err
			}
			var desc string
			switch {
			case info.Mode()&os.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				desc = "symlink -> " + target
			case info.IsDir():
				desc = "directory"
			default:
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				sum := sha256.Sum256(b)
				desc = fmt.Sprintf("file %d bytes exec=%v sha256=%x", len(b), info.Mode()&0o111 != 0, sum)
			}
			m[p] = desc
			return nil
		})
		if err != nil {
			t.Fatalf("snapshot %s: %v", root, err)
		}
	}
	return m
}

// sameSnapshot fails the test if two snapshots differ.
func sameSnapshot(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	if len(want) != len(got) {
		t.Errorf("%s: %d files, want %d", what, len(got), len(want))
	}
	for p, w := range want {
		if g := got[p]; g != w {
			t.Errorf("%s: %s is %q, want %q", what, p, g, w)
		}
	}
}

// sameSet reports whether two lists hold the same strings, in any order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x := append([]string{}, a...)
	y := append([]string{}, b...)
	sort.Strings(x)
	sort.Strings(y)
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

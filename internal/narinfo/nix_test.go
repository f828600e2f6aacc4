package narinfo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireNix skips the test when the Nix command line tools are missing,
// unless LARDER_REQUIRE_NIX=1 makes that a failure.
func requireNix(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nix-store"); err != nil {
		if os.Getenv("LARDER_REQUIRE_NIX") == "1" {
			t.Fatalf("LARDER_REQUIRE_NIX=1 but nix-store is not on PATH: %v", err)
		}
		t.Skip("nix-store is not on PATH")
	}
}

// nixCmd runs a Nix command with no substituters and a fresh narinfo cache,
// so that no command sees a narinfo that an earlier one cached.
func nixCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(),
		"NIX_CONFIG=experimental-features = nix-command\nbuild-users-group =\nsandbox = false\nsubstituters =",
		"XDG_CACHE_HOME="+t.TempDir())
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return strings.TrimSpace(out.String()), errOut.String(), err
}

// runNix runs a Nix command that must succeed and returns its output.
func runNix(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := nixCmd(t, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// testPaths are store paths made for the tests.
type testPaths struct {
	added  string // a file added with nix-store --add (CA fixed:r:sha256)
	input  string // a builtins.toFile path (CA text:sha256)
	output string // a derivation output referring to input and itself
	drv    string // the derivation of output
}

// makePaths adds a file to the store and builds a small derivation.
func makePaths(t *testing.T) testPaths {
	t.Helper()
	file := filepath.Join(t.TempDir(), "larder-narinfo-test.txt")
	if err := os.WriteFile(file, []byte("larder narinfo test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var p testPaths
	p.added = runNix(t, "nix-store", "--add", file)
	const expr = `let input = builtins.toFile "larder-narinfo-test-input" "input\n"; in
		derivation { name = "larder-narinfo-test-out"; system = builtins.currentSystem; builder = "/bin/sh";
		args = ["-c" "echo ${input} $out > $out"]; }`
	p.output = runNix(t, "nix-build", "--no-out-link", "-E", expr)
	p.drv = runNix(t, "nix-store", "--query", "--deriver", p.output)
	for _, ref := range strings.Fields(runNix(t, "nix-store", "--query", "--references", p.output)) {
		if strings.HasSuffix(ref, "-larder-narinfo-test-input") {
			p.input = ref
		}
	}
	if p.input == "" {
		t.Fatalf("%s does not refer to its input", p.output)
	}
	return p
}

// narinfoFile returns the narinfo file of a store path in a file:// cache.
func narinfoFile(dir, storePath string) string {
	hash, _, _ := strings.Cut(filepath.Base(storePath), "-")
	return filepath.Join(dir, hash+".narinfo")
}

// TestNixRoundTrip copies paths with Nix into file:// caches with several
// compression methods and checks that every narinfo Nix writes renders back
// byte for byte, and that its FileHash and FileSize describe the NAR file.
func TestNixRoundTrip(t *testing.T) {
	requireNix(t)
	p := makePaths(t)
	root := t.TempDir()
	for _, method := range []string{"xz", "zstd", "bzip2", "none"} {
		dir := filepath.Join(root, method)
		url := "file://" + dir + "?compression=" + method
		runNix(t, "nix", "copy", "--to", url, p.added, p.output)
		runNix(t, "nix", "copy", "--derivation", "--to", url, p.drv)
		files, err := filepath.Glob(filepath.Join(dir, "*.narinfo"))
		if err != nil || len(files) != 4 {
			t.Fatalf("%s: want 4 narinfos, found %v (%v)", dir, files, err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			n := checkRoundTrip(t, data)
			checkNarFile(t, dir, n)
		}
	}
	out, err := Parse(mustRead(t, narinfoFile(filepath.Join(root, "xz"), p.output)))
	if err != nil {
		t.Fatal(err)
	}
	selfRef := strings.TrimPrefix(p.output, "/nix/store/")
	if len(out.References) != 2 || out.Deriver != filepath.Base(p.drv) || !strings.Contains(strings.Join(out.References, " "), selfRef) {
		t.Errorf("narinfo of %s = %+v, want two references including itself and deriver %s", p.output, out, p.drv)
	}
}

// checkNarFile checks FileHash and FileSize against the NAR file, and for
// uncompressed NARs also NarHash and NarSize.
func checkNarFile(t *testing.T, dir string, n *NarInfo) {
	t.Helper()
	nar := mustRead(t, filepath.Join(dir, filepath.FromSlash(n.URL)))
	sum := Hash(sha256.Sum256(nar))
	if sum != n.FileHash || uint64(len(nar)) != n.FileSize {
		t.Errorf("%s: file is %s, %d bytes; narinfo says %s, %d", n.URL, sum, len(nar), n.FileHash, n.FileSize)
	}
	if n.Compression == "none" && (sum != n.NarHash || uint64(len(nar)) != n.NarSize) {
		t.Errorf("%s: uncompressed NAR is %s, %d bytes; narinfo says %s, %d", n.URL, sum, len(nar), n.NarHash, n.NarSize)
	}
}

func mustRead(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestNixSignatures checks that signatures made by Nix with Nix's keys
// verify with Verify and equal those made by Sign with the same keys.
func TestNixSignatures(t *testing.T) {
	requireNix(t)
	p := makePaths(t)
	keyDir := t.TempDir()
	sk, pk := filepath.Join(keyDir, "sk"), filepath.Join(keyDir, "pk")
	runNix(t, "nix-store", "--generate-binary-cache-key", "nix-test-1", sk, pk)
	secret, err := ParseSecretKey(string(mustRead(t, sk)))
	if err != nil {
		t.Fatalf("parsing a secret key made by Nix: %v", err)
	}
	public := mustPublic(t, string(mustRead(t, pk)))
	if secret.PublicKey().String() != public.String() {
		t.Errorf("public half of the secret key %s != %s", secret.PublicKey(), public)
	}
	dir := t.TempDir()
	runNix(t, "nix", "copy", "--to", "file://"+dir, p.output)
	runNix(t, "nix", "store", "sign", "--store", "file://"+dir, "-k", sk, p.output, p.input)
	for _, path := range []string{p.output, p.input} {
		n := checkRoundTrip(t, mustRead(t, narinfoFile(dir, path)))
		if len(n.Sigs) != 1 || !n.Verify([]PublicKey{public}) {
			t.Errorf("%s: signatures %q do not verify with %s", path, n.Sigs, public)
		}
		if got := Sign(secret, n.Fingerprint()); len(n.Sigs) == 1 && got != n.Sigs[0] {
			t.Errorf("%s: Sign = %s, Nix signed %s", path, got, n.Sigs[0])
		}
	}
}

// TestNixAcceptsOurKeys checks that Nix signs with a key made by
// GenerateKey, and that nix store verify accepts a narinfo rendered by Bytes
// with a signature made by Sign.
func TestNixAcceptsOurKeys(t *testing.T) {
	requireNix(t)
	p := makePaths(t)
	dir := t.TempDir()
	store := "file://" + dir
	runNix(t, "nix", "copy", "--to", store, p.output)
	keyDir := t.TempDir()
	secret1, public1 := writeKey(t, keyDir, "larder-gen-1")
	secret2, public2 := writeKey(t, keyDir, "larder-gen-2")

	runNix(t, "nix", "store", "sign", "--store", store, "-k", filepath.Join(keyDir, "larder-gen-1"), p.output)
	file := narinfoFile(dir, p.output)
	n := checkRoundTrip(t, mustRead(t, file))
	if len(n.Sigs) != 1 || !n.Verify([]PublicKey{mustPublic(t, public1)}) || n.Sigs[0] != Sign(secret1, n.Fingerprint()) {
		t.Errorf("Nix's signature with our key, %q, does not match ours", n.Sigs)
	}
	runNix(t, "nix", "store", "verify", "--store", store, "--trusted-public-keys", public1, p.output)

	n.Sigs = nil
	n.Sign(secret2)
	if err := os.WriteFile(file, n.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	runNix(t, "nix", "store", "verify", "--store", store, "--trusted-public-keys", public2, p.output)
	if _, _, err := nixCmd(t, "nix", "store", "verify", "--store", store, "--trusted-public-keys", public1, p.output); err == nil {
		t.Errorf("nix store verify accepted a narinfo signed only by larder-gen-2 with key larder-gen-1")
	}
}

// writeKey generates a key pair with GenerateKey, writes the secret key to
// dir/name and returns it parsed, with the public key text.
func writeKey(t *testing.T, dir, name string) (SecretKey, string) {
	t.Helper()
	secret, public, err := GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	sk, err := ParseSecretKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	return sk, public
}

// TestNixHashEncoding checks Hash encodings against nix-hash.
func TestNixHashEncoding(t *testing.T) {
	requireNix(t)
	for _, data := range []string{"", "hello", "larder", strings.Repeat("x", 1000)} {
		sum := sha256.Sum256([]byte(data))
		h := Hash(sum)
		hexSum := hex.EncodeToString(sum[:])
		if got := runNix(t, "nix-hash", "--type", "sha256", "--to-base32", hexSum); got != h.Nix32() {
			t.Errorf("nix-hash --to-base32 %s = %s, Nix32() = %s", hexSum, got, h.Nix32())
		}
		if got := runNix(t, "nix-hash", "--type", "sha256", "--to-base16", h.Nix32()); got != hexSum {
			t.Errorf("nix-hash --to-base16 %s = %s, want %s", h.Nix32(), got, hexSum)
		}
	}
}

package narverify

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// nixConfig lets nix run as root without a daemon, build users, sandbox or
// substituters.
const nixConfig = "experimental-features = nix-command\nbuild-users-group =\nsandbox = false\nsubstituters ="

// requireNix skips the test where Nix is not installed, unless
// LARDER_REQUIRE_NIX=1 demands it.
func requireNix(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nix-store"); err != nil {
		if os.Getenv("LARDER_REQUIRE_NIX") == "1" {
			t.Fatal("nix-store is not on PATH and LARDER_REQUIRE_NIX=1")
		}
		t.Skip("nix-store is not on PATH")
	}
}

func runNix(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "NIX_CONFIG="+nixConfig)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// addNixTree adds to the Nix store a tree with an executable, a symlink, an
// empty file, nested and empty directories, a larger file and names whose
// byte order differs from other orders, and returns its store path.
func addNixTree(t *testing.T) string {
	t.Helper()
	root := makeTree(t, 1<<20)
	for _, name := range []string{"B", "a", "a.b", "a-b", "é", "Z10", "Z9"} {
		if err := os.WriteFile(filepath.Join(root, "share", name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return strings.TrimSpace(string(runNix(t, "nix-store", "--add", root)))
}

// TestNixHashes checks NarHash and NarSize against what Nix computes for
// the same store path, and go-nix's NAR writer against nix-store --dump.
func TestNixHashes(t *testing.T) {
	requireNix(t)
	path := addNixTree(t)
	dump := runNix(t, "nix-store", "--dump", path)
	wantHash := sha256.Sum256(dump)

	// nix-store --query --hash prints sha256:<nix32>.
	queried := strings.TrimSpace(string(runNix(t, "nix-store", "--query", "--hash", path)))
	if queried != "sha256:"+nixbase32.EncodeToString(wantHash[:]) {
		t.Fatalf("nix-store --query --hash says %s, sha256 of the dump is %x", queried, wantHash)
	}
	info := pathInfo(t, path)
	if info.NarHash != wantHash || info.NarSize != int64(len(dump)) {
		t.Fatalf("nix path-info says %x, %d bytes; the dump is %x, %d bytes",
			info.NarHash, info.NarSize, wantHash, len(dump))
	}
	if goNix := dumpNAR(t, path); !bytes.Equal(goNix, dump) {
		t.Errorf("go-nix's NAR of %s differs from nix-store --dump", path)
	}
	for _, m := range allMethods {
		file := compress(t, m, dump)
		_, res, err := verify(file, Options{Ext: ext(t, m), Size: int64(len(file))})
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		if res.NarHash != wantHash || res.NarSize != int64(len(dump)) {
			t.Errorf("%s: NarHash %x, NarSize %d; Nix says %x, %d", m, res.NarHash, res.NarSize, wantHash, len(dump))
		}
	}
}

type nixPathInfo struct {
	NarHash [32]byte
	NarSize int64
}

// pathInfo reads narHash and narSize from nix path-info --json, whose
// output is a list of objects in older Nix and an object keyed by path in
// newer, with the hash in SRI form or as sha256:<nix32>.
func pathInfo(t *testing.T, path string) nixPathInfo {
	t.Helper()
	out := runNix(t, "nix", "path-info", "--json", path)
	type entry struct {
		Path    string `json:"path"`
		NarHash string `json:"narHash"`
		NarSize int64  `json:"narSize"`
	}
	var list []entry
	if err := json.Unmarshal(out, &list); err != nil {
		var byPath map[string]entry
		if err := json.Unmarshal(out, &byPath); err != nil {
			t.Fatalf("parsing nix path-info --json: %v\n%s", err, out)
		}
		for _, e := range byPath {
			list = append(list, e)
		}
	}
	if len(list) != 1 {
		t.Fatalf("nix path-info --json lists %d paths: %s", len(list), out)
	}
	return nixPathInfo{NarHash: parseNixHash(t, list[0].NarHash), NarSize: list[0].NarSize}
}

// parseNixHash decodes "sha256-<base64>" or "sha256:<nix32>".
func parseNixHash(t *testing.T, s string) [32]byte {
	t.Helper()
	var b []byte
	var err error
	switch {
	case strings.HasPrefix(s, "sha256-"):
		b, err = base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "sha256-"))
	case strings.HasPrefix(s, "sha256:"):
		b, err = nixbase32.DecodeString(strings.TrimPrefix(s, "sha256:"))
	default:
		t.Fatalf("unknown hash format %q", s)
	}
	if err != nil || len(b) != 32 {
		t.Fatalf("decoding hash %q: %d bytes, %v", s, len(b), err)
	}
	return [32]byte(b)
}

// TestNixBinaryCache verifies the NAR files Nix itself writes to a file://
// binary cache with every compression, checking the Result against the
// narinfo Nix wrote next to them and the file hash against the file name.
func TestNixBinaryCache(t *testing.T) {
	requireNix(t)
	path := addNixTree(t)
	for _, m := range allMethods {
		t.Run(m, func(t *testing.T) {
			cache := t.TempDir()
			runNix(t, "nix", "copy", "--to", "file://"+cache+"?compression="+m, path)
			info := readNarinfo(t, cache, path)
			if info["Compression"] != m {
				t.Fatalf("narinfo names compression %q", info["Compression"])
			}
			url := info["URL"]
			base := strings.TrimPrefix(url, "nar/")
			hashPart, extPart, ok := strings.Cut(base, ".nar")
			if !ok {
				t.Fatalf("narinfo URL %q", url)
			}
			if want := ext(t, m); extPart != want {
				t.Errorf("Nix names %s NARs %q, compression.Ext says %q", m, ".nar"+extPart, ".nar"+want)
			}
			fileHash, err := nixbase32.DecodeString(hashPart)
			if err != nil {
				t.Fatal(err)
			}
			file, err := os.ReadFile(filepath.Join(cache, url))
			if err != nil {
				t.Fatal(err)
			}
			_, res, err := verify(file, Options{Ext: extPart, ExpectFileHash: fileHash, Size: int64(len(file))})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{
				"Compression": res.Compression,
				"FileHash":    "sha256:" + nixbase32.EncodeToString(res.FileHash[:]),
				"FileSize":    strconv.FormatInt(res.FileSize, 10),
				"NarHash":     "sha256:" + nixbase32.EncodeToString(res.NarHash[:]),
				"NarSize":     strconv.FormatInt(res.NarSize, 10),
			}
			for k, v := range got {
				if info[k] != v {
					t.Errorf("%s: verified %s, narinfo says %s", k, v, info[k])
				}
			}
		})
	}
}

// readNarinfo parses the narinfo of a store path in a file:// cache.
func readNarinfo(t *testing.T, cache, path string) map[string]string {
	t.Helper()
	hashPart, _, _ := strings.Cut(filepath.Base(path), "-")
	b, err := os.ReadFile(filepath.Join(cache, hashPart+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	info := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ": "); ok {
			info[k] = v
		}
	}
	return info
}

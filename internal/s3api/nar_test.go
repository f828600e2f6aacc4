package s3api_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/ulikunitz/xz"
)

// storePath is a store path with its NAR file, as nix copy uploads it.
type storePath struct {
	path        string // /nix/store/<hash>-<name>
	hash        string // hash part
	nar         []byte
	file        []byte // the NAR compressed
	compression string
}

// newStorePath makes a store path whose NAR holds one regular file with
// content, compressed with method (none, xz or zstd).
func newStorePath(t *testing.T, name string, content []byte, method string) *storePath {
	t.Helper()
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, content, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, f); err != nil {
		t.Fatal(err)
	}
	digest := make([]byte, 20)
	_, _ = rand.Read(digest)
	hash := nixbase32.EncodeToString(digest)
	return &storePath{
		path:        "/nix/store/" + hash + "-" + name,
		hash:        hash,
		nar:         buf.Bytes(),
		file:        compress(t, method, buf.Bytes()),
		compression: method,
	}
}

// narKey is the cache-relative key of the NAR file.
func (p *storePath) narKey() string {
	ext := map[string]string{"none": "", "xz": ".xz", "zstd": ".zst"}[p.compression]
	return "nar/" + nix32sha(p.file) + ".nar" + ext
}

// narinfoKey is the cache-relative key of the narinfo.
func (p *storePath) narinfoKey() string { return p.hash + ".narinfo" }

// narinfo renders the narinfo nix copy uploads.
func (p *storePath) narinfo() string {
	return fmt.Sprintf("StorePath: %s\nURL: %s\nCompression: %s\nFileHash: sha256:%s\nFileSize: %d\nNarHash: sha256:%s\nNarSize: %d\nReferences: \n",
		p.path, p.narKey(), p.compression, nix32sha(p.file), len(p.file), nix32sha(p.nar), len(p.nar))
}

func compress(t *testing.T, method string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch method {
	case "none":
		return data
	case "zstd":
		w, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case "xz":
		w, err := xz.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("no compressor for %s in tests", method)
	}
	return buf.Bytes()
}

func nix32sha(b []byte) string {
	sum := sha256.Sum256(b)
	return nixbase32.EncodeToString(sum[:])
}

// randomBytes returns n random bytes (incompressible).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// replaceField returns a narinfo with the value of one field replaced.
func replaceField(ni, field, value string) string {
	var out []string
	for _, line := range strings.Split(ni, "\n") {
		if strings.HasPrefix(line, field+": ") {
			line = field + ": " + value
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

package compression

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// allMethods are the compressing methods, "none" excluded.
var allMethods = []string{XZ, Zstd, Bzip2, Gzip, LZ4, Brotli}

// testData returns n deterministic bytes: runs of words, which compress
// well, mixed with random bytes, which do not.
func testData(n int) []byte {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	words := []string{"nix ", "store ", "path ", "closure ", "narinfo ", "cache\n"}
	var b bytes.Buffer
	for b.Len() < n {
		if rng.IntN(4) == 0 {
			for range rng.IntN(200) {
				b.WriteByte(byte(rng.Uint32()))
			}
			continue
		}
		for range rng.IntN(50) {
			b.WriteString(words[rng.IntN(len(words))])
		}
	}
	return b.Bytes()[:n]
}

// encode compresses data with the method's default settings. bzip2, which
// has no Go encoder, is run through the bzip2 tool; the test is skipped
// where that is missing.
func encode(t testing.TB, method string, data []byte) []byte {
	t.Helper()
	if method == Bzip2 {
		return runTool(t, data, "bzip2", "-c")
	}
	var b bytes.Buffer
	w := newWriter(t, method, &b)
	if _, err := w.Write(data); err != nil {
		t.Fatalf("compressing with %s: %v", method, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("finishing %s compression: %v", method, err)
	}
	return b.Bytes()
}

func newWriter(t testing.TB, method string, w io.Writer) io.WriteCloser {
	t.Helper()
	switch method {
	case XZ:
		x, err := xz.NewWriter(w)
		if err != nil {
			t.Fatal(err)
		}
		return x
	case Zstd:
		z, err := zstd.NewWriter(w)
		if err != nil {
			t.Fatal(err)
		}
		return z
	case Gzip:
		return gzip.NewWriter(w)
	case LZ4:
		return lz4.NewWriter(w)
	case Brotli:
		return brotli.NewWriter(w)
	}
	t.Fatalf("no writer for %q", method)
	return nil
}

// runTool pipes data through a command-line tool, skipping the test where
// the tool is not installed.
func runTool(t testing.TB, data []byte, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s is not installed", name)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("running %s: %v: %s", name, err, stderr.Bytes())
	}
	return out
}

// decode reads all of r through the named decoder.
func decode(method string, r io.Reader) ([]byte, error) {
	rc, err := NewReader(method, r)
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(rc)
	if cerr := rc.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("closing: %w", cerr)
	}
	return out, err
}

// oneByteReader returns one byte per Read, to exercise decoders on input
// that arrives in the smallest pieces.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func bufioReader(r io.Reader) *bufio.Reader {
	return bufio.NewReaderSize(r, 64<<10)
}

package narverify

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/larder-cache/larder/internal/compression"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/wire"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// allMethods are the supported methods, "none" included.
var allMethods = []string{
	compression.None, compression.XZ, compression.Zstd, compression.Bzip2,
	compression.Gzip, compression.LZ4, compression.Brotli,
}

// kindOf returns the Kind of the *Error in err's chain, or 0 if there is
// none.
func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// randomBytes returns n deterministic bytes, half random and half runs of
// a pattern, so that they compress somewhat.
func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		chunk := b[i:min(n, i+4096)]
		if rng.IntN(2) == 0 {
			for j := range chunk {
				chunk[j] = byte(rng.Uint32())
			}
		} else {
			copy(chunk, bytes.Repeat([]byte("larder "), 600))
		}
	}
	return b
}

// makeTree creates a tree with a nested directory, an executable file, a
// symlink, an empty file and a file of bigSize bytes, and returns its root.
func makeTree(t testing.TB, bigSize int) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{"bin/hello", []byte("#!/bin/sh\necho hello\n"), 0o755},
		{"share/doc/README", []byte("a small text file\n"), 0o644},
		{"share/empty", nil, 0o644},
		{"share/big.dat", randomBytes(bigSize, 42), 0o644},
	}
	for _, f := range files {
		p := filepath.Join(root, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "share/nested/deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../bin/hello", filepath.Join(root, "share/link")); err != nil {
		t.Fatal(err)
	}
	return root
}

// dumpNAR serialises a path with go-nix's NAR writer.
func dumpNAR(t testing.TB, path string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := nar.DumpPath(&b, path); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// compress compresses data with the named method. bzip2, which has no Go
// encoder, goes through the bzip2 tool; the test is skipped without it.
func compress(t testing.TB, method string, data []byte) []byte {
	t.Helper()
	if method == compression.None {
		return data
	}
	if method == compression.Bzip2 {
		if _, err := exec.LookPath("bzip2"); err != nil {
			t.Skip("bzip2 is not installed")
		}
		cmd := exec.Command("bzip2", "-c")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("running bzip2: %v", err)
		}
		return out
	}
	var b bytes.Buffer
	w := newWriter(t, method, &b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func newWriter(t testing.TB, method string, w io.Writer) io.WriteCloser {
	t.Helper()
	switch method {
	case compression.XZ:
		x, err := xz.NewWriter(w)
		if err != nil {
			t.Fatal(err)
		}
		return x
	case compression.Zstd:
		z, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			t.Fatal(err)
		}
		return z
	case compression.Gzip:
		g, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if err != nil {
			t.Fatal(err)
		}
		return g
	case compression.LZ4:
		return lz4.NewWriter(w)
	case compression.Brotli:
		return brotli.NewWriterLevel(w, 1)
	}
	t.Fatalf("no writer for %q", method)
	return nil
}

func ext(t testing.TB, method string) string {
	t.Helper()
	e, err := compression.Ext(method)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// verify reads all of data through a Reader and returns what came out, the
// Result and the first error.
func verify(data []byte, opts Options) ([]byte, Result, error) {
	v := NewReader(bytes.NewReader(data), opts)
	defer v.Close()
	out, err := io.ReadAll(v)
	if err != nil {
		return out, Result{}, err
	}
	res, err := v.Result()
	return out, res, err
}

// wantError checks that err is an *Error of the kind whose message
// contains want.
func wantError(t testing.TB, err error, kind Kind, want string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	if e.Kind != kind || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q of kind %v, want kind %v containing %q", err, e.Kind, kind, want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("message %q is not one line", err)
	}
}

// narBuilder writes NARs token by token, for hand-made, possibly invalid,
// archives.
type narBuilder struct{ bytes.Buffer }

func (b *narBuilder) str(ss ...string) *narBuilder {
	for _, s := range ss {
		if err := wire.WriteString(b, s); err != nil {
			panic(err)
		}
	}
	return b
}

func (b *narBuilder) raw(p []byte) *narBuilder {
	b.Write(p)
	return b
}

// file writes a regular file node.
func (b *narBuilder) file(contents string) *narBuilder {
	return b.str("(", "type", "regular", "contents", contents, ")")
}

// link writes a symlink node.
func (b *narBuilder) link(target string) *narBuilder {
	return b.str("(", "type", "symlink", "target", target, ")")
}

func newNAR() *narBuilder {
	b := &narBuilder{}
	return b.str("nix-archive-1")
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

// waitGoroutines waits until no more than n goroutines run and fails the
// test if that does not happen soon.
func waitGoroutines(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

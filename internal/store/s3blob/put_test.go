package s3blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// genReader yields n pseudo-random bytes of a seed, then io.EOF, or err if
// it is set. at, if set, is called once when off bytes have been read.
type genReader struct {
	r   *rand.ChaCha8
	n   int64
	err error
	off int64
	at  func()
}

// newGen returns a reader of n bytes of seed.
func newGen(seed byte, n int64) *genReader {
	return &genReader{r: rand.NewChaCha8([32]byte{seed}), n: n}
}

// Read reads the next bytes.
func (g *genReader) Read(p []byte) (int, error) {
	if g.n == 0 {
		if g.err != nil {
			return 0, g.err
		}
		return 0, io.EOF
	}
	if g.at != nil && g.off <= 0 {
		g.at()
		g.at = nil
	}
	p = p[:min(int64(len(p)), g.n)]
	if g.at != nil {
		p = p[:min(int64(len(p)), g.off)]
	}
	g.r.Read(p)
	g.n -= int64(len(p))
	g.off -= int64(len(p))
	return len(p), nil
}

// genBytes returns length bytes of seed from offset on.
func genBytes(t testing.TB, seed byte, offset, length int64) []byte {
	t.Helper()
	g := newGen(seed, offset+length)
	if _, err := io.CopyN(io.Discard, g, offset); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(g)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// memGrowth runs f and returns by how much the heap in use grew at most
// while it ran, and by how much the memory taken from the system grew.
func memGrowth(f func()) (heap, sys uint64) {
	runtime.GC()
	var before, m runtime.MemStats
	runtime.ReadMemStats(&before)
	peak := before.HeapInuse
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	<-done
	return peak - before.HeapInuse, m.Sys - before.Sys
}

// TestPutLargeBoundedMemory streams 200 MiB through Put, with its size
// known and not, and reads it back whole and in ranges, checking that
// memory grows by far less than the blob.
func TestPutLargeBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 400 MiB")
	}
	s, _ := openTest(t, "")
	ctx := t.Context()
	const n = 200 << 20
	const limit = 100 << 20
	want := sha256.New()
	io.Copy(want, newGen(7, n))
	for _, size := range []int64{n, -1} {
		key := map[int64]string{n: "large/known", -1: "large/unknown"}[size]
		var err error
		heap, sys := memGrowth(func() { err = s.Put(ctx, key, newGen(7, n), size) })
		if err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		t.Logf("put %s of 200 MiB: heap in use grew by %d MiB at most, memory from the system by %d MiB", key, heap>>20, sys>>20)
		if heap > limit || sys > limit {
			t.Errorf("put %s: memory grew by %d MiB (heap) and %d MiB (system), want less than %d MiB", key, heap>>20, sys>>20, limit>>20)
		}
		heap, sys = memGrowth(func() {
			rc, gerr := s.Get(ctx, key, 0, -1)
			if gerr != nil {
				err = gerr
				return
			}
			defer rc.Close()
			got := sha256.New()
			if _, err = io.Copy(got, rc); err == nil && !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				err = errors.New("content differs")
			}
		})
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		if heap > limit || sys > limit {
			t.Errorf("get %s: memory grew by %d MiB (heap) and %d MiB (system)", key, heap>>20, sys>>20)
		}
		for _, r := range [][2]int64{{0, 1}, {16<<20 - 3, 7}, {150<<20 + 3, 1 << 20}, {n - 10, 100}} {
			got := readRange(t, s, key, r[0], r[1])
			if !bytes.Equal(got, genBytes(t, 7, r[0], min(r[1], n-r[0]))) {
				t.Errorf("get %s from %d for %d bytes: wrong content", key, r[0], r[1])
			}
		}
	}
}

// readRange reads length bytes of key from offset.
func readRange(t testing.TB, s *Store, key string, offset, length int64) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key, offset, length)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

// failingPut is a Put that must fail and store nothing.
type failingPut struct {
	name    string
	size    int64
	reader  func(cancel context.CancelFunc) io.Reader
	wantErr error // wrapped by the error, if set
}

// failingPuts returns Puts of about 20 MiB that fail in their middle or at
// their very end.
func failingPuts() []failingPut {
	const n = 20 << 20
	failAt := func(k int64, err error) func(context.CancelFunc) io.Reader {
		return func(context.CancelFunc) io.Reader { g := newGen(1, k); g.err = err; return g }
	}
	return []failingPut{
		{"reader fails, size unknown", -1, failAt(12<<20, errBoom), errBoom},
		{"reader fails, size known", n, failAt(12<<20, errBoom), errBoom},
		{"reader fails instead of ending", n, failAt(n, errBoom), errBoom},
		{"reader fails instead of ending, size unknown", -1, failAt(n, errBoom), errBoom},
		{"too few bytes", n, failAt(n-1, nil), nil},
		{"too many bytes", n, failAt(n+1, nil), nil},
		{"cancelled", -1, func(cancel context.CancelFunc) io.Reader {
			g := newGen(1, n)
			g.off, g.at = 12<<20, cancel
			return g
		}, context.Canceled},
	}
}

// TestPutFailsAtomically checks that a failing Put, streamed or in parts,
// stores nothing, leaves an earlier blob as it was, and leaves no upload
// or marker behind.
func TestPutFailsAtomically(t *testing.T) {
	for _, mode := range []string{"streamed", "in parts"} {
		t.Run(mode, func(t *testing.T) {
			s, srv := openTest(t, "atomic")
			if mode == "in parts" {
				s.singleMax, s.partSize = -1, minPartSize
			}
			old := []byte("old content")
			if err := s.Put(t.Context(), "k", bytes.NewReader(old), int64(len(old))); err != nil {
				t.Fatal(err)
			}
			for _, fp := range failingPuts() {
				for _, key := range []string{"k", "fresh"} {
					ctx, cancel := context.WithCancel(t.Context())
					err := s.Put(ctx, key, fp.reader(cancel), fp.size)
					cancel()
					if err == nil || fp.wantErr != nil && !errors.Is(err, fp.wantErr) {
						t.Errorf("%s, put %s: got %v, want an error wrapping %v", fp.name, key, err, fp.wantErr)
					}
					mustNoUploads(t, srv, s, key)
				}
				if got := readRange(t, s, "k", 0, -1); !bytes.Equal(got, old) {
					t.Errorf("%s: k holds %d bytes, want the old content", fp.name, len(got))
				}
				if _, err := s.Stat(t.Context(), "fresh"); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("%s: stat fresh: %v, want ErrNotFound", fp.name, err)
				}
			}
			mustClean(t, srv, s)
		})
	}
}

// TestPutEmptyThenFails checks the single PUT of an empty blob whose
// reader fails or has bytes after all.
func TestPutEmptyThenFails(t *testing.T) {
	s, _ := openTest(t, "")
	ctx := t.Context()
	if err := s.Put(ctx, "e", &genReader{err: errBoom}, 0); !errors.Is(err, errBoom) {
		t.Errorf("put of 0 bytes from a failing reader: %v", err)
	}
	if err := s.Put(ctx, "e", strings.NewReader("x"), 0); err == nil {
		t.Errorf("put of 0 bytes from a reader of 1: no error")
	}
	if _, err := s.Stat(ctx, "e"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stat after failed puts: %v, want ErrNotFound", err)
	}
}

func TestPartSizeFor(t *testing.T) {
	s := &Store{partSize: defaultPartSize}
	cases := []struct {
		size int64
		want int
	}{
		{-1, defaultPartSize},
		{100 << 20, defaultPartSize},
		{defaultPartSize * maxParts, defaultPartSize},
		{defaultPartSize*maxParts + 1, defaultPartSize + 1<<20},
		{1 << 40, 105 << 20},
	}
	for _, c := range cases {
		got := s.partSizeFor(c.size)
		if got != c.want {
			t.Errorf("partSizeFor(%d) = %d, want %d", c.size, got, c.want)
		}
		if c.size > 0 && int64(got)*maxParts < c.size {
			t.Errorf("partSizeFor(%d) = %d: more than %d parts", c.size, got, maxParts)
		}
	}
}

func TestReclaim(t *testing.T) {
	s, srv := openTest(t, "r")
	ctx := t.Context()
	// What a Put that crashed in the middle of its upload leaves behind.
	crashed := s.prefix + "nar/crashed"
	if _, err := s.putMarker(ctx, crashed); err != nil {
		t.Fatal(err)
	}
	id, err := s.core.NewMultipartUpload(ctx, s.bucket, crashed, s.putOptions())
	if err != nil {
		t.Fatal(err)
	}
	part := bytes.Repeat([]byte("p"), 1<<10)
	if _, err := s.core.PutObjectPart(ctx, s.bucket, crashed, id, 1, bytes.NewReader(part), int64(len(part)), s.partOptions()); err != nil {
		t.Fatal(err)
	}
	// What one that crashed before it started its upload leaves.
	if _, err := s.putMarker(ctx, s.prefix+"nar/early"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Reclaim(ctx, time.Hour); n != 0 || err != nil {
		t.Fatalf("reclaim of uploads younger than an hour: %d, %v; want 0, nil", n, err)
	}
	res, err := s.core.ListMultipartUploads(ctx, s.bucket, crashed, "", "", "", 10)
	if err != nil || len(res.Uploads) != 1 {
		t.Fatalf("uploads after reclaiming none: %v, %v; want the crashed one", res.Uploads, err)
	}
	time.Sleep(10 * time.Millisecond)
	if n, err := s.Reclaim(ctx, 0); n != 1 || err != nil {
		t.Fatalf("reclaim: %d, %v; want 1, nil", n, err)
	}
	mustNoUploads(t, srv, s, "nar/crashed")
	mustClean(t, srv, s)
	if n, err := s.Reclaim(ctx, 0); n != 0 || err != nil {
		t.Fatalf("second reclaim: %d, %v; want 0, nil", n, err)
	}
}

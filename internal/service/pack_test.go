package service_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/larder-cache/larder/internal/chunk"
	"github.com/larder-cache/larder/internal/compression"
	"github.com/larder-cache/larder/internal/narinfo"
	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/faulty"
	"github.com/larder-cache/larder/internal/store/local"
	"github.com/larder-cache/larder/internal/store/sqlite"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// chunkEnv is a service that stores NAR files as small chunks, over a
// local blob directory that tests can break.
type chunkEnv struct {
	svc   *service.Service
	meta  store.MetaStore
	blobs *faulty.Blobs
	dir   string // the blob directory
	cache service.Cache
}

func newChunkEnv(t testing.TB) *chunkEnv {
	return newChunkEnvWith(t, chunk.Options{Average: 16 << 10})
}

// newChunkEnvWith is newChunkEnv cutting chunks as o says.
func newChunkEnvWith(t testing.TB, o chunk.Options) *chunkEnv {
	t.Helper()
	dir := t.TempDir()
	meta, err := sqlite.Open(t.Context(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	l, err := local.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	blobs := faulty.New(l)
	svc, err := service.New(t.Context(), service.Options{Meta: meta, Blobs: blobs, Limits: testLimits, GCGrace: testGrace,
		Chunking: service.ChunkOptions{Enabled: true, Chunk: o,
			MinNarSize: 64 << 10, PackSize: 256 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	e := &chunkEnv{svc: svc, meta: meta, blobs: blobs, dir: filepath.Join(dir, "blobs")}
	e.cache = e.newCache(t, "main")
	return e
}

// newCache creates a cache that keeps paths a second after their last use.
func (e *chunkEnv) newCache(t testing.TB, name string) service.Cache {
	return e.newCacheKeeping(t, name, time.Second)
}

// newCacheKeeping creates a cache that keeps paths for retention after
// their last use.
func (e *chunkEnv) newCacheKeeping(t testing.TB, name string, retention time.Duration) service.Cache {
	t.Helper()
	if _, err := e.svc.CreateCache(t.Context(), service.CacheSpec{Name: name, Policy: store.Policy{Retention: retention}}); err != nil {
		t.Fatal(err)
	}
	c, err := e.svc.Operate(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// collect runs a collection.
func (e *chunkEnv) collect(t *testing.T) {
	t.Helper()
	if _, err := e.svc.Collect(t.Context(), service.CollectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// tree writes a directory of files of pseudo-random bytes, the same for
// the same seed, with the file named changed (if any) different, and
// returns its NAR.
func tree(t *testing.T, seed uint64, changed string) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		name := fmt.Sprintf("file%02d", i)
		s := seed
		if name == changed {
			s += 1000
		}
		r := rand.New(rand.NewPCG(s, uint64(i)))
		b := make([]byte, 40<<10+r.IntN(40<<10))
		for j := range b {
			b[j] = byte('a' + r.IntN(8)) // compressible, as text is
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, dir); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// compress returns data compressed with method.
func compress(t testing.TB, method string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := compression.NewWriter(method, &b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pushed is a path pushed to a cache.
type pushed struct {
	hash string     // of the store path
	key  nixkey.Key // of its NAR file as uploaded
	nar  []byte
}

// pushNar uploads the NAR compressed with method and a narinfo for it.
func (e *chunkEnv) pushNar(t testing.TB, c service.Cache, data []byte, method string) pushed {
	t.Helper()
	file := compress(t, method, data)
	fsum, nsum := sha256.Sum256(file), sha256.Sum256(data)
	fh := nixbase32.EncodeToString(fsum[:])
	ext, _ := compression.Ext(method)
	key, err := nixkey.Parse("nar/" + fh + ".nar" + ext)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.PutNar(t.Context(), c, key, bytes.NewReader(file), int64(len(file))); err != nil {
		t.Fatal(err)
	}
	hash := randomHash()
	ni := fmt.Sprintf("StorePath: /nix/store/%s-tree\nURL: %s\nCompression: %s\nNarHash: sha256:%s\nNarSize: %d\nReferences: \n",
		hash, key, method, nixbase32.EncodeToString(nsum[:]), len(data))
	nkey, _ := nixkey.Parse(hash + ".narinfo")
	if _, err := e.svc.PutNarInfo(t.Context(), c, nkey, []byte(ni)); err != nil {
		t.Fatal(err)
	}
	return pushed{hash: hash, key: key, nar: data}
}

// rechunk chunks every NAR file stored whole, and expects n of them.
func (e *chunkEnv) rechunk(t *testing.T, n int) service.RechunkReport {
	t.Helper()
	r, err := e.svc.Rechunk(t.Context(), nil)
	if err != nil || r.Nars != n || r.Failed != 0 {
		t.Fatalf("rechunk: %+v, %v; want %d NAR files chunked", r, err, n)
	}
	return r
}

// read returns the bytes of the NAR file under key, from offset for
// length, as a client gets them.
func (e *chunkEnv) read(t *testing.T, c service.Cache, key nixkey.Key, offset, length int64) ([]byte, service.NarFile) {
	t.Helper()
	f, err := e.svc.Nar(t.Context(), c, key)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	r, err := e.svc.ReadNar(t.Context(), c, f, offset, length)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b, f
}

// published returns the narinfo the cache serves for p.
func (e *chunkEnv) published(t *testing.T, c service.Cache, p pushed) *narinfo.NarInfo {
	t.Helper()
	body, err := e.svc.NarInfo(t.Context(), c, p.hash)
	if err != nil {
		t.Fatal(err)
	}
	ni, err := narinfo.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	return ni
}

func unzstd(t *testing.T, b []byte) []byte {
	t.Helper()
	d, err := zstd.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out, err := io.ReadAll(d)
	if err != nil {
		t.Fatalf("the served file is not zstd: %v", err)
	}
	return out
}

// files counts the blobs under the prefix of the blob directory.
func (e *chunkEnv) files(t *testing.T, prefix string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(e.dir, prefix), func(_ string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestChunkedNarServed: once chunked, a NAR file is published as the zstd
// file of its chunks' frames, whose hash and size the narinfo gives, and
// is still served under the key it was uploaded with, in that method.
func TestChunkedNarServed(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"xz", "none", "zstd", "br"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			e := newChunkEnv(t)
			p := e.pushNar(t, e.cache, tree(t, 1, ""), method)
			e.rechunk(t, 1)
			if n := e.files(t, "nar"); n != 0 {
				t.Errorf("%d whole blobs left after chunking", n)
			}
			ni := e.published(t, e.cache, p)
			if ni.Compression != "zstd" || !strings.HasSuffix(ni.URL, ".nar.zst") {
				t.Fatalf("published as %s at %s", ni.Compression, ni.URL)
			}
			key, err := nixkey.Parse(ni.URL)
			if err != nil {
				t.Fatal(err)
			}
			file, f := e.read(t, e.cache, key, 0, -1)
			sum := sha256.Sum256(file)
			if got := nixbase32.EncodeToString(sum[:]); got != ni.FileHash.Nix32() || int64(len(file)) != int64(ni.FileSize) || f.Size != int64(len(file)) {
				t.Fatalf("served %d bytes with sha256 %s; the narinfo says %d, %s", len(file), got, ni.FileSize, ni.FileHash.Nix32())
			}
			if !bytes.Equal(unzstd(t, file), p.nar) {
				t.Fatal("the frames do not decompress to the NAR")
			}
			old, of := e.read(t, e.cache, p.key, 0, -1)
			dec, err := compression.NewReader(method, bytes.NewReader(old))
			if err != nil {
				t.Fatal(err)
			}
			back, err := io.ReadAll(dec)
			if err != nil || !bytes.Equal(back, p.nar) {
				t.Fatalf("under its uploaded key (%s, size %d) it is not the NAR compressed with %s: %v", p.key, of.Size, method, err)
			}
			if method == "none" && of.Size != int64(len(p.nar)) {
				t.Fatalf("uncompressed, it is %d bytes, not %d", of.Size, len(p.nar))
			}
		})
	}
}

// TestChunkedRanges: ranges of a chunked NAR file, across chunk and pack
// boundaries, are the bytes of the whole file at those offsets, in both
// the published form and the uncompressed one.
func TestChunkedRanges(t *testing.T) {
	t.Parallel()
	e := newChunkEnv(t)
	p := e.pushNar(t, e.cache, tree(t, 2, ""), "none")
	e.rechunk(t, 1)
	key, _ := nixkey.Parse(e.published(t, e.cache, p).URL)
	whole, _ := e.read(t, e.cache, key, 0, -1)
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		key  nixkey.Key
		want []byte
	}{{key, whole}, {p.key, p.nar}} {
		for range 40 {
			off := r.Int64N(int64(len(c.want)))
			n := r.Int64N(int64(len(c.want))-off) + 1
			got, _ := e.read(t, e.cache, c.key, off, n)
			if !bytes.Equal(got, c.want[off:off+n]) {
				t.Fatalf("%s bytes %d+%d differ from the whole file's", c.key, off, n)
			}
		}
	}
}

// TestChunksShared: a second version of a tree that differs in one file
// adds only the chunks of that file, and GC keeps the chunks one version
// still uses when the other goes, in another cache too.
func TestChunksShared(t *testing.T) {
	t.Parallel()
	e := newChunkEnv(t)
	other := e.newCacheKeeping(t, "other", time.Hour) // until v1 is collected, however slow the machine

	e.pushNar(t, e.cache, tree(t, 5, ""), "xz")
	first := e.rechunk(t, 1)
	time.Sleep(2 * tick) // v1 is unused for longer than its retention
	v2 := e.pushNar(t, other, tree(t, 5, "file07"), "xz")
	second := e.rechunk(t, 1)
	if second.After*4 > first.After {
		t.Fatalf("the second version added %d bytes of chunks, the first %d: little was shared", second.After, first.After)
	}
	st, err := e.meta.ChunkStats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e.collect(t)
	after, err := e.meta.ChunkStats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if after.Chunks >= st.Chunks || after.Chunks == 0 {
		t.Fatalf("chunks before the collection %d, after %d", st.Chunks, after.Chunks)
	}
	key, _ := nixkey.Parse(e.published(t, other, v2).URL)
	got, _ := e.read(t, other, key, 0, -1)
	if !bytes.Equal(unzstd(t, got), v2.nar) {
		t.Fatal("the version left is not whole after the collection")
	}
	if err := e.svc.FlushAccess(t.Context()); err != nil { // the read above is recorded now
		t.Fatal(err)
	}
	if err := e.svc.SetPolicy(t.Context(), "other", store.Policy{Retention: time.Second}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * tick) // and now v2 is unused too
	e.collect(t)
	if st, err := e.meta.ChunkStats(t.Context()); err != nil || st.Chunks != 0 || st.Packs != 0 {
		t.Fatalf("with nothing left: %+v, %v", st, err)
	}
	if n := e.files(t, "pack"); n != 0 {
		t.Fatalf("%d pack blobs left with no chunk in them", n)
	}
}

// TestChunkingFails: a NAR file whose chunking fails midway (a pack put
// fails) stays whole and served, with no pack left behind.
func TestChunkingFails(t *testing.T) {
	t.Parallel()
	e := newChunkEnv(t)
	p := e.pushNar(t, e.cache, tree(t, 6, ""), "xz")
	e.blobs.Fail(faulty.Put, 1, fmt.Errorf("disk full: %w", store.ErrUnavailable))
	r, err := e.svc.Rechunk(t.Context(), nil)
	if err != nil || r.Failed != 1 || r.Nars != 0 {
		t.Fatalf("rechunk with failing puts: %+v, %v", r, err)
	}
	if n := e.files(t, "pack"); n != 0 {
		t.Fatalf("%d packs left behind", n)
	}
	if ni := e.published(t, e.cache, p); ni.Compression != "xz" {
		t.Fatalf("published as %s", ni.Compression)
	}
	got, _ := e.read(t, e.cache, p.key, 0, -1)
	if int64(len(got)) == 0 {
		t.Fatal("the whole file is gone")
	}
	e.rechunk(t, 1) // and it is chunked once the store works
}

// TestVerifyChunked: larder verify checks the packs of chunked NAR files,
// and withdraws one whose pack is gone.
func TestVerifyChunked(t *testing.T) {
	t.Parallel()
	e := newChunkEnv(t)
	e.pushNar(t, e.cache, tree(t, 7, ""), "xz")
	e.rechunk(t, 1)
	rep, err := e.svc.Verify(t.Context(), service.VerifyOptions{Full: true})
	if err != nil || rep.Problems() != 0 || rep.Files != 1 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	err = filepath.WalkDir(filepath.Join(e.dir, "pack"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			return os.Remove(path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err = e.svc.Verify(t.Context(), service.VerifyOptions{})
	if err != nil || rep.Missing != 1 {
		t.Fatalf("verify with its packs gone: %+v, %v", rep, err)
	}
}

// BenchmarkRechunk measures chunking of a 32 MiB uncompressed NAR of
// compressible text: cutting, hashing, compressing, packing, and reading it
// back to check it. SetBytes makes the MB/s column the ingest speed.
func BenchmarkRechunk(b *testing.B) {
	for _, l := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		b.Run(l.String(), func(b *testing.B) { benchmarkRechunk(b, chunk.Options{Level: l}) })
	}
}

func benchmarkRechunk(b *testing.B, o chunk.Options) {
	dir := b.TempDir()
	words := []string{"nix ", "store ", "path ", "larder ", "chunk ", "pack\n", "zstd ", "frame ", "0123456789abcdef "}
	r := rand.New(rand.NewPCG(1, 2))
	var sb strings.Builder
	for sb.Len() < 32<<20 {
		sb.WriteString(words[r.IntN(len(words))])
		if r.IntN(50) == 0 {
			fmt.Fprintf(&sb, "%x\n", r.Uint64())
		}
	}
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, f); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newChunkEnvWith(b, o)
		e.pushNar(b, e.cache, data, "none")
		b.StartTimer()
		r, err := e.svc.Rechunk(b.Context(), nil)
		if err != nil || r.Nars != 1 {
			b.Fatalf("%+v %v", r, err)
		}
		b.ReportMetric(float64(r.After)/float64(r.NarBytes), "stored/nar")
	}
}

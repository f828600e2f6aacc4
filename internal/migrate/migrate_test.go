package migrate_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/larder-cache/larder/internal/chunk"
	"github.com/larder-cache/larder/internal/migrate"
	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/local"
	"github.com/larder-cache/larder/internal/store/sqlite"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

type side struct {
	stores migrate.Stores
	svc    *service.Service
	blobs  string
	admin  string
}

func open(t *testing.T) side {
	t.Helper()
	dir := t.TempDir()
	meta, err := sqlite.Open(t.Context(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	blobs, err := local.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(t.Context(), service.Options{Meta: meta, Blobs: blobs,
		Limits: service.Limits{MaxNarInfoSize: 1 << 20, MaxUploadSize: 1 << 30, MaxNarSize: 1 << 30, MaxFileSize: 1 << 20},
		Chunking: service.ChunkOptions{Enabled: true, Chunk: chunk.Options{Average: 16 << 10},
			MinNarSize: 64 << 10, PackSize: 256 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	admin, _, err := svc.CreateToken(t.Context(), service.TokenSpec{Cache: service.AllCaches, Perm: store.PermAdmin})
	if err != nil {
		t.Fatal(err)
	}
	return side{stores: migrate.Stores{Meta: meta, Blobs: blobs}, svc: svc, blobs: filepath.Join(dir, "blobs"), admin: admin}
}

// push uploads a one-file path to the cache and returns its hash part.
func push(t *testing.T, s side, cache string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "f")
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, f); err != nil {
		t.Fatal(err)
	}
	return pushNar(t, s, cache, buf.Bytes())
}

// pushNar uploads data, a NAR, uncompressed to the cache as a path of its
// own and returns its hash part.
func pushNar(t *testing.T, s side, cache string, data []byte) string {
	t.Helper()
	c, err := s.svc.Access(t.Context(), cache, s.admin, store.PermWrite)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	fh := nixbase32.EncodeToString(sum[:])
	if _, err := s.svc.PutObject(t.Context(), c, "nar/"+fh+".nar", bytes.NewReader(data), int64(len(data)), service.ObjectMeta{}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	hash := nixbase32.EncodeToString(b)
	ni := fmt.Sprintf("StorePath: /nix/store/%s-p\nURL: nar/%s.nar\nCompression: none\nNarHash: sha256:%s\nNarSize: %d\nReferences: \n", hash, fh, fh, len(data))
	key, _ := nixkey.Parse(hash + ".narinfo")
	if _, err := s.svc.PutNarInfo(t.Context(), c, key, []byte(ni)); err != nil {
		t.Fatal(err)
	}
	return hash
}

func TestCopy(t *testing.T) {
	src, dst := open(t), open(t)
	ctx := t.Context()
	for _, spec := range []service.CacheSpec{{Name: "main"}, {Name: "secret", Private: true}} {
		if _, err := src.svc.CreateCache(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	token, _, err := src.svc.CreateToken(ctx, service.TokenSpec{Cache: "secret", Perm: store.PermRead})
	if err != nil {
		t.Fatal(err)
	}
	var hashes []string
	for range 3 {
		hashes = append(hashes, push(t, src, "main"), push(t, src, "secret"))
	}
	mc, _ := src.svc.Access(ctx, "main", "", store.PermRead)
	if _, err := src.svc.PutObject(ctx, mc, "artefacts/readme.txt", strings.NewReader("hello"), 5, service.ObjectMeta{ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}

	r, err := migrate.Copy(ctx, src.stores, dst.stores, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("copy: %v (%+v)", err, r)
	}
	if r.Caches != 2 || r.Tokens != 2 || r.NarInfos != 6 || r.Verified != 6 {
		t.Fatalf("report %+v", r)
	}
	// The target serves the same narinfos, signed with the same keys, and
	// takes the same tokens.
	if err := dst.svc.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for i, h := range hashes {
		cache, tok := "main", ""
		if i%2 == 1 {
			cache, tok = "secret", token
		}
		sc, err := src.svc.Access(ctx, cache, tok, store.PermRead)
		if err != nil {
			t.Fatal(err)
		}
		dc, err := dst.svc.Access(ctx, cache, tok, store.PermRead)
		if err != nil {
			t.Fatalf("the copied token does not open %s: %v", cache, err)
		}
		want, _ := src.svc.NarInfo(ctx, sc, h)
		got, err := dst.svc.NarInfo(ctx, dc, h)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("narinfo %s in the target: %v\n%s\nwant\n%s", h, err, got, want)
		}
	}

	// Again: nothing left to do, still verified.
	r, err = migrate.Copy(ctx, src.stores, dst.stores, slog.New(slog.DiscardHandler))
	if err != nil || r.Caches != 0 || r.Tokens != 0 || r.Blobs != 0 || r.Verified != 6 {
		t.Fatalf("second copy: %v %+v", err, r)
	}

	// A target blob damaged after the copy fails verification.
	var victim string
	_ = filepath.WalkDir(filepath.Join(dst.blobs, "nar"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && victim == "" {
			victim = p
		}
		return nil
	})
	data, _ := os.ReadFile(victim)
	data[len(data)-1] ^= 1
	if err := os.WriteFile(victim, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = migrate.Copy(ctx, src.stores, dst.stores, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "verification failed") {
		t.Fatalf("a damaged target blob passed verification: %v", err)
	}
}

func TestCopyRefusesConflictingCache(t *testing.T) {
	src, dst := open(t), open(t)
	for _, s := range []side{src, dst} {
		if _, err := s.svc.CreateCache(t.Context(), service.CacheSpec{Name: "main"}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := migrate.Copy(t.Context(), src.stores, dst.stores, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "another signing key") {
		t.Fatalf("copy into a cache with another key: %v", err)
	}
}

// treeNar returns the NAR of a directory of twelve files of compressible
// pseudo-random bytes, the same for every version but the file changed.
func treeNar(t *testing.T, version, changed int) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		s := uint64(i)
		if i == changed {
			s += uint64(version) << 32
		}
		r := mrand.New(mrand.NewPCG(s, 7))
		b := make([]byte, 40<<10+r.IntN(40<<10))
		for j := range b {
			b[j] = byte('a' + r.IntN(8))
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, dir); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fileHash returns the nix32 sha256 of data.
func fileHash(data []byte) string {
	sum := sha256.Sum256(data)
	return nixbase32.EncodeToString(sum[:])
}

// served reads the NAR file under key from the cache of s, or fails.
func served(t *testing.T, s side, cache, key string) []byte {
	t.Helper()
	c, err := s.svc.Access(t.Context(), cache, "", store.PermRead)
	if err != nil {
		t.Fatal(err)
	}
	k, err := nixkey.Parse(key)
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.svc.Nar(t.Context(), c, k)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	rc, err := s.svc.ReadNar(t.Context(), c, f, 0, -1)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

// TestCopyPacked copies NAR files stored as chunks (two versions of a tree,
// which share most chunks) with their chunk index: the target serves them
// under the key published and the key uploaded, a second copy changes
// nothing, and a damaged pack fails verification.
func TestCopyPacked(t *testing.T) {
	src, dst := open(t), open(t)
	ctx := t.Context()
	if _, err := src.svc.CreateCache(ctx, service.CacheSpec{Name: "main"}); err != nil {
		t.Fatal(err)
	}
	// The NAR chunked second, which lies mostly in the packs of the first,
	// is the first the copy meets (it goes by file hash): those packs come
	// with it, chunks it does not list included, and the other NAR then
	// finds its chunks stored.
	nars := [][]byte{treeNar(t, 1, 3), treeNar(t, 2, 3)}
	if fileHash(nars[0]) < fileHash(nars[1]) {
		nars[0], nars[1] = nars[1], nars[0]
	}
	var hashes []string
	for _, data := range nars {
		hashes = append(hashes, pushNar(t, src, "main", data))
		if rep, err := src.svc.Rechunk(ctx, nil); err != nil || rep.Nars != 1 {
			t.Fatalf("rechunk the source: %v %+v", err, rep)
		}
	}
	hashes = append(hashes, push(t, src, "main"))

	r, err := migrate.Copy(ctx, src.stores, dst.stores, slog.New(slog.DiscardHandler))
	if err != nil || r.Packed != 2 || r.Nars != 3 || r.Verified != 3 {
		t.Fatalf("copy: %v %+v", err, r)
	}
	if err := dst.svc.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	sc, _ := src.svc.Access(ctx, "main", "", store.PermRead)
	dc, _ := dst.svc.Access(ctx, "main", "", store.PermRead)
	for i, want := range nars {
		fh := fileHash(want)
		n, err := dst.stores.Meta.GetNar(ctx, fh)
		if err != nil || n.PackedHash == "" || n.BlobKey != "" {
			t.Fatalf("NAR %d in the target: %v %+v", i, err, n)
		}
		if got := served(t, dst, "main", "nar/"+fh+".nar"); !bytes.Equal(got, want) {
			t.Fatalf("the target serves other bytes for NAR %d as uploaded", i)
		}
		pk := "nar/" + n.PackedHash + ".nar.zst"
		if got := served(t, dst, "main", pk); !bytes.Equal(got, served(t, src, "main", pk)) {
			t.Fatalf("the target serves other frames for NAR %d", i)
		}
		want, _ := src.svc.NarInfo(ctx, sc, hashes[i])
		got, err := dst.svc.NarInfo(ctx, dc, hashes[i])
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("narinfo %s in the target: %v\n%s\nwant\n%s", hashes[i], err, got, want)
		}
	}
	stats, err := dst.stores.Meta.ChunkStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srcStats, _ := src.stores.Meta.ChunkStats(ctx)
	if stats != srcStats {
		t.Fatalf("the target's chunk index holds %+v, the source's %+v", stats, srcStats)
	}

	// Again: nothing left to do, the chunk index as it was.
	r, err = migrate.Copy(ctx, src.stores, dst.stores, slog.New(slog.DiscardHandler))
	if err != nil || r.Blobs != 0 || r.Packed != 0 || r.Verified != 3 {
		t.Fatalf("second copy: %v %+v", err, r)
	}
	if again, _ := dst.stores.Meta.ChunkStats(ctx); again != stats {
		t.Fatalf("the second copy changed the chunk index from %+v to %+v", stats, again)
	}

	// A pack damaged after the copy fails verification.
	packs, _ := filepath.Glob(filepath.Join(dst.blobs, "pack", "*", "*"))
	if len(packs) == 0 {
		packs, _ = filepath.Glob(filepath.Join(dst.blobs, "pack", "*"))
	}
	data, err := os.ReadFile(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(packs[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = migrate.Copy(ctx, src.stores, dst.stores, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "verification failed") {
		t.Fatalf("a damaged pack passed verification: %v", err)
	}
}

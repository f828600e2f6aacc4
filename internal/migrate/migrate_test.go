package migrate_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
		Limits: service.Limits{MaxNarInfoSize: 1 << 20, MaxUploadSize: 1 << 30, MaxNarSize: 1 << 30, MaxFileSize: 1 << 20}})
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
	c, err := s.svc.Access(t.Context(), cache, s.admin, store.PermWrite)
	if err != nil {
		t.Fatal(err)
	}
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
	sum := sha256.Sum256(buf.Bytes())
	fh := nixbase32.EncodeToString(sum[:])
	if _, err := s.svc.PutObject(t.Context(), c, "nar/"+fh+".nar", bytes.NewReader(buf.Bytes()), int64(buf.Len()), service.ObjectMeta{}); err != nil {
		t.Fatal(err)
	}
	hash := nixbase32.EncodeToString(b)
	ni := fmt.Sprintf("StorePath: /nix/store/%s-p\nURL: nar/%s.nar\nCompression: none\nNarHash: sha256:%s\nNarSize: %d\nReferences: \n", hash, fh, fh, buf.Len())
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

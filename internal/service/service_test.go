package service_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/local"
	"github.com/larder-cache/larder/internal/store/sqlite"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// countingMeta counts the calls of the read paths a miss must not take.
type countingMeta struct {
	store.MetaStore
	getNarInfo, lookupToken atomic.Int64
}

func (c *countingMeta) GetNarInfo(ctx context.Context, id int64, hash string) (store.NarInfo, store.Nar, error) {
	c.getNarInfo.Add(1)
	return c.MetaStore.GetNarInfo(ctx, id, hash)
}

func (c *countingMeta) LookupToken(ctx context.Context, hash string) (store.Token, error) {
	c.lookupToken.Add(1)
	return c.MetaStore.LookupToken(ctx, hash)
}

var testLimits = service.Limits{MaxNarInfoSize: 1 << 20, MaxUploadSize: 1 << 30, MaxNarSize: 1 << 30, MaxFileSize: 1 << 20}

// openService opens a service on the SQLite database and blob directory in
// dir, as the server and each CLI command do.
func openService(t *testing.T, dir string) (*service.Service, *countingMeta) {
	t.Helper()
	meta, err := sqlite.Open(t.Context(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	blobs, err := local.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	cm := &countingMeta{MetaStore: meta}
	svc, err := service.New(t.Context(), service.Options{Meta: cm, Blobs: blobs, Limits: testLimits})
	if err != nil {
		t.Fatal(err)
	}
	return svc, cm
}

func newService(t *testing.T) (*service.Service, *countingMeta) {
	return openService(t, t.TempDir())
}

func randomHash() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return nixbase32.EncodeToString(b)
}

// push uploads a one-file store path and its narinfo, uncompressed.
func push(t *testing.T, svc *service.Service, c service.Cache) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, []byte("content "+randomHash()), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, f); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	fh := nixbase32.EncodeToString(sum[:])
	key, err := nixkey.Parse("nar/" + fh + ".nar")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.PutNar(t.Context(), c, key, bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
		t.Fatal(err)
	}
	hash := randomHash()
	ni := fmt.Sprintf("StorePath: /nix/store/%s-x\nURL: nar/%s.nar\nCompression: none\nNarHash: sha256:%s\nNarSize: %d\nReferences: \n",
		hash, fh, fh, buf.Len())
	nkey, _ := nixkey.Parse(hash + ".narinfo")
	if _, err := svc.PutNarInfo(t.Context(), c, nkey, []byte(ni)); err != nil {
		t.Fatal(err)
	}
	return hash
}

// TestMissesStayInMemory checks that narinfo misses on a public cache are
// answered from the presence index: no narinfo or token lookups, even when
// the client sends credentials (Nix sends netrc credentials everywhere).
func TestMissesStayInMemory(t *testing.T) {
	svc, cm := newService(t)
	if _, err := svc.CreateCache(t.Context(), service.CacheSpec{Name: "main"}); err != nil {
		t.Fatal(err)
	}
	c, err := svc.Access(t.Context(), "main", "", store.PermRead)
	if err != nil {
		t.Fatal(err)
	}
	hit := push(t, svc, c)
	cm.getNarInfo.Store(0)
	for range 1000 {
		c, err := svc.Access(t.Context(), "main", "lrd_some-netrc-token", store.PermRead)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.NarInfo(t.Context(), c, randomHash()); service.CodeOf(err) != service.CodeNotFound {
			t.Fatalf("miss: %v", err)
		}
	}
	if n, m := cm.getNarInfo.Load(), cm.lookupToken.Load(); n != 0 || m != 0 {
		t.Fatalf("1000 misses made %d narinfo and %d token lookups, want none", n, m)
	}
	body, err := svc.NarInfo(t.Context(), c, hit)
	if err != nil || !strings.Contains(string(body), hit) {
		t.Fatalf("hit: %v %s", err, body)
	}
	if n := cm.getNarInfo.Load(); n != 1 {
		t.Fatalf("a hit made %d narinfo lookups, want 1", n)
	}
}

// TestOtherProcessChanges checks that caches and narinfos another process
// writes to the same database are seen: a new cache at once, narinfos and
// a deleted cache after Sync.
func TestOtherProcessChanges(t *testing.T) {
	dir := t.TempDir()
	open := func() *service.Service {
		svc, _ := openService(t, dir)
		return svc
	}
	server, cli := open(), open()
	if _, err := cli.CreateCache(t.Context(), service.CacheSpec{Name: "fresh"}); err != nil {
		t.Fatal(err)
	}
	c, err := server.Access(t.Context(), "fresh", "", store.PermRead)
	if err != nil {
		t.Fatalf("cache created by another process is not found at once: %v", err)
	}
	cc, _ := cli.Access(t.Context(), "fresh", "", store.PermRead)
	hash := push(t, cli, cc)
	if err := server.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := server.NarInfo(t.Context(), c, hash); err != nil {
		t.Fatalf("narinfo pushed through another process not served after Sync: %v", err)
	}
	if err := cli.DeleteCache(t.Context(), "fresh"); err != nil {
		t.Fatal(err)
	}
	// Narinfos are served from memory for a moment after they were last
	// rendered: the deletion shows at the next Sync.
	if err := server.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := server.NarInfo(t.Context(), c, hash); service.CodeOf(err) != service.CodeNotFound {
		t.Fatalf("narinfo of a deleted cache still served: %v", err)
	}
}

func TestCacheNames(t *testing.T) {
	good := []string{"main", "a-b", "abc", "my.cache", strings.Repeat("a", 63), "123"}
	bad := []string{"", "ab", "Main", "a_b", "-ab", "ab-", ".ab", "a..b", "192.168.1.1", "xn--abc",
		"abc-s3alias", strings.Repeat("a", 64), "a b", "a/b", "_larder"}
	for _, n := range good {
		if err := service.ValidateCacheName(n); err != nil {
			t.Errorf("%q refused: %v", n, err)
		}
	}
	for _, n := range bad {
		if err := service.ValidateCacheName(n); err == nil {
			t.Errorf("%q accepted", n)
		}
	}
}

func TestTokens(t *testing.T) {
	svc, _ := newService(t)
	ctx := t.Context()
	if _, err := svc.CreateCache(ctx, service.CacheSpec{Name: "main", Private: true}); err != nil {
		t.Fatal(err)
	}
	tok, rec, err := svc.CreateToken(ctx, service.TokenSpec{Cache: "main", Perm: store.PermWrite})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "lrd_") || strings.Contains(rec.Hash, tok) || len(rec.Hash) != 64 {
		t.Fatalf("token %q stored as %q", tok, rec.Hash)
	}
	for _, need := range []store.Perm{store.PermRead, store.PermWrite} {
		if _, err := svc.Access(ctx, "main", tok, need); err != nil {
			t.Errorf("write token refused for %s: %v", need, err)
		}
	}
	if _, err := svc.Access(ctx, "main", tok, store.PermAdmin); service.CodeOf(err) != service.CodeForbidden {
		t.Errorf("write token used for admin: %v", err)
	}
	if _, _, err := svc.CreateToken(ctx, service.TokenSpec{Cache: "main", Perm: "root"}); service.CodeOf(err) != service.CodeInvalid {
		t.Errorf("unknown permission: %v", err)
	}
	if _, _, err := svc.CreateToken(ctx, service.TokenSpec{Cache: "nosuch", Perm: store.PermRead}); service.CodeOf(err) != service.CodeNotFound {
		t.Errorf("token for unknown cache: %v", err)
	}
	if err := svc.RevokeToken(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Access(ctx, "main", tok, store.PermRead); service.CodeOf(err) != service.CodeUnauthenticated {
		t.Errorf("revoked token accepted: %v", err)
	}
}

// TestHeldNarInfoExpires holds a narinfo whose NAR never comes, expires it,
// and checks that it is gone for S3 readers too and that the NAR arriving
// later does not bring it back.
func TestHeldNarInfoExpires(t *testing.T) {
	svc, _ := newService(t)
	ctx := t.Context()
	if _, err := svc.CreateCache(ctx, service.CacheSpec{Name: "main"}); err != nil {
		t.Fatal(err)
	}
	c, _ := svc.Access(ctx, "main", "", store.PermRead)
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, []byte("late"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, f); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	fh := nixbase32.EncodeToString(sum[:])
	hash := randomHash()
	ni := fmt.Sprintf("StorePath: /nix/store/%s-late\nURL: nar/%s.nar\nCompression: none\nNarHash: sha256:%s\nNarSize: %d\nReferences: \n",
		hash, fh, fh, buf.Len())
	key := hash + ".narinfo"
	if _, err := svc.PutObject(ctx, c, key, strings.NewReader(ni), int64(len(ni)), service.ObjectMeta{}); err != nil {
		t.Fatalf("narinfo before its NAR: %v", err)
	}
	if _, err := svc.StatObject(ctx, c, key); err != nil {
		t.Fatalf("a held narinfo does not read back over S3: %v", err)
	}
	service.ExpireHeld(svc, ctx, 0)
	if _, err := svc.StatObject(ctx, c, key); service.CodeOf(err) != service.CodeNotFound {
		t.Fatalf("an expired held narinfo still reads back: %v", err)
	}
	if _, err := svc.PutObject(ctx, c, "nar/"+fh+".nar", bytes.NewReader(buf.Bytes()), int64(buf.Len()), service.ObjectMeta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.NarInfo(ctx, c, hash); service.CodeOf(err) != service.CodeNotFound {
		t.Fatalf("an expired narinfo came back with its NAR: %v", err)
	}
}

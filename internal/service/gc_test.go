package service_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/local"
	"github.com/larder-cache/larder/internal/store/sqlite"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// gcEnv is a service with a short grace period, so that a test can make
// paths old by waiting a little. Stores keep times to the second, so the
// waits are a little over a second.
type gcEnv struct {
	t     *testing.T
	svc   *service.Service
	meta  store.MetaStore
	blobs string
	cache service.Cache
}

const (
	testGrace = time.Second
	tick      = 1100 * time.Millisecond // makes a time older by a second
)

func newGCEnv(t *testing.T, policy store.Policy) *gcEnv {
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
	svc, err := service.New(t.Context(), service.Options{Meta: meta, Blobs: blobs, Limits: testLimits, GCGrace: testGrace})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateCache(t.Context(), service.CacheSpec{Name: "main", Policy: policy}); err != nil {
		t.Fatal(err)
	}
	c, err := svc.Operate(t.Context(), "main")
	if err != nil {
		t.Fatal(err)
	}
	return &gcEnv{t: t, svc: svc, meta: meta, blobs: filepath.Join(dir, "blobs"), cache: c}
}

// push uploads a path with the given references (base names) and returns
// its base name.
func (e *gcEnv) push(name string, refs ...string) string {
	e.t.Helper()
	f := filepath.Join(e.t.TempDir(), "f")
	if err := os.WriteFile(f, []byte(name+randomHash()), 0o644); err != nil {
		e.t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, f); err != nil {
		e.t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	fh := nixbase32.EncodeToString(sum[:])
	ctx := e.t.Context()
	if _, err := e.svc.PutObject(ctx, e.cache, "nar/"+fh+".nar", bytes.NewReader(buf.Bytes()), int64(buf.Len()), service.ObjectMeta{}); err != nil {
		e.t.Fatal(err)
	}
	hash := randomHash()
	slices.Sort(refs)
	ni := fmt.Sprintf("StorePath: /nix/store/%s-%s\nURL: nar/%s.nar\nCompression: none\nNarHash: sha256:%s\nNarSize: %d\nReferences: %s\n",
		hash, name, fh, fh, buf.Len(), strings.Join(refs, " "))
	key, _ := nixkey.Parse(hash + ".narinfo")
	if _, err := e.svc.PutNarInfo(ctx, e.cache, key, []byte(ni)); err != nil {
		e.t.Fatal(err)
	}
	return hash + "-" + name
}

// has reports whether the cache holds the path, without reading it as a
// client would (a read marks it used).
func (e *gcEnv) has(base string) bool {
	_, _, err := e.meta.GetNarInfo(e.t.Context(), cacheID(e.t, e), base[:32])
	return err == nil
}

func (e *gcEnv) collect(dryRun bool) service.CollectReport {
	e.t.Helper()
	r, err := e.svc.Collect(e.t.Context(), service.CollectOptions{DryRun: dryRun})
	if err != nil {
		e.t.Fatal(err)
	}
	return r[0]
}

func (e *gcEnv) narFiles() int {
	n := 0
	_ = filepath.WalkDir(filepath.Join(e.blobs, "nar"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// TestRetentionKeepsClosures: an old unused path goes; a recently fetched
// one stays with its closure; a dependency it shares with an old path
// survives while that old path goes.
func TestRetentionKeepsClosures(t *testing.T) {
	t.Parallel()
	e := newGCEnv(t, store.Policy{Retention: time.Second})
	shared := e.push("shared")
	lib := e.push("lib", shared)
	used := e.push("used", lib)
	old := e.push("old", shared)
	lone := e.push("lone")
	time.Sleep(2 * tick)                                                      // everything is now older than the retention
	if _, err := e.svc.NarInfo(t.Context(), e.cache, used[:32]); err != nil { // a fetch: used is in use again
		t.Fatal(err)
	}
	before := e.narFiles()

	dry := e.collect(true)
	if dry.Result.RemovedPaths != 2 || !e.has(old) || e.narFiles() != before {
		t.Fatalf("a dry run changed something, or predicts %d removals: %+v", dry.Result.RemovedPaths, dry.Result)
	}
	r := e.collect(false)
	for _, p := range []string{used, lib, shared} {
		if !e.has(p) {
			t.Errorf("%s was removed, but a fetched path needs it", p)
		}
	}
	for _, p := range []string{old, lone} {
		if e.has(p) {
			t.Errorf("%s, old and unused, was kept", p)
		}
	}
	if r.Result.RemovedPaths != 2 || r.NarsDeleted != 2 || e.narFiles() != before-2 {
		t.Fatalf("removed %d paths and %d NAR files (%d left of %d): %+v", r.Result.RemovedPaths, r.NarsDeleted, e.narFiles(), before, r)
	}
}

// TestQuotaDropsLeastRecentlyUsed: over the size limit, the least recently
// used root goes first, and what remains is closed under references.
func TestQuotaDropsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	e := newGCEnv(t, store.Policy{})
	base := e.push("base")
	first := e.push("first", base)
	time.Sleep(tick)
	second := e.push("second", base)
	time.Sleep(2 * tick) // both older than the grace period
	paths, bytes, err := e.svc.CacheUsage(t.Context(), store.Cache{ID: cacheID(t, e), Name: "main"})
	if err != nil || paths != 3 {
		t.Fatalf("usage: %d paths, %d bytes, %v", paths, bytes, err)
	}
	// Room for two of the three NAR files: first, the least recently used
	// root, must go; base stays for second.
	if err := e.svc.SetPolicy(t.Context(), "main", store.Policy{MaxSize: bytes - 1}); err != nil {
		t.Fatal(err)
	}
	r := e.collect(false)
	if e.has(first) || !e.has(second) || !e.has(base) {
		t.Fatalf("first %v, second %v, base %v after the quota; want only first gone (%+v)", e.has(first), e.has(second), e.has(base), r.Result)
	}
	// Without a retention every path is a root: first is dropped (and base
	// too, as a root, if it sorts before first; it stays as a dependency).
	if r.Result.DroppedRoots < 1 || r.Result.KeptBytes > bytes-1 || r.Result.RemovedPaths != 1 {
		t.Fatalf("result %+v", r.Result)
	}
}

func cacheID(t *testing.T, e *gcEnv) int64 {
	c, err := e.svc.GetCache(t.Context(), "main")
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// TestPinRevisions: a pin keeping two revisions keeps exactly the two
// newest, with their closures, whatever the retention says.
func TestPinRevisions(t *testing.T) {
	t.Parallel()
	e := newGCEnv(t, store.Policy{Retention: time.Second})
	var revs []string
	for i := range 3 {
		dep := e.push(fmt.Sprintf("dep%d", i))
		revs = append(revs, e.push(fmt.Sprintf("app%d", i), dep))
		_, err := e.svc.Pin(t.Context(), e.cache, service.PinSpec{StorePath: "/nix/store/" + revs[i], Name: "app",
			Rule: store.PinRule{KeepRevisions: 2}})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(tick) // revisions pinned in different seconds
	}
	time.Sleep(2 * tick)
	r := e.collect(false)
	if e.has(revs[0]) || !e.has(revs[1]) || !e.has(revs[2]) || r.PinsExpired != 1 {
		t.Fatalf("revisions kept: %v %v %v, expired %d", e.has(revs[0]), e.has(revs[1]), e.has(revs[2]), r.PinsExpired)
	}
	pins, _, err := e.svc.Pins(t.Context(), e.cache)
	if err != nil || len(pins) != 2 {
		t.Fatalf("pins after the collection: %v %v", pins, err)
	}
	if _, err := e.svc.Pin(t.Context(), e.cache, service.PinSpec{StorePath: "/nix/store/" + strings.Repeat("0", 32) + "-none"}); service.CodeOf(err) != service.CodeNotFound {
		t.Fatalf("pinning a path the cache does not hold: %v", err)
	}
}

// TestOneCollectionAtATime: while another process holds the collection
// lease, a collection is refused with ErrCollecting; once it is released,
// one runs.
func TestOneCollectionAtATime(t *testing.T) {
	t.Parallel()
	e := newGCEnv(t, store.Policy{Retention: time.Hour})
	ctx := t.Context()
	if ok, err := e.meta.TryLease(ctx, "gc", "another-replica", time.Hour); !ok || err != nil {
		t.Fatalf("take the lease: %v %v", ok, err)
	}
	if _, err := e.svc.Collect(ctx, service.CollectOptions{}); !errors.Is(err, service.ErrCollecting) {
		t.Fatalf("collection while another holds the lease: %v", err)
	}
	if err := e.meta.ReleaseLease(ctx, "gc", "another-replica"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Collect(ctx, service.CollectOptions{}); err != nil {
		t.Fatalf("collection after the lease was released: %v", err)
	}
	// The lease is given back after each collection.
	if _, err := e.svc.Collect(ctx, service.CollectOptions{}); err != nil {
		t.Fatalf("a second collection: %v", err)
	}
}

// TestNarReadIsAUse: fetching a path's NAR file, over either protocol,
// counts as a use of the path, as fetching its narinfo does; uploading the
// file does not.
func TestNarReadIsAUse(t *testing.T) {
	t.Parallel()
	e := newGCEnv(t, store.Policy{Retention: time.Second})
	viaNix, viaS3, unread := e.push("vianix"), e.push("vias3"), e.push("unread")
	time.Sleep(2 * tick)
	ctx := t.Context()
	_, n, err := e.meta.GetNarInfo(ctx, cacheID(t, e), viaNix[:32])
	if err != nil {
		t.Fatal(err)
	}
	f, err := e.svc.Nar(ctx, e.cache, nixkey.Key{Kind: nixkey.Nar, Hash: n.FileHash})
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.svc.ReadNar(ctx, e.cache, f, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	_, n, err = e.meta.GetNarInfo(ctx, cacheID(t, e), viaS3[:32])
	if err != nil {
		t.Fatal(err)
	}
	o, err := e.svc.StatObject(ctx, e.cache, "nar/"+n.FileHash+".nar")
	if err != nil {
		t.Fatal(err)
	}
	if r, err = e.svc.ReadObject(ctx, o, 0, -1); err != nil {
		t.Fatal(err)
	}
	r.Close()
	e.collect(false)
	if !e.has(viaNix) || !e.has(viaS3) {
		t.Errorf("a path whose NAR file was just fetched was collected (over HTTP kept: %v, over S3 kept: %v)", e.has(viaNix), e.has(viaS3))
	}
	if e.has(unread) {
		t.Errorf("an unread old path was kept")
	}
}

package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/local"
	"github.com/larder-cache/larder/internal/store/sqlite"
)

// openWithSnapshot opens a service on dir as the server does, keeping its
// presence snapshot in dir/presence.snapshot.
func openWithSnapshot(t *testing.T, dir string, meta store.MetaStore) *service.Service {
	t.Helper()
	if meta == nil {
		m, err := sqlite.Open(t.Context(), filepath.Join(dir, "db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		meta = m
	}
	blobs, err := local.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(t.Context(), service.Options{Meta: meta, Blobs: blobs, Limits: testLimits, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		SnapshotPath: snapshotPath(dir)})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func snapshotPath(dir string) string { return filepath.Join(dir, "presence.snapshot") }

// cacheFor creates the cache name and returns it for reading and writing.
func cacheFor(t *testing.T, svc *service.Service, name string) (service.Cache, int64) {
	t.Helper()
	rec, err := svc.CreateCache(t.Context(), service.CacheSpec{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	c, err := svc.Access(t.Context(), name, "", store.PermRead)
	if err != nil {
		t.Fatal(err)
	}
	return c, rec.ID
}

// served checks that every hash is served from the cache name.
func served(t *testing.T, svc *service.Service, name string, hashes []string) {
	t.Helper()
	c, err := svc.Access(t.Context(), name, "", store.PermRead)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hashes {
		if _, err := svc.NarInfo(t.Context(), c, h); err != nil {
			t.Fatalf("narinfo %d of %d (%s) not served: %v", i, len(hashes), h, err)
		}
	}
}

// TestRestartFromSnapshot: opening a service (as every CLI command does)
// writes no snapshot; a server's Run writes one when it ends; a restart
// loads it and the narinfos another process committed since, and serves
// them all.
func TestRestartFromSnapshot(t *testing.T) {
	dir := t.TempDir()
	first := openWithSnapshot(t, dir, nil)
	if service.StartedFromSnapshot(first) {
		t.Fatal("started from a snapshot that does not exist")
	}
	c, _ := cacheFor(t, first, "main")
	var hashes []string
	for range 3 {
		hashes = append(hashes, push(t, first, c))
	}
	if _, err := os.Stat(snapshotPath(dir)); !os.IsNotExist(err) {
		t.Fatalf("a service that did not run wrote a snapshot: %v", err)
	}
	// What a writer killed long ago left goes; what one may be writing stays.
	stale, fresh := filepath.Join(dir, ".presence-1"), filepath.Join(dir, ".presence-2")
	for _, f := range []string{stale, fresh} {
		if err := os.WriteFile(f, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan struct{})
	go func() { defer close(ran); first.Run(ctx, time.Hour) }()
	cancel()
	<-ran
	fi, err := os.Stat(snapshotPath(dir))
	if err != nil {
		t.Fatalf("no snapshot once Run ended: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a stale temporary file survived the write: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a recent temporary file was removed: %v", err)
	}

	cli, _ := openService(t, dir) // without a snapshot, as another process
	cc, _ := cli.Access(t.Context(), "main", "", store.PermRead)
	for range 2 {
		hashes = append(hashes, push(t, cli, cc))
	}

	again := openWithSnapshot(t, dir, nil)
	if !service.StartedFromSnapshot(again) {
		t.Fatal("restart did not use the snapshot")
	}
	served(t, again, "main", hashes)
}

// snapshotFixture is a data directory whose snapshot a server wrote, with
// the hashes it has in the cache main, the last one committed last.
func snapshotFixture(t *testing.T) (string, *service.Service, []string) {
	t.Helper()
	dir := t.TempDir()
	svc := openWithSnapshot(t, dir, nil)
	c, _ := cacheFor(t, svc, "main")
	var hashes []string
	for range 4 {
		hashes = append(hashes, push(t, svc, c))
	}
	if err := service.WriteSnapshot(svc, t.Context()); err != nil {
		t.Fatal(err)
	}
	return dir, svc, hashes
}

// rewriteBase sets the base time in the header of the snapshot in dir.
func rewriteBase(t *testing.T, dir string, base time.Time) {
	t.Helper()
	b, err := os.ReadFile(snapshotPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	line, rest, _ := bytes.Cut(b, []byte("\n"))
	var h map[string]any
	if err := json.Unmarshal(line, &h); err != nil {
		t.Fatalf("header %q: %v", line, err)
	}
	if _, ok := h["base"]; !ok {
		t.Fatalf("header %q has no base", line)
	}
	h["base"] = base.Format(time.RFC3339)
	line, _ = json.Marshal(h)
	if err := os.WriteFile(snapshotPath(dir), append(append(line, '\n'), rest...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotFallback: a snapshot that is damaged, too old, or stands at
// a narinfo the database no longer has is not used; the service loads
// every narinfo instead, and serves them all.
func TestSnapshotFallback(t *testing.T) {
	damage := map[string]func(t *testing.T, dir string, svc *service.Service, hashes []string) []string{
		"truncated": func(t *testing.T, dir string, _ *service.Service, hashes []string) []string {
			fi, _ := os.Stat(snapshotPath(dir))
			if err := os.Truncate(snapshotPath(dir), fi.Size()-10); err != nil {
				t.Fatal(err)
			}
			return hashes
		},
		"flipped byte": func(t *testing.T, dir string, _ *service.Service, hashes []string) []string {
			b, _ := os.ReadFile(snapshotPath(dir))
			b[len(b)/2] ^= 0x40
			if err := os.WriteFile(snapshotPath(dir), b, 0o600); err != nil {
				t.Fatal(err)
			}
			return hashes
		},
		"header only": func(t *testing.T, dir string, _ *service.Service, hashes []string) []string {
			b, _ := os.ReadFile(snapshotPath(dir))
			line, _, _ := bytes.Cut(b, []byte("\n"))
			if err := os.WriteFile(snapshotPath(dir), line, 0o600); err != nil {
				t.Fatal(err)
			}
			return hashes
		},
		"eight days old": func(t *testing.T, dir string, _ *service.Service, hashes []string) []string {
			rewriteBase(t, dir, time.Now().Add(-8*24*time.Hour))
			return hashes
		},
		"last narinfo deleted": func(t *testing.T, _ string, svc *service.Service, hashes []string) []string {
			c, _ := svc.Access(t.Context(), "main", "", store.PermRead)
			if err := svc.DeleteObject(t.Context(), c, hashes[len(hashes)-1]+".narinfo"); err != nil {
				t.Fatal(err)
			}
			return hashes[:len(hashes)-1]
		},
	}
	for name, fn := range damage {
		t.Run(name, func(t *testing.T) {
			dir, svc, hashes := snapshotFixture(t)
			hashes = fn(t, dir, svc, hashes)
			again := openWithSnapshot(t, dir, nil)
			if service.StartedFromSnapshot(again) {
				t.Fatal("started from a snapshot that should have been refused")
			}
			served(t, again, "main", hashes)
		})
	}
	t.Run("six days old", func(t *testing.T) { // the control of the rewriting above
		dir, _, hashes := snapshotFixture(t)
		rewriteBase(t, dir, time.Now().Add(-6*24*time.Hour))
		again := openWithSnapshot(t, dir, nil)
		if !service.StartedFromSnapshot(again) {
			t.Fatal("a snapshot six days old was refused")
		}
		served(t, again, "main", hashes)
	})
}

// TestSnapshotDropsDeletedCache: a cache deleted while no server ran is
// not in the index of a server that starts from a snapshot holding it.
func TestSnapshotDropsDeletedCache(t *testing.T) {
	dir := t.TempDir()
	svc := openWithSnapshot(t, dir, nil)
	gone, goneID := cacheFor(t, svc, "gone")
	main, _ := cacheFor(t, svc, "main")
	goneHash := push(t, svc, gone)
	mainHash := push(t, svc, main) // last: the snapshot stands at it
	if err := service.WriteSnapshot(svc, t.Context()); err != nil {
		t.Fatal(err)
	}
	cli, _ := openService(t, dir)
	if err := cli.DeleteCache(t.Context(), "gone"); err != nil {
		t.Fatal(err)
	}
	again := openWithSnapshot(t, dir, nil)
	if !service.StartedFromSnapshot(again) {
		t.Fatal("restart did not use the snapshot")
	}
	if service.InIndex(again, goneID, goneHash) {
		t.Fatal("the index still holds a key of a cache deleted while no server ran")
	}
	served(t, again, "main", []string{mainHash})
}

// keyListMeta serves narinfo keys from a list the test grows, so that a
// test can commit tens of thousands without uploading them.
type keyListMeta struct {
	store.MetaStore
	mu   sync.Mutex
	keys []store.NarInfoKey
	read int // keys ListNarInfoKeys returned
}

func (m *keyListMeta) add(cacheID int64, n int) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var hashes []string
	for range n {
		k := store.NarInfoKey{Seq: int64(len(m.keys) + 1), CacheID: cacheID, Hash: randomHash()}
		m.keys = append(m.keys, k)
		hashes = append(hashes, k.Hash)
	}
	return hashes
}

func (m *keyListMeta) ListNarInfoKeys(_ context.Context, after int64, limit int) ([]store.NarInfoKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := sort.Search(len(m.keys), func(i int) bool { return m.keys[i].Seq > after })
	page := append([]store.NarInfoKey(nil), m.keys[i:min(len(m.keys), i+limit)]...)
	m.read += len(page)
	return page, nil
}

// TestSnapshotCatchUp: more keys than a page committed after a snapshot,
// and then while the server runs, all reach the index (the paths that add
// them in bulk).
func TestSnapshotCatchUp(t *testing.T) {
	dir := t.TempDir()
	real, err := sqlite.Open(t.Context(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { real.Close() })
	meta := &keyListMeta{MetaStore: real}
	svc := openWithSnapshot(t, dir, meta)
	_, id := cacheFor(t, svc, "main")
	hashes := meta.add(id, 25_000)
	if err := svc.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := service.WriteSnapshot(svc, t.Context()); err != nil {
		t.Fatal(err)
	}
	hashes = append(hashes, meta.add(id, 25_000)...)
	meta.read = 0
	again := openWithSnapshot(t, dir, meta)
	if !service.StartedFromSnapshot(again) {
		t.Fatal("restart did not use the snapshot")
	}
	if meta.read != 25_001 { // the keys since, and the one the snapshot stands at
		t.Fatalf("restart read %d keys, want 25001", meta.read)
	}
	hashes = append(hashes, meta.add(id, 25_000)...)
	if err := again.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i, h := range hashes {
		if !service.InIndex(again, id, h) {
			t.Fatalf("key %d of %d not in the index", i, len(hashes))
		}
	}
}

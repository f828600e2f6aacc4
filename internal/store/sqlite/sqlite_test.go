package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/storetest"
)

// openTemp opens a store on a new database file and closes it when t ends.
func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "larder.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, path
}

// TestConformance runs the suite with Collect removing two narinfos or
// links at a time, so that its batches are tested too.
func TestConformance(t *testing.T) {
	storetest.TestMetaStore(t, func(t *testing.T) store.MetaStore {
		s, _ := openTemp(t)
		s.collectBatch = 2
		return s
	})
}

func TestCollectWhileWriting(t *testing.T) {
	storetest.TestCollectWhileWriting(t, func(t *testing.T) (store.MetaStore, func(func())) {
		s, _ := openTemp(t)
		s.collectBatch = 3
		return s, func(hook func()) { s.collectHook = hook }
	})
}

// createCache adds a cache called name through s and fails t on error.
func createCache(t testing.TB, s *Store, name string) store.Cache {
	t.Helper()
	c, err := s.CreateCache(context.Background(), store.Cache{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testNar returns a Nar record made from seed.
func testNar(seed string) store.Nar {
	h := fmt.Sprintf("%052s", seed)
	return store.Nar{FileHash: h, FileSize: 1, Compression: "xz", NarHash: h,
		NarSize: 2, BlobKey: "nar/" + h}
}

// testNarInfo returns a narinfo of the store path named by seed, serving
// the Nar with file hash fh.
func testNarInfo(cacheID int64, seed, fh string) store.NarInfo {
	h := fmt.Sprintf("%032s", seed)
	return store.NarInfo{CacheID: cacheID, Hash: h, Key: h + ".narinfo", StorePath: "/nix/store/" + h + "-" + seed,
		FileHash: fh, References: []string{h + "-" + seed}, Sigs: []string{"k-1:c2ln"}}
}

// replace is a merge that stores ni whatever is there.
func replace(ni store.NarInfo) func(*store.NarInfo) (store.NarInfo, error) {
	return func(*store.NarInfo) (store.NarInfo, error) { return ni, nil }
}

func TestTwoStoresOnOneFile(t *testing.T) {
	ctx := t.Context()
	a, path := openTemp(t)
	b, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Warm b's read pool so that its connections exist before a writes.
	if _, err := b.LookupToken(ctx, "none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("lookup in empty store: %v", err)
	}
	c := createCache(t, a, "main")
	tk, err := b.CreateToken(ctx, store.Token{Hash: "h1", Scope: c.Name, Perm: store.PermWrite})
	if err != nil {
		t.Fatalf("create token through the second store: %v", err)
	}
	got, err := a.LookupToken(ctx, "h1")
	if err != nil || got.ID != tk.ID || got.Scope != "main" {
		t.Fatalf("lookup through the first store: %+v, %v", got, err)
	}
	n, err := a.AddNar(ctx, c.ID, testNar("n1"), "nar/n1.nar.xz")
	if err != nil {
		t.Fatal(err)
	}
	ni, err := a.PutNarInfo(ctx, testNarInfo(c.ID, "p1", n.FileHash), replace(testNarInfo(c.ID, "p1", n.FileHash)))
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := b.GetNarInfo(ctx, c.ID, ni.Hash); err != nil || got.Seq != ni.Seq {
		t.Fatalf("get narinfo through the second store: %+v, %v", got, err)
	}
	if err := b.DeleteCache(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.LookupToken(ctx, "h1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("token of a cache deleted through the second store: %v", err)
	}
	if _, _, err := a.GetNarInfo(ctx, c.ID, ni.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("narinfo of a cache deleted through the second store: %v", err)
	}
}

func TestTwoStoresMergeConcurrently(t *testing.T) {
	ctx := t.Context()
	a, path := openTemp(t)
	b, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c := createCache(t, a, "main")
	n, err := a.AddNar(ctx, c.ID, testNar("n1"), "nar/n1.nar.xz")
	if err != nil {
		t.Fatal(err)
	}
	base := testNarInfo(c.ID, "p", n.FileHash)
	base.Sigs = nil
	const perStore = 20
	var wg sync.WaitGroup
	for i := range 2 * perStore {
		s := []*Store{a, b}[i%2]
		wg.Go(func() {
			_, err := s.PutNarInfo(ctx, base, func(old *store.NarInfo) (store.NarInfo, error) {
				next := base
				if old != nil {
					next = *old
				}
				next.Sigs = append(slices.Clone(next.Sigs), fmt.Sprint("k", i))
				return next, nil
			})
			if err != nil {
				t.Errorf("merge %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	got, _, err := b.GetNarInfo(ctx, c.ID, base.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Sigs) != 2*perStore {
		t.Fatalf("after merges through two stores: %d sigs, want %d", len(got.Sigs), 2*perStore)
	}
}

// childEnv names the database a child process of
// TestOtherProcessSeesChanges writes to.
const childEnv = "LARDER_SQLITE_TEST_CHILD_DB"

func TestOtherProcessSeesChanges(t *testing.T) {
	if path := os.Getenv(childEnv); path != "" {
		s, err := Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.GetCache(t.Context(), "main")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateToken(t.Context(), store.Token{Hash: "child", Scope: c.Name, Perm: store.PermRead}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
	s, path := openTemp(t)
	createCache(t, s, "main")
	if _, err := s.LookupToken(t.Context(), "child"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("lookup before the child ran: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestOtherProcessSeesChanges$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child process: %v\n%s", err, out)
	}
	tk, err := s.LookupToken(t.Context(), "child")
	if err != nil || tk.Scope != "main" {
		t.Fatalf("token created by another process: %+v, %v", tk, err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := t.Context()
	s, path := openTemp(t)
	c := createCache(t, s, "main")
	n, err := s.AddNar(ctx, c.ID, testNar("n1"), "nar/n1.nar.xz")
	if err != nil {
		t.Fatal(err)
	}
	ni := testNarInfo(c.ID, "p1", n.FileHash)
	if _, err := s.PutNarInfo(ctx, ni, replace(ni)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, err := s2.GetCache(ctx, "main"); err != nil || got.ID != c.ID {
		t.Fatalf("cache after reopen: %+v, %v", got, err)
	}
	if _, gn, err := s2.GetNarInfo(ctx, c.ID, ni.Hash); err != nil || gn.FileHash != n.FileHash {
		t.Fatalf("narinfo after reopen: %+v, %v", gn, err)
	}
	if v, err := schemaVersion(ctx, s2.r); err != nil || v != len(migrations) {
		t.Fatalf("schema version after reopen: %d, %v; want %d", v, err, len(migrations))
	}
}

// TestConcurrentOpensOfNewFile opens new files from several goroutines at
// once, some rounds over: the race for setting WAL mode is lost only now
// and then.
func TestConcurrentOpensOfNewFile(t *testing.T) {
	for round := range 20 {
		path := filepath.Join(t.TempDir(), fmt.Sprint("new", round, ".db"))
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				s, err := Open(t.Context(), path)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := s.ListCaches(t.Context()); err != nil {
					t.Error(err)
				}
				s.Close()
			})
		}
		wg.Wait()
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	s, path := openTemp(t)
	if _, err := s.w.ExecContext(t.Context(), fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(t.Context(), path); err == nil {
		s2.Close()
		t.Fatal("open of a database with a newer schema: no error")
	}
}

func TestConnectionSettings(t *testing.T) {
	s, _ := openTemp(t)
	want := map[string]int64{"foreign_keys": 1, "synchronous": 1, "busy_timeout": busyTimeout.Milliseconds()}
	for name, db := range map[string]*sql.DB{"write": s.w, "read": s.r} {
		for pragma, v := range want {
			var got int64
			if err := db.QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil || got != v {
				t.Errorf("%s pool: %s = %d, %v; want %d", name, pragma, got, err, v)
			}
		}
		var mode string
		if err := db.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("%s pool: journal_mode = %q, %v; want wal", name, mode, err)
		}
	}
	// Keys compare byte by byte, in S3's order, only in a UTF-8 database.
	var enc string
	if err := s.r.QueryRowContext(t.Context(), "PRAGMA encoding").Scan(&enc); err != nil || enc != "UTF-8" {
		t.Errorf("encoding = %q, %v; want UTF-8", enc, err)
	}
	if _, err := s.r.ExecContext(t.Context(), `DELETE FROM caches`); err == nil {
		t.Errorf("read pool accepted a write")
	}
}

func TestPutNarInfoRefusesWhatItCannotKeep(t *testing.T) {
	ctx := t.Context()
	s, _ := openTemp(t)
	c := createCache(t, s, "main")
	n, err := s.AddNar(ctx, c.ID, testNar("n1"), "nar/n1.nar.xz")
	if err != nil {
		t.Fatal(err)
	}
	ni := testNarInfo(c.ID, "p1", n.FileHash)
	bad := ni
	bad.Sigs = []string{"k-1:\xff"}
	if _, err := s.PutNarInfo(ctx, ni, replace(bad)); err == nil {
		t.Errorf("put narinfo with a sig that is not UTF-8: no error")
	}
	moved := ni
	moved.Hash = fmt.Sprintf("%032s", "other")
	if _, err := s.PutNarInfo(ctx, ni, replace(moved)); err == nil {
		t.Errorf("put narinfo whose merge changes the hash: no error")
	}
	if keys, err := s.ListNarInfoKeys(ctx, 0, 10); err != nil || len(keys) != 0 {
		t.Fatalf("refused puts wrote %+v, %v", keys, err)
	}
}

func TestPathWithSpecialCharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a b?c#d%25&e=f")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "larder.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	createCache(t, s, "main")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at %s: %v", path, err)
	}
}

func TestMetadataMustBeUTF8(t *testing.T) {
	ctx := t.Context()
	s, _ := openTemp(t)
	c := createCache(t, s, "main")
	bad := map[string]string{"name": "caf\xe9"}
	if err := s.PutObject(ctx, store.Object{CacheID: c.ID, Key: "k", Metadata: bad}); err == nil {
		t.Errorf("put object with metadata that is not UTF-8: no error")
	}
	if _, err := s.GetObject(ctx, c.ID, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get object refused for its metadata: %v", err)
	}
	if err := s.CreateUpload(ctx, store.Upload{ID: "u", CacheID: c.ID, Key: "k", Metadata: bad}); err == nil {
		t.Errorf("create upload with metadata that is not UTF-8: no error")
	}
	if _, err := s.GetUpload(ctx, "u"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get upload refused for its metadata: %v", err)
	}
}

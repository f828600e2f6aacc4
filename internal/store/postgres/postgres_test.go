package postgres

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/storetest"
	"github.com/larder-cache/larder/internal/testserver"
)

func TestMain(m *testing.M) {
	defer testserver.StopPostgres()
	m.Run()
}

// openStore opens a Store on the database at dsn and closes it when t ends.
func openStore(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// schemas counts the schemas inSchema makes, for their names.
var schemas atomic.Int64

// inSchema returns dsn with a search_path of a new, empty schema of the
// database, dropped when t ends: a fresh place for a Store, quicker to make
// than a database.
func inSchema(t testing.TB, dsn string) string {
	t.Helper()
	name := fmt.Sprintf("s%d", schemas.Add(1))
	admin(t, dsn, "CREATE SCHEMA "+name)
	t.Cleanup(func() { admin(t, dsn, "DROP SCHEMA "+name+" CASCADE") })
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// admin runs sql on the database at dsn and fails t on error.
func admin(t testing.TB, dsn, sql string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestConformance runs the suite with a new schema of one database for
// each subtest: a database each takes about twice as long. Collect removes
// two narinfos or links at a time, so that its batches are tested too.
func TestConformance(t *testing.T) {
	dsn := testserver.Postgres(t)
	storetest.TestMetaStore(t, func(t *testing.T) store.MetaStore {
		s := openStore(t, inSchema(t, dsn))
		s.collectBatch = 2
		return s
	})
}

func TestCollectWhileWriting(t *testing.T) {
	dsn := testserver.Postgres(t)
	storetest.TestCollectWhileWriting(t, func(t *testing.T) (store.MetaStore, func(func())) {
		s := openStore(t, inSchema(t, dsn))
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

// addNar records testNar(seed) in the cache and fails t on error.
func addNar(t testing.TB, s *Store, cacheID int64, seed string) store.Nar {
	t.Helper()
	n := testNar(seed)
	n, err := s.AddNar(context.Background(), cacheID, n, "nar/"+n.FileHash+".nar.xz")
	if err != nil {
		t.Fatal(err)
	}
	return n
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

// putNarInfo writes testNarInfo(cacheID, seed, fh) through s and fails t
// on error.
func putNarInfo(t testing.TB, s *Store, cacheID int64, seed, fh string) store.NarInfo {
	t.Helper()
	ni := testNarInfo(cacheID, seed, fh)
	got, err := s.PutNarInfo(context.Background(), ni, replace(ni))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

package sqlite

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// v1Schema is the schema of version 1 as released.
const v1Schema = "testdata/schema-v1.sql"

func TestReleasedMigrationUnchanged(t *testing.T) {
	b, err := os.ReadFile(v1Schema)
	if err != nil {
		t.Fatal(err)
	}
	if migrations[0] != string(b) {
		t.Fatalf("migration 1 differs from the released schema in %s: released migrations never change", v1Schema)
	}
}

// v1Created is the creation time of every record of the version 1
// fixture.
var v1Created = time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC)

// v1Compressions are the compressions of the NARs of the version 1
// fixture with the extensions of their keys.
var v1Compressions = []struct{ name, ext string }{
	{"xz", ".xz"}, {"zstd", ".zst"}, {"bzip2", ".bz2"}, {"lz4", ".lz4"}, {"br", ".br"},
	{"gzip", ""}, {"none", ""},
}

// v1FileHash returns the file hash of the i-th NAR of the version 1
// fixture.
func v1FileHash(i int) string { return fmt.Sprintf("%052d", i) }

// v1Hash returns the store path hash of the i-th narinfo of the version 1
// fixture.
func v1Hash(i int) string { return fmt.Sprintf("%032d", i) }

// createV1 makes a version 1 database at path with the released schema and
// fills it as version 1 of larder did: caches main (1) and other (2);
// tokens 1 (every cache), 2 (main, expiring) and 3 (other), token 4 being
// deleted; a NAR of each compression, all linked to main and the first to
// other too; narinfos 1 to 3 in main, 4 in other, 5 deleted; two files.
func createV1(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path, []string{"foreign_keys(1)"}))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	schema, err := os.ReadFile(v1Schema)
	if err != nil {
		t.Fatal(err)
	}
	at := v1Created.Unix()
	stmts := []string{string(schema), `PRAGMA user_version = 1`,
		fmt.Sprintf(`INSERT INTO caches VALUES (1, 'main', 0, 10, 'main-1:sec', 'main-1:pub', %d),
			(2, 'other', 1, 20, 'other-1:sec', 'other-1:pub', %[1]d)`, at),
		fmt.Sprintf(`INSERT INTO tokens VALUES (1, 'h1', NULL, 'admin', 'all', %d, NULL),
			(2, 'h2', 1, 'write', 'main ci', %[1]d, %d), (3, 'h3', 2, 'read', 'other', %[1]d, NULL),
			(4, 'h4', 1, 'read', 'deleted', %[1]d, NULL)`, at, at+3600),
		`DELETE FROM tokens WHERE id = 4`,
	}
	for i, c := range v1Compressions {
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO nars VALUES (%d, '%s', %d, '%s', '%s', %d, 'nar/blob%[1]d', %[7]d)`,
			i+1, v1FileHash(i+1), 100+i, c.name, v1FileHash(100+i), 1000+i, at),
			fmt.Sprintf(`INSERT INTO cache_nars VALUES (1, %d, %d)`, i+1, at))
	}
	stmts = append(stmts, fmt.Sprintf(`INSERT INTO cache_nars VALUES (2, 1, %d)`, at))
	for i, c := range []struct{ cache, nar int }{{1, 1}, {1, 2}, {1, 3}, {2, 1}, {1, 4}} {
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO narinfos (seq, cache_id, hash, store_path, nar_id,
			nar_hash, nar_size, refs, deriver, system, ca, sigs, created_at)
			VALUES (%[1]d, %[2]d, '%[3]s', '/nix/store/%[3]s-p', %[4]d, '%[5]s', %[6]d, '["%[3]s-p"]', 'd.drv',
			'x86_64-linux', '', '["k-1:c2ln"]', %[7]d)`,
			i+1, c.cache, v1Hash(i+1), c.nar, v1FileHash(100+c.nar-1), 1000+c.nar-1, at))
	}
	stmts = append(stmts, `DELETE FROM narinfos WHERE seq = 5`,
		fmt.Sprintf(`INSERT INTO files VALUES (1, 'log/a.drv', 'text/plain', 3, 'sha-a', 'file/a', %d),
			(2, 'ls/b.ls', 'application/json', 4, 'sha-b', 'file/b', %[1]d)`, at))
	for _, q := range stmts {
		if _, err := db.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("make version 1 database: %s: %v", q, err)
		}
	}
}

func TestMigrateFromVersion1(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "v1.db")
	createV1(t, path)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("open version 1 database: %v", err)
	}
	defer s.Close()
	if v, err := schemaVersion(ctx, s.r); err != nil || v != len(migrations) {
		t.Fatalf("schema version after migration: %d, %v; want %d", v, err, len(migrations))
	}
	checkDatabase(t, s)
	checkIndexes(t, s)
	checkV1Caches(t, s)
	checkV1Tokens(t, s)
	checkV1Nars(t, s)
	checkV1NarInfos(t, s)
	checkV1Objects(t, s)
	checkV1Keys(t, s)
	checkV1Deletes(t, s)
}

// checkDatabase fails t unless the database passes SQLite's integrity and
// foreign key checks.
func checkDatabase(t *testing.T, s *Store) {
	t.Helper()
	var ok string
	if err := s.r.QueryRowContext(t.Context(), `PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity check: %q, %v", ok, err)
	}
	rows, err := s.r.QueryContext(t.Context(), `PRAGMA foreign_key_check`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if rows.Next() {
		t.Fatalf("foreign key check: a row refers to a missing one")
	}
}

// checkIndexes fails t unless narinfos has every index a migration made:
// rebuilding the table drops its indexes, which the rebuild must make
// again.
func checkIndexes(t *testing.T, s *Store) {
	t.Helper()
	rows, err := s.r.QueryContext(t.Context(),
		`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'narinfos' AND sql IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		got = append(got, name)
	}
	slices.Sort(got)
	want := []string{"narinfos_checked_at", "narinfos_created_at", "narinfos_key", "narinfos_name", "narinfos_nar_id"}
	if !slices.Equal(got, want) {
		t.Fatalf("indexes of narinfos: %v, want %v", got, want)
	}
}

func checkV1Caches(t *testing.T, s *Store) {
	list, err := s.ListCaches(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Cache{
		{ID: 1, Name: "main", Priority: 10, SecretKey: "main-1:sec", PublicKey: "main-1:pub", CreatedAt: v1Created},
		{ID: 2, Name: "other", Private: true, Priority: 20, SecretKey: "other-1:sec", PublicKey: "other-1:pub",
			CreatedAt: v1Created},
	}
	if !reflect.DeepEqual(list, want) {
		t.Fatalf("caches after migration: %+v, want %+v", list, want)
	}
}

func checkV1Tokens(t *testing.T, s *Store) {
	ctx := t.Context()
	list, err := s.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Token{
		{ID: 1, Hash: "h1", Scope: "*", Perm: store.PermAdmin, Description: "all", CreatedAt: v1Created},
		{ID: 2, Hash: "h2", Scope: "main", Perm: store.PermWrite, Description: "main ci", CreatedAt: v1Created,
			ExpiresAt: v1Created.Add(time.Hour)},
		{ID: 3, Hash: "h3", Scope: "other", Perm: store.PermRead, Description: "other", CreatedAt: v1Created},
	}
	if !slices.Equal(list, want) {
		t.Fatalf("tokens after migration: %+v, want %+v", list, want)
	}
	for _, w := range want {
		if got, err := s.LookupToken(ctx, w.Hash); err != nil || got != w {
			t.Fatalf("lookup token %s after migration: %+v, %v", w.Hash, got, err)
		}
	}
	// The AUTOINCREMENT counter survived the rebuild: deleted token 4 is not
	// reused.
	tk, err := s.CreateToken(ctx, store.Token{AccessKeyID: "AK", Secret: "s", Scope: "main", Perm: store.PermRead})
	if err != nil || tk.ID != 5 {
		t.Fatalf("create access key after migration: %+v, %v; want ID 5", tk, err)
	}
	if _, err := s.CreateToken(ctx, store.Token{Hash: "h2", Scope: "*", Perm: store.PermRead}); err == nil {
		t.Fatalf("create token with a migrated hash: no error")
	}
}

func checkV1Nars(t *testing.T, s *Store) {
	for i, c := range v1Compressions {
		want := store.Nar{FileHash: v1FileHash(i + 1), FileSize: int64(100 + i), Compression: c.name,
			NarHash: v1FileHash(100 + i), NarSize: int64(1000 + i), BlobKey: fmt.Sprint("nar/blob", i+1),
			CreatedAt: v1Created}
		if got, err := s.CacheNar(t.Context(), 1, want.FileHash); err != nil || got != want {
			t.Fatalf("nar %d of main after migration: %+v, %v; want %+v", i+1, got, err, want)
		}
	}
	if _, err := s.CacheNar(t.Context(), 2, v1FileHash(1)); err != nil {
		t.Fatalf("nar 1 of other after migration: %v", err)
	}
}

func checkV1NarInfos(t *testing.T, s *Store) {
	ctx := t.Context()
	for i, c := range []struct{ cache, nar int64 }{{1, 1}, {1, 2}, {1, 3}, {2, 1}} {
		h := v1Hash(i + 1)
		ni, n, err := s.GetNarInfo(ctx, c.cache, h)
		if err != nil {
			t.Fatalf("narinfo %d after migration: %v", i+1, err)
		}
		want := store.NarInfo{Seq: int64(i + 1), CacheID: c.cache, Hash: h, Key: h + ".narinfo",
			StorePath: "/nix/store/" + h + "-p", FileHash: v1FileHash(int(c.nar)), NarHash: n.NarHash,
			NarSize: n.NarSize, Deriver: "d.drv", System: "x86_64-linux", CreatedAt: v1Created}
		if n.NarHash != v1FileHash(100+int(c.nar)-1) || !slices.Equal(ni.References, []string{h + "-p"}) ||
			!slices.Equal(ni.Sigs, []string{"k-1:c2ln"}) {
			t.Fatalf("narinfo %d after migration: %+v of %+v", i+1, ni, n)
		}
		ni.References, ni.Sigs = nil, nil
		if fmt.Sprint(ni) != fmt.Sprint(want) {
			t.Fatalf("narinfo %d after migration: %+v, want %+v", i+1, ni, want)
		}
	}
	keys, err := s.ListNarInfoKeys(ctx, 0, 10)
	if err != nil || len(keys) != 4 || keys[3] != (store.NarInfoKey{Seq: 4, CacheID: 2, Hash: v1Hash(4)}) {
		t.Fatalf("narinfo keys after migration: %+v, %v", keys, err)
	}
	// Seqs go on past the deleted narinfo 5.
	ni := store.NarInfo{CacheID: 1, Hash: v1Hash(6), Key: v1Hash(6) + ".narinfo", FileHash: v1FileHash(5)}
	got, err := s.PutNarInfo(ctx, ni, func(*store.NarInfo) (store.NarInfo, error) { return ni, nil })
	if err != nil || got.Seq != 6 {
		t.Fatalf("put narinfo after migration: %+v, %v; want Seq 6", got, err)
	}
}

func checkV1Objects(t *testing.T, s *Store) {
	for _, want := range []store.Object{
		{CacheID: 1, Key: "log/a.drv", ContentType: "text/plain", Size: 3, SHA256: "sha-a", BlobKey: "file/a",
			CreatedAt: v1Created},
		{CacheID: 2, Key: "ls/b.ls", ContentType: "application/json", Size: 4, SHA256: "sha-b", BlobKey: "file/b",
			CreatedAt: v1Created},
	} {
		got, err := s.GetObject(t.Context(), want.CacheID, want.Key)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) || got.Metadata != nil {
			t.Fatalf("object %s after migration: %+v, %v; want %+v", want.Key, got, err, want)
		}
	}
}

func checkV1Keys(t *testing.T, s *Store) {
	list, err := s.ListKeys(t.Context(), 1, "", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, e := range list {
		got = append(got, e.Key)
		if e.Kind == store.EntryNar && e.ETag != "" {
			t.Errorf("nar %s after migration: ETag %q, want none", e.Key, e.ETag)
		}
	}
	for i := 1; i <= 3; i++ {
		want = append(want, v1Hash(i)+".narinfo")
	}
	want = append(want, v1Hash(6)+".narinfo", "log/a.drv")
	for i, c := range v1Compressions {
		want = append(want, "nar/"+v1FileHash(i+1)+".nar"+c.ext)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("keys of main after migration: %q, want %q", got, want)
	}
}

// checkV1Deletes checks that deleting a migrated cache removes the tokens
// that were scoped to it.
func checkV1Deletes(t *testing.T, s *Store) {
	ctx := t.Context()
	if err := s.DeleteCache(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListTokens(ctx)
	if err != nil || len(list) != 2 || list[0].ID != 1 || list[1].ID != 3 {
		t.Fatalf("tokens after deleting main: %+v, %v; want 1 and 3", list, err)
	}
	checkDatabase(t, s)
}

package sqlite

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// v2Schema is migration 2 as released.
const v2Schema = "testdata/schema-v2.sql"

func TestReleasedMigration2Unchanged(t *testing.T) {
	b, err := os.ReadFile(v2Schema)
	if err != nil {
		t.Fatal(err)
	}
	if migrations[1] != string(b) {
		t.Fatalf("migration 2 differs from the released one in %s: released migrations never change", v2Schema)
	}
}

// v2Ref returns the reference to the store path of the i-th narinfo of
// the version 2 fixture.
func v2Ref(i int) string { return v1Hash(i) + "-p" + fmt.Sprint(i) }

// createV2 makes a version 2 database at path from the released schema
// and migration and fills it as version 2 of larder did: caches main (1)
// and other (2), a NAR linked to both, narinfos 1 to 4 in main (1 refers
// to itself, 2 and to a path main does not hold, twice; 2 to 3; 3 to
// nothing; 4 to 1) and narinfo 1 in other (referring to 2).
func createV2(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path, []string{"foreign_keys(1)"}))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var schema []string
	for _, f := range []string{v1Schema, v2Schema} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		schema = append(schema, string(b))
	}
	at := v1Created.Unix()
	stmts := append(schema, `PRAGMA user_version = 2`,
		fmt.Sprintf(`INSERT INTO caches VALUES (1, 'main', 0, 10, 's', 'p', %d), (2, 'other', 0, 10, 's', 'p', %[1]d)`, at),
		fmt.Sprintf(`INSERT INTO nars VALUES (1, '%s', 100, 'xz', 'nh', 1000, 'nar/1', %d, '')`, v1FileHash(1), at),
		fmt.Sprintf(`INSERT INTO cache_nars VALUES (1, 1, %d, 'nar/1.nar.xz'), (2, 1, %[1]d, 'nar/1.nar.xz')`, at))
	for i, ni := range []struct {
		cache, path int
		refs        []string
	}{
		{1, 1, []string{v2Ref(1), v2Ref(2), v2Ref(9), v2Ref(9)}},
		{1, 2, []string{v2Ref(3)}},
		{1, 3, nil},
		{1, 4, []string{v2Ref(1)}},
		{2, 1, []string{v2Ref(2)}},
	} {
		list, err := encodeList(ni.refs)
		if err != nil {
			t.Fatal(err)
		}
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO narinfos (seq, cache_id, hash, store_path, nar_id, nar_hash,
			nar_size, refs, deriver, system, ca, sigs, created_at, key)
			VALUES (%d, %d, '%s', '/nix/store/%s', 1, 'nh', 1000, '%s', '', '', '', '[]', %d, '%[3]s.narinfo')`,
			i+1, ni.cache, v1Hash(ni.path), v2Ref(ni.path), list, at))
	}
	for _, q := range stmts {
		if _, err := db.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("make version 2 database: %s: %v", q, err)
		}
	}
}

func TestMigrateFromVersion2(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "v2.db")
	createV2(t, path)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("open version 2 database: %v", err)
	}
	defer s.Close()
	checkDatabase(t, s)
	rows, err := s.r.QueryContext(ctx, `SELECT cache_id, hash, ref_hash FROM narinfo_refs ORDER BY 1, 2, 3`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var cache int
		var h, r string
		if err := rows.Scan(&cache, &h, &r); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprint(cache, " ", strings.TrimLeft(h, "0"), " ", strings.TrimLeft(r, "0")))
	}
	want := []string{"1 1 2", "1 1 9", "1 2 3", "1 4 1", "2 1 2"}
	if !slices.Equal(got, want) {
		t.Fatalf("references after migration (cache, hash, reference): %q, want %q", got, want)
	}
	list, err := s.ListCaches(ctx)
	if err != nil || len(list) != 2 || list[0].Policy != (store.Policy{}) || !list[0].LastGC.IsZero() {
		t.Fatalf("caches after migration: %+v, %v", list, err)
	}
	// The migrated references make closures: 4 keeps 1, 2 and 3.
	if err := s.Touch(ctx, 1, []string{v1Hash(4)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	res, err := s.Collect(ctx, store.CollectPlan{CacheID: 1, UsedSince: time.Now().Add(-time.Hour), DryRun: true})
	if err != nil || res.KeptPaths != 4 || len(res.Removed) != 0 {
		t.Fatalf("dry run after migration: %+v, %v; want 4 paths kept", res, err)
	}
}

// explain returns the details of the EXPLAIN QUERY PLAN of q with args on
// conn.
func explain(t *testing.T, conn *sql.Conn, q string, args ...any) string {
	t.Helper()
	rows, err := conn.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatalf("explain %s: %v", q, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "\n")
}

// TestCollectQueryPlans checks that the closure follows references by the
// (cache_id, hash) primary key of narinfo_refs, one queued hash at a time,
// and that the batches of Collect search ranges of indexes.
func TestCollectQueryPlans(t *testing.T) {
	s, _ := openTemp(t)
	conn, err := s.g.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), scratchSQL); err != nil {
		t.Fatal(err)
	}
	step := "RECURSIVE STEP\nSCAN c\nSEARCH r USING PRIMARY KEY (cache_id=? AND hash=?)"
	for _, q := range []struct {
		name, query string
		args        []any
		want        []string
	}{
		{"closure of the roots", closureSQL(rootsSeed, false), []any{1, 2}, []string{step}},
		{"closure of a prefix", closureSQL(prefixSeed, false), []any{1, 2}, []string{step}},
		{"closure of what came late", closureSQL(lateSeed, true), []any{1, 2, 3}, []string{step,
			"SEARCH narinfos USING INTEGER PRIMARY KEY (rowid>?)"}},
		{"remove narinfos", `DELETE FROM narinfos AS ni WHERE ni.cache_id = ?1 AND ni.hash > ?4 AND ni.hash <= ?5 AND ` +
			removable, []any{1, 2, 3, "a", "b"},
			[]string{"SEARCH ni USING INDEX sqlite_autoindex_narinfos_1 (cache_id=? AND hash>? AND hash<?)"}},
		{"usage", usageSQL, []any{1}, []string{"SEARCH cn USING COVERING INDEX cache_nars_key (cache_id=?)",
			"SEARCH ni EXISTS USING COVERING INDEX narinfos_nar_id (nar_id=? AND cache_id=?)"}},
	} {
		plan := explain(t, conn, q.query, q.args...)
		for _, w := range q.want {
			if !strings.Contains(plan, w) {
				t.Errorf("%s: plan lacks %q:\n%s", q.name, w, plan)
			}
		}
		if strings.Contains(plan, "SCAN narinfo") {
			t.Errorf("%s: plan scans a table:\n%s", q.name, plan)
		}
	}
}

// dumpTables returns every row of every table of the database, in order.
func dumpTables(t *testing.T, s *Store) string {
	t.Helper()
	ctx := t.Context()
	rows, err := s.r.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := scanStrings(rows)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, table := range tables {
		rows, err := s.r.QueryContext(ctx, `SELECT * FROM "`+table+`" ORDER BY 1, 2`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		for i := range vals {
			vals[i] = new(any)
		}
		fmt.Fprintf(&b, "%s %q\n", table, cols)
		for rows.Next() {
			if err := rows.Scan(vals...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				fmt.Fprintf(&b, " %v", *v.(*any))
			}
			b.WriteByte('\n')
		}
		rows.Close()
	}
	return b.String()
}

// TestCollectDryRunChangesNoRow checks that dry runs of Collect, with a
// retention, a bound that drops roots and links to remove, leave every row
// of every table as it was.
func TestCollectDryRunChangesNoRow(t *testing.T) {
	ctx := t.Context()
	s, _ := openTemp(t)
	s.collectBatch = 2
	c := createCache(t, s, "main")
	var prev string
	for i := range 8 {
		n, err := s.AddNar(ctx, c.ID, testNar(fmt.Sprint("n", i)), fmt.Sprint("nar/", i))
		if err != nil {
			t.Fatal(err)
		}
		ni := testNarInfo(c.ID, fmt.Sprint("p", i), n.FileHash)
		ni.CreatedAt = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		if i%3 != 0 {
			ni.References = append(ni.References, prev)
		}
		prev = strings.TrimPrefix(ni.StorePath, "/nix/store/")
		if _, err := s.PutNarInfo(ctx, ni, replace(ni)); err != nil {
			t.Fatal(err)
		}
		if i%4 == 1 {
			if err := s.Touch(ctx, c.ID, []string{ni.Hash}, time.Now().Add(-time.Duration(i)*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.AddNar(ctx, c.ID, testNar("lone"), "nar/lone"); err != nil {
		t.Fatal(err)
	}
	pin := store.Pin{CacheID: c.ID, Name: "app", Hash: fmt.Sprintf("%032s", "p7"), StorePath: "/nix/store/x"}
	if err := s.AddPin(ctx, pin, store.PinRule{KeepRevisions: 1}); err != nil {
		t.Fatal(err)
	}
	before := dumpTables(t, s)
	for _, plan := range []store.CollectPlan{
		{UsedSince: time.Now().Add(-time.Hour), LinkedBefore: time.Now().Add(time.Hour)},
		{UsedSince: time.Now().Add(-time.Hour), MaxSize: 1, Pinned: []string{pin.Hash}},
		{MaxSize: 3, LinkedBefore: time.Now().Add(time.Hour)},
	} {
		plan.CacheID, plan.DryRun = c.ID, true
		res, err := s.Collect(ctx, plan)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Removed) == 0 {
			t.Fatalf("dry run %+v removes nothing: %+v", plan, res)
		}
		if after := dumpTables(t, s); after != before {
			t.Fatalf("dry run %+v changed the database:\nbefore:\n%s\nafter:\n%s", plan, before, after)
		}
	}
}

package postgres

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/testserver"
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

// v1Hash returns the store path hash of the i-th narinfo of the version 1
// fixture.
func v1Hash(i int) string { return fmt.Sprintf("%032d", i) }

// v1Ref returns the reference to the store path of the i-th narinfo of the
// version 1 fixture.
func v1Ref(i int) string { return v1Hash(i) + "-p" + fmt.Sprint(i) }

// createV1 makes a version 1 schema at dsn from the released schema and
// fills it as version 1 of larder did: caches main (1) and other (2), a
// NAR linked to both, narinfos 1 to 4 in main (1 refers to itself, 2 and to
// a path main does not hold, twice; 2 to 3; 3 to nothing; 4 to 1) and
// narinfo 1 in other (referring to 2).
func createV1(t *testing.T, dsn string) {
	t.Helper()
	schema, err := os.ReadFile(v1Schema)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	at := time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC)
	_, err = conn.Exec(t.Context(), `CREATE TABLE schema_migrations (version integer PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now());
		INSERT INTO schema_migrations (version) VALUES (1);`+string(schema))
	if err != nil {
		t.Fatalf("make version 1 schema: %v", err)
	}
	batch := &pgx.Batch{}
	batch.Queue(`INSERT INTO caches (name, private, priority, secret_key, public_key, created_at)
		VALUES ('main', false, 10, 's', 'p', $1), ('other', false, 10, 's', 'p', $1)`, at)
	batch.Queue(`INSERT INTO nars (file_hash, file_size, compression, nar_hash, nar_size, md5, blob_key, created_at)
		VALUES ('f1', 100, 'xz', 'nh', 1000, '', 'nar/1', $1)`, at)
	batch.Queue(`INSERT INTO cache_nars VALUES (1, 1, 'nar/1.nar.xz', $1), (2, 1, 'nar/1.nar.xz', $1)`, at)
	for i, ni := range []struct {
		cache, path int
		refs        []string
	}{
		{1, 1, []string{v1Ref(1), v1Ref(2), v1Ref(9), v1Ref(9)}},
		{1, 2, []string{v1Ref(3)}},
		{1, 3, []string{}},
		{1, 4, []string{v1Ref(1)}},
		{2, 1, []string{v1Ref(2)}},
	} {
		batch.Queue(`INSERT INTO narinfos (seq, cache_id, hash, key, store_path, nar_id, nar_hash, nar_size, refs,
				deriver, system, ca, sigs, created_at)
			VALUES ($1, $2, $3, $3 || '.narinfo', '/nix/store/' || $4, 1, 'nh', 1000, $5, '', '', '', '{}', $6)`,
			i+1, ni.cache, v1Hash(ni.path), v1Ref(ni.path), ni.refs, at)
	}
	batch.Queue(`UPDATE narinfo_seq SET last = 5`)
	if err := conn.SendBatch(t.Context(), batch).Close(); err != nil {
		t.Fatalf("make version 1 schema: %v", err)
	}
}

func TestMigrateFromVersion1(t *testing.T) {
	ctx := t.Context()
	dsn := inSchema(t, testserver.Postgres(t))
	createV1(t, dsn)
	s := openStore(t, dsn)
	wantAllVersions(t, dsn)
	var got []string
	err := s.do(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT cache_id || ' ' || ltrim(hash, '0') || ' ' || ltrim(ref_hash, '0')
			FROM narinfo_refs ORDER BY cache_id, hash, ref_hash`)
		if err != nil {
			return err
		}
		got, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatal(err)
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

// TestCollectQueryPlans checks, on a cache of planNarInfos narinfos, that
// the closure follows references by the (cache_id, hash) primary key of
// narinfo_refs, one queued hash at a time, and that the batches of Collect
// search ranges of indexes. Finding the roots reads every narinfo of the
// cache, which here is every narinfo.
func TestCollectQueryPlans(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a large cache")
	}
	s := openStore(t, testserver.Postgres(t))
	cacheID, _ := fill(t, s, planNarInfos)
	step := "Index Only Scan using narinfo_refs_pkey on narinfo_refs r"
	since := time.Now().Add(-time.Hour)
	queries := []struct {
		name  string
		query string
		args  []any
		want  []string
	}{
		{"closure of the roots", closureSQL(rootsSeed, false), []any{cacheID, since}, []string{"Recursive Union", step}},
		{"closure of a prefix", closureSQL(prefixSeed, false), []any{cacheID, 10}, []string{"Recursive Union", step}},
		{"closure of what came late", closureSQL(lateSeed, true), []any{cacheID, planNarInfos, since},
			[]string{step, "Index Scan using narinfos_pkey on narinfos"}},
		{"remove narinfos", `DELETE FROM narinfos ni WHERE ni.cache_id = $1 AND ni.hash > $4 AND ni.hash <= $5 AND ` +
			removable, []any{cacheID, planNarInfos, since, "a", "b"},
			[]string{"Index Scan using narinfos_cache_id_hash_key on narinfos ni"}},
		// A cache of a few narinfos among many others': its narinfos are
		// found on an index that leads with cache_id (the smallest there
		// is), and its links on their primary key.
		{"usage", usageSQL, []any{cacheID + 1}, []string{"Index Only Scan using narinfos_",
			"Scan using cache_nars_pkey"}},
	}
	err := s.do(t.Context(), func(conn *pgx.Conn) error {
		if _, err := conn.Exec(t.Context(), scratchSQL); err != nil {
			return err
		}
		defer conn.Exec(context.Background(), dropScratchSQL)
		for _, q := range queries {
			rows, err := conn.Query(t.Context(), "EXPLAIN "+q.query, q.args...)
			if err != nil {
				return fmt.Errorf("explain %s: %w", q.name, err)
			}
			plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return fmt.Errorf("explain %s: %w", q.name, err)
			}
			text := strings.Join(plan, "\n")
			if testing.Verbose() {
				t.Logf("%s:\n%s", q.name, text)
			}
			for _, w := range q.want {
				if !strings.Contains(text, w) {
					t.Errorf("%s: plan lacks %q:\n%s", q.name, w, text)
				}
			}
			if strings.Contains(text, "Seq Scan on narinfo_refs") || q.name != "closure of the roots" &&
				strings.Contains(text, "Seq Scan on narinfos") {
				t.Errorf("%s: plan scans a table:\n%s", q.name, text)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// dumpTables returns every row of every table of the Store's schema, in
// order.
func dumpTables(t *testing.T, s *Store) string {
	t.Helper()
	var b strings.Builder
	err := s.do(t.Context(), func(conn *pgx.Conn) error {
		rows, err := conn.Query(t.Context(), `SELECT table_name FROM information_schema.tables
			WHERE table_schema = current_schema() ORDER BY 1`)
		if err != nil {
			return err
		}
		tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, table := range tables {
			rows, err := conn.Query(t.Context(), `SELECT t::text FROM `+pgx.Identifier{table}.Sanitize()+` t ORDER BY 1`)
			if err != nil {
				return err
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "%s\n %s\n", table, strings.Join(lines, "\n "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestCollectDryRunChangesNoRow checks that dry runs of Collect, with a
// retention, a bound that drops roots and links to remove, leave every row
// of every table as it was.
func TestCollectDryRunChangesNoRow(t *testing.T) {
	ctx := t.Context()
	s := openStore(t, inSchema(t, testserver.Postgres(t)))
	s.collectBatch = 2
	c := createCache(t, s, "main")
	var prev string
	for i := range 8 {
		n := addNar(t, s, c.ID, fmt.Sprint("n", i))
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
	addNar(t, s, c.ID, "lone")
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

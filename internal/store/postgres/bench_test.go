package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/testserver"
)

const (
	// benchNarInfos is how many narinfos the benchmarks search.
	benchNarInfos = 100_000
	// planNarInfos is how many narinfos TestQueryPlans fills a cache with:
	// enough for the server to prefer indexes, few enough to be quick.
	planNarInfos = 20_000
)

// fill adds to s a cache holding n narinfos, each with its own Nar and the
// rows of its references, n objects and n/5 tokens, copied in and
// analysed, and returns the cache ID and the narinfo hashes.
func fill(tb testing.TB, s *Store, n int) (int64, []string) {
	tb.Helper()
	ctx := context.Background()
	c := createCache(tb, s, "bench")
	hashes := make([]string, n)
	at := time.Now().UTC().Truncate(time.Second)
	nars, links, infos, objects := make([][]any, n), make([][]any, n), make([][]any, n), make([][]any, n)
	var tokens [][]any
	for i := range n {
		fh := fmt.Sprintf("%052d", i)
		hashes[i] = fmt.Sprintf("%032d", i)
		id := int64(i + 1)
		key := "nar/" + fh + ".nar.zst"
		nars[i] = []any{id, fh, 1000, "zstd", fh, 5000, fmt.Sprintf("%032x", i), key, at}
		links[i] = []any{c.ID, id, key, at}
		refs := []string{fmt.Sprintf("%032d-glibc-2.40", i+1), hashes[i] + "-hello-2.12"}
		sigs := []string{"cache.nixos.org-1:" + fmt.Sprintf("%086d", i) + "=="}
		infos[i] = []any{id, c.ID, hashes[i], hashes[i] + ".narinfo", "/nix/store/" + hashes[i] + "-hello-2.12",
			id, fh, 5000, refs, hashes[i] + "-hello-2.12.drv", "x86_64-linux", "", sigs, at}
		objects[i] = []any{c.ID, "log/" + hashes[i] + ".drv", "text/plain", 10, "", "", "", []byte("{}"), "log/x", at}
		if i%10 == 0 {
			tokens = append(tokens, []any{hashes[i], nil, "", "*", "read", "", at},
				[]any{nil, "LK" + hashes[i], "secret", "*", "read", "", at})
		}
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		for _, t := range []struct {
			table   string
			columns []string
			rows    [][]any
		}{
			{"nars", []string{"id", "file_hash", "file_size", "compression", "nar_hash", "nar_size", "md5", "blob_key", "created_at"}, nars},
			{"cache_nars", []string{"cache_id", "nar_id", "key", "created_at"}, links},
			{"narinfos", []string{"seq", "cache_id", "hash", "key", "store_path", "nar_id", "nar_hash", "nar_size", "refs",
				"deriver", "system", "ca", "sigs", "created_at"}, infos},
			{"objects", []string{"cache_id", "key", "content_type", "size", "sha256", "md5", "etag", "metadata",
				"blob_key", "created_at"}, objects},
			{"tokens", []string{"hash", "access_key_id", "secret", "scope", "perm", "description", "created_at"}, tokens},
		} {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.table}, t.columns, pgx.CopyFromRows(t.rows)); err != nil {
				return fmt.Errorf("copy into %s: %w", t.table, err)
			}
		}
		// What PutNarInfo writes with each narinfo.
		_, err := tx.Exec(ctx, `INSERT INTO narinfo_refs (cache_id, hash, ref_hash)
			SELECT DISTINCT ni.cache_id, ni.hash, left(r.ref, 32) FROM narinfos ni, unnest(ni.refs) AS r (ref)
			WHERE left(r.ref, 32) <> ni.hash`)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE narinfo_seq SET last = $1`, n)
		return err
	})
	if err == nil {
		_, err = s.exec(ctx, `ANALYZE`)
	}
	if err != nil {
		tb.Fatalf("fill %d narinfos: %v", n, err)
	}
	return c.ID, hashes
}

// benchStore opens a Store on a new database filled by fill.
func benchStore(b *testing.B) (*Store, int64, []string) {
	s := openStore(b, testserver.Postgres(b))
	cacheID, hashes := fill(b, s, benchNarInfos)
	return s, cacheID, hashes
}

// BenchmarkGetNarInfo looks narinfos up by hash in a cache of
// benchNarInfos, one at a time and from as many goroutines as GOMAXPROCS.
func BenchmarkGetNarInfo(b *testing.B) {
	s, cacheID, hashes := benchStore(b)
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		i := 0
		for b.Loop() {
			h := hashes[(i*7919)%len(hashes)]
			i++
			if _, _, err := s.GetNarInfo(ctx, cacheID, h); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				h := hashes[(i*7919)%len(hashes)]
				i++
				if _, _, err := s.GetNarInfo(ctx, cacheID, h); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkPutNarInfo(b *testing.B) {
	s, cacheID, _ := benchStore(b)
	ctx := context.Background()
	fh := fmt.Sprintf("%052d", 0)
	i := 0
	for b.Loop() {
		ni := testNarInfo(cacheID, fmt.Sprint("new", i), fh)
		i++
		if _, err := s.PutNarInfo(ctx, ni, replace(ni)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkListKeys(b *testing.B) {
	s, cacheID, hashes := benchStore(b)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		after := hashes[(i*7919)%len(hashes)]
		i++
		list, err := s.ListKeys(ctx, cacheID, "", after, 1000)
		if err != nil || len(list) == 0 {
			b.Fatalf("list keys: %d entries, %v", len(list), err)
		}
	}
}

// TestQueryPlans checks, on a cache of planNarInfos narinfos, NARs and
// objects, that the hot paths search indexes and that ListKeys merges
// three index range scans rather than sorting a cache's keys. The plans
// are the generic ones the server settles on for prepared statements.
func TestQueryPlans(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a large cache")
	}
	s := openStore(t, testserver.Postgres(t))
	cacheID, _ := fill(t, s, planNarInfos)
	queries := []struct {
		name  string
		query string
		args  []any
		want  []string
	}{
		{"get narinfo", getNarInfoSQL, []any{cacheID, "x"}, []string{"Index Scan using narinfos_cache_id_hash_key"}},
		{"cache nar", cacheNarSQL, []any{cacheID, "x"}, []string{"Index Scan using nars_file_hash_key"}},
		{"lookup token", lookupTokenSQL, []any{"x"}, []string{"tokens_hash_key"}},
		{"lookup access key", lookupAccessKeySQL, []any{"x"}, []string{"tokens_access_key_id_key"}},
		{"get object", getObjectSQL, []any{cacheID, "x"}, []string{"Index Scan using objects_pkey"}},
		{"list keys from", listKeysFrom, []any{cacheID, "a", 1000}, mergedScans},
		{"list keys after", listKeysAfter, []any{cacheID, "a", 1000}, mergedScans},
		{"list keys from, bounded", listKeysFromBounded, []any{cacheID, "a", 1000, "b"}, mergedScans},
		{"list keys after, bounded", listKeysAfterBounded, []any{cacheID, "a", 1000, "b"}, mergedScans},
	}
	for _, q := range queries {
		plan := genericPlan(t, s, q.query, q.args)
		text := strings.Join(plan, "\n")
		if testing.Verbose() {
			t.Logf("%s:\n%s", q.name, text)
		}
		for _, want := range q.want {
			if !strings.Contains(text, want) {
				t.Errorf("%s: plan lacks %q:\n%s", q.name, want, text)
			}
		}
		for _, node := range planNodes(plan) {
			if strings.HasPrefix(node, "Seq Scan") || node == "Sort" {
				t.Errorf("%s: plan has a %s:\n%s", q.name, node, text)
			}
		}
	}
}

// planNodes returns the names of the nodes of an EXPLAIN plan, such as
// "Index Scan using nars_pkey on nars n", in order.
func planNodes(plan []string) []string {
	var nodes []string
	for _, line := range plan {
		name, _, ok := strings.Cut(line, "  (cost=")
		if ok {
			nodes = append(nodes, strings.TrimPrefix(strings.TrimSpace(name), "->  "))
		}
	}
	return nodes
}

// mergedScans are what the plan of ListKeys must have.
var mergedScans = []string{
	"Merge Append",
	"Index Scan using narinfos_cache_id_key_key",
	"Index Scan using cache_nars_cache_id_key_key",
	"Index Scan using objects_pkey",
}

// genericPlan returns the plan the server settles on for query as a
// prepared statement: a generic one, for any parameters, as it does after
// five executions.
func genericPlan(t *testing.T, s *Store, query string, args []any) []string {
	t.Helper()
	var plan []string
	err := s.do(t.Context(), func(conn *pgx.Conn) error {
		ctx := t.Context()
		_, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan; PREPARE explained AS `+query)
		if err != nil {
			return err
		}
		defer conn.Exec(context.Background(), `DEALLOCATE explained; RESET plan_cache_mode`)
		params := make([]string, len(args))
		for i := range args {
			params[i] = fmt.Sprint("$", i+1)
		}
		rows, err := conn.Query(ctx, "EXPLAIN EXECUTE explained("+strings.Join(params, ", ")+")",
			append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
		if err != nil {
			return err
		}
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatalf("explain %s: %v", query, err)
	}
	return plan
}

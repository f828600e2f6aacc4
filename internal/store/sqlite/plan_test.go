package sqlite

import (
	"strings"
	"testing"
)

// queryPlan returns the details of the EXPLAIN QUERY PLAN of q with args.
func queryPlan(t *testing.T, s *Store, q string, args ...any) []string {
	t.Helper()
	rows, err := s.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q, args...)
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
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestQueriesUseIndexes checks that the hot paths and the queries that
// select a few rows of a large table search an index rather than scan a
// table or sort.
func TestQueriesUseIndexes(t *testing.T) {
	s, _ := openTemp(t)
	queries := []struct {
		name  string
		query string
		args  []any
	}{
		{"get narinfo", getNarInfoSQL, []any{1, "x"}},
		{"cache nar", cacheNarSQL, []any{1, "x"}},
		{"lookup token", lookupTokenSQL, []any{"x"}},
		{"lookup access key", lookupAccessKeySQL, []any{"x"}},
		{"get object", getObjectSQL, []any{1, "x"}},
		{"list keys from", listKeysSQL(">="), []any{1, "x", 10}},
		{"list keys after", listKeysSQL(">"), []any{1, "x", 10}},
		{"held for", heldForSQL, []any{1, "x"}},
		{"expire held", `DELETE FROM held_narinfos WHERE created_at < ?`, []any{1}},
		{"delete cache tokens", `DELETE FROM tokens WHERE scope = ?`, []any{"x"}},
		{"unlink narinfos", `DELETE FROM narinfos WHERE nar_id = ? AND cache_id = ?`, []any{1, 1}},
	}
	for _, q := range queries {
		for _, detail := range queryPlan(t, s, q.query, q.args...) {
			if strings.HasPrefix(detail, "SCAN") || strings.Contains(detail, "TEMP B-TREE") {
				t.Errorf("%s: query plan has %q", q.name, detail)
			}
		}
	}
}

// TestNarDownloadPlans checks that the queries of a download of a NAR
// file stored as chunks start from the file's hash: one of them once
// walked every NAR of the cache, 9 ms a download at 50,000 NARs.
func TestNarDownloadPlans(t *testing.T) {
	s, _ := openTemp(t)
	for _, q := range []struct {
		name, query, first string
		args               []any
	}{
		{"cache packed nar", cachePackedNarSQL, "SEARCH n USING INDEX nars_packed_hash (packed_hash=?)", []any{1, "x"}},
		{"nar chunks", narChunksSQL, "SEARCH n USING ", []any{"x"}},
	} {
		plan := queryPlan(t, s, q.query, q.args...)
		if len(plan) == 0 || !strings.HasPrefix(plan[0], q.first) {
			t.Errorf("%s: plan starts %q, want %q:\n%s", q.name, plan, q.first, strings.Join(plan, "\n"))
		}
		for _, detail := range plan {
			if strings.HasPrefix(detail, "SCAN") {
				t.Errorf("%s: query plan has %q", q.name, detail)
			}
		}
	}
}

// TestListKeysMergesIndexScans checks that ListKeys merges three range
// scans, each on the (cache_id, key) index of its table, so that a page
// costs its size, not the size of the cache.
func TestListKeysMergesIndexScans(t *testing.T) {
	s, _ := openTemp(t)
	for _, op := range []string{">=", ">"} {
		plan := strings.Join(queryPlan(t, s, listKeysSQL(op), 1, "x", 10), "\n")
		for _, want := range []string{
			"MERGE (UNION ALL)",
			"SEARCH narinfos USING INDEX narinfos_key (cache_id=? AND key>?)",
			"SEARCH cn USING INDEX cache_nars_key (cache_id=? AND key>?)",
			"SEARCH n USING INTEGER PRIMARY KEY (rowid=?)",
			"SEARCH objects USING PRIMARY KEY (cache_id=? AND key>?)",
		} {
			if !strings.Contains(plan, want) {
				t.Errorf("list keys %s: plan lacks %q:\n%s", op, want, plan)
			}
		}
	}
}

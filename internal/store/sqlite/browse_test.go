package sqlite

import (
	"strings"
	"testing"
)

// TestBrowseQueriesUseIndexes checks that the dashboard's queries of a
// cache's paths read a range of an index, whatever the size of the cache:
// no scan of a table, and no sort but of the referrers of one path.
func TestBrowseQueriesUseIndexes(t *testing.T) {
	s, _ := openTemp(t)
	for _, q := range []struct {
		name, query string
		args        []any
		want        string
	}{
		{"recent", recentSQL, []any{1, 10}, "USING INDEX narinfos_created_at (cache_id=?)"},
		{"find by hash", findByHashSQL, []any{1, "a", "b", 10}, "USING INDEX sqlite_autoindex_narinfos_1 (cache_id=? AND hash>? AND hash<?)"},
		{"find by name", findByNameSQL, []any{1, "a", "b", 10}, "USING INDEX narinfos_name (cache_id=? AND <expr>>? AND <expr><?)"},
		{"referrers", referrersSQL, []any{1, "a", 10}, "USING COVERING INDEX narinfo_refs_ref_hash (cache_id=? AND ref_hash=?)"},
	} {
		plan := queryPlan(t, s, q.query, q.args...)
		joined := strings.Join(plan, "\n")
		if !strings.Contains(joined, q.want) {
			t.Errorf("%s: plan lacks %q:\n%s", q.name, q.want, joined)
		}
		for _, detail := range plan {
			sorts := strings.Contains(detail, "TEMP B-TREE") && q.name != "referrers"
			if strings.HasPrefix(detail, "SCAN") || sorts {
				t.Errorf("%s: query plan has %q", q.name, detail)
			}
		}
	}
}

package postgres

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/testserver"
)

// localeKeys are keys whose byte order differs from the order of a
// linguistic collation such as en-US, which ignores case and punctuation
// at first and sorts accented letters next to plain ones.
var localeKeys = []string{"B", "a", "a-b", "a/b", "a_b", "ab", "A", "é", "f", "Z", "~x", "0", "\uff61", "\U0001F600"}

// TestListKeysByteOrderNotLocale checks that keys list in byte order on a
// database whose default collation orders them differently.
func TestListKeysByteOrderNotLocale(t *testing.T) {
	dsn := testserver.Postgres(t)
	s := openStore(t, dsn)
	ctx := t.Context()
	c := createCache(t, s, "main")
	for _, key := range localeKeys {
		if err := s.PutObject(ctx, store.Object{CacheID: c.ID, Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	want := slices.Sorted(slices.Values(localeKeys))
	var byLocale []string
	err := s.do(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT key FROM objects ORDER BY key COLLATE "default"`)
		if err != nil {
			return err
		}
		byLocale, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(byLocale, want) {
		t.Logf("the database's default collation orders these keys by bytes too: %q", byLocale)
	}
	got, err := s.ListKeys(ctx, c.ID, "", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range got {
		keys = append(keys, e.Key)
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("list keys: %q, want byte order %q (the database's default orders %q)", keys, want, byLocale)
	}
	// Paging resumes after a key by bytes too.
	var paged []string
	for after := ""; ; {
		page, err := s.ListKeys(ctx, c.ID, "", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			paged = append(paged, e.Key)
		}
		after = page[len(page)-1].Key
	}
	if !slices.Equal(paged, want) {
		t.Fatalf("list keys by pages of 2: %q, want byte order %q", paged, want)
	}
	caches, err := s.ListCaches(ctx)
	if err != nil || len(caches) != 1 {
		t.Fatalf("list caches: %+v, %v", caches, err)
	}
}

func TestPrefixEnd(t *testing.T) {
	prefixes := []string{"", "a", "a/", "az", "a\u007f", "é", "\uD7FF", "\uFFFD", "\uFFFF", "\U0001F600",
		"a\U0010FFFF", "\U0010FFFF", "\U0010FFFF\U0010FFFF", "x\U0010FFFF\U0010FFFF"}
	var keys []string
	for _, p := range prefixes {
		for _, tail := range []string{"", "\x00", "a", "\u007f", "\u0080", "\uE000", "\U0010FFFF", "\U0010FFFF/z"} {
			keys = append(keys, p+tail)
		}
	}
	keys = append(keys, "b", "a0", "ê", "\uE000", "\U0001F601", "y", "{")
	for _, p := range prefixes {
		end, ok := prefixEnd(p)
		if ok != strings.ContainsFunc(p, func(r rune) bool { return r != utf8.MaxRune }) {
			t.Errorf("prefixEnd(%q) reports %v", p, ok)
		}
		if ok && !utf8.ValidString(end) {
			t.Errorf("prefixEnd(%q) = %q, not UTF-8", p, end)
		}
		for _, k := range keys {
			in := k >= p && (!ok || k < end)
			if in != strings.HasPrefix(k, p) {
				t.Errorf("prefix %q, end %q (%v): key %q is in the range: %v", p, end, ok, k, in)
			}
		}
	}
	if _, ok := prefixEnd("a\xff"); ok {
		t.Error("prefixEnd of a string that is not UTF-8 reports an end")
	}
}

package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// cacheTests check the CacheStore contract.
var cacheTests = []metaTest{
	{"CacheCreateGet", testCacheCreateGet},
	{"CacheCreateAssigns", testCacheCreateAssigns},
	{"CacheCreateDuplicate", testCacheCreateDuplicate},
	{"CacheCreateConcurrent", testCacheCreateConcurrent},
	{"CacheGetMissing", testCacheGetMissing},
	{"CacheList", testCacheList},
	{"CacheDelete", testCacheDelete},
	{"CacheIDsNeverReused", testCacheIDsNeverReused},
}

// tokenTests check the TokenStore contract.
var tokenTests = []metaTest{
	{"TokenGlobal", testTokenGlobal},
	{"TokenScoped", testTokenScoped},
	{"TokenTimes", testTokenTimes},
	{"TokenDuplicate", testTokenDuplicate},
	{"TokenUnknownCache", testTokenUnknownCache},
	{"TokenLookupMissing", testTokenLookupMissing},
	{"TokenList", testTokenList},
	{"TokenDelete", testTokenDelete},
	{"TokenDeletedWithCache", testTokenDeletedWithCache},
}

// normCache returns c with its time normalised for comparison.
func normCache(c store.Cache) store.Cache {
	c.CreatedAt = sec(c.CreatedAt)
	return c
}

// mustCache fails t unless got equals want, times to the second.
func mustCache(t *testing.T, what string, got, want store.Cache) {
	t.Helper()
	mustUTC(t, what, got.CreatedAt)
	if normCache(got) != normCache(want) {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

func testCacheCreateGet(t *testing.T, s store.MetaStore) {
	in := store.Cache{
		Name:      "main",
		Private:   true,
		Priority:  30,
		SecretKey: "main-1:c2VjcmV0IGtleQ==",
		PublicKey: "main-1:cHVibGljIGtleQ==",
	}
	before := time.Now()
	c, err := s.CreateCache(t.Context(), in)
	mustOK(t, "create cache", err)
	if c.ID <= 0 {
		t.Fatalf("create cache: ID %d, want a positive one", c.ID)
	}
	mustRecent(t, "create cache: CreatedAt", c.CreatedAt, before)
	in.ID, in.CreatedAt = c.ID, c.CreatedAt
	mustCache(t, "create cache", c, in)
	got, err := s.GetCache(t.Context(), "main")
	mustOK(t, "get cache", err)
	mustCache(t, "get cache", got, c)

	pub, err := s.CreateCache(t.Context(), store.Cache{Name: "public", Priority: -5})
	mustOK(t, "create cache public", err)
	got, err = s.GetCache(t.Context(), "public")
	mustOK(t, "get cache public", err)
	mustCache(t, "get cache public", got, pub)
	if got.Private || got.Priority != -5 || got.SecretKey != "" {
		t.Fatalf("get cache public: got %+v", got)
	}
	if pub.ID == c.ID {
		t.Fatalf("two caches share ID %d", c.ID)
	}
}

func testCacheCreateAssigns(t *testing.T, s store.MetaStore) {
	before := time.Now()
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	c, err := s.CreateCache(t.Context(), store.Cache{ID: 4242, Name: "a", CreatedAt: old})
	mustOK(t, "create cache", err)
	if c.ID == 4242 {
		t.Errorf("create cache: kept the ID handed over")
	}
	mustRecent(t, "create cache: CreatedAt", c.CreatedAt, before)
}

func testCacheCreateDuplicate(t *testing.T, s store.MetaStore) {
	first := createCache(t, s, "dup")
	_, err := s.CreateCache(t.Context(), store.Cache{Name: "dup", Private: true})
	mustExists(t, "create cache with a taken name", err)
	got, err := s.GetCache(t.Context(), "dup")
	mustOK(t, "get cache", err)
	mustCache(t, "cache after a duplicate create", got, first)
	list, err := s.ListCaches(t.Context())
	mustOK(t, "list caches", err)
	if len(list) != 1 {
		t.Fatalf("list caches: %d caches, want 1", len(list))
	}
}

func testCacheCreateConcurrent(t *testing.T, s store.MetaStore) {
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.CreateCache(t.Context(), store.Cache{Name: "race"})
		})
	}
	wg.Wait()
	created := 0
	for _, err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, store.ErrExists):
			t.Fatalf("concurrent create cache: %v", err)
		}
	}
	if created != 1 {
		t.Fatalf("concurrent create cache: %d succeeded, want 1", created)
	}
}

func testCacheGetMissing(t *testing.T, s store.MetaStore) {
	_, err := s.GetCache(t.Context(), "missing")
	mustNotFound(t, "get missing cache", err)
	createCache(t, s, "present")
	_, err = s.GetCache(t.Context(), "presen")
	mustNotFound(t, "get cache by a prefix of a name", err)
}

func testCacheList(t *testing.T, s store.MetaStore) {
	list, err := s.ListCaches(t.Context())
	mustOK(t, "list caches of an empty store", err)
	if len(list) != 0 {
		t.Fatalf("list caches of an empty store: %+v", list)
	}
	byName := map[string]store.Cache{}
	for _, name := range []string{"main", "b", "z-last", "a", "a-1", "m0"} {
		byName[name] = createCache(t, s, name)
	}
	list, err = s.ListCaches(t.Context())
	mustOK(t, "list caches", err)
	var names []string
	for _, c := range list {
		names = append(names, c.Name)
		mustCache(t, "list caches: "+c.Name, c, byName[c.Name])
	}
	want := []string{"a", "a-1", "b", "m0", "main", "z-last"}
	if !slices.Equal(names, want) {
		t.Fatalf("list caches: got %q, want %q", names, want)
	}
}

func testCacheDelete(t *testing.T, s store.MetaStore) {
	mustNotFound(t, "delete missing cache", s.DeleteCache(t.Context(), "missing"))
	createCache(t, s, "gone")
	keep := createCache(t, s, "kept")
	mustOK(t, "delete cache", s.DeleteCache(t.Context(), "gone"))
	_, err := s.GetCache(t.Context(), "gone")
	mustNotFound(t, "get deleted cache", err)
	mustNotFound(t, "delete cache twice", s.DeleteCache(t.Context(), "gone"))
	list, err := s.ListCaches(t.Context())
	mustOK(t, "list caches", err)
	if len(list) != 1 {
		t.Fatalf("list caches after delete: %+v", list)
	}
	mustCache(t, "list caches after delete", list[0], keep)
}

func testCacheIDsNeverReused(t *testing.T, s store.MetaStore) {
	a1 := createCache(t, s, "a")
	mustOK(t, "delete a", s.DeleteCache(t.Context(), "a"))
	a2 := createCache(t, s, "a")
	if a2.ID <= a1.ID {
		t.Fatalf("re-created cache got ID %d, want more than %d", a2.ID, a1.ID)
	}
	b := createCache(t, s, "b")
	mustOK(t, "delete b", s.DeleteCache(t.Context(), "b"))
	c := createCache(t, s, "c")
	if c.ID <= b.ID || c.ID <= a2.ID {
		t.Fatalf("cache after deleting the newest got ID %d, want more than %d", c.ID, b.ID)
	}
}

// newToken returns a token with the hash made from seed.
func newToken(seed string, cacheID int64, perm store.Perm) store.Token {
	return store.Token{
		Hash:        fmt.Sprintf("%064x", seed),
		CacheID:     cacheID,
		Perm:        perm,
		Description: "token " + seed,
	}
}

// createToken adds tk and fails t on error.
func createToken(t *testing.T, s store.MetaStore, tk store.Token) store.Token {
	t.Helper()
	got, err := s.CreateToken(t.Context(), tk)
	mustOK(t, "create token "+tk.Description, err)
	return got
}

// normToken returns tk with its times normalised for comparison.
func normToken(tk store.Token) store.Token {
	tk.CreatedAt = sec(tk.CreatedAt)
	tk.ExpiresAt = sec(tk.ExpiresAt)
	return tk
}

// mustToken fails t unless got equals want, times to the second.
func mustToken(t *testing.T, what string, got, want store.Token) {
	t.Helper()
	mustUTC(t, what+": CreatedAt", got.CreatedAt)
	mustUTC(t, what+": ExpiresAt", got.ExpiresAt)
	if normToken(got) != normToken(want) {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

// lookupToken looks up the token with hash and fails t on error.
func lookupToken(t *testing.T, s store.MetaStore, hash string) store.Token {
	t.Helper()
	got, err := s.LookupToken(t.Context(), hash)
	mustOK(t, "lookup token", err)
	return got
}

func testTokenGlobal(t *testing.T, s store.MetaStore) {
	in := newToken("global", 0, store.PermAdmin)
	before := time.Now()
	tk := createToken(t, s, in)
	if tk.ID <= 0 {
		t.Fatalf("create token: ID %d, want a positive one", tk.ID)
	}
	mustRecent(t, "create token: CreatedAt", tk.CreatedAt, before)
	in.ID, in.CreatedAt = tk.ID, tk.CreatedAt
	got := lookupToken(t, s, in.Hash)
	mustToken(t, "lookup global token", got, in)
	if !got.ExpiresAt.IsZero() {
		t.Fatalf("lookup global token: ExpiresAt %v, want zero", got.ExpiresAt)
	}
}

func testTokenScoped(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	createCache(t, s, "other")
	in := newToken("scoped", c.ID, store.PermWrite)
	tk := createToken(t, s, in)
	in.ID, in.CreatedAt, in.CacheName = tk.ID, tk.CreatedAt, "main"
	mustToken(t, "lookup scoped token", lookupToken(t, s, in.Hash), in)
	list, err := s.ListTokens(t.Context())
	mustOK(t, "list tokens", err)
	if len(list) != 1 {
		t.Fatalf("list tokens: %+v", list)
	}
	mustToken(t, "list tokens", list[0], in)
}

func testTokenTimes(t *testing.T, s store.MetaStore) {
	future := time.Date(2031, 7, 8, 9, 10, 11, 123456789, time.UTC)
	past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.FixedZone("east", 3*3600))
	for _, exp := range []time.Time{future, past} {
		in := newToken(exp.String(), 0, store.PermRead)
		in.ExpiresAt = exp
		tk := createToken(t, s, in)
		got := lookupToken(t, s, in.Hash)
		in.ID, in.CreatedAt = tk.ID, tk.CreatedAt
		mustToken(t, "lookup token expiring "+exp.String(), got, in)
		if !got.ExpiresAt.Equal(sec(exp)) {
			t.Fatalf("lookup token: ExpiresAt %v, want %v", got.ExpiresAt, exp)
		}
	}
}

func testTokenDuplicate(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	first := createToken(t, s, newToken("dup", 0, store.PermRead))
	_, err := s.CreateToken(t.Context(), newToken("dup", 0, store.PermAdmin))
	mustExists(t, "create token with a taken hash", err)
	_, err = s.CreateToken(t.Context(), newToken("dup", c.ID, store.PermAdmin))
	mustExists(t, "create scoped token with a taken hash", err)
	mustToken(t, "token after duplicate creates", lookupToken(t, s, first.Hash), first)
}

func testTokenUnknownCache(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "gone")
	mustOK(t, "delete cache", s.DeleteCache(t.Context(), "gone"))
	for _, id := range []int64{c.ID, c.ID + 1000} {
		_, err := s.CreateToken(t.Context(), newToken("orphan", id, store.PermRead))
		mustNotFound(t, fmt.Sprintf("create token for cache %d", id), err)
	}
	_, err := s.LookupToken(t.Context(), newToken("orphan", 0, "").Hash)
	mustNotFound(t, "lookup token refused for an unknown cache", err)
	list, err := s.ListTokens(t.Context())
	mustOK(t, "list tokens", err)
	if len(list) != 0 {
		t.Fatalf("list tokens: %+v, want none", list)
	}
}

func testTokenLookupMissing(t *testing.T, s store.MetaStore) {
	_, err := s.LookupToken(t.Context(), newToken("missing", 0, "").Hash)
	mustNotFound(t, "lookup missing token", err)
}

func testTokenList(t *testing.T, s store.MetaStore) {
	list, err := s.ListTokens(t.Context())
	mustOK(t, "list tokens of an empty store", err)
	if len(list) != 0 {
		t.Fatalf("list tokens of an empty store: %+v", list)
	}
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	var want []store.Token
	for i, scope := range []store.Cache{b, {}, a, b, {}} {
		tk := createToken(t, s, newToken(fmt.Sprint("t", i), scope.ID, store.PermRead))
		tk.CacheName = scope.Name
		want = append(want, tk)
	}
	list, err = s.ListTokens(t.Context())
	mustOK(t, "list tokens", err)
	if len(list) != len(want) {
		t.Fatalf("list tokens: %d tokens, want %d", len(list), len(want))
	}
	for i := range list {
		mustToken(t, fmt.Sprint("list tokens: token ", i), list[i], want[i])
		if i > 0 && list[i].ID <= list[i-1].ID {
			t.Fatalf("list tokens: not ordered by ID: %d after %d", list[i].ID, list[i-1].ID)
		}
	}
}

func testTokenDelete(t *testing.T, s store.MetaStore) {
	gone := createToken(t, s, newToken("gone", 0, store.PermRead))
	kept := createToken(t, s, newToken("kept", 0, store.PermRead))
	mustOK(t, "delete token", s.DeleteToken(t.Context(), gone.ID))
	_, err := s.LookupToken(t.Context(), gone.Hash)
	mustNotFound(t, "lookup deleted token", err)
	mustNotFound(t, "delete token twice", s.DeleteToken(t.Context(), gone.ID))
	mustNotFound(t, "delete unknown token", s.DeleteToken(t.Context(), kept.ID+1000))
	mustToken(t, "lookup kept token", lookupToken(t, s, kept.Hash), kept)
}

func testTokenDeletedWithCache(t *testing.T, s store.MetaStore) {
	a := createCache(t, s, "a")
	b := createCache(t, s, "b")
	ta := createToken(t, s, newToken("a", a.ID, store.PermWrite))
	tb := createToken(t, s, newToken("b", b.ID, store.PermWrite))
	tg := createToken(t, s, newToken("g", 0, store.PermAdmin))
	mustOK(t, "delete cache a", s.DeleteCache(t.Context(), "a"))
	_, err := s.LookupToken(t.Context(), ta.Hash)
	mustNotFound(t, "lookup token of deleted cache", err)
	mustNotFound(t, "delete token of deleted cache", s.DeleteToken(t.Context(), ta.ID))
	tb.CacheName = "b"
	mustToken(t, "lookup token of other cache", lookupToken(t, s, tb.Hash), tb)
	mustToken(t, "lookup global token", lookupToken(t, s, tg.Hash), tg)
	list, err := s.ListTokens(t.Context())
	mustOK(t, "list tokens", err)
	if len(list) != 2 || list[0].ID != tb.ID || list[1].ID != tg.ID {
		t.Fatalf("list tokens after deleting a cache: %+v", list)
	}
	// A cache of the same name made afterwards does not revive the token.
	createCache(t, s, "a")
	_, err = s.LookupToken(t.Context(), ta.Hash)
	mustNotFound(t, "lookup token after re-creating its cache", err)
}

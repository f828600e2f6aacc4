package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// tokenTests check the TokenStore contract.
var tokenTests = []metaTest{
	{"TokenHTTP", testTokenHTTP},
	{"TokenAccessKey", testTokenAccessKey},
	{"TokenScopeVerbatim", testTokenScopeVerbatim},
	{"TokenTimes", testTokenTimes},
	{"TokenDuplicate", testTokenDuplicate},
	{"TokenKindRequired", testTokenKindRequired},
	{"TokenLookupMissing", testTokenLookupMissing},
	{"TokenList", testTokenList},
	{"TokenDelete", testTokenDelete},
	{"TokenDeletedWithCache", testTokenDeletedWithCache},
	{"TokenKeptByMissingCacheDelete", testTokenKeptByMissingCacheDelete},
}

// newToken returns an HTTP token with the hash made from seed.
func newToken(seed, scope string, perm store.Perm) store.Token {
	return store.Token{
		Hash:        fmt.Sprintf("%064x", seed),
		Scope:       scope,
		Perm:        perm,
		Description: "token " + seed,
	}
}

// newAccessKey returns an S3 access key with the ID and secret made from
// seed.
func newAccessKey(seed, scope string, perm store.Perm) store.Token {
	return store.Token{
		AccessKeyID: "LK" + padHash(fmt.Sprintf("%X", seed), 18),
		Secret:      fmt.Sprintf("%040x", "secret "+seed)[:40],
		Scope:       scope,
		Perm:        perm,
		Description: "access key " + seed,
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

// lookupToken looks up the HTTP token with hash and fails t on error.
func lookupToken(t *testing.T, s store.MetaStore, hash string) store.Token {
	t.Helper()
	got, err := s.LookupToken(t.Context(), hash)
	mustOK(t, "lookup token", err)
	return got
}

// lookupAccessKey looks up the S3 key with the access key ID and fails t on
// error.
func lookupAccessKey(t *testing.T, s store.MetaStore, id string) store.Token {
	t.Helper()
	got, err := s.LookupAccessKey(t.Context(), id)
	mustOK(t, "lookup access key "+id, err)
	return got
}

// mustTokens fails t unless ListTokens returns exactly want, in order.
func mustTokens(t *testing.T, what string, s store.MetaStore, want []store.Token) {
	t.Helper()
	list, err := s.ListTokens(t.Context())
	mustOK(t, what, err)
	if len(list) != len(want) {
		t.Fatalf("%s: %d tokens %+v, want %d", what, len(list), list, len(want))
	}
	for i := range list {
		mustToken(t, fmt.Sprint(what, ": token ", i), list[i], want[i])
	}
}

func testTokenHTTP(t *testing.T, s store.MetaStore) {
	in := newToken("http", "*", store.PermAdmin)
	before := time.Now()
	given := in
	given.ID, given.CreatedAt = 4242, time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	tk := createToken(t, s, given)
	if tk.ID <= 0 || tk.ID == 4242 {
		t.Fatalf("create token: ID %d, want a positive one assigned by the store", tk.ID)
	}
	mustRecent(t, "create token: CreatedAt", tk.CreatedAt, before)
	in.ID, in.CreatedAt = tk.ID, tk.CreatedAt
	mustToken(t, "create token", tk, in)
	got := lookupToken(t, s, in.Hash)
	mustToken(t, "lookup token", got, in)
	if !got.ExpiresAt.IsZero() || got.AccessKeyID != "" || got.Secret != "" {
		t.Fatalf("lookup token: got %+v, want no expiry, access key ID or secret", got)
	}
	_, err := s.LookupAccessKey(t.Context(), in.Hash)
	mustNotFound(t, "lookup access key by a token hash", err)
	_, err = s.LookupAccessKey(t.Context(), "")
	mustNotFound(t, "lookup access key \"\" with an HTTP token stored", err)
}

func testTokenAccessKey(t *testing.T, s store.MetaStore) {
	in := newAccessKey("s3", "main", store.PermWrite)
	in.ExpiresAt = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	before := time.Now()
	tk := createToken(t, s, in)
	if tk.ID <= 0 {
		t.Fatalf("create access key: ID %d, want a positive one", tk.ID)
	}
	mustRecent(t, "create access key: CreatedAt", tk.CreatedAt, before)
	in.ID, in.CreatedAt = tk.ID, tk.CreatedAt
	mustToken(t, "create access key", tk, in)
	got := lookupAccessKey(t, s, in.AccessKeyID)
	mustToken(t, "lookup access key", got, in)
	if got.Hash != "" || got.Secret != in.Secret {
		t.Fatalf("lookup access key: got %+v, want no hash and the secret kept", got)
	}
	_, err := s.LookupToken(t.Context(), in.AccessKeyID)
	mustNotFound(t, "lookup token by an access key ID", err)
	_, err = s.LookupToken(t.Context(), "")
	mustNotFound(t, "lookup token \"\" with an access key stored", err)
	_, err = s.LookupAccessKey(t.Context(), in.Secret)
	mustNotFound(t, "lookup access key by its secret", err)
	mustTokens(t, "list tokens", s, []store.Token{got})
}

func testTokenScopeVerbatim(t *testing.T, s store.MetaStore) {
	createCache(t, s, "main")
	scopes := []string{"main", "*", "ci-*", "[a-c]?x", "no-such-cache", "Main", " main", "ünï-*", ""}
	var want []store.Token
	for i, scope := range scopes {
		for _, tk := range []store.Token{
			newToken(fmt.Sprint("scope", i), scope, store.PermRead),
			newAccessKey(fmt.Sprint("scope", i), scope, store.PermRead),
		} {
			got := createToken(t, s, tk)
			tk.ID, tk.CreatedAt = got.ID, got.CreatedAt
			mustToken(t, fmt.Sprintf("create token with scope %q", scope), got, tk)
			want = append(want, tk)
		}
		mustToken(t, fmt.Sprintf("lookup token with scope %q", scope),
			lookupToken(t, s, want[2*i].Hash), want[2*i])
		mustToken(t, fmt.Sprintf("lookup access key with scope %q", scope),
			lookupAccessKey(t, s, want[2*i+1].AccessKeyID), want[2*i+1])
	}
	mustTokens(t, "list tokens", s, want)
}

func testTokenTimes(t *testing.T, s store.MetaStore) {
	future := time.Date(2031, 7, 8, 9, 10, 11, 123456789, time.UTC)
	past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.FixedZone("east", 3*3600))
	for _, exp := range []time.Time{future, past} {
		in := newToken(exp.String(), "*", store.PermRead)
		in.ExpiresAt = exp
		tk := createToken(t, s, in)
		got := lookupToken(t, s, in.Hash)
		in.ID, in.CreatedAt = tk.ID, tk.CreatedAt
		mustToken(t, "lookup token expiring "+exp.String(), got, in)
		if !got.ExpiresAt.Equal(sec(exp)) {
			t.Fatalf("lookup token: ExpiresAt %v, want %v", got.ExpiresAt, exp)
		}
		key := newAccessKey(exp.String(), "*", store.PermRead)
		key.ExpiresAt = exp
		createToken(t, s, key)
		if got := lookupAccessKey(t, s, key.AccessKeyID); !got.ExpiresAt.Equal(sec(exp)) {
			t.Fatalf("lookup access key: ExpiresAt %v, want %v", got.ExpiresAt, exp)
		}
	}
}

func testTokenDuplicate(t *testing.T, s store.MetaStore) {
	first := createToken(t, s, newToken("dup", "*", store.PermRead))
	firstKey := createToken(t, s, newAccessKey("dup", "*", store.PermRead))
	_, err := s.CreateToken(t.Context(), newToken("dup", "main", store.PermAdmin))
	mustExists(t, "create token with a taken hash", err)
	again := newAccessKey("dup", "main", store.PermAdmin)
	again.Secret = "another secret"
	_, err = s.CreateToken(t.Context(), again)
	mustExists(t, "create access key with a taken ID", err)
	mustToken(t, "token after duplicate creates", lookupToken(t, s, first.Hash), first)
	mustToken(t, "access key after duplicate creates", lookupAccessKey(t, s, firstKey.AccessKeyID), firstKey)
	// Hashes and access key IDs are unique each among their own kind.
	cross := newToken("cross", "*", store.PermRead)
	cross.Hash = firstKey.AccessKeyID
	crossTk := createToken(t, s, cross)
	crossKey := newAccessKey("cross", "*", store.PermRead)
	crossKey.AccessKeyID = first.Hash
	crossKeyTk := createToken(t, s, crossKey)
	mustTokens(t, "list tokens", s, []store.Token{first, firstKey, crossTk, crossKeyTk})
}

func testTokenKindRequired(t *testing.T, s store.MetaStore) {
	both := newToken("both", "*", store.PermRead)
	both.AccessKeyID, both.Secret = newAccessKey("both", "*", "").AccessKeyID, "secret"
	if _, err := s.CreateToken(t.Context(), both); err == nil {
		t.Fatalf("create token with a hash and an access key ID: no error")
	}
	neither := newToken("neither", "*", store.PermRead)
	neither.Hash = ""
	if _, err := s.CreateToken(t.Context(), neither); err == nil {
		t.Fatalf("create token with neither a hash nor an access key ID: no error")
	}
	mustTokens(t, "list tokens after refused creates", s, nil)
}

func testTokenLookupMissing(t *testing.T, s store.MetaStore) {
	_, err := s.LookupToken(t.Context(), newToken("missing", "", "").Hash)
	mustNotFound(t, "lookup missing token", err)
	_, err = s.LookupAccessKey(t.Context(), newAccessKey("missing", "", "").AccessKeyID)
	mustNotFound(t, "lookup missing access key", err)
	_, err = s.LookupToken(t.Context(), "")
	mustNotFound(t, "lookup token \"\" in an empty store", err)
	_, err = s.LookupAccessKey(t.Context(), "")
	mustNotFound(t, "lookup access key \"\" in an empty store", err)
}

func testTokenList(t *testing.T, s store.MetaStore) {
	mustTokens(t, "list tokens of an empty store", s, nil)
	var want []store.Token
	for i, scope := range []string{"b", "*", "a", "b", "*"} {
		tk := newToken(fmt.Sprint("t", i), scope, store.PermRead)
		if i%2 == 1 {
			tk = newAccessKey(fmt.Sprint("t", i), scope, store.PermWrite)
		}
		want = append(want, createToken(t, s, tk))
	}
	mustTokens(t, "list tokens", s, want)
	for i := 1; i < len(want); i++ {
		if want[i].ID <= want[i-1].ID {
			t.Fatalf("list tokens: not ordered by ID: %d after %d", want[i].ID, want[i-1].ID)
		}
	}
}

func testTokenDelete(t *testing.T, s store.MetaStore) {
	gone := createToken(t, s, newToken("gone", "*", store.PermRead))
	goneKey := createToken(t, s, newAccessKey("gone", "*", store.PermRead))
	kept := createToken(t, s, newToken("kept", "*", store.PermRead))
	keptKey := createToken(t, s, newAccessKey("kept", "*", store.PermRead))
	mustOK(t, "delete token", s.DeleteToken(t.Context(), gone.ID))
	mustOK(t, "delete access key", s.DeleteToken(t.Context(), goneKey.ID))
	_, err := s.LookupToken(t.Context(), gone.Hash)
	mustNotFound(t, "lookup deleted token", err)
	_, err = s.LookupAccessKey(t.Context(), goneKey.AccessKeyID)
	mustNotFound(t, "lookup deleted access key", err)
	mustNotFound(t, "delete token twice", s.DeleteToken(t.Context(), gone.ID))
	mustNotFound(t, "delete unknown token", s.DeleteToken(t.Context(), keptKey.ID+1000))
	mustToken(t, "lookup kept token", lookupToken(t, s, kept.Hash), kept)
	mustToken(t, "lookup kept access key", lookupAccessKey(t, s, keptKey.AccessKeyID), keptKey)
	mustTokens(t, "list tokens", s, []store.Token{kept, keptKey})
}

func testTokenDeletedWithCache(t *testing.T, s store.MetaStore) {
	createCache(t, s, "a")
	createCache(t, s, "b")
	ta := createToken(t, s, newToken("a", "a", store.PermWrite))
	ka := createToken(t, s, newAccessKey("a", "a", store.PermWrite))
	var kept []store.Token
	for i, scope := range []string{"b", "*", "a*", "?", "[a]", "A", "a ", " a", "ab"} {
		kept = append(kept, createToken(t, s, newToken(fmt.Sprint("k", i), scope, store.PermRead)),
			createToken(t, s, newAccessKey(fmt.Sprint("k", i), scope, store.PermRead)))
	}
	mustOK(t, "delete cache a", s.DeleteCache(t.Context(), "a"))
	_, err := s.LookupToken(t.Context(), ta.Hash)
	mustNotFound(t, "lookup token of deleted cache", err)
	_, err = s.LookupAccessKey(t.Context(), ka.AccessKeyID)
	mustNotFound(t, "lookup access key of deleted cache", err)
	mustNotFound(t, "delete token of deleted cache", s.DeleteToken(t.Context(), ta.ID))
	mustTokens(t, "list tokens after deleting a cache", s, kept)
	// A cache of the same name made afterwards does not revive the tokens.
	createCache(t, s, "a")
	_, err = s.LookupToken(t.Context(), ta.Hash)
	mustNotFound(t, "lookup token after re-creating its cache", err)
	_, err = s.LookupAccessKey(t.Context(), ka.AccessKeyID)
	mustNotFound(t, "lookup access key after re-creating its cache", err)
}

func testTokenKeptByMissingCacheDelete(t *testing.T, s store.MetaStore) {
	tk := createToken(t, s, newToken("ghost", "ghost", store.PermRead))
	mustNotFound(t, "delete missing cache", s.DeleteCache(t.Context(), "ghost"))
	mustToken(t, "token scoped to a missing cache after its delete", lookupToken(t, s, tk.Hash), tk)
}

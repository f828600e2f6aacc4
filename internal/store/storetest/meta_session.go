package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// sessionTests check the SessionStore contract.
var sessionTests = []metaTest{
	{"SessionRoundTrip", testSessionRoundTrip},
	{"SessionKeep", testSessionKeep},
	{"SessionDelete", testSessionDelete},
	{"SessionExpire", testSessionExpire},
	{"SessionGoesWithToken", testSessionGoesWithToken},
}

// newSession returns a session of the token, named after seed, created at
// the given minute of a fixed hour and expiring a day later.
func newSession(tokenID int64, seed string, minute int) store.Session {
	created := time.Date(2024, 7, 8, 9, minute, 0, 0, time.UTC)
	return store.Session{ID: padHash(seed, 64), TokenID: tokenID, CSRF: "csrf-" + seed,
		CreatedAt: created, ExpiresAt: created.Add(24 * time.Hour)}
}

// sessionToken adds an HTTP token with the given seed, scope and
// permission.
func sessionToken(t *testing.T, s store.MetaStore, seed, scope string, perm store.Perm) store.Token {
	t.Helper()
	return createToken(t, s, store.Token{Hash: padHash(seed, 64), Scope: scope, Perm: perm, Description: seed})
}

// mustSession fails t unless the session with want's ID is want, opened
// with tok.
func mustSession(t *testing.T, s store.MetaStore, want store.Session, tok store.Token) {
	t.Helper()
	got, gotTok, err := s.GetSession(t.Context(), want.ID)
	mustOK(t, "get session", err)
	mustUTC(t, "session created", got.CreatedAt)
	mustUTC(t, "session expires", got.ExpiresAt)
	if got.ID != want.ID || got.TokenID != want.TokenID || got.CSRF != want.CSRF ||
		!got.CreatedAt.Equal(sec(want.CreatedAt)) || !got.ExpiresAt.Equal(sec(want.ExpiresAt)) {
		t.Fatalf("get session: got %+v, want %+v", got, want)
	}
	mustToken(t, "token of the session", gotTok, tok)
}

// mustNoSession fails t unless there is no session with the given ID.
func mustNoSession(t *testing.T, s store.MetaStore, what, id string) {
	t.Helper()
	_, _, err := s.GetSession(t.Context(), id)
	mustNotFound(t, what, err)
}

func testSessionRoundTrip(t *testing.T, s store.MetaStore) {
	createCache(t, s, "main")
	tok := sessionToken(t, s, "tok", "main", store.PermRead)
	sess := newSession(tok.ID, "one", 1)
	sess.ExpiresAt = sess.ExpiresAt.Add(700 * time.Millisecond)
	mustOK(t, "create session", s.CreateSession(t.Context(), sess, 0))
	mustSession(t, s, sess, tok)
	mustExists(t, "create a session with a taken ID", s.CreateSession(t.Context(), newSession(tok.ID, "one", 2), 0))
	mustNotFound(t, "create a session of an unknown token", s.CreateSession(t.Context(), newSession(424242, "two", 2), 0))
	mustNoSession(t, s, "get a session of an unknown token", newSession(424242, "two", 2).ID)
	mustNoSession(t, s, "get an unknown session", padHash("unknown", 64))

	before := time.Now()
	now := newSession(tok.ID, "now", 0)
	now.CreatedAt = time.Time{}
	mustOK(t, "create a session now", s.CreateSession(t.Context(), now, 0))
	got, _, err := s.GetSession(t.Context(), now.ID)
	mustOK(t, "get session", err)
	mustRecent(t, "session created now", got.CreatedAt, before)
}

func testSessionKeep(t *testing.T, s store.MetaStore) {
	createCache(t, s, "main")
	tok := sessionToken(t, s, "tok", "main", store.PermRead)
	other := sessionToken(t, s, "other", "*", store.PermAdmin)
	var sessions []store.Session
	for i := range 5 {
		sess := newSession(tok.ID, fmt.Sprint("s", i), 10-i) // each older than the one before
		sessions = append(sessions, sess)
	}
	o := newSession(other.ID, "o", 0)
	mustOK(t, "create session", s.CreateSession(t.Context(), o, 3))
	for _, sess := range sessions[:4] {
		mustOK(t, "create session", s.CreateSession(t.Context(), sess, 3))
	}
	// The oldest, s3, was the last one created: it is kept, and the oldest
	// of the others, s2, goes.
	mustSession(t, s, sessions[0], tok)
	mustSession(t, s, sessions[1], tok)
	mustNoSession(t, s, "session beyond keep", sessions[2].ID)
	mustSession(t, s, sessions[3], tok)
	mustSession(t, s, o, other)
	mustOK(t, "create session keeping one", s.CreateSession(t.Context(), sessions[4], 1))
	for _, sess := range sessions[:4] {
		mustNoSession(t, s, "session beyond keep 1", sess.ID)
	}
	mustSession(t, s, sessions[4], tok)
	mustSession(t, s, o, other)
}

func testSessionDelete(t *testing.T, s store.MetaStore) {
	createCache(t, s, "main")
	tok := sessionToken(t, s, "tok", "main", store.PermRead)
	a, b := newSession(tok.ID, "a", 1), newSession(tok.ID, "b", 2)
	mustOK(t, "create session", s.CreateSession(t.Context(), a, 0))
	mustOK(t, "create session", s.CreateSession(t.Context(), b, 0))
	mustOK(t, "delete session", s.DeleteSession(t.Context(), a.ID))
	mustNoSession(t, s, "deleted session", a.ID)
	mustSession(t, s, b, tok)
	mustOK(t, "delete a deleted session", s.DeleteSession(t.Context(), a.ID))
	mustOK(t, "delete an unknown session", s.DeleteSession(t.Context(), "unknown"))
}

func testSessionExpire(t *testing.T, s store.MetaStore) {
	createCache(t, s, "main")
	tok := sessionToken(t, s, "tok", "main", store.PermRead)
	a, b, c := newSession(tok.ID, "a", 1), newSession(tok.ID, "b", 2), newSession(tok.ID, "c", 3)
	for _, sess := range []store.Session{a, b, c} {
		mustOK(t, "create session", s.CreateSession(t.Context(), sess, 0))
	}
	n, err := s.ExpireSessions(t.Context(), b.ExpiresAt.Add(time.Second))
	mustOK(t, "expire sessions", err)
	if n != 2 {
		t.Fatalf("expire sessions: removed %d, want 2", n)
	}
	mustNoSession(t, s, "expired session", a.ID)
	mustNoSession(t, s, "expired session", b.ID)
	mustSession(t, s, c, tok)
	n, err = s.ExpireSessions(t.Context(), c.ExpiresAt)
	mustOK(t, "expire sessions", err)
	if n != 0 {
		t.Fatalf("expire sessions at the expiry of the last: removed %d, want 0", n)
	}
}

func testSessionGoesWithToken(t *testing.T, s store.MetaStore) {
	createCache(t, s, "main")
	createCache(t, s, "other")
	tok := sessionToken(t, s, "tok", "*", store.PermRead)
	scoped := sessionToken(t, s, "scoped", "main", store.PermRead)
	kept := sessionToken(t, s, "kept", "other", store.PermRead)
	a, b, c := newSession(tok.ID, "a", 1), newSession(scoped.ID, "b", 2), newSession(kept.ID, "c", 3)
	for _, sess := range []store.Session{a, b, c} {
		mustOK(t, "create session", s.CreateSession(t.Context(), sess, 0))
	}
	mustOK(t, "delete token", s.DeleteToken(t.Context(), tok.ID))
	mustNoSession(t, s, "session of a deleted token", a.ID)
	mustOK(t, "delete cache", s.DeleteCache(t.Context(), "main"))
	mustNoSession(t, s, "session of a token deleted with its cache", b.ID)
	mustSession(t, s, c, kept)
}

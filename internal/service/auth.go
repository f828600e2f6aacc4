package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// tokenPrefix starts every token larder issues, so that secret scanners and
// people can recognise one.
const tokenPrefix = "lrd_"

var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newToken returns a fresh token text and its hash.
func newToken() (text, hash string) {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	text = tokenPrefix + tokenEncoding.EncodeToString(b)
	return text, hashToken(text)
}

func hashToken(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:])
}

// TokenSpec describes a token to create.
type TokenSpec struct {
	Cache       string // a cache name, or "*" for every cache
	Perm        store.Perm
	ExpiresIn   time.Duration // 0: never
	Description string
}

// AllCaches is the cache name of tokens valid for every cache.
const AllCaches = "*"

// CreateToken creates a token and returns its text, which is not stored and
// cannot be shown again.
func (s *Service) CreateToken(ctx context.Context, spec TokenSpec) (string, store.Token, error) {
	if !spec.Perm.Valid() {
		return "", store.Token{}, errorf(CodeInvalid, "permission %q is not read, write or admin", spec.Perm)
	}
	if spec.ExpiresIn < 0 {
		return "", store.Token{}, errorf(CodeInvalid, "expiry must not be negative")
	}
	t := store.Token{Perm: spec.Perm, Description: spec.Description}
	if spec.Cache != AllCaches {
		c, err := s.GetCache(ctx, spec.Cache)
		if err != nil {
			return "", store.Token{}, err
		}
		t.CacheID = c.ID
	}
	if spec.ExpiresIn > 0 {
		t.ExpiresAt = time.Now().Add(spec.ExpiresIn).UTC().Truncate(time.Second)
	}
	text, hash := newToken()
	t.Hash = hash
	t, err := s.meta.CreateToken(ctx, t)
	if errors.Is(err, store.ErrNotFound) {
		return "", store.Token{}, errorf(CodeNotFound, "there is no cache named %q", spec.Cache)
	}
	if err != nil {
		return "", store.Token{}, internal(err, "create token")
	}
	return text, t, nil
}

// ListTokens returns every token (their hashes, never their text).
func (s *Service) ListTokens(ctx context.Context) ([]store.Token, error) {
	list, err := s.meta.ListTokens(ctx)
	if err != nil {
		return nil, internal(err, "list tokens")
	}
	return list, nil
}

// RevokeToken deletes the token with the given ID. It takes effect at once,
// also on running servers.
func (s *Service) RevokeToken(ctx context.Context, id int64) error {
	err := s.meta.DeleteToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(CodeNotFound, "there is no token with ID %d", id)
	}
	if err != nil {
		return internal(err, "revoke token %d", id)
	}
	return nil
}

// Cache is a cache a request was granted access to.
type Cache struct {
	entry *cacheEntry
}

// Name returns the cache's name.
func (c Cache) Name() string { return c.entry.Name }

// Private reports whether reading the cache needs a token.
func (c Cache) Private() bool { return c.entry.Private }

// CacheInfo returns the cache's nix-cache-info file.
func (c Cache) CacheInfo() []byte { return c.entry.cacheInfo() }

// Access checks that the holder of token (its text, "" for none) may use the
// named cache at the level need, and returns the cache. Reads of a public
// cache need no token and ignore one that is sent, so that they never touch
// the database; everything else looks the token up every time, so a revoked
// token stops working at once.
func (s *Service) Access(ctx context.Context, cacheName, token string, need store.Perm) (Cache, error) {
	e, err := s.cache(ctx, cacheName)
	if err != nil {
		return Cache{}, err
	}
	if need == store.PermRead && !e.Private {
		return Cache{e}, nil
	}
	what, doing := "write to", "writing to"
	if need == store.PermRead {
		what, doing = "read", "reading"
	}
	if token == "" {
		return Cache{}, errorf(CodeUnauthenticated, "a token is needed to %s cache %s", what, e.Name)
	}
	t, err := s.meta.LookupToken(ctx, hashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return Cache{}, errorf(CodeUnauthenticated, "the token is not valid (unknown or revoked)")
	}
	if err != nil {
		return Cache{}, internal(err, "look up token")
	}
	switch {
	case !t.ExpiresAt.IsZero() && time.Now().After(t.ExpiresAt):
		return Cache{}, errorf(CodeUnauthenticated, "the token expired at %s", t.ExpiresAt.UTC().Format(time.RFC3339))
	case t.CacheID != 0 && t.CacheID != e.ID:
		return Cache{}, errorf(CodeForbidden, "the token is for cache %s, not %s", t.CacheName, e.Name)
	case !t.Perm.Includes(need):
		return Cache{}, errorf(CodeForbidden, "the token allows %s, but %s cache %s needs %s",
			t.Perm, doing, e.Name, need)
	}
	return Cache{e}, nil
}

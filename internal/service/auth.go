package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// tokenPrefix starts every HTTP token larder issues, so that secret
// scanners and people can recognise one. S3 access key IDs start with
// accessKeyPrefix for the same reason.
const (
	tokenPrefix     = "lrd_"
	accessKeyPrefix = "LRD"
)

var (
	tokenEncoding  = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	keyIDEncoding  = base32.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567").WithPadding(base32.NoPadding)
	secretEncoding = base32.NewEncoding("abcdefghijkmnpqrstuvwxyzABCDEFGH").WithPadding(base32.NoPadding)
)

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}

func hashToken(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:])
}

// AllCaches is the scope of credentials valid for every cache.
const AllCaches = "*"

// scopeRE is what a scope may look like: a cache name, or a glob of cache
// names with * ? and [...].
var scopeRE = regexp.MustCompile(`^[a-z0-9.*?\[\]^-]{1,63}$`)

// ValidateScope checks a credential scope: "*", a cache name, or a glob of
// cache names such as "ci-*".
func ValidateScope(scope string) error {
	if _, err := path.Match(scope, "x"); err != nil || !scopeRE.MatchString(scope) {
		return errorf(CodeInvalid, "scope %q is not a cache name, a glob of cache names such as ci-*, or *", scope)
	}
	return nil
}

// isGlob reports whether a scope names more than one cache.
func isGlob(scope string) bool { return strings.ContainsAny(scope, "*?[") }

// covers reports whether a credential scope includes the cache name.
func covers(scope, name string) bool {
	ok, err := path.Match(scope, name)
	return err == nil && ok
}

// TokenSpec describes a credential to create.
type TokenSpec struct {
	Cache       string // scope: a cache name, a glob of cache names, or "*"
	Perm        store.Perm
	ExpiresIn   time.Duration // 0: never
	Description string
	S3          bool // an S3 access key pair instead of an HTTP token
}

// CreateToken creates a credential and returns its text, which is not
// shown again: an HTTP token, or for S3 "ACCESS_KEY_ID SECRET_ACCESS_KEY".
// Only a hash of an HTTP token is stored; an S3 secret is stored as it is,
// since checking a signature needs it.
func (s *Service) CreateToken(ctx context.Context, spec TokenSpec) (string, store.Token, error) {
	if !spec.Perm.Valid() {
		return "", store.Token{}, errorf(CodeInvalid, "permission %q is not read, write or admin", spec.Perm)
	}
	if spec.ExpiresIn < 0 {
		return "", store.Token{}, errorf(CodeInvalid, "expiry must not be negative")
	}
	if err := ValidateScope(spec.Cache); err != nil {
		return "", store.Token{}, err
	}
	if !isGlob(spec.Cache) {
		if _, err := s.GetCache(ctx, spec.Cache); err != nil {
			return "", store.Token{}, err
		}
	}
	t := store.Token{Scope: spec.Cache, Perm: spec.Perm, Description: spec.Description}
	if spec.ExpiresIn > 0 {
		t.ExpiresAt = time.Now().Add(spec.ExpiresIn).UTC().Truncate(time.Second)
	}
	var text string
	if spec.S3 {
		t.AccessKeyID = accessKeyPrefix + keyIDEncoding.EncodeToString(random(11))[:17]
		t.Secret = secretEncoding.EncodeToString(random(25))
		text = t.AccessKeyID + " " + t.Secret
	} else {
		text = tokenPrefix + tokenEncoding.EncodeToString(random(24))
		t.Hash = hashToken(text)
	}
	t, err := s.meta.CreateToken(ctx, t)
	if err != nil {
		return "", store.Token{}, internal(err, "create token")
	}
	return text, t, nil
}

// ListTokens returns every credential (hashes and key IDs, never secrets).
func (s *Service) ListTokens(ctx context.Context) ([]store.Token, error) {
	list, err := s.meta.ListTokens(ctx)
	if err != nil {
		return nil, internal(err, "list tokens")
	}
	for i := range list {
		list[i].Secret = ""
	}
	return list, nil
}

// RevokeToken deletes the credential with the given ID. It takes effect at
// once, also on running servers.
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

// Principal is who a request comes from: a credential, or nobody.
type Principal struct {
	token *store.Token // nil: anonymous
}

// Anonymous is the principal of requests without credentials.
var Anonymous = &Principal{}

// ID names the principal in logs: the credential's ID, or "anonymous".
func (p *Principal) ID() string {
	switch {
	case p.token == nil:
		return "anonymous"
	case p.token.AccessKeyID != "":
		return p.token.AccessKeyID
	}
	return "token " + strconv.FormatInt(p.token.ID, 10)
}

// Authenticate returns the principal an HTTP token stands for. An empty
// token is the anonymous principal.
func (s *Service) Authenticate(ctx context.Context, token string) (*Principal, error) {
	if token == "" {
		return Anonymous, nil
	}
	t, err := s.meta.LookupToken(ctx, hashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(CodeUnauthenticated, "the token is not valid (unknown or revoked)")
	}
	if err != nil {
		return nil, internal(err, "look up token")
	}
	return checkExpiry(t)
}

// AccessKey returns the secret of an S3 access key and the principal it
// stands for. An unknown key is CodeUnauthenticated.
func (s *Service) AccessKey(ctx context.Context, id string) (string, *Principal, error) {
	t, err := s.meta.LookupAccessKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil, errorf(CodeUnauthenticated, "the access key %s is not valid (unknown or revoked)", id)
	}
	if err != nil {
		return "", nil, internal(err, "look up access key")
	}
	p, err := checkExpiry(t)
	if err != nil {
		return "", nil, err
	}
	return t.Secret, p, nil
}

func checkExpiry(t store.Token) (*Principal, error) {
	if !t.ExpiresAt.IsZero() && time.Now().After(t.ExpiresAt) {
		return nil, errorf(CodeUnauthenticated, "the credential expired at %s", t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return &Principal{token: &t}, nil
}

// Can reports whether the principal may act on the named cache at the level
// need (whether or not the cache exists).
func (p *Principal) Can(cacheName string, need store.Perm) bool {
	return p.token != nil && covers(p.token.Scope, cacheName) && p.token.Perm.Includes(need)
}

// Cache is a cache a request was granted access to.
type Cache struct {
	entry *cacheEntry
}

// Name returns the cache's name.
func (c Cache) Name() string { return c.entry.Name }

// Private reports whether reading the cache needs a token.
func (c Cache) Private() bool { return c.entry.Private }

// CreatedAt returns when the cache was created.
func (c Cache) CreatedAt() time.Time { return c.entry.CreatedAt }

// CacheInfo returns the cache's nix-cache-info file.
func (c Cache) CacheInfo() []byte { return c.entry.cacheInfo() }

// Access checks that the holder of token (its text, "" for none) may use the
// named cache at the level need, and returns the cache. Reads of a public
// cache need no token and ignore one that is sent, so that they never touch
// the database; everything else looks the token up every time, so a revoked
// token stops working at once.
//
// A caller who may not read the name learns nothing of a cache it cannot
// see: a cache that does not exist and a private one are refused the same
// way (see authorize).
func (s *Service) Access(ctx context.Context, cacheName, token string, need store.Perm) (Cache, error) {
	e, err := s.cacheIfAny(ctx, cacheName)
	if err != nil {
		return Cache{}, err
	}
	if e != nil && need == store.PermRead && !e.Private {
		return Cache{e}, nil
	}
	p, err := s.Authenticate(ctx, token)
	if err != nil {
		return Cache{}, err
	}
	return s.authorize(e, cacheName, p, need)
}

// Authorize checks that an authenticated principal may use the named cache
// at the level need, and returns the cache. Reads of a public cache need no
// credential; a missing cache is refused like a private one to a principal
// that may not read the name, as in Access.
func (s *Service) Authorize(ctx context.Context, p *Principal, cacheName string, need store.Perm) (Cache, error) {
	e, err := s.cacheIfAny(ctx, cacheName)
	if err != nil {
		return Cache{}, err
	}
	if e != nil && need == store.PermRead && !e.Private {
		return Cache{e}, nil
	}
	return s.authorize(e, cacheName, p, need)
}

// AuthorizeCredential is Authorize for what needs a credential whose scope
// covers the cache even when it is public (reading its pins).
func (s *Service) AuthorizeCredential(ctx context.Context, p *Principal, cacheName string, need store.Perm) (Cache, error) {
	e, err := s.cacheIfAny(ctx, cacheName)
	if err != nil {
		return Cache{}, err
	}
	return s.authorize(e, cacheName, p, need)
}

// cacheIfAny returns the named cache, or nil if there is none.
func (s *Service) cacheIfAny(ctx context.Context, name string) (*cacheEntry, error) {
	e, err := s.cache(ctx, name)
	if CodeOf(err) == CodeNotFound {
		return nil, nil
	}
	return e, err
}

// authorize decides whether p may use the cache e, called name (nil if
// there is none), at the level need.
//
// To a principal whose scope does not cover the name, a cache that does
// not exist and a private one look the same: the same refusal, with the
// same message, so that nobody without a credential for a name can find out
// whether a private cache of that name exists. Only the log (the error's
// detail) tells them apart. A principal that may read the name is told the
// truth: no such cache (404), or what its credential lacks (403).
func (s *Service) authorize(e *cacheEntry, name string, p *Principal, need store.Perm) (Cache, error) {
	what, doing := "write to", "writing to"
	if need == store.PermRead {
		what, doing = "read", "reading"
	}
	if !p.Can(name, store.PermRead) && (e == nil || e.Private) {
		detail := errNoCache
		if e != nil {
			detail = errPrivate
		}
		if p.token == nil {
			return Cache{}, &Error{Code: CodeUnauthenticated, Err: detail,
				Msg: fmt.Sprintf("a token is needed to %s cache %s, if it exists", what, name)}
		}
		return Cache{}, &Error{Code: CodeForbidden, Err: detail,
			Msg: fmt.Sprintf("the credential is for %s, not cache %s", scopeText(p.token.Scope), name)}
	}
	switch {
	case e == nil:
		return Cache{}, noSuchCache(name)
	case p.token == nil:
		return Cache{}, errorf(CodeUnauthenticated, "a token is needed to %s cache %s", what, e.Name)
	case !covers(p.token.Scope, e.Name):
		return Cache{}, errorf(CodeForbidden, "the credential is for %s, not cache %s", scopeText(p.token.Scope), e.Name)
	case !p.token.Perm.Includes(need):
		return Cache{}, errorf(CodeForbidden, "the credential allows %s, but %s cache %s needs %s",
			p.token.Perm, doing, e.Name, need)
	}
	return Cache{e}, nil
}

// The details, for the log only, of a refusal that must not say whether the
// cache exists.
var (
	errNoCache = errors.New("there is no such cache")
	errPrivate = errors.New("the cache is private")
)

func scopeText(scope string) string {
	switch {
	case scope == AllCaches:
		return "every cache"
	case isGlob(scope):
		return "caches matching " + scope
	}
	return "cache " + scope
}

// Operate returns the named cache for an operator's command (the CLI),
// which has the stores in reach anyway and so needs no token.
func (s *Service) Operate(ctx context.Context, cacheName string) (Cache, error) {
	e, err := s.cache(ctx, cacheName)
	if err != nil {
		return Cache{}, err
	}
	return Cache{e}, nil
}

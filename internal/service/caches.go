package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/larder-cache/larder/internal/narinfo"
	"github.com/larder-cache/larder/internal/store"
	"github.com/nix-community/go-nix/pkg/storepath"
)

// cacheEntry is a cache as the service keeps it in memory, with its signing
// key parsed once.
type cacheEntry struct {
	store.Cache
	key narinfo.SecretKey
	up  upstreams
}

func newCacheEntry(c store.Cache) (*cacheEntry, error) {
	k, err := narinfo.ParseSecretKey(c.SecretKey)
	if err != nil {
		return nil, fmt.Errorf("signing key of cache %s: %w", c.Name, err)
	}
	up, err := parseUpstreams(c.Upstream)
	if err != nil {
		return nil, fmt.Errorf("upstreams of cache %s: %w", c.Name, err)
	}
	return &cacheEntry{Cache: c, key: k, up: up}, nil
}

// CacheInfo returns the nix-cache-info file of the cache.
func (e *cacheEntry) cacheInfo() []byte {
	return fmt.Appendf(nil, "StoreDir: %s\nWantMassQuery: 1\nPriority: %d\n", storepath.StoreDir, e.Priority)
}

// cacheNameChars reports whether name is made of lower-case letters,
// digits, hyphens and dots, and starts and ends with a letter or digit.
// Every request checks its cache's name: a loop costs a tenth of a regular
// expression.
func cacheNameChars(name string) bool {
	alnum := func(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }
	for i := 0; i < len(name); i++ {
		if c := name[i]; !alnum(c) && c != '-' && c != '.' {
			return false
		}
	}
	return name != "" && alnum(name[0]) && alnum(name[len(name)-1])
}

// ValidateCacheName checks name against the S3 bucket naming rules, since
// every cache is also served as an S3 bucket.
func ValidateCacheName(name string) error {
	bad := func(why string) error {
		return &Error{Code: CodeInvalid, Reason: ReasonBadCacheName, Msg: fmt.Sprintf("cache name %q is not valid: %s", name, why)}
	}
	switch {
	case len(name) < 3 || len(name) > 63:
		return bad("it must be 3 to 63 characters long")
	case !cacheNameChars(name):
		return bad("use lower-case letters, digits, hyphens and dots, starting and ending with a letter or digit")
	case strings.Contains(name, ".."):
		return bad("it must not contain two dots in a row")
	case isIP(name):
		return bad("it must not look like an IP address")
	case strings.HasPrefix(name, "xn--") || strings.HasPrefix(name, "sthree-"):
		return bad("the prefixes xn-- and sthree- are reserved")
	case strings.HasSuffix(name, "-s3alias") || strings.HasSuffix(name, "--ol-s3"):
		return bad("the suffixes -s3alias and --ol-s3 are reserved")
	}
	return nil
}

// CacheSpec describes a cache to create.
type CacheSpec struct {
	Name     string
	Private  bool
	Priority int          // as in nix-cache-info; 0 means the default, 40
	Policy   store.Policy // what garbage collection keeps
}

// CreateCache creates a cache with a fresh signing key.
func (s *Service) CreateCache(ctx context.Context, spec CacheSpec) (store.Cache, error) {
	if err := ValidateCacheName(spec.Name); err != nil {
		return store.Cache{}, err
	}
	if spec.Priority == 0 {
		spec.Priority = 40
	}
	if spec.Priority < 0 || spec.Priority > 1000 {
		return store.Cache{}, errorf(CodeInvalid, "priority %d is out of range 1..1000", spec.Priority)
	}
	sec, pub, err := narinfo.GenerateKey(spec.Name + "." + s.keyHost + "-1")
	if err != nil {
		return store.Cache{}, internal(err, "generate signing key")
	}
	if spec.Policy.Retention < 0 || spec.Policy.MaxSize < 0 {
		return store.Cache{}, errorf(CodeInvalid, "retention and max size must not be negative")
	}
	c, err := s.meta.CreateCache(ctx, store.Cache{
		Name: spec.Name, Private: spec.Private, Priority: spec.Priority,
		SecretKey: sec, PublicKey: pub, Policy: spec.Policy,
	})
	if errors.Is(err, store.ErrExists) {
		return store.Cache{}, &Error{Code: CodeConflict, Reason: ReasonCacheExists, Msg: fmt.Sprintf("cache %q already exists", spec.Name)}
	}
	if err != nil {
		return store.Cache{}, internal(err, "create cache %s", spec.Name)
	}
	if err := s.reloadAfterChange(ctx); err != nil {
		return c, err
	}
	return c, nil
}

// DeleteCache deletes a cache with its narinfos, files, uploads in progress
// and tokens. The NAR files and other blobs it held stay until garbage
// collection finds them unused.
func (s *Service) DeleteCache(ctx context.Context, name string) error {
	// Uploads in progress are aborted first, so that their parts go at
	// once rather than wait for a sweep.
	if c, err := s.meta.GetCache(ctx, name); err == nil {
		ups, err := s.meta.ListUploads(ctx, c.ID, "")
		if err != nil {
			return internal(err, "list uploads of cache %s", name)
		}
		for _, u := range ups {
			s.dropUpload(ctx, u.ID)
		}
	}
	err := s.meta.DeleteCache(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return noSuchCache(name)
	}
	if err != nil {
		return internal(err, "delete cache %s", name)
	}
	return s.reloadAfterChange(ctx)
}

// ListCaches returns every cache, ordered by name.
func (s *Service) ListCaches(ctx context.Context) ([]store.Cache, error) {
	list, err := s.meta.ListCaches(ctx)
	if err != nil {
		return nil, internal(err, "list caches")
	}
	return list, nil
}

// GetCache returns the cache called name.
func (s *Service) GetCache(ctx context.Context, name string) (store.Cache, error) {
	c, err := s.meta.GetCache(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Cache{}, noSuchCache(name)
	}
	if err != nil {
		return store.Cache{}, internal(err, "get cache %s", name)
	}
	return c, nil
}

func (s *Service) reloadAfterChange(ctx context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if err := s.reloadCaches(ctx); err != nil {
		return internal(err, "reload caches")
	}
	return nil
}

// Bootstrap sets up a new installation: a public cache called main and an
// admin token valid for every cache, whose text it returns.
func (s *Service) Bootstrap(ctx context.Context) (store.Cache, string, error) {
	c, err := s.CreateCache(ctx, CacheSpec{Name: "main"})
	if err != nil {
		return store.Cache{}, "", err
	}
	tok, _, err := s.CreateToken(ctx, TokenSpec{Cache: AllCaches, Perm: store.PermAdmin, Description: "admin token made at first start"})
	if err != nil {
		return store.Cache{}, "", err
	}
	return c, tok, nil
}

// PutCacheInfo accepts an uploaded nix-cache-info. The cache serves its own,
// so nothing is stored; Nix uploads one only when it could not read it, and
// it must agree on the store directory.
func (s *Service) PutCacheInfo(c Cache, body []byte) error {
	for line := range strings.SplitSeq(string(body), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if v = strings.TrimSpace(v); k == "StoreDir" && v != storepath.StoreDir {
			return errorf(CodeInvalid, "cache %s serves the store %s, not %s", c.entry.Name, storepath.StoreDir, v)
		}
	}
	return nil
}

// writeFailed turns the failure of a write to a cache into a service error.
// A store that no longer knows the cache means another process deleted it:
// the service forgets it too.
func (s *Service) writeFailed(ctx context.Context, c Cache, err error, format string, args ...any) error {
	if errors.Is(err, store.ErrNotFound) {
		if rerr := s.reloadAfterChange(ctx); rerr != nil {
			s.log.Error("reload caches", "err", rerr)
		}
		return errorf(CodeNotFound, "cache %s was deleted", c.entry.Name)
	}
	return internal(err, format, args...)
}

// CachesFor returns the caches a principal's scope covers, ordered by name.
func (s *Service) CachesFor(ctx context.Context, p *Principal) ([]store.Cache, error) {
	all, err := s.ListCaches(ctx)
	if err != nil {
		return nil, err
	}
	var out []store.Cache
	for _, c := range all {
		if p.Can(c.Name, store.PermRead) {
			out = append(out, c)
		}
	}
	return out, nil
}

// CreateCacheAs creates a cache on behalf of a principal, which needs admin
// rights over the name.
func (s *Service) CreateCacheAs(ctx context.Context, p *Principal, spec CacheSpec) (store.Cache, error) {
	if !p.Can(spec.Name, store.PermAdmin) {
		return store.Cache{}, errorf(CodeForbidden, "creating cache %s needs an admin credential whose scope covers it", spec.Name)
	}
	return s.CreateCache(ctx, spec)
}

// DeleteEmptyCacheAs deletes a cache that holds no objects on behalf of a
// principal, which needs admin rights over it.
func (s *Service) DeleteEmptyCacheAs(ctx context.Context, p *Principal, name string) error {
	if !p.Can(name, store.PermAdmin) {
		return errorf(CodeForbidden, "deleting cache %s needs an admin credential whose scope covers it", name)
	}
	e, err := s.cache(ctx, name)
	if err != nil {
		return err
	}
	keys, err := s.meta.ListKeys(ctx, e.ID, "", "", 1)
	if err != nil {
		return internal(err, "list cache %s", name)
	}
	if len(keys) > 0 {
		return &Error{Code: CodeConflict, Reason: ReasonCacheNotEmpty, Msg: fmt.Sprintf("cache %s is not empty", name)}
	}
	return s.DeleteCache(ctx, name)
}

// isIP reports whether name is an IP address, without allocating, as
// every request checks the name of its cache.
func isIP(name string) bool {
	_, err := netip.ParseAddr(name)
	return err == nil
}

package service

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/larder-cache/larder/internal/narinfo"
	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/upstream"
)

// A cache can defer to upstreams, other binary caches whose keys it
// trusts. It then may:
//
//   - skip what they hold: a writer's lookup of a path the cache does not
//     hold, its question of which paths are missing and its upload of a
//     narinfo are answered from the upstreams, and a path one of them holds
//     is recorded as upstream-only (no bytes stored) and reported present,
//     so that it is not uploaded;
//   - pull through: a reader's lookup of a path only an upstream holds is
//     answered with the upstream's narinfo, and its NAR file is fetched as
//     the reader downloads it and stored, so that the next reader is served
//     from the cache.
//
// Upstream-only paths are served to every reader, their NAR files passed
// on from the upstream as they are verified (and stored, if the cache
// pulls through). Nothing of an upstream is believed before its signature
// is checked (package upstream), and nothing is served before the checks
// an upload would pass: the cache signs what it serves only then.

// UpstreamOptions configure how a service uses upstreams.
type UpstreamOptions struct {
	// Timeout bounds a lookup at the upstreams; 0 means
	// upstream.DefaultTimeout.
	Timeout time.Duration
	// NegativeTTL is how long an upstream's miss is remembered; 0 means
	// upstream.DefaultNegativeTTL.
	NegativeTTL time.Duration
	// PositiveTTL is how long an upstream's narinfo is believed without
	// asking again; 0 means upstream.DefaultPositiveTTL.
	PositiveTTL time.Duration
	// Recheck is how long an upstream-only path goes before an upstream
	// is asked again whether it holds it; 0 means DefaultUpstreamRecheck.
	Recheck time.Duration
	// SpoolDir holds the NAR files being fetched from upstreams; "" is
	// the system's temporary directory.
	SpoolDir string
	// Transport makes the requests to upstreams; nil: the upstream
	// client's own.
	Transport http.RoundTripper
}

// DefaultUpstreamRecheck is how long an upstream-only path goes before it
// is checked again, unless UpstreamOptions.Recheck says otherwise.
const DefaultUpstreamRecheck = 24 * time.Hour

// MaxUpstreams is the most upstreams a cache may have.
const MaxUpstreams = 8

// upstreams is the upstream configuration of a cache, parsed.
type upstreams struct {
	list       []upstream.Upstream
	skip, pull bool
}

func parseUpstreams(u store.UpstreamConfig) (upstreams, error) {
	out := upstreams{skip: u.Skip, pull: u.PullThrough}
	for _, up := range u.Upstreams {
		p, err := upstream.Parse(up.URL, up.Keys)
		if err != nil {
			return upstreams{}, err
		}
		out.list = append(out.list, p)
	}
	return out, nil
}

// missesAsked reports whether a lookup of a path the cache does not hold
// may be asked of the upstreams (see upstreamMiss).
func (u upstreams) missesAsked() bool { return len(u.list) > 0 && (u.skip || u.pull) }

// Upstream returns the cache's upstream configuration.
func (c Cache) Upstream() store.UpstreamConfig { return c.entry.Upstream }

// SetUpstream sets the upstreams of the cache called name and what the
// cache does with them. Each upstream needs an http(s) URL and at least one
// public key; a cache has at most MaxUpstreams.
func (s *Service) SetUpstream(ctx context.Context, name string, u store.UpstreamConfig) error {
	if len(u.Upstreams) > MaxUpstreams {
		return errorf(CodeInvalid, "%d upstreams, more than the %d a cache may have", len(u.Upstreams), MaxUpstreams)
	}
	seen := map[string]bool{}
	for i, up := range u.Upstreams {
		p, err := upstream.Parse(up.URL, up.Keys)
		if err != nil {
			return errorf(CodeInvalid, "%v", err)
		}
		if seen[p.URL] {
			return errorf(CodeInvalid, "upstream %s is given twice", p.URL)
		}
		seen[p.URL] = true
		keys := make([]string, len(p.Keys))
		for j, k := range p.Keys {
			keys[j] = k.String()
		}
		u.Upstreams[i] = store.Upstream{URL: p.URL, Keys: keys}
	}
	c, err := s.meta.GetCache(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return noSuchCache(name)
	}
	if err != nil {
		return internal(err, "look up cache %s", name)
	}
	if err := s.meta.SetUpstream(ctx, c.ID, u); errors.Is(err, store.ErrNotFound) {
		return noSuchCache(name)
	} else if err != nil {
		return internal(err, "set the upstreams of cache %s", name)
	}
	return s.reloadAfterChange(ctx)
}

// mayWrite reports whether the holder of token may write to the cache.
// Only lookups whose answer depends on it ask: it reads the token.
func (s *Service) mayWrite(ctx context.Context, c Cache, token string) bool {
	if token == "" {
		return false
	}
	p, err := s.Authenticate(ctx, token)
	return err == nil && p.Can(c.entry.Name, store.PermWrite)
}

// notHere is the answer to a lookup of a path the cache does not serve.
func notHere(c Cache, hash string) *Error {
	// Most lookups end here: spare them fmt.
	return &Error{Code: CodeNotFound, Msg: "cache " + c.entry.Name + " has no " + hash + ".narinfo"}
}

// upstreamMiss answers a lookup of a path the cache does not hold from its
// upstreams: for a writer of a cache that skips what they hold, a path one
// of them holds is recorded as upstream-only and reported present; for
// anyone, a cache that pulls through serves an upstream's narinfo.
func (s *Service) upstreamMiss(ctx context.Context, c Cache, hash, token string) ([]byte, error) {
	u := c.entry.up
	if !u.missesAsked() {
		return nil, notHere(c, hash)
	}
	writer := u.skip && s.mayWrite(ctx, c, token)
	if !writer && !u.pull {
		return nil, notHere(c, hash)
	}
	hit, _ := s.up.Lookup(ctx, u.list, hash)
	if hit == nil {
		return nil, notHere(c, hash)
	}
	if writer {
		if _, err := s.recordUpstream(ctx, c, hit, nil); err != nil {
			return nil, err
		}
	}
	body := s.renderHit(c, hash, hit, nil)
	s.access.note(c.entry.ID, hash)
	return body, nil
}

// upstreamOnly answers a lookup of an upstream-only path: with the
// narinfo of an upstream that holds it now. A path its upstreams say they
// do not hold (any more) is dropped; one they cannot say of now is not
// served, since its NAR file could not be.
func (s *Service) upstreamOnly(ctx context.Context, c Cache, rec store.NarInfo) ([]byte, error) {
	hit, out := s.up.Lookup(ctx, c.entry.up.list, rec.Hash)
	if hit != nil && sameContents(hit.NarInfo, rec) {
		body := s.renderHit(c, rec.Hash, hit, rec.Sigs)
		s.rendered.put(c.entry.ID, rec.Hash, c.entry.SecretKey, body, time.Now())
		s.access.note(c.entry.ID, rec.Hash)
		return body, nil
	}
	if hit != nil || out == upstream.Absent {
		s.dropUpstream(ctx, c.entry.ID, c.entry.Name, rec, "its upstreams no longer hold it")
		return nil, errorf(CodeNotFound, "cache %s has no %s.narinfo (its upstreams no longer hold it)", c.entry.Name, rec.Hash)
	}
	return nil, errorf(CodeNotFound, "cache %s has no %s.narinfo that its upstreams can serve now", c.entry.Name, rec.Hash)
}

// dropUpstream removes an upstream-only narinfo, unless it is stored by
// now, and says why in the log.
func (s *Service) dropUpstream(ctx context.Context, cacheID int64, cache string, rec store.NarInfo, why string) {
	err := s.meta.DropUpstreamNarInfo(context.WithoutCancel(ctx), cacheID, rec.Hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return // stored, or dropped, meanwhile
	case err != nil:
		s.log.Error("drop an upstream-only path", "cache", cache, "store_path", rec.StorePath, "err", err)
		return
	}
	s.index.Remove(cacheID, rec.Hash)
	s.rendered.forget(cacheID, rec.Hash)
	s.log.Info("upstream-only path dropped: "+why, "cache", cache, "store_path", rec.StorePath, "upstream", rec.Upstream)
}

// sameContents reports whether an upstream's narinfo describes the same
// contents as a record: path, NAR and references, what its signature
// covers.
func sameContents(ni *narinfo.NarInfo, rec store.NarInfo) bool {
	return ni.StorePath == rec.StorePath && ni.NarHash.Nix32() == rec.NarHash &&
		ni.NarSize == uint64(rec.NarSize) && slices.Equal(ni.References, rec.References)
}

// renderHit renders an upstream's narinfo as the cache serves it: the
// upstream's valid signatures and sigs (besides the cache's own) kept, the
// cache's added, and the URL of its NAR file under the cache, naming the
// path so that any replica finds the upstream again (see UpstreamNar).
func (s *Service) renderHit(c Cache, hash string, hit *upstream.Hit, sigs []string) []byte {
	ni := *hit.NarInfo
	ni.URL = hit.FileKey() + "?hash=" + hash
	ni.Sigs = hit.ValidSigs()
	for _, sig := range withoutKey(sigs, c.entry.key.Name()) {
		if len(ni.Sigs) < s.limits.MaxSignatures && !slices.Contains(ni.Sigs, sig) {
			ni.Sigs = append(ni.Sigs, sig)
		}
	}
	ni.Sigs = withoutKey(ni.Sigs, c.entry.key.Name())
	ni.Sign(c.entry.key)
	return ni.Bytes()
}

// recordUpstream records the path of hit as upstream-only in the cache,
// with the signatures sigs, unless the cache stores it, and reports
// whether the record is new.
func (s *Service) recordUpstream(ctx context.Context, c Cache, hit *upstream.Hit, sigs []string) (bool, error) {
	ni := hit.NarInfo
	hash := ni.HashPart()
	rec := store.NarInfo{
		CacheID:    c.entry.ID,
		Hash:       hash,
		Key:        hash + ".narinfo",
		StorePath:  ni.StorePath,
		NarHash:    ni.NarHash.Nix32(),
		NarSize:    int64(ni.NarSize),
		References: ni.References,
		Deriver:    ni.Deriver,
		System:     ni.System,
		CA:         ni.CA,
		Sigs:       withoutKey(sigs, c.entry.key.Name()),
		Upstream:   hit.Upstream,
		CheckedAt:  time.Now(),
	}
	created := false
	_, err := s.meta.PutNarInfo(ctx, rec, func(old *store.NarInfo) (store.NarInfo, error) {
		created = old == nil
		switch {
		case old == nil:
			return rec, nil
		case old.Upstream == "":
			return *old, nil // stored meanwhile
		}
		m, err := mergeNarInfo(*old, rec)
		if err != nil {
			return m, err
		}
		m.Upstream, m.CheckedAt = rec.Upstream, rec.CheckedAt
		if len(m.Sigs) > s.limits.MaxSignatures {
			return m, errorf(CodeTooLarge, "%s would carry %d signatures, more than the limit of %d (max_signatures)",
				rec.Key, len(m.Sigs), s.limits.MaxSignatures)
		}
		return m, nil
	})
	if err != nil {
		if CodeOf(err) != CodeInternal {
			return false, err
		}
		return false, s.writeFailed(ctx, c, err, "record %s as upstream-only in cache %s", ni.StorePath, c.entry.Name)
	}
	s.rendered.forget(c.entry.ID, hash)
	if created {
		s.index.Add(c.entry.ID, hash)
		s.metrics.UpstreamSkipped(1)
		s.log.Debug("path recorded as upstream-only", "cache", c.entry.Name, "store_path", ni.StorePath, "upstream", hit.Upstream)
	} else {
		s.access.note(c.entry.ID, hash)
	}
	return created, nil
}

// putUpstreamOnly accepts an uploaded narinfo as upstream-only, if the
// cache skips what its upstreams hold, does not store the path, and an
// upstream holds the same contents; it reports whether it did.
func (s *Service) putUpstreamOnly(ctx context.Context, c Cache, key nixkey.Key, ni *narinfo.NarInfo) (handled, created bool, err error) {
	u := c.entry.up
	if !u.skip || len(u.list) == 0 || ni.HashPart() != key.Hash {
		return false, false, nil
	}
	if s.index.Has(c.entry.ID, key.Hash) {
		rec, _, err := s.meta.GetNarInfo(ctx, c.entry.ID, key.Hash)
		if err == nil && rec.Upstream == "" {
			return false, false, nil // stored: the upload adds its signatures
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return true, false, internal(err, "look up %s", key)
		}
	}
	hit, _ := s.up.Lookup(ctx, u.list, key.Hash)
	if hit == nil || !sameContents(hit.NarInfo, store.NarInfo{StorePath: ni.StorePath, NarHash: ni.NarHash.Nix32(),
		NarSize: int64(ni.NarSize), References: ni.References}) {
		return false, false, nil
	}
	created, err = s.recordUpstream(ctx, c, hit, ni.Sigs)
	return true, created, err
}

// upstreamBudget bounds the time MissingPaths spends asking upstreams of
// the paths a cache lacks; the paths it could not ask about are reported
// missing, and uploaded.
const upstreamBudget = 20 * time.Second

// upstreamAsk is how many paths MissingPaths asks upstreams of at once.
const upstreamAsk = 32

// missingUpstream asks the upstreams of the cache for the paths it lacks,
// records those they hold as upstream-only and returns them.
func (s *Service) missingUpstream(ctx context.Context, c Cache, missing []string) []string {
	ctx, cancel := context.WithTimeout(ctx, upstreamBudget)
	defer cancel()
	var mu sync.Mutex
	var found []string
	todo := make(chan string)
	var wg sync.WaitGroup
	for range min(upstreamAsk, len(missing)) {
		wg.Go(func() {
			for h := range todo {
				hit, _ := s.up.Lookup(ctx, c.entry.up.list, h)
				if hit == nil {
					continue
				}
				if _, err := s.recordUpstream(ctx, c, hit, nil); err != nil {
					s.log.Warn("record an upstream-only path", "cache", c.entry.Name, "store_path", hit.NarInfo.StorePath, "err", err)
					continue
				}
				mu.Lock()
				found = append(found, h)
				mu.Unlock()
			}
		})
	}
	for _, h := range missing {
		if ctx.Err() != nil {
			break
		}
		todo <- h
	}
	close(todo)
	wg.Wait()
	return found
}

// recheckBatch is how many upstream-only paths one round of RecheckUpstream
// checks, and recheckAsk how many at once.
const (
	recheckBatch = 512
	recheckAsk   = 8
)

// RecheckUpstream asks the upstreams again of the upstream-only paths
// whose last check is older than the recheck interval, a batch at a time:
// those still held are marked checked, those an upstream no longer holds
// (or holds with other contents) are dropped, and those no upstream can say
// of now are left for the next round. Run calls it every minute. It
// returns how many paths it checked and dropped.
func (s *Service) RecheckUpstream(ctx context.Context) (checked, dropped int, err error) {
	list, err := s.meta.UpstreamNarInfos(ctx, time.Now().Add(-s.recheck), recheckBatch)
	if err != nil {
		return 0, 0, internal(err, "list upstream-only paths to check")
	}
	s.mu.RLock()
	byID := make(map[int64]*cacheEntry, len(s.caches))
	for _, e := range s.caches {
		byID[e.ID] = e
	}
	s.mu.RUnlock()
	var mu sync.Mutex
	todo := make(chan store.NarInfo)
	var wg sync.WaitGroup
	for range recheckAsk {
		wg.Go(func() {
			for rec := range todo {
				e := byID[rec.CacheID]
				if e == nil {
					continue // a cache this process does not know yet
				}
				ok, gone := s.recheck1(ctx, e, rec)
				mu.Lock()
				if ok {
					checked++
				}
				if gone {
					dropped++
				}
				mu.Unlock()
			}
		})
	}
	for _, rec := range list {
		todo <- rec
	}
	close(todo)
	wg.Wait()
	return checked, dropped, nil
}

// recheck1 checks one upstream-only path and reports whether it was
// checked and whether it was dropped.
func (s *Service) recheck1(ctx context.Context, e *cacheEntry, rec store.NarInfo) (checked, dropped bool) {
	hit, out := s.up.Check(ctx, e.up.list, rec.Hash)
	switch {
	case hit != nil && sameContents(hit.NarInfo, rec):
		_, err := s.meta.PutNarInfo(ctx, rec, func(old *store.NarInfo) (store.NarInfo, error) {
			if old == nil || old.Upstream == "" {
				return store.NarInfo{}, errNoLongerUpstream
			}
			m := *old
			m.Upstream, m.CheckedAt = hit.Upstream, time.Now()
			return m, nil
		})
		if err != nil && !errors.Is(err, errNoLongerUpstream) && !errors.Is(err, store.ErrNotFound) {
			s.log.Error("mark an upstream-only path checked", "cache", e.Name, "store_path", rec.StorePath, "err", err)
			return false, false
		}
		return true, false
	case hit != nil || out == upstream.Absent:
		s.dropUpstream(ctx, e.ID, e.Name, rec, "its upstreams no longer hold it")
		return true, true
	}
	return false, false
}

// errNoLongerUpstream stops the marking of a path that was stored or
// removed meanwhile.
var errNoLongerUpstream = errors.New("no longer upstream-only")

// recheckPeriodically runs RecheckUpstream, as Run does every minute.
func (s *Service) recheckPeriodically(ctx context.Context) {
	checked, dropped, err := s.RecheckUpstream(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Error("check upstream-only paths", "err", err)
	case checked > 0:
		s.log.Info("upstream-only paths checked", "checked", checked, "dropped", dropped)
	}
}

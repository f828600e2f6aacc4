package service

import (
	"context"
	"errors"
	"slices"

	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/store"
)

// MaxMissingQuery is the most store path hashes one MissingPaths call
// answers: a closure of tens of thousands of paths in one question.
const MaxMissingQuery = 100_000

// Missing says which of the paths a push client asked about a cache
// lacks, and which it holds only because an upstream does.
type Missing struct {
	Missing  []string // to upload, in the order asked, each once
	Upstream []string // upstream-only in the cache: not to upload
}

// MissingPaths returns those of the store path hashes (the 32 characters
// of a store path after /nix/store/) that the cache does not hold, in the
// order given, each once: a push client uploads those. A path the cache
// holds counts as used, as a narinfo read does, so that a collection does
// not remove it while the push that relies on it goes on.
//
// For a writer of a cache that skips what its upstreams hold, the paths it
// lacks are asked of the upstreams (many at once, for at most
// upstreamBudget), and those one holds are recorded as upstream-only and
// reported with the others that are, not as missing.
func (s *Service) MissingPaths(ctx context.Context, c Cache, hashes []string, writer bool) (Missing, error) {
	if len(hashes) > MaxMissingQuery {
		return Missing{}, errorf(CodeTooLarge, "%d store path hashes, more than the %d one question may ask about", len(hashes), MaxMissingQuery)
	}
	for _, h := range hashes {
		if k, err := nixkey.Parse(h + ".narinfo"); err != nil || k.Kind != nixkey.NarInfo {
			return Missing{}, errorf(CodeInvalid, "%q is not the hash of a store path (32 characters of Nix's base32)", h)
		}
	}
	present, upOnly, err := s.meta.PresentNarInfos(ctx, c.entry.ID, hashes)
	if err != nil {
		return Missing{}, internal(err, "look up %d narinfos", len(hashes))
	}
	have := make(map[string]bool, len(present))
	for _, h := range present {
		have[h] = true
		s.access.note(c.entry.ID, h)
	}
	res := Missing{Missing: []string{}, Upstream: upOnly}
	for _, h := range hashes {
		if !have[h] {
			res.Missing = append(res.Missing, h)
			have[h] = true // each once
		}
	}
	if u := c.entry.up; writer && u.skip && len(u.list) > 0 && len(res.Missing) > 0 {
		found := s.missingUpstream(ctx, c, res.Missing)
		skip := make(map[string]bool, len(found))
		for _, h := range found {
			skip[h] = true
		}
		res.Missing = slices.DeleteFunc(res.Missing, func(h string) bool { return skip[h] })
		res.Upstream = append(res.Upstream, found...)
	}
	if res.Upstream == nil {
		res.Upstream = []string{}
	}
	return res, nil
}

// Upload returns the multipart upload with the given ID if it is one of
// the cache's.
func (s *Service) Upload(ctx context.Context, c Cache, id string) (store.Upload, error) {
	u, err := s.meta.GetUpload(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && u.CacheID != c.entry.ID:
		return store.Upload{}, noSuchUpload(id)
	case err != nil:
		return store.Upload{}, internal(err, "look up upload %s", id)
	}
	return u, nil
}

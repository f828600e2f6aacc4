package service

import (
	"context"
	"errors"

	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/store"
)

// MaxMissingQuery is the most store path hashes one MissingPaths call
// answers: a closure of tens of thousands of paths in one question.
const MaxMissingQuery = 100_000

// MissingPaths returns those of the store path hashes (the 32 characters
// of a store path after /nix/store/) that the cache does not hold, in the
// order given, each once: a push client uploads those. A path the cache
// holds counts as used, as a narinfo read does, so that a collection does
// not remove it while the push that relies on it goes on.
func (s *Service) MissingPaths(ctx context.Context, c Cache, hashes []string) ([]string, error) {
	if len(hashes) > MaxMissingQuery {
		return nil, errorf(CodeTooLarge, "%d store path hashes, more than the %d one question may ask about", len(hashes), MaxMissingQuery)
	}
	for _, h := range hashes {
		if k, err := nixkey.Parse(h + ".narinfo"); err != nil || k.Kind != nixkey.NarInfo {
			return nil, errorf(CodeInvalid, "%q is not the hash of a store path (32 characters of Nix's base32)", h)
		}
	}
	present, _, err := s.meta.PresentNarInfos(ctx, c.entry.ID, hashes)
	if err != nil {
		return nil, internal(err, "look up %d narinfos", len(hashes))
	}
	have := make(map[string]bool, len(present))
	for _, h := range present {
		have[h] = true
		s.access.note(c.entry.ID, h)
	}
	missing := []string{}
	for _, h := range hashes {
		if !have[h] {
			missing = append(missing, h)
			have[h] = true // each once
		}
	}
	return missing, nil
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

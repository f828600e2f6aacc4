package service

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/store"
	"github.com/nix-community/go-nix/pkg/storepath"
)

// A pin keeps a store path, with its closure, whatever the cache's policy.
// Pins share a name to form revisions (each push of a new build under the
// same name, as CI does): the rule of the name keeps its newest revisions,
// or those younger than an age. The newest revision is always kept.

var pinNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// PinSpec describes a pin to add.
type PinSpec struct {
	StorePath string // /nix/store/<hash>-<name>
	Name      string // "" pins the path on its own, named after its hash
	Rule      store.PinRule
}

// Pin pins a path the cache holds.
func (s *Service) Pin(ctx context.Context, c Cache, spec PinSpec) (store.Pin, error) {
	sp, err := storepath.FromAbsolutePath(spec.StorePath)
	if err != nil {
		return store.Pin{}, errorf(CodeInvalid, "%q is not a store path: %v", spec.StorePath, err)
	}
	hash := strings.SplitN(sp.String(), "-", 2)[0]
	if spec.Name == "" {
		spec.Name = hash
	}
	if !pinNameRE.MatchString(spec.Name) {
		return store.Pin{}, errorf(CodeInvalid, "pin name %q: use up to 128 letters, digits and ._+-", spec.Name)
	}
	if spec.Rule.KeepRevisions < 0 || spec.Rule.KeepFor < 0 {
		return store.Pin{}, errorf(CodeInvalid, "keep-revisions and keep-days must not be negative")
	}
	if spec.Rule.KeepRevisions > 0 && spec.Rule.KeepFor > 0 {
		return store.Pin{}, errorf(CodeInvalid, "keep-revisions and keep-days exclude each other: give one")
	}
	if _, _, err := s.meta.GetNarInfo(ctx, c.entry.ID, hash); errors.Is(err, store.ErrNotFound) {
		return store.Pin{}, errorf(CodeNotFound, "cache %s has no %s; push it first", c.entry.Name, spec.StorePath)
	} else if err != nil {
		return store.Pin{}, internal(err, "look up %s", spec.StorePath)
	}
	p := store.Pin{CacheID: c.entry.ID, Name: spec.Name, Hash: hash, StorePath: spec.StorePath, CreatedAt: time.Now()}
	if err := s.meta.AddPin(ctx, p, spec.Rule); err != nil {
		return store.Pin{}, s.writeFailed(ctx, c, err, "pin %s", spec.StorePath)
	}
	return p, nil
}

// Pins returns the pins of the cache, by name then newest first, and the
// rule of each name.
func (s *Service) Pins(ctx context.Context, c Cache) ([]store.Pin, map[string]store.PinRule, error) {
	pins, rules, err := s.meta.ListPins(ctx, c.entry.ID)
	if err != nil {
		return nil, nil, internal(err, "list pins of cache %s", c.entry.Name)
	}
	return pins, rules, nil
}

// Unpin removes a pin: every revision of the name, or the one of the path
// (a store path, or its hash) if given.
func (s *Service) Unpin(ctx context.Context, c Cache, name, path string) error {
	hash := ""
	if path != "" {
		hash = strings.TrimPrefix(path, storepath.StoreDir+"/")
		hash, _, _ = strings.Cut(hash, "-")
	}
	err := s.meta.DeletePins(ctx, c.entry.ID, name, hash)
	if errors.Is(err, store.ErrNotFound) {
		what := fmt.Sprintf("pin %q", name)
		if path != "" {
			what += " of " + path
		}
		return errorf(CodeNotFound, "cache %s has no %s", c.entry.Name, what)
	}
	if err != nil {
		return internal(err, "unpin %s", name)
	}
	return nil
}

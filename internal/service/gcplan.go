package service

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// MaxPlanned is how many of the paths a collection would remove a plan
// shows at most, and maxPlannedPins how many pins.
const (
	MaxPlanned     = 50
	maxPlannedPins = 200
)

// RemovedPath is a path the next collection would remove, with its
// closure within the cache.
type RemovedPath struct {
	NarInfo store.NarInfo
	Closure store.ClosureSize
}

// PlannedPin is a pin revision, whether its rule keeps it, and what it
// keeps: its closure within the cache.
type PlannedPin struct {
	Pin     store.Pin
	Rule    store.PinRule
	Kept    bool
	Closure store.ClosureSize
}

// CollectionPlan is what the next collection of a cache would do under its
// current policy: a dry run, changing nothing.
type CollectionPlan struct {
	Report CollectReport
	// Biggest are the largest of the paths it would remove (by NAR size, at
	// most MaxPlanned), each with its closure, the biggest closure first.
	Biggest  []RemovedPath
	Pins     []PlannedPin // at most maxPlannedPins, as ListPins orders them
	MorePins bool
}

// PlanCollection runs a dry run of the collection of the cache, as the
// next collection would run under the cache's policy now, and says what it
// would remove and what each pin keeps. It takes the collection lease as a
// collection does, so that it runs when none does: while one runs it
// returns an error of CodeUnavailable.
func (s *Service) PlanCollection(ctx context.Context, c Cache) (CollectionPlan, error) {
	var plan CollectionPlan
	if !s.gcMu.TryLock() {
		return plan, errorf(CodeUnavailable, "a collection is running; try again when it has finished")
	}
	defer s.gcMu.Unlock()
	release, err := s.holdLease(ctx, gcLease)
	if errors.Is(err, ErrCollecting) {
		return plan, errorf(CodeUnavailable, "a collection is running; try again when it has finished")
	}
	if err != nil {
		return plan, err
	}
	defer release()
	if err := s.FlushAccess(ctx); err != nil {
		return plan, err
	}
	sc, err := s.GetCache(ctx, c.entry.Name)
	if err != nil {
		return plan, err
	}
	biggest := &bySize{}
	var lookupErr error
	rep, err := s.collectCache(ctx, sc, CollectOptions{DryRun: true, Removed: func(_ string, hashes []string) {
		if lookupErr != nil {
			return
		}
		nis, err := s.meta.NarInfos(ctx, sc.ID, hashes)
		if err != nil {
			lookupErr = err
			return
		}
		for _, ni := range nis {
			heap.Push(biggest, ni)
			if biggest.Len() > MaxPlanned {
				heap.Pop(biggest) // the smallest
			}
		}
	}})
	if err == nil && lookupErr != nil {
		err = internal(lookupErr, "look up the paths a collection of cache %s would remove", sc.Name)
	}
	if err != nil {
		return plan, err
	}
	plan.Report = rep
	for _, ni := range *biggest {
		cs, err := s.meta.Closure(ctx, sc.ID, []string{ni.Hash})
		if err != nil {
			return plan, internal(err, "closure of %s", ni.Hash)
		}
		plan.Biggest = append(plan.Biggest, RemovedPath{NarInfo: ni, Closure: cs})
	}
	slices.SortFunc(plan.Biggest, func(a, b RemovedPath) int {
		return cmp.Or(cmp.Compare(b.Closure.NarBytes, a.Closure.NarBytes), cmp.Compare(a.NarInfo.StorePath, b.NarInfo.StorePath))
	})
	if plan.Pins, plan.MorePins, err = s.plannedPins(ctx, sc); err != nil {
		return plan, err
	}
	return plan, nil
}

// plannedPins returns the pins of the cache, whether each is kept, and
// the closure each keeps.
func (s *Service) plannedPins(ctx context.Context, c store.Cache) ([]PlannedPin, bool, error) {
	pins, rules, err := s.meta.ListPins(ctx, c.ID)
	if err != nil {
		return nil, false, internal(err, "list pins of cache %s", c.Name)
	}
	var out []PlannedPin
	for p, kept := range pinsKept(pins, rules, time.Now()) {
		if len(out) == maxPlannedPins {
			return out, true, nil
		}
		cs, err := s.meta.Closure(ctx, c.ID, []string{p.Hash})
		if err != nil {
			return nil, false, internal(err, "closure of pin %s", p.Name)
		}
		out = append(out, PlannedPin{Pin: p, Rule: rules[p.Name], Kept: kept, Closure: cs})
	}
	return out, false, nil
}

// bySize is a min-heap of narinfos by NarSize, to keep the largest.
type bySize []store.NarInfo

func (h bySize) Len() int { return len(h) }
func (h bySize) Less(i, j int) bool {
	return cmp.Or(cmp.Compare(h[i].NarSize, h[j].NarSize), cmp.Compare(h[j].Hash, h[i].Hash)) < 0
}
func (h bySize) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *bySize) Push(x any)   { *h = append(*h, x.(store.NarInfo)) }
func (h *bySize) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

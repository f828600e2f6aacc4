package service

import (
	"context"
	"time"
)

// ExpireHeld runs the housekeeping that drops narinfos held for longer than
// ttl, which Run otherwise does once a minute.
func ExpireHeld(s *Service, ctx context.Context, ttl time.Duration) { s.expireHeld(ctx, ttl) }

// DecoderMemoryInUse returns the decoder memory that uploads hold now.
func DecoderMemoryInUse(s *Service) int64 { return s.decoder.Budget.InUse() }

// SampleHistory adds the sample of the interval starting at at to the
// history of every cache, as Run does at the end of each interval.
func SampleHistory(s *Service, ctx context.Context, at time.Time) { s.sample(ctx, at) }

// StartedFromSnapshot reports whether New loaded the presence snapshot.
func StartedFromSnapshot(s *Service) bool { return s.fromSnapshot }

// InIndex reports whether the presence index may hold hash for the cache.
func InIndex(s *Service, cacheID int64, hash string) bool { return s.index.Has(cacheID, hash) }

// WriteSnapshot writes the presence snapshot, as Run does when it ends.
func WriteSnapshot(s *Service, ctx context.Context) error { return s.writeSnapshot(ctx) }

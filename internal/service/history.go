package service

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// The history of a cache is a series of samples in the metadata store:
// every HistoryInterval, aligned on the clock (multiples of it since the
// Unix epoch), each server adds the narinfo lookups it answered in that
// interval, and how many found a narinfo, and writes the size of the cache
// it measures in the store. Replicas add their counts into the same sample
// of each cache and interval, so the history is the whole deployment's,
// one sample per interval however many replicas there are; the sizes they
// write are the same store's. Counts are kept in memory between samples
// (two counters per cache) and written at shutdown too, so a restart loses
// none but those of a process that dies.
//
// The history stays bounded: samples older than a day are merged into one
// per hour, older than 30 days into one per day, and after a year they
// are deleted; about 1,350 samples per cache at the default interval.

// DefaultHistoryInterval is how often a cache's history is sampled unless
// Options.HistoryInterval says otherwise.
const DefaultHistoryInterval = 5 * time.Minute

// historyTiers say what the history keeps at each age: samples older than
// age are merged into one per step. historyKept is how long any is kept.
var historyTiers = []struct{ age, step time.Duration }{
	{24 * time.Hour, time.Hour},
	{30 * 24 * time.Hour, 24 * time.Hour},
}

const historyKept = 365 * 24 * time.Hour

// maxSamples bounds the samples History returns.
const maxSamples = 5000

// lookupCount counts the narinfo lookups of one cache since the last
// sample.
type lookupCount struct{ requests, hits atomic.Int64 }

// lookups counts the narinfo lookups of each cache the service knows.
type lookups struct {
	mu     sync.RWMutex
	counts map[int64]*lookupCount
}

func newLookups() *lookups { return &lookups{counts: map[int64]*lookupCount{}} }

// count counts one lookup in the cache with the given ID. It counts under
// the read lock, so that take, under the write lock, misses none.
func (l *lookups) count(cacheID int64, found bool) {
	l.mu.RLock()
	c := l.counts[cacheID]
	if c != nil {
		c.requests.Add(1)
		if found {
			c.hits.Add(1)
		}
	}
	l.mu.RUnlock()
	if c != nil {
		return
	}
	l.mu.Lock()
	if l.counts[cacheID] == nil {
		l.counts[cacheID] = &lookupCount{}
	}
	l.mu.Unlock()
	l.count(cacheID, found)
}

// take returns the counts since the last take, by cache ID, and starts
// afresh.
func (l *lookups) take() map[int64]*lookupCount {
	l.mu.Lock()
	defer l.mu.Unlock()
	counts := l.counts
	l.counts = map[int64]*lookupCount{}
	return counts
}

// CountLookup counts a lookup of a narinfo of the named cache in its
// history, found or not. Front ends call it for each lookup they answer
// with a narinfo or with "not there"; refused ones do not count. A name the
// service does not know as a cache counts nowhere, so what clients send
// cannot grow the counts.
func (s *Service) CountLookup(cacheName string, found bool) {
	s.mu.RLock()
	e := s.caches[cacheName]
	s.mu.RUnlock()
	if e != nil {
		s.lookups.count(e.ID, found)
	}
}

// recordHistory samples the history of every cache at each multiple of
// the history interval until ctx ends, then adds what it counted since the
// last one, and merges old samples once an hour.
func (s *Service) recordHistory(ctx context.Context) {
	every := s.historyEvery
	var compacted time.Time
	for {
		next := nextMultiple(time.Now(), every)
		timer := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			timer.Stop()
			last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.sample(last, next.Add(-every))
			cancel()
			return
		case <-timer.C:
		}
		s.sample(ctx, next.Add(-every))
		if now := time.Now(); now.Sub(compacted) >= time.Hour {
			compacted = now
			if err := s.CompactHistory(ctx, now); err != nil && ctx.Err() == nil {
				s.log.Error("merge old history samples", "err", err)
			}
		}
	}
}

// nextMultiple returns the first multiple of every since the Unix epoch
// after t.
func nextMultiple(t time.Time, every time.Duration) time.Time {
	epoch := time.Unix(0, 0)
	return epoch.Add(t.Sub(epoch).Truncate(every) + every)
}

// sample adds to the history of every cache the sample of the interval
// that starts at at: the lookups counted since the last sample and the
// cache's size now.
func (s *Service) sample(ctx context.Context, at time.Time) {
	counts := s.lookups.take()
	caches, err := s.ListCaches(ctx)
	if err != nil {
		s.log.Error("sample the history of caches", "err", err)
		return
	}
	for _, c := range caches {
		sm := store.Sample{CacheID: c.ID, At: at, Span: s.historyEvery}
		if n := counts[c.ID]; n != nil {
			sm.Requests, sm.Hits = n.requests.Load(), n.hits.Load()
		}
		if sm.Paths, sm.Bytes, err = s.meta.Usage(ctx, c.ID); err == nil {
			err = s.meta.AddSample(ctx, sm)
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) { // a cache deleted meanwhile has no history
			s.log.Error("sample the history of a cache", "cache", c.Name, "err", err)
		}
	}
}

// CompactHistory merges the samples of every cache as historyTiers say and
// deletes those older than historyKept, as of now. Run does it once an
// hour; it may run in several processes at once.
func (s *Service) CompactHistory(ctx context.Context, now time.Time) error {
	for _, tier := range historyTiers {
		if err := s.meta.MergeSamples(ctx, now.Add(-tier.age), tier.step); err != nil {
			return internal(err, "merge history samples older than %v", tier.age)
		}
	}
	if err := s.meta.DeleteSamples(ctx, now.Add(-historyKept)); err != nil {
		return internal(err, "delete history samples older than %v", historyKept)
	}
	return nil
}

// History returns the samples of the cache's history, oldest first.
func (s *Service) History(ctx context.Context, c Cache) ([]store.Sample, error) {
	l, err := s.meta.Samples(ctx, c.entry.ID, time.Now().Add(-historyKept), maxSamples)
	if err != nil {
		return nil, internal(err, "history of cache %s", c.entry.Name)
	}
	return l, nil
}

// HistoryInterval returns how often the history of caches is sampled.
func (s *Service) HistoryInterval() time.Duration { return s.historyEvery }

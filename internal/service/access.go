package service

import (
	"context"
	"sync"
	"time"
)

// tracker remembers which narinfos and NAR files were read since it was
// last flushed, so that garbage collection knows what is still used
// without a database write per request: a read costs a map insert, and
// Flush writes each cache's batch in one call per thousand.
type tracker struct {
	mu   sync.Mutex
	seen map[readsOf]map[string]struct{}
}

// readsOf names a batch of reads: of a cache's narinfos (by store path
// hash) or of its NAR files (by file hash).
type readsOf struct {
	cacheID int64
	nars    bool
}

func newTracker() *tracker { return &tracker{seen: map[readsOf]map[string]struct{}{}} }

// note records a read of the narinfo of hash in the cache.
func (t *tracker) note(cacheID int64, hash string) { t.add(readsOf{cacheID, false}, hash) }

// noteNar records a read of the NAR file with fileHash in the cache.
func (t *tracker) noteNar(cacheID int64, fileHash string) { t.add(readsOf{cacheID, true}, fileHash) }

func (t *tracker) add(k readsOf, hash string) {
	t.mu.Lock()
	set := t.seen[k]
	if set == nil {
		set = map[string]struct{}{}
		t.seen[k] = set
	}
	set[hash] = struct{}{}
	t.mu.Unlock()
}

// take returns what was recorded and starts afresh.
func (t *tracker) take() map[readsOf]map[string]struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := t.seen
	t.seen = map[readsOf]map[string]struct{}{}
	return seen
}

// FlushAccess writes the narinfo and NAR reads recorded since the last
// flush to the metadata store. Run calls it every accessFlush; collections
// call it before they decide what is used and before each batch they
// remove.
func (s *Service) FlushAccess(ctx context.Context) error {
	now := time.Now()
	for k, set := range s.access.take() {
		hashes := make([]string, 0, len(set))
		for h := range set {
			hashes = append(hashes, h)
		}
		for len(hashes) > 0 {
			n := min(len(hashes), 1000)
			var err error
			if k.nars {
				err = s.meta.TouchNars(ctx, k.cacheID, hashes[:n], now)
			} else {
				err = s.meta.Touch(ctx, k.cacheID, hashes[:n], now)
			}
			if err != nil {
				return internal(err, "record reads of the cache's paths")
			}
			hashes = hashes[n:]
		}
	}
	return nil
}

// accessFlush is how often reads are written to the store. A collection
// removes only what was last used before its window, which is at least its
// grace period and far longer than this, so a read on another replica that
// reaches the store this late still saves what it read.
const accessFlush = 10 * time.Second

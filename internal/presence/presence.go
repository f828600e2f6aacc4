// Package presence owns the in-memory index that answers "does this cache
// hold a narinfo for this store path hash?" without touching the database.
// Most narinfo requests a cache sees are misses (every client asks every
// substituter for every path), so the index must be cheap in time and memory:
// it keeps the first 64 bits of each 160-bit store path hash. A false
// positive only costs a database lookup; there are no false negatives for
// hashes that were added. Deleted narinfos are not removed (with 64-bit keys
// a removal could hide another hash): they cost a lookup until the index is
// rebuilt.
package presence

import (
	"encoding/binary"
	"sync"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// Index is a set of (cache ID, store path hash) pairs, safe for concurrent
// use.
type Index struct {
	mu     sync.RWMutex
	caches map[int64]map[uint64]struct{}
}

// New returns an empty index.
func New() *Index {
	return &Index{caches: make(map[int64]map[uint64]struct{})}
}

// key turns a 32-character nix32 hash into the 64 bits the index keeps.
func key(hash string) (uint64, bool) {
	if len(hash) != 32 {
		return 0, false
	}
	var digest [20]byte
	if _, err := nixbase32.Decode(digest[:], []byte(hash)); err != nil {
		return 0, false
	}
	return binary.LittleEndian.Uint64(digest[:8]), true
}

// Add records hash in the cache. Malformed hashes are ignored.
func (x *Index) Add(cacheID int64, hash string) {
	k, ok := key(hash)
	if !ok {
		return
	}
	x.mu.Lock()
	set := x.caches[cacheID]
	if set == nil {
		set = make(map[uint64]struct{})
		x.caches[cacheID] = set
	}
	set[k] = struct{}{}
	x.mu.Unlock()
}

// Has reports whether hash may be in the cache: false means certainly not.
func (x *Index) Has(cacheID int64, hash string) bool {
	k, ok := key(hash)
	if !ok {
		return false
	}
	x.mu.RLock()
	_, found := x.caches[cacheID][k]
	x.mu.RUnlock()
	return found
}

// DropCache forgets every hash of the cache.
func (x *Index) DropCache(cacheID int64) {
	x.mu.Lock()
	delete(x.caches, cacheID)
	x.mu.Unlock()
}

// Len returns the number of hashes recorded for the cache.
func (x *Index) Len(cacheID int64) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.caches[cacheID])
}

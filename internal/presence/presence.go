// Package presence owns the in-memory index that answers "does this cache
// hold a narinfo for this store path hash?" without touching the database.
// Most narinfo requests a cache sees are misses (every client asks every
// substituter for every path), so the index must be cheap in time and memory:
// it keeps 60 of the 160 bits of each store path hash, in 6 bytes. A false
// positive only costs a database lookup (with ten million paths, about one
// miss in a hundred billion); there are no false negatives for hashes that
// were added and not removed.
//
// Each cache's keys are spread over 4096 buckets by their first 12 bits;
// a bucket is a sorted byte slice of 6-byte records (the next 48 bits),
// grown by an eighth at a time, so ten million paths take about 65 MB and a
// lookup is a binary search over a few thousand records.
package presence

import (
	"encoding/binary"
	"sync"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

const (
	bucketBits = 12
	recordLen  = 6
)

// Index is a set of (cache ID, store path hash) pairs, safe for concurrent
// use.
type Index struct {
	mu     sync.RWMutex
	caches map[int64]*set
}

// set is the keys of one cache.
type set struct {
	n       int
	buckets [1 << bucketBits][]byte
}

// New returns an empty index.
func New() *Index {
	return &Index{caches: make(map[int64]*set)}
}

// key splits a 32-character nix32 hash into its bucket and record.
func key(hash string) (int, [recordLen]byte, bool) {
	var rec [recordLen]byte
	if len(hash) != 32 {
		return 0, rec, false
	}
	var digest [20]byte
	if _, err := nixbase32.Decode(digest[:], []byte(hash)); err != nil {
		return 0, rec, false
	}
	k := binary.BigEndian.Uint64(digest[:8])
	b := int(k >> (64 - bucketBits))
	binary.BigEndian.PutUint64(digest[:8], k<<bucketBits)
	copy(rec[:], digest[:recordLen])
	return b, rec, true
}

// find returns where rec is, or would be, in bucket, and whether it is.
func find(bucket []byte, rec [recordLen]byte) (int, bool) {
	r := load(rec[:])
	lo, hi := 0, len(bucket)/recordLen
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if load(bucket[mid*recordLen:]) < r {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, lo < len(bucket)/recordLen && load(bucket[lo*recordLen:]) == r
}

// load reads a big-endian record.
func load(b []byte) uint64 {
	_ = b[recordLen-1]
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// Add records hash in the cache. Malformed hashes are ignored.
func (x *Index) Add(cacheID int64, hash string) {
	b, rec, ok := key(hash)
	if !ok {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.caches[cacheID]
	if s == nil {
		s = &set{}
		x.caches[cacheID] = s
	}
	bucket := s.buckets[b]
	i, found := find(bucket, rec)
	if found {
		return
	}
	if len(bucket)+recordLen > cap(bucket) {
		grown := make([]byte, len(bucket), len(bucket)+len(bucket)/8+8*recordLen)
		copy(grown, bucket)
		bucket = grown
	}
	at := i * recordLen
	bucket = bucket[:len(bucket)+recordLen]
	copy(bucket[at+recordLen:], bucket[at:])
	copy(bucket[at:], rec[:])
	s.buckets[b] = bucket
	s.n++
}

// Remove forgets hash in the cache. Another hash sharing its 60 bits would
// be forgotten with it; with ten million paths that happens to one pair in
// some tens of thousands of caches, and only costs a miss until the index
// is rebuilt.
func (x *Index) Remove(cacheID int64, hash string) {
	b, rec, ok := key(hash)
	if !ok {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.caches[cacheID]
	if s == nil {
		return
	}
	bucket := s.buckets[b]
	i, found := find(bucket, rec)
	if !found {
		return
	}
	at := i * recordLen
	copy(bucket[at:], bucket[at+recordLen:])
	s.buckets[b] = bucket[:len(bucket)-recordLen]
	s.n--
}

// Has reports whether hash may be in the cache: false means certainly not.
func (x *Index) Has(cacheID int64, hash string) bool {
	b, rec, ok := key(hash)
	if !ok {
		return false
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	s := x.caches[cacheID]
	if s == nil {
		return false
	}
	_, found := find(s.buckets[b], rec)
	return found
}

// DropCache forgets every hash of the cache.
func (x *Index) DropCache(cacheID int64) {
	x.mu.Lock()
	delete(x.caches, cacheID)
	x.mu.Unlock()
}

// Bytes returns the memory the index holds for its records.
func (x *Index) Bytes() int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var n int64
	for _, s := range x.caches {
		for _, b := range s.buckets {
			n += int64(cap(b))
		}
	}
	return n
}

// Len returns the number of hashes recorded for the cache.
func (x *Index) Len(cacheID int64) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if s := x.caches[cacheID]; s != nil {
		return s.n
	}
	return 0
}

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
	"slices"
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
	// changes counts the changes made, so that a server can tell whether
	// the snapshot it last wrote is still the index.
	changes uint64
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
	if !decode32(&digest, hash) {
		return 0, rec, false
	}
	k := binary.BigEndian.Uint64(digest[:8])
	b := int(k >> (64 - bucketBits))
	binary.BigEndian.PutUint64(digest[:8], k<<bucketBits)
	copy(rec[:], digest[:recordLen])
	return b, rec, true
}

// nix32Digits maps a character of Nix's base32 to its value, and any other
// byte to 0xff.
var nix32Digits = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range nixbase32.Alphabet {
		t[c] = byte(i)
	}
	return t
}()

// decode32 decodes a 32-character nix32 hash into its 20-byte digest, as
// nixbase32.Decode does (the last character holds the lowest bits, and
// bits past the digest must be zero), with a table rather than a search of
// the alphabet per character: it runs once per narinfo when a server loads
// its index.
func decode32(out *[20]byte, s string) bool {
	for n := range 32 {
		d := nix32Digits[s[31-n]]
		if d == 0xff {
			return false
		}
		b := n * 5
		i, j := b/8, uint(b%8)
		out[i] |= d << j
		if carry := d >> (8 - j); j > 3 {
			if i+1 >= len(out) {
				if carry != 0 {
					return false
				}
			} else {
				out[i+1] |= carry
			}
		}
	}
	return true
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
	x.changes++
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
	x.changes++
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
	if x.caches[cacheID] != nil {
		delete(x.caches, cacheID)
		x.changes++
	}
	x.mu.Unlock()
}

// CacheIDs returns the caches the index holds hashes for, so that a server
// starting from a snapshot can drop those deleted since it was written.
func (x *Index) CacheIDs() []int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	ids := make([]int64, 0, len(x.caches))
	for id := range x.caches {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Changes returns a count that grows with every change to the index: equal
// counts mean the index has not changed in between.
func (x *Index) Changes() uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.changes
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

// A Builder collects keys to add to an Index in bulk, as a server does
// when it loads every narinfo at start: it appends each key to its bucket
// unsorted, and Install sorts each bucket once, where Add, which keeps its
// bucket sorted, moves half a bucket per key (at ten million paths, some
// seventy gigabytes moved). A Builder is not safe for concurrent use.
type Builder struct {
	caches map[int64]*set
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder { return &Builder{caches: make(map[int64]*set)} }

// Add collects hash for the cache. Malformed hashes are ignored.
func (bl *Builder) Add(cacheID int64, hash string) {
	b, rec, ok := key(hash)
	if !ok {
		return
	}
	s := bl.caches[cacheID]
	if s == nil {
		s = &set{}
		bl.caches[cacheID] = s
	}
	s.buckets[b] = append(s.buckets[b], rec[:]...)
}

// Install adds the keys b collected to x and empties b.
func (x *Index) Install(bl *Builder) {
	var scratch []uint64
	for id, s := range bl.caches {
		for i, bucket := range s.buckets {
			if len(bucket) > 0 {
				s.buckets[i], scratch = sortRecords(bucket, scratch)
			}
		}
		x.mu.Lock()
		cur := x.caches[id]
		if cur == nil {
			x.caches[id] = s
			s.n = s.count()
		} else {
			for i, bucket := range s.buckets {
				if len(bucket) > 0 {
					cur.buckets[i] = mergeRecords(cur.buckets[i], bucket)
				}
			}
			cur.n = cur.count()
		}
		x.changes++
		x.mu.Unlock()
	}
	clear(bl.caches)
}

// count returns the records of s.
func (s *set) count() int {
	n := 0
	for _, b := range s.buckets {
		n += len(b) / recordLen
	}
	return n
}

// sortRecords sorts the records of bucket and drops repeated ones, using
// scratch, and returns the bucket, its spare capacity trimmed to what Add
// would leave, and scratch for the next call.
func sortRecords(bucket []byte, scratch []uint64) ([]byte, []uint64) {
	n := len(bucket) / recordLen
	scratch = scratch[:0]
	for i := range n {
		scratch = append(scratch, load(bucket[i*recordLen:]))
	}
	slices.Sort(scratch)
	scratch = slices.Compact(scratch)
	out := bucket[:0]
	if len(scratch)*recordLen+len(scratch)*recordLen/8+8*recordLen < cap(bucket) {
		out = make([]byte, 0, len(scratch)*recordLen+len(scratch)*recordLen/8+8*recordLen)
	}
	for _, r := range scratch {
		out = append(out, byte(r>>40), byte(r>>32), byte(r>>24), byte(r>>16), byte(r>>8), byte(r))
	}
	return out, scratch
}

// mergeRecords merges two sorted buckets without repeats into a new one.
func mergeRecords(a, b []byte) []byte {
	out := make([]byte, 0, len(a)+len(b)+(len(a)+len(b))/8)
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || len(a) > 0 && load(a) < load(b):
			out, a = append(out, a[:recordLen]...), a[recordLen:]
		case len(a) == 0 || load(b) < load(a):
			out, b = append(out, b[:recordLen]...), b[recordLen:]
		default: // the same record in both
			out, a, b = append(out, a[:recordLen]...), a[recordLen:], b[recordLen:]
		}
	}
	return out
}

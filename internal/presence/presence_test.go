package presence

import (
	"crypto/rand"
	"fmt"
	"runtime"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

func randomHash() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return nixbase32.EncodeToString(b)
}

func TestIndex(t *testing.T) {
	x := New()
	a, b := randomHash(), randomHash()
	x.Add(1, a)
	if !x.Has(1, a) {
		t.Fatal("added hash not found")
	}
	if x.Has(1, b) || x.Has(2, a) {
		t.Fatal("hash found in the wrong cache or never added")
	}
	x.Add(1, "not-a-hash")
	x.Add(1, a[:31]+"e") // 'e' is not in the nix32 alphabet
	if x.Len(1) != 1 || x.Has(1, "not-a-hash") {
		t.Fatalf("malformed hashes were recorded: len %d", x.Len(1))
	}
	x.DropCache(1)
	if x.Has(1, a) || x.Len(1) != 0 {
		t.Fatal("dropped cache still answers")
	}
}

// TestChangesAndCacheIDs: every change that alters the index moves the
// count, lookups and repeats do not, and CacheIDs lists the caches held.
func TestChangesAndCacheIDs(t *testing.T) {
	x := New()
	h := randomHash()
	last := x.Changes()
	step := func(what string, changed bool) {
		t.Helper()
		if got := x.Changes(); (got != last) != changed {
			t.Fatalf("%s: changes %d, was %d", what, got, last)
		}
		last = x.Changes()
	}
	x.Add(3, h)
	step("add", true)
	x.Add(3, h)
	x.Has(3, h)
	step("repeat and lookup", false)
	bl := NewBuilder()
	bl.Add(5, randomHash())
	x.Install(bl)
	step("install", true)
	if ids := x.CacheIDs(); fmt.Sprint(ids) != "[3 5]" {
		t.Fatalf("cache IDs %v, want [3 5]", ids)
	}
	x.Remove(3, h)
	step("remove", true)
	x.Remove(3, h)
	x.DropCache(9)
	step("removing what is not there", false)
	x.DropCache(5)
	step("drop", true)
}

func TestConcurrent(t *testing.T) {
	x := New()
	hashes := make([]string, 1000)
	for i := range hashes {
		hashes[i] = randomHash()
	}
	done := make(chan struct{})
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i, h := range hashes {
				if i%4 == w {
					x.Add(int64(w%2), h)
				}
				x.Has(int64(w%2), h)
			}
		}()
	}
	for range 4 {
		<-done
	}
	if got := x.Len(0) + x.Len(1); got != len(hashes) {
		t.Fatalf("%d hashes recorded, want %d", got, len(hashes))
	}
}

func BenchmarkHas(b *testing.B) {
	for _, n := range []int{1000, 1000000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			x := New()
			for range n {
				x.Add(1, randomHash())
			}
			miss := randomHash()
			b.ResetTimer()
			for range b.N {
				if x.Has(1, miss) {
					b.Fatal("false positive")
				}
			}
		})
	}
}

func TestRemove(t *testing.T) {
	x := New()
	var hashes []string
	for range 5000 {
		h := randomHash()
		hashes = append(hashes, h)
		x.Add(7, h)
		x.Add(7, h) // twice: still one
	}
	if x.Len(7) != len(hashes) {
		t.Fatalf("len %d, want %d", x.Len(7), len(hashes))
	}
	for i, h := range hashes {
		if i%2 == 0 {
			x.Remove(7, h)
		}
	}
	x.Remove(7, randomHash()) // never added
	x.Remove(8, hashes[1])    // another cache
	x.Remove(7, "not-a-hash")
	for i, h := range hashes {
		if got := x.Has(7, h); got != (i%2 == 1) {
			t.Fatalf("hash %d: Has %v after removing the even ones", i, got)
		}
	}
	if x.Len(7) != len(hashes)/2 {
		t.Fatalf("len %d after removals, want %d", x.Len(7), len(hashes)/2)
	}
}

// TestMemory: ten million hashes... would take too long to add here; a
// million must stay within 8 bytes each of heap.
func TestMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("adds a million hashes")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := New()
	const n = 1000000
	for range n {
		x.Add(1, randomHash())
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.1f bytes of heap per hash", per)
	if per > 8 {
		t.Fatalf("%.1f bytes of heap per hash, want at most 8", per)
	}
	runtime.KeepAlive(x)
}

func BenchmarkAdd(b *testing.B) {
	hashes := make([]string, b.N)
	for i := range hashes {
		hashes[i] = randomHash()
	}
	x := New()
	b.ResetTimer()
	for i := range b.N {
		x.Add(1, hashes[i])
	}
}

// TestBuilder: keys installed in bulk, over keys added one by one and with
// repeats, give the index Add alone would have built.
func TestBuilder(t *testing.T) {
	var hashes []string
	for range 50_000 {
		hashes = append(hashes, randomHash())
	}
	want, got := New(), New()
	for i, h := range hashes {
		want.Add(int64(1+i%3), h)
	}
	// Some keys are in the index already; the builder also repeats some.
	for i, h := range hashes[:5000] {
		got.Add(int64(1+i%3), h)
	}
	bl := NewBuilder()
	for i, h := range hashes {
		bl.Add(int64(1+i%3), h)
		if i%7 == 0 {
			bl.Add(int64(1+i%3), h)
		}
	}
	bl.Add(1, "not-a-hash")
	got.Install(bl)
	for id := int64(1); id <= 3; id++ {
		if got.Len(id) != want.Len(id) {
			t.Fatalf("cache %d: %d keys, want %d", id, got.Len(id), want.Len(id))
		}
		for b := range want.caches[id].buckets {
			if string(got.caches[id].buckets[b]) != string(want.caches[id].buckets[b]) {
				t.Fatalf("cache %d bucket %d differs from the one Add builds", id, b)
			}
		}
	}
	for i, h := range hashes {
		if !got.Has(int64(1+i%3), h) {
			t.Fatalf("installed hash %s not found", h)
		}
	}
	if got.Has(1, randomHash()) {
		t.Error("a hash never added is found")
	}
	if len(bl.caches) != 0 {
		t.Error("Install left keys in the builder")
	}
	// The index still takes single keys after an install.
	h := randomHash()
	got.Add(2, h)
	if !got.Has(2, h) || got.Len(2) != want.Len(2)+1 {
		t.Error("Add after Install")
	}
}

// BenchmarkLoad compares loading a million keys one by one with Add and in
// bulk with a Builder.
func BenchmarkLoad(b *testing.B) {
	n := benchLoadN
	if testing.Short() {
		n = 100_000
	}
	hashes := make([]string, n)
	for i := range hashes {
		hashes[i] = randomHash()
	}
	b.Run("add", func(b *testing.B) {
		for range b.N {
			x := New()
			for _, h := range hashes {
				x.Add(1, h)
			}
		}
	})
	b.Run("builder", func(b *testing.B) {
		for range b.N {
			x, bl := New(), NewBuilder()
			for _, h := range hashes {
				bl.Add(1, h)
			}
			x.Install(bl)
		}
	})
}

// benchLoadN is how many keys BenchmarkLoad loads.
var benchLoadN = 1_000_000

// TestDecode32: the table decoder agrees with go-nix's on every valid hash
// and refuses what it refuses: other characters, and bits past the digest.
func TestDecode32(t *testing.T) {
	check := func(s string) {
		t.Helper()
		want := make([]byte, 20)
		_, werr := nixbase32.Decode(want, []byte(s))
		var got [20]byte
		ok := decode32(&got, s)
		if ok != (werr == nil) || ok && string(got[:]) != string(want) {
			t.Fatalf("decode32(%q) = %x, %v; nixbase32 says %x, %v", s, got, ok, want, werr)
		}
	}
	for range 20000 {
		check(randomHash())
	}
	for _, s := range []string{
		"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", // bits past 160
		"1zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
		"00000000000000000000000000000000",
		"0000000000000000000000000000000e", // e is not in the alphabet
		"000000000000000000000000000000U0",
		"0000000000000000000000000000000\xff",
	} {
		check(s)
	}
}

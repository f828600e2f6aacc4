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

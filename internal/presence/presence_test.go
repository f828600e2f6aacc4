package presence

import (
	"crypto/rand"
	"fmt"
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

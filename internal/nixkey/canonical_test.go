package nixkey

import (
	"testing"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// TestCanonicalNix32 checks the shortcut against decoding and encoding
// again, for every first character at the lengths keys use.
func TestCanonicalNix32(t *testing.T) {
	for _, n := range []int{storeHashLen, sha256Nix32Len} {
		for i := 0; i < len(nixbase32.Alphabet); i++ {
			s := string(nixbase32.Alphabet[i])
			for len(s) < n {
				s += "z"
			}
			b, err := nixbase32.DecodeString(s)
			want := err == nil && nixbase32.EncodeToString(b) == s
			if got := canonicalNix32(s); got != want {
				t.Errorf("canonicalNix32(%s) = %v, decoding says %v", s, got, want)
			}
		}
	}
}

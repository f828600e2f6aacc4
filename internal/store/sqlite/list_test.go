package sqlite

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestListEncoding(t *testing.T) {
	lists := [][]string{
		nil,
		{""},
		{"a"},
		{"a", "b"},
		{"", ""},
		{"0a1b-glibc-2.40", "cache.nixos.org-1:abc+/=="},
		{`with "quotes"`, `back\\slash`, "new\nline", "<&>", "ünï", ",", "[", "]", `","`},
	}
	for _, l := range lists {
		enc, err := encodeList(l)
		if err != nil {
			t.Fatalf("encode %q: %v", l, err)
		}
		got, err := decodeList([]byte(enc))
		if err != nil || !slices.Equal(got, l) {
			t.Errorf("decode %s: %q, %v; want %q", enc, got, err, l)
		}
	}
}

// FuzzDecodePlainList checks the fast decoder against encoding/json: where
// it accepts an input, it must agree.
func FuzzDecodePlainList(f *testing.F) {
	for _, s := range []string{`[]`, `[""]`, `["a","b"]`, `["a",]`, `["a" ,"b"]`, `["a\"b"]`, `[1]`, `["a"]x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := decodePlainList(b)
		if !ok {
			return
		}
		var want []string
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("fast decoder accepted %q, which encoding/json refuses: %v", b, err)
		}
		if !slices.Equal(got, normList(want)) {
			t.Fatalf("decode %q: fast %q, encoding/json %q", b, got, want)
		}
	})
}

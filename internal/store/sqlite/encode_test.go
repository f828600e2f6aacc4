package sqlite

import (
	"encoding/json"
	"maps"
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

func TestMapEncoding(t *testing.T) {
	cases := []map[string]string{
		{"a": ""},
		{"": "empty name"},
		{"author": "Jane", "ünï": "日本", "q": `"quoted" \back\ <&>`, "nl": "a\nb\tc\x00d"},
	}
	for _, m := range cases {
		enc, err := encodeMap(m)
		if err != nil {
			t.Fatalf("encode %q: %v", m, err)
		}
		got, err := decodeMap([]byte(enc))
		if err != nil || !maps.Equal(got, m) {
			t.Errorf("decode %s: %q, %v; want %q", enc, got, err, m)
		}
	}
	for _, m := range []map[string]string{nil, {}} {
		enc, err := encodeMap(m)
		if err != nil || enc != "{}" {
			t.Errorf("encode %#v: %q, %v; want {}", m, enc, err)
		}
	}
	if got, err := decodeMap([]byte("{}")); err != nil || got != nil {
		t.Errorf("decode {}: %#v, %v; want nil", got, err)
	}
	for _, m := range []map[string]string{{"k": "\xff"}, {"\xc3": "v"}} {
		if enc, err := encodeMap(m); err == nil {
			t.Errorf("encode %q, which is not UTF-8: %s, no error", m, enc)
		}
	}
}

package store

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckKey(t *testing.T) {
	seg := strings.Repeat("s", 200)
	var long []string
	for len(strings.Join(long, "/")) < MaxKeyLen-len(seg) {
		long = append(long, seg)
	}
	longest := strings.Join(long, "/")
	longest += "/" + strings.Repeat("e", MaxKeyLen-len(longest)-1)
	valid := []string{
		"a", "nar/ab/cd.nar", "x.y_z-0", "...", "a/.b",
		longest, strings.Repeat("n", MaxSegmentLen),
	}
	invalid := []string{
		"", "/", "../x", "..", ".", "a/../b", "a/./b", "./a", "a/..", "/abs",
		"a//b", "a/", "A", "nar/ABC", "a b", "a\x00b", "a\\b", "..\\x",
		"a/b/", "~", "tmp~", "a:b", "é", "a\nb",
		longest + "x", strings.Repeat("n", MaxSegmentLen+1),
	}
	for _, k := range valid {
		if err := CheckKey(k); err != nil {
			t.Errorf("CheckKey(%.40q): %v", k, err)
		}
	}
	for _, k := range invalid {
		if err := CheckKey(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("CheckKey(%.40q) = %v, want ErrInvalidKey", k, err)
		}
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, p := range []string{"", "n", "nar/", "nar/ab", "a/b/c.", "a/b/.."} {
		if err := CheckPrefix(p); err != nil {
			t.Errorf("CheckPrefix(%q): %v", p, err)
		}
	}
	// Each would let a List reach outside the root or is no start of a key.
	for _, p := range []string{"../", "/", "../x", "a/../", "a//", "./", "A", "nar/A", "a b"} {
		if err := CheckPrefix(p); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("CheckPrefix(%q) = %v, want ErrInvalidKey", p, err)
		}
	}
}

package narverify

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nar"
)

func parse(b []byte) error {
	return parseNAR(bufio.NewReader(bytes.NewReader(b)))
}

// dir writes a directory node whose entries are written by the given
// functions, each writing one node.
func (b *narBuilder) dir(entries ...any) *narBuilder {
	b.str("(", "type", "directory")
	for i := 0; i < len(entries); i += 2 {
		b.str("entry", "(", "name", entries[i].(string), "node")
		entries[i+1].(func(*narBuilder))(b)
		b.str(")")
	}
	return b.str(")")
}

func fileNode(contents string) func(*narBuilder) {
	return func(b *narBuilder) { b.file(contents) }
}

func linkNode(target string) func(*narBuilder) {
	return func(b *narBuilder) { b.link(target) }
}

func dirNode(entries ...any) func(*narBuilder) {
	return func(b *narBuilder) { b.dir(entries...) }
}

func u64(n uint64) []byte {
	return binary.LittleEndian.AppendUint64(nil, n)
}

func validNARs() map[string][]byte {
	nars := map[string][]byte{
		"regular root":    newNAR().file("hello").Bytes(),
		"empty file root": newNAR().file("").Bytes(),
		"executable root": newNAR().str("(", "type", "regular", "executable", "", "contents", "#!", ")").Bytes(),
		"symlink root":    newNAR().link("/nix/store/x").Bytes(),
		"empty directory": newNAR().dir().Bytes(),
		"nested": newNAR().dir(
			"a", dirNode("b", fileNode("in b"), "c", dirNode()),
			"d", linkNode("a/b"),
			"e", fileNode(""),
		).Bytes(),
		// Sorting is by bytes: upper case, then lower case, then UTF-8.
		"byte order": newNAR().dir("Z", fileNode(""), "a", fileNode(""), "ab", fileNode(""),
			"b", fileNode(""), "é", fileNode("")).Bytes(),
		"long name": newNAR().dir(strings.Repeat("n", maxNameLen), fileNode("")).Bytes(),
	}
	for n := range 17 {
		nars["contents of "+strings.Repeat("x", n)] = newNAR().file(strings.Repeat("x", n)).Bytes()
	}
	return nars
}

func TestParseValid(t *testing.T) {
	for name, b := range validNARs() {
		if err := parse(b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		// The parser stops right after the NAR.
		r := bufio.NewReader(bytes.NewReader(append(bytes.Clone(b), "rest"...)))
		if err := parseNAR(r); err != nil {
			t.Errorf("%s followed by more: %v", name, err)
		}
		if rest, _ := io.ReadAll(r); string(rest) != "rest" {
			t.Errorf("%s: left %q after the NAR", name, rest)
		}
		if name == "long name" {
			continue // go-nix allows 255 bytes, Nix sets no limit
		}
		if err := goNixRead(b); err != nil {
			t.Errorf("%s: go-nix rejects it: %v", name, err)
		}
	}
}

func goNixRead(b []byte) error {
	r, err := nar.NewReader(bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		if _, err := r.Next(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
	}
}

func TestParseInvalid(t *testing.T) {
	entry := func(name string) []byte { return newNAR().dir(name, fileNode("")).Bytes() }
	tests := []struct {
		name string
		nar  []byte
		want string
	}{
		{"empty", nil, "reading the NAR magic: expected \"nix-archive-1\": reading the length of the keyword: the NAR ends early"},
		{"magic only", newNAR().Bytes(), "at /: expected \"(\": reading the length of the keyword: the NAR ends early"},
		{"other magic", (&narBuilder{}).str("nix-archive-2").file("").Bytes(), `expected "nix-archive-1", found "nix-archive-2"`},
		{"huge keyword", append(u64(1<<62), "nix-archive-1"...), "keyword of 4611686018427387904 bytes is longer than the 16 allowed"},
		{"no open paren", newNAR().str("type", "regular").Bytes(), `at /: expected "(", found "type"`},
		{"unknown type", newNAR().str("(", "type", "fifo", ")").Bytes(), `unknown node type "fifo"`},
		{"executable value", newNAR().str("(", "type", "regular", "executable", "yes", "contents", "", ")").Bytes(),
			`executable marker has the value "yes"`},
		{"no contents", newNAR().str("(", "type", "regular", ")").Bytes(), `expected "contents", found ")"`},
		{"executable after contents", newNAR().str("(", "type", "regular", "contents", "", "executable", "", ")").Bytes(),
			`expected ")", found "executable"`},
		{"contents cut", newNAR().str("(", "type", "regular", "contents").raw(u64(100)).raw([]byte("short")).Bytes(),
			"reading 100 bytes of file contents: the NAR ends early"},
		{"contents out of range", newNAR().str("(", "type", "regular", "contents").raw(u64(1 << 63)).Bytes(),
			"file size 9223372036854775808 is out of range"},
		{"contents padding", newNAR().str("(", "type", "regular", "contents").raw(u64(1)).raw([]byte("a\x00\x00\x01\x00\x00\x00\x00")).str(")").Bytes(),
			"non-zero padding after the file contents"},
		{"keyword padding", newNAR().raw(u64(1)).raw([]byte("(\x00\x00\x00\x00\x00\x00\x07")).Bytes(),
			"non-zero padding after the keyword"},
		{"symlink without target", newNAR().str("(", "type", "symlink", ")").Bytes(), `expected "target", found ")"`},
		{"empty target", newNAR().link("").Bytes(), `invalid symlink target ""`},
		{"NUL in target", newNAR().link("a\x00b").Bytes(), `invalid symlink target "a\x00b"`},
		{"long target", newNAR().link(strings.Repeat("t", maxTargetLen+1)).Bytes(), "symlink target of 4097 bytes is longer than the 4096 allowed"},
		{"unsorted", newNAR().dir("b", fileNode(""), "a", fileNode("")).Bytes(), `at /: entries are not sorted: "a" comes after "b"`},
		{"duplicate", newNAR().dir("a", fileNode("1"), "a", fileNode("2")).Bytes(), `duplicate entry "a"`},
		{"case order", newNAR().dir("a", fileNode(""), "Z", fileNode("")).Bytes(), `"Z" comes after "a"`},
		{"empty name", entry(""), `invalid entry name ""`},
		{"dot", entry("."), `invalid entry name "."`},
		{"dot dot", entry(".."), `invalid entry name ".."`},
		{"slash", entry("a/b"), `invalid entry name "a/b"`},
		{"NUL in name", entry("a\x00b"), `invalid entry name "a\x00b"`},
		{"long name", entry(strings.Repeat("n", maxNameLen+1)), "entry name of 1025 bytes is longer than the 1024 allowed"},
		{"unknown directory item", newNAR().str("(", "type", "directory", "thing").Bytes(), `expected "entry" or ")", found "thing"`},
		{"entry not closed", newNAR().str("(", "type", "directory", "entry", "(", "name", "a", "node").file("").str("entry").Bytes(),
			`at /a: expected ")", found "entry"`},
		{"nested error path", newNAR().dir("a", dirNode("b", dirNode("c", linkNode("")))).Bytes(), `at /a/b/c: invalid symlink target ""`},
		{"directory cut", newNAR().str("(", "type", "directory", "entry", "(", "name", "a", "node").file("").str(")").Bytes(),
			"the NAR ends early"},
		{"too deep", nested(maxDepth + 1), "directories nested more than 4096 deep"},
	}
	for _, tt := range tests {
		err := parse(tt.nar)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// nested returns a NAR of depth directories, each in the one before.
func nested(depth int) []byte {
	b := newNAR()
	for range depth - 1 {
		b.str("(", "type", "directory", "entry", "(", "name", "d", "node")
	}
	b.str("(", "type", "directory", ")")
	for range depth - 1 {
		b.str(")", ")")
	}
	return b.Bytes()
}

func TestParseDepth(t *testing.T) {
	if err := parse(nested(maxDepth)); err != nil {
		t.Errorf("%d nested directories: %v", maxDepth, err)
	}
}

// TestParseTruncated cuts a valid NAR at every length: all must fail.
func TestParseTruncated(t *testing.T) {
	b := validNARs()["nested"]
	for n := range len(b) {
		err := parse(b[:n])
		if err == nil || !strings.Contains(err.Error(), "the NAR ends early") {
			t.Fatalf("cut to %d of %d bytes: %v", n, len(b), err)
		}
	}
}

// FuzzParseNAR checks that no input makes the parser panic or hang, and
// that whatever it accepts go-nix accepts too (names longer than go-nix's
// 255 bytes aside). Run with -fuzz=FuzzParseNAR; a plain test run checks
// the seeds.
func FuzzParseNAR(f *testing.F) {
	for _, b := range validNARs() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if parse(b) != nil {
			return
		}
		if err := goNixRead(b); err != nil && !strings.Contains(err.Error(), "exceeds maximum of 255 bytes") {
			t.Errorf("accepted a NAR go-nix rejects: %v", err)
		}
	})
}

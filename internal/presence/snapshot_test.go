package presence

import (
	"bytes"
	"errors"
	"testing"
)

// TestSnapshot: an index read back from its snapshot holds the same keys,
// of every cache, and takes more.
func TestSnapshot(t *testing.T) {
	x := New()
	kept := map[int64][]string{}
	for id := int64(1); id <= 3; id++ {
		for range 2000 * id {
			h := randomHash()
			x.Add(id, h)
			kept[id] = append(kept[id], h)
		}
	}
	x.Add(9, randomHash())
	x.DropCache(9)
	var buf bytes.Buffer
	n, err := x.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo: %d bytes, %v; wrote %d", n, err, buf.Len())
	}
	y, err := Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for id, hashes := range kept {
		if y.Len(id) != len(hashes) {
			t.Fatalf("cache %d: %d keys read back, want %d", id, y.Len(id), len(hashes))
		}
		for _, h := range hashes {
			if !y.Has(id, h) {
				t.Fatalf("cache %d lost %s", id, h)
			}
		}
	}
	if y.Len(9) != 0 || y.Has(4, kept[1][0]) {
		t.Fatal("keys of a dropped or another cache read back")
	}
	extra := randomHash()
	y.Add(1, extra)
	if !y.Has(1, extra) || !y.Has(1, kept[1][0]) || y.Len(1) != len(kept[1])+1 {
		t.Fatal("a key added after reading is not found, or hid another")
	}
}

// TestSnapshotDamaged: every truncation, a flipped bit anywhere, and data
// after the end are refused with ErrBadSnapshot, never read as an index.
func TestSnapshotDamaged(t *testing.T) {
	x := New()
	for range 300 {
		x.Add(1, randomHash())
	}
	var buf bytes.Buffer
	if _, err := x.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	check := func(what string, b []byte) {
		t.Helper()
		if y, err := Read(bytes.NewReader(b)); !errors.Is(err, ErrBadSnapshot) || y != nil {
			t.Fatalf("%s: read as %v, %v; want ErrBadSnapshot", what, y, err)
		}
	}
	for n := 0; n < len(good); n += 1 + n/7 {
		check("truncated", good[:n])
	}
	for i := 0; i < len(good); i += 1 + i/5 {
		b := bytes.Clone(good)
		b[i] ^= 0x10
		check("a flipped bit", b)
	}
	check("data after the end", append(bytes.Clone(good), 0))
	check("empty", nil)
}

package chunk

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/local"
)

// readOnly hides a reader's WriteTo, so that io.Copy reads it.
type readOnly struct{ io.Reader }

// TestFramesWriteTo: the frames of chunks in two packs, read whole and
// from every offset, are the same bytes whether read or written out with
// WriteTo (which sends local packs with sendfile); a pack shorter than its
// records and a missing one are errors both ways.
func TestFramesWriteTo(t *testing.T) {
	dir := t.TempDir()
	blobs, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := bytes.Repeat([]byte("0123456789"), 1000) // pack a: 10000 bytes
	b := bytes.Repeat([]byte("abcdefghij"), 500)  // pack b: 5000 bytes
	for key, data := range map[string][]byte{"pack/aa/1": a, "pack/bb/2": b} {
		if err := blobs.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	chunks := []store.Chunk{
		{Pack: "pack/aa/1", Offset: 0, Length: 3000}, // these two make one span
		{Pack: "pack/aa/1", Offset: 3000, Length: 2000},
		{Pack: "pack/bb/2", Offset: 100, Length: 4900},  // to the end of b
		{Pack: "pack/aa/1", Offset: 9000, Length: 1000}, // back to a
	}
	want := slices.Concat(a[:5000], b[100:], a[9000:])
	for _, rg := range [][2]int64{{0, -1}, {1, -1}, {2999, 2}, {4999, 10}, {5000, 4900}, {9899, 2}, {10899, 1}, {0, 1 << 20}} {
		off, n := rg[0], rg[1]
		end := int64(len(want))
		if n >= 0 && off+n < end {
			end = off + n
		}
		read, err := io.ReadAll(readOnly{Frames(t.Context(), blobs, chunks, off, n)})
		if err != nil || !bytes.Equal(read, want[off:end]) {
			t.Fatalf("read %d+%d: %d bytes, %v", off, n, len(read), err)
		}
		var buf bytes.Buffer
		if m, err := io.Copy(&buf, Frames(t.Context(), blobs, chunks, off, n)); err != nil || m != end-off || !bytes.Equal(buf.Bytes(), want[off:end]) {
			t.Fatalf("written out %d+%d: %d bytes, %v", off, n, m, err)
		}
	}

	// Over a TCP connection, where the local store's ranges go by sendfile.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(c, Frames(t.Context(), blobs, chunks, 7, -1)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, want[7:]) {
		t.Fatalf("over TCP: %d bytes, not the %d of the frames", len(b), len(want)-7)
	}

	// Pack b cut short, then gone.
	if err := os.Truncate(filepath.Join(dir, "pack", "bb", "2"), 3000); err != nil {
		t.Skipf("cannot cut the pack where the store keeps it: %v", err)
	}
	for _, name := range []string{"read", "written out"} {
		var err error
		if name == "read" {
			_, err = io.ReadAll(readOnly{Frames(t.Context(), blobs, chunks, 0, -1)})
		} else {
			_, err = io.Copy(io.Discard, Frames(t.Context(), blobs, chunks, 0, -1))
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s with a short pack: %v, want unexpected EOF", name, err)
		}
	}
	if err := blobs.Delete(t.Context(), "pack/bb/2"); err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, Frames(t.Context(), blobs, chunks, 0, -1))
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "pack/bb/2") {
		t.Errorf("written out with a pack gone: %v, want not found naming it", err)
	}
}

package narverify

import (
	"bytes"
	"io"
	"testing"

	"github.com/larder-cache/larder/internal/compression"
)

// TestLastBytesWithheld checks the property the caller's storage relies
// on: a consumer that reads exactly Size bytes and never reads again gets
// an error for bad data, and never all Size bytes of it; for good data it
// gets every byte without an error and the Result is ready at once.
func TestLastBytesWithheld(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 50_000))
	xzFile := compress(t, compression.XZ, narData)
	xzHash := sha(xzFile)
	wrongHash := xzHash
	wrongHash[31] ^= 0xff
	unsorted := newNAR().dir("b", fileNode(""), "a", fileNode("")).Bytes()
	tests := []struct {
		name string
		body []byte // what the client sends
		size int64  // its declared size
		opts Options
		kind Kind
	}{
		{"good none", narData, 0, Options{}, 0},
		{"good xz", xzFile, 0, Options{Ext: ".xz", ExpectFileHash: xzHash[:]}, 0},
		{"file hash mismatch", xzFile, 0, Options{Ext: ".xz", ExpectFileHash: wrongHash[:]}, KindInvalid},
		{"xz cut short", xzFile[:len(xzFile)-20], 0, Options{Ext: ".xz"}, KindInvalid},
		{"NAR cut short", narData[:len(narData)-8], 0, Options{}, KindInvalid},
		{"trailing data", append(bytes.Clone(narData), 0), 0, Options{}, KindInvalid},
		{"not a NAR", compress(t, compression.XZ, randomBytes(10_000, 3)), 0, Options{Ext: ".xz"}, KindInvalid},
		{"unsorted", unsorted, 0, Options{}, KindInvalid},
		{"wrong extension", xzFile, 0, Options{Ext: ".zst"}, KindInvalid},
		{"NAR too large", narData, 0, Options{Limits: Limits{MaxNarSize: int64(len(narData)) - 1}}, KindTooLarge},
		{"body longer than declared", append(bytes.Clone(narData), "x"...), int64(len(narData)), Options{}, KindTruncated},
	}
	for _, tt := range tests {
		size := tt.size
		if size == 0 {
			size = int64(len(tt.body))
		}
		for _, piece := range []int{1, 13, 4096, 1 << 20} {
			opts := tt.opts
			opts.Size = size
			v := NewReader(&chunkedReader{data: tt.body, piece: piece}, opts)
			buf := make([]byte, size)
			n, err := io.ReadFull(v, buf)
			if tt.kind == 0 {
				if err != nil || !bytes.Equal(buf, tt.body) {
					t.Fatalf("%s, pieces of %d: ReadFull: %d bytes, %v", tt.name, piece, n, err)
				}
				if res, err := v.Result(); err != nil || res.FileSize != size {
					t.Fatalf("%s, pieces of %d: Result right after ReadFull: %+v, %v", tt.name, piece, res, err)
				}
				continue
			}
			if err == nil || kindOf(err) != tt.kind {
				t.Fatalf("%s, pieces of %d: ReadFull of %d bytes gave %d bytes and error %v, want kind %v",
					tt.name, piece, size, n, err, tt.kind)
			}
			if int64(n) >= size {
				t.Fatalf("%s, pieces of %d: %d of %d bytes delivered", tt.name, piece, n, size)
			}
			v.Close()
		}
	}
}

// TestUnknownSizeEndsWithError checks that without a declared size the
// error takes the place of io.EOF: a consumer reading to the end never
// sees a clean end of bad data.
func TestUnknownSizeEndsWithError(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 10_000))
	for _, eofWithData := range []bool{false, true} {
		r := &chunkedReader{data: append(bytes.Clone(narData), "junk"...), piece: 4096, eofWithData: eofWithData}
		v := NewReader(r, Options{Size: -1})
		out, err := io.ReadAll(v)
		if kindOf(err) != KindInvalid {
			t.Errorf("EOF with data %v: %d bytes, error %v", eofWithData, len(out), err)
		}
	}
}

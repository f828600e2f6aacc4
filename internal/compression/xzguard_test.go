package compression

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

// withDictCode returns a copy of a single-block xz stream written by
// ulikunitz/xz with the LZMA2 dictionary size byte of its block header set
// to code and the header's CRC32 fixed, so that only the size is wrong.
func withDictCode(t testing.TB, enc []byte, code byte) []byte {
	t.Helper()
	const at = 12 // the block header follows the 12-byte stream header
	size := (int(enc[at]) + 1) * 4
	hdr := enc[at : at+size]
	if hdr[1] != 0 || hdr[2] != 0x21 || hdr[3] != 1 {
		t.Fatalf("unexpected block header % x", hdr)
	}
	out := bytes.Clone(enc)
	out[at+4] = code
	binary.LittleEndian.PutUint32(out[at+size-4:], crc32.ChecksumIEEE(out[at:at+size-4]))
	return out
}

func TestXZDictLimit(t *testing.T) {
	data := testData(5000)
	enc := xzEncode(t, data, xz.WriterConfig{})
	tests := []struct {
		code byte
		dict int64
		ok   bool
	}{
		{22, 8 << 20, true},
		{28, 64 << 20, true},
		{29, 96 << 20, false},
		{37, 3 << 29, false},
		{40, 1<<32 - 1, false},
	}
	for _, tt := range tests {
		if got, err := lzma2Dict(tt.code); err != nil || got != tt.dict {
			t.Errorf("lzma2Dict(%d) = %d, %v; want %d", tt.code, got, err, tt.dict)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, err := decode(XZ, bytes.NewReader(withDictCode(t, enc, tt.code)))
		runtime.ReadMemStats(&after)
		if tt.ok {
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("dictionary of %d bytes: %d bytes, %v", tt.dict, len(got), err)
			}
			continue
		}
		var de *DecodeError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), "dictionary") {
			t.Errorf("dictionary of %d bytes: error %v, want one about the dictionary", tt.dict, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
			t.Errorf("refusing a dictionary of %d bytes allocated %d bytes", tt.dict, alloc)
		}
	}
	if _, err := lzma2Dict(41); err == nil {
		t.Error("lzma2Dict(41) succeeded")
	}
}

// TestXZGuardStructures decodes streams whose structures the guard must
// follow: sizes in block headers, several blocks and streams, stream
// padding, every check length and an index of many records.
func TestXZGuardStructures(t *testing.T) {
	data := testData(400_000)
	for _, cfg := range []xz.WriterConfig{
		{BlockSize: 4096}, // about a hundred blocks and index records
		{CheckSum: xz.SHA256, BlockSize: 100_000},
		{NoCheckSum: true, BlockSize: 1 << 16},
		{CheckSum: xz.CRC32},
	} {
		enc := xzEncode(t, data, cfg)
		enc = append(append(enc, 0, 0, 0, 0), enc...)
		got, err := decode(XZ, bytes.NewReader(enc))
		if err != nil || !bytes.Equal(got, append(bytes.Clone(data), data...)) {
			t.Errorf("%+v: %d bytes, %v", cfg, len(got), err)
		}
	}
}

func TestXZGuardRejects(t *testing.T) {
	valid := xzEncode(t, testData(2000), xz.WriterConfig{})
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"bad magic", append([]byte("\xfd7zXY\x00"), valid[6:]...), "bad magic"},
		{"stream header only", valid[:12], "ends early"},
		{"garbage after stream", append(bytes.Clone(valid), "junk"...), "unexpected data after the xz stream"},
		{"short padding", append(bytes.Clone(valid), 0, 0), "ends early"},
		{"bad chunk control byte", withChunkControl(valid, 0x05), "bad control byte"},
	}
	for _, tt := range tests {
		_, err := decode(XZ, bytes.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// withChunkControl sets the control byte of the first LZMA2 chunk of a
// single-block stream written by ulikunitz/xz.
func withChunkControl(enc []byte, c byte) []byte {
	out := bytes.Clone(enc)
	out[12+(int(enc[12])+1)*4] = c
	return out
}

// TestXZGuardPassesBytes checks that the guard hands its input through
// unchanged whatever the size of the reads.
func TestXZGuardPassesBytes(t *testing.T) {
	enc := readFixture(t, "sample-multistream.nar.xz")
	for _, n := range []int{1, 3, 64, 1 << 16} {
		g := newXZGuard(bufioReader(bytes.NewReader(enc)), DefaultMaxWindow, &reservation{})
		got, err := io.ReadAll(chunkReader{g, n})
		if err != nil || !bytes.Equal(got, enc) {
			t.Errorf("reads of %d: %d bytes, %v", n, len(got), err)
		}
	}
}

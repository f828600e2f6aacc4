package compression

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"
)

// FuzzNewReader checks that no input makes a decoder panic, hang or return
// an error that is not a *DecodeError, that none reserves more than its
// window limit allows, and that each gives back all it reserved when
// closed. Run with -fuzz=FuzzNewReader; a plain test run checks the seeds.
func FuzzNewReader(f *testing.F) {
	data := testData(3000)
	for i, m := range allMethods {
		if m == Bzip2 {
			continue // seeds must not depend on the bzip2 tool
		}
		f.Add(uint8(i), encode(f, m, data))
	}
	f.Add(uint8(0), readFixture(f, "sample-multistream.nar.xz"))
	f.Add(uint8(2), readFixture(f, "sample.nar.bz2"))
	for _, seed := range hostileHeaders(f) {
		f.Add(uint8(indexOf(seed.method)), seed.in)
	}
	budget := NewBudget(fuzzMaxWindow+32<<20, time.Millisecond)
	f.Fuzz(func(t *testing.T, which uint8, in []byte) {
		m := allMethods[int(which)%len(allMethods)]
		rc, err := Open(context.Background(), m, bytes.NewReader(in), Options{MaxWindow: fuzzMaxWindow, Budget: budget})
		if err == nil {
			// Read at most 64 MiB: a small input may still expand a lot.
			_, err = io.Copy(io.Discard, io.LimitReader(rc, 64<<20))
			if got := budget.InUse(); got > 2*(fuzzMaxWindow+25<<20) {
				t.Errorf("%s: %d bytes reserved", m, got)
			}
			rc.Close()
		}
		if n := budget.InUse(); n != 0 {
			t.Fatalf("%s: %d bytes still reserved after Close", m, n)
		}
		if err == nil || err == io.EOF {
			return
		}
		if _, ok := err.(*DecodeError); !ok {
			t.Errorf("%s: error %T %v is not a *DecodeError", m, err, err)
		}
	})
}

// fuzzMaxWindow keeps the fuzzer's decoders small.
const fuzzMaxWindow = 8 << 20

func indexOf(method string) int {
	for i, m := range allMethods {
		if m == method {
			return i
		}
	}
	panic(method)
}

type hostile struct {
	name, method string
	in           []byte
}

// hostileHeaders are streams whose headers ask for too much, lie, or stop
// short: each must be refused before its decoder allocates for it.
func hostileHeaders(t testing.TB) []hostile {
	data := testData(5000)
	zst := encode(t, Zstd, data)
	lz := encode(t, LZ4, data)
	xzData := encode(t, XZ, data)
	frame := func(fhd byte, rest ...byte) []byte {
		return append([]byte{0x28, 0xb5, 0x2f, 0xfd, fhd}, rest...)
	}
	return []hostile{
		{"zstd window of 2 TiB", Zstd, frame(0x00, 31<<3, 0x01, 0, 0)},
		{"zstd window of 128 MiB", Zstd, frame(0x00, 17<<3, 0x01, 0, 0)},
		{"zstd single segment of 16 EiB", Zstd, frame(0xe0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0)},
		{"zstd header cut", Zstd, frame(0xc0)},
		{"zstd reserved bit", Zstd, frame(0x08, 10<<3, 0x01, 0, 0)},
		{"zstd reserved block type", Zstd, frame(0x00, 10<<3, 0x07, 0, 0)},
		{"zstd skippable frame of 4 GiB", Zstd, []byte{0x50, 0x2a, 0x4d, 0x18, 0xff, 0xff, 0xff, 0xff, 1, 2, 3}},
		{"zstd skippable frame, then a large window", Zstd,
			append([]byte{0x5f, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 9, 9}, frame(0x00, 20<<3, 0x01, 0, 0)...)},
		{"zstd frame, then a large window", Zstd, append(bytes.Clone(zst), frame(0x00, 25<<3, 0x01, 0, 0)...)},
		{"lz4 legacy frame", LZ4, []byte{0x02, 0x21, 0x4c, 0x18, 0xff, 0xff, 0xff, 0x7f}},
		{"lz4 bad block size code", LZ4, []byte{0x04, 0x22, 0x4d, 0x18, 0x64, 0x30, 0x00}},
		{"lz4 frame, then a legacy one", LZ4, append(bytes.Clone(lz), 0x02, 0x21, 0x4c, 0x18, 4, 0, 0, 0)},
		{"lz4 skippable frame of 4 GiB", LZ4, []byte{0x5a, 0x2a, 0x4d, 0x18, 0xff, 0xff, 0xff, 0xff}},
		{"xz dictionary of 4 GiB", XZ, withDictCode(t, xzData, 40)},
		{"xz stream header only", XZ, xzData[:12]},
		{"brotli large window", Brotli, []byte{0x11, 0x3c, 0x00}},
		{"brotli 16 MiB window", Brotli, []byte{0x0f, 0x00}},
	}
}

// TestHostileHeaders checks that every hostile header is refused with a
// *DecodeError, without allocating what it asks for, and leaves nothing
// reserved.
func TestHostileHeaders(t *testing.T) {
	budget := NewBudget(fuzzMaxWindow+32<<20, time.Second)
	for _, h := range hostileHeaders(t) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := decodeWith(h.method, h.in, Options{MaxWindow: fuzzMaxWindow, Budget: budget})
		runtime.ReadMemStats(&after)
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Errorf("%s: error %v, want a *DecodeError", h.name, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
			t.Errorf("%s: refusing it allocated %s", h.name, mib(int64(alloc)))
		}
		if n := budget.InUse(); n != 0 {
			t.Errorf("%s: %d bytes still reserved", h.name, n)
		}
	}
}

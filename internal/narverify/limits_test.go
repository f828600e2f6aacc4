package narverify

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/compression"
	"github.com/ulikunitz/xz"
)

type countingReader struct {
	r     io.Reader
	reads int
	n     int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestLimits(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 1<<20))
	zst := compress(t, compression.Zstd, narData)
	fileLen, narLen := int64(len(zst)), int64(len(narData))
	ratio := float64(narLen) / float64(fileLen)
	tests := []struct {
		name   string
		size   int64
		limits Limits
		want   string // "" for success
	}{
		{"no limits", -1, Limits{}, ""},
		{"file size at the limit", fileLen, Limits{MaxFileSize: fileLen}, ""},
		{"declared size over the limit", fileLen, Limits{MaxFileSize: fileLen - 1},
			"upload of " + itoa(fileLen) + " bytes exceeds the maximum file size of " + itoa(fileLen-1) + " bytes"},
		{"file size over the limit", -1, Limits{MaxFileSize: fileLen - 1},
			"upload exceeds the maximum file size of " + itoa(fileLen-1) + " bytes"},
		{"NAR size at the limit", fileLen, Limits{MaxNarSize: narLen}, ""},
		{"NAR size over the limit", fileLen, Limits{MaxNarSize: narLen - 1},
			"decompressed NAR exceeds the maximum NAR size of " + itoa(narLen-1) + " bytes"},
		{"ratio under the limit", fileLen, Limits{MaxRatio: ratio * 1.01}, ""},
		{"ratio over the limit", fileLen, Limits{MaxRatio: ratio * 0.99},
			"decompressed NAR exceeds "},
		{"ratio over the limit, unknown size", -1, Limits{MaxRatio: ratio * 0.99},
			"x the upload size (decompression bomb?)"},
		{"ratio over the limit below the floor", fileLen, Limits{MaxRatio: ratio * 0.5, RatioFloor: narLen}, ""},
		{"ratio over the limit above the floor", fileLen, Limits{MaxRatio: ratio * 0.5, RatioFloor: narLen - 1},
			"decompression bomb?"},
	}
	for _, tt := range tests {
		src := &countingReader{r: bytes.NewReader(zst)}
		v := NewReader(src, Options{Ext: ".zst", Size: tt.size, Limits: tt.limits})
		_, err := io.Copy(io.Discard, v)
		v.Close()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil || kindOf(err) != KindTooLarge || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want a TooLarge error containing %q", tt.name, err, tt.want)
		}
		if strings.HasPrefix(tt.name, "declared") && src.reads != 0 {
			t.Errorf("%s: the body was read %d times", tt.name, src.reads)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// bombSize is the size of the zero-filled file in the bomb NARs.
const bombSize = 2 << 30

// narOfZeros returns the bytes before and after the contents of a NAR
// holding a single regular file of size zero bytes.
func narOfZeros(size int64) (prefix, suffix []byte) {
	b := newNAR().str("(", "type", "regular", "contents")
	b.raw(binary.LittleEndian.AppendUint64(nil, uint64(size)))
	prefix = bytes.Clone(b.Bytes())
	pad := make([]byte, (8-size%8)%8)
	suffix = append(pad, (&narBuilder{}).str(")").Bytes()...)
	return prefix, suffix
}

// zstdBomb returns a zstd frame of a NAR holding size zero bytes, written
// directly as RLE blocks: about four bytes per 128 KiB of zeros, so that a
// 2 GiB file takes 64 KiB without ever being materialised.
func zstdBomb(size int64) []byte {
	prefix, suffix := narOfZeros(size)
	const blockMax = 128 << 10
	out := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 7 << 3} // window 128 KiB
	block := func(typ byte, n int, last bool, content []byte) {
		h := uint32(n)<<3 | uint32(typ)<<1
		if last {
			h |= 1
		}
		out = append(out, byte(h), byte(h>>8), byte(h>>16))
		out = append(out, content...)
	}
	block(0, len(prefix), false, prefix)
	for left := size; left > 0; left -= blockMax {
		block(1, int(min(left, blockMax)), false, []byte{0})
	}
	block(0, len(suffix), true, suffix)
	return out
}

// TestZstdBombIsValid checks the crafted frame on a small size: it must be
// a valid NAR, so that the bomb tests below test the limits and nothing
// else.
func TestZstdBombIsValid(t *testing.T) {
	const size = 3<<20 + 5
	prefix, suffix := narOfZeros(size)
	want := sha256.Sum256(append(append(bytes.Clone(prefix), make([]byte, size)...), suffix...))
	_, res, err := verify(zstdBomb(size), Options{Ext: ".zst", Size: -1})
	if err != nil || res.NarHash != want || res.NarSize != int64(len(prefix)+size+len(suffix)) {
		t.Fatalf("Result %+v, %v", res, err)
	}
}

// streamBomb compresses a NAR holding bombSize zero bytes as it is read,
// in a goroutine that stops when the returned reader is closed.
func streamBomb(t *testing.T, method string) (io.ReadCloser, <-chan struct{}) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var w io.WriteCloser
		if method == compression.XZ {
			var err error
			if w, err = (xz.WriterConfig{DictCap: 1 << 20}).NewWriter(pw); err != nil {
				pw.CloseWithError(err)
				return
			}
		} else {
			w = newWriter(t, method, pw)
		}
		prefix, suffix := narOfZeros(bombSize)
		_, err := w.Write(prefix)
		zeros := make([]byte, 1<<20)
		for left := int64(bombSize); left > 0 && err == nil; left -= int64(len(zeros)) {
			_, err = w.Write(zeros)
		}
		if err == nil {
			_, err = w.Write(suffix)
		}
		if err == nil {
			err = w.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, done
}

// TestBombs feeds NARs holding a 2 GiB file of zeros, compressed by
// several methods, to verifiers with limits: each must stop early, having
// decompressed little more than its limit, and report KindTooLarge.
func TestBombs(t *testing.T) {
	const maxNar = 64 << 20
	const slack = 4 << 20 // read-ahead of the decoder and the parser's buffer
	tests := []struct {
		name   string
		method string
		size   bool // declare the size
		limits Limits
		want   string
	}{
		{"zstd, NAR size", "zstd", true, Limits{MaxNarSize: maxNar}, "maximum NAR size"},
		{"zstd, ratio", "zstd", true, Limits{MaxRatio: 100, RatioFloor: 1 << 20}, "exceeds 100x the upload size (decompression bomb?)"},
		{"zstd, ratio, unknown size", "zstd", false, Limits{MaxRatio: 1000, RatioFloor: 1 << 20}, "exceeds 1000x"},
		{"gzip, NAR size", "gzip", false, Limits{MaxNarSize: maxNar}, "maximum NAR size"},
		{"gzip, ratio", "gzip", false, Limits{MaxRatio: 100}, "exceeds 100x"},
		// Pure-Go xz is slow to encode even zeros: a lower limit keeps the
		// test short.
		{"xz, NAR size", "xz", false, Limits{MaxNarSize: maxNar / 4}, "maximum NAR size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			size := int64(-1)
			var stop func()
			if tt.method == "zstd" {
				b := zstdBomb(bombSize)
				body = bytes.NewReader(b)
				if tt.size {
					size = int64(len(b))
				}
				stop = func() {}
			} else {
				rc, done := streamBomb(t, tt.method)
				body = rc
				stop = func() { rc.Close(); <-done }
			}
			ext, _ := compression.Ext(tt.method)
			start := time.Now()
			v := NewReader(body, Options{Ext: ext, Size: size, Limits: tt.limits})
			_, err := io.Copy(io.Discard, v)
			elapsed := time.Since(start)
			stop()
			if kindOf(err) != KindTooLarge || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want a TooLarge error containing %q", err, tt.want)
			}
			limit := tt.limits.MaxNarSize
			if limit == 0 {
				limit = int64(tt.limits.MaxRatio * float64(max(size, v.ver.received.Load())))
				limit = max(limit, tt.limits.RatioFloor)
			}
			if got := v.ver.narSize.Load(); got > limit+slack {
				t.Errorf("decompressed %d bytes, limit %d", got, limit)
			}
			if elapsed > time.Minute {
				t.Errorf("stopping the bomb took %v", elapsed)
			}
			t.Logf("stopped after %d decompressed bytes in %v: %v", v.ver.narSize.Load(), elapsed, err)
		})
	}
}

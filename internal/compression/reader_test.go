package compression

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

func TestRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 1000, 1 << 20}
	for _, m := range append([]string{None}, allMethods...) {
		for _, n := range sizes {
			data := testData(n)
			enc := data
			if m != None {
				enc = encode(t, m, data)
			}
			got, err := decode(m, bytes.NewReader(enc))
			if err != nil {
				t.Errorf("%s, %d bytes: %v", m, n, err)
				continue
			}
			if !bytes.Equal(got, data) {
				t.Errorf("%s, %d bytes: decoded %d bytes that differ from the input", m, n, len(got))
			}
		}
	}
}

// TestRoundTripByteAtATime feeds every decoder its input one byte per Read.
func TestRoundTripByteAtATime(t *testing.T) {
	data := testData(100_000)
	for _, m := range allMethods {
		got, err := decode(m, oneByteReader{bytes.NewReader(encode(t, m, data))})
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: got %d bytes, error %v", m, len(got), err)
		}
	}
}

// TestVariants decodes the shapes of streams real encoders produce:
// several blocks, several streams or members or frames, optional sizes and
// every xz check type.
func TestVariants(t *testing.T) {
	data := testData(300_000)
	half := len(data) / 2
	tests := []struct {
		method string
		enc    func(t *testing.T) []byte
	}{
		{"xz", func(t *testing.T) []byte { return xzEncode(t, data, xz.WriterConfig{BlockSize: 50_000}) }},
		{"xz", func(t *testing.T) []byte { return xzEncode(t, data, xz.WriterConfig{CheckSum: xz.CRC32}) }},
		{"xz", func(t *testing.T) []byte { return xzEncode(t, data, xz.WriterConfig{CheckSum: xz.SHA256}) }},
		{"xz", func(t *testing.T) []byte { return xzEncode(t, data, xz.WriterConfig{NoCheckSum: true}) }},
		{"xz", func(t *testing.T) []byte { return xzEncode(t, data, xz.WriterConfig{DictCap: DefaultMaxWindow}) }},
		{"xz", func(t *testing.T) []byte {
			enc := xzEncode(t, data[:half], xz.WriterConfig{})
			enc = append(enc, 0, 0, 0, 0, 0, 0, 0, 0) // stream padding
			return append(enc, xzEncode(t, data[half:], xz.WriterConfig{BlockSize: 1 << 16})...)
		}},
		{"xz", func(t *testing.T) []byte {
			return runTool(t, data, "xz", "-T2", "--block-size=65536", "-c")
		}},
		{"zstd", func(t *testing.T) []byte { return zstdEncodeAll(t, data) }},
		{"zstd", func(t *testing.T) []byte {
			return append(zstdEncodeAll(t, data[:half]), encode(t, Zstd, data[half:])...)
		}},
		{"gzip", func(t *testing.T) []byte {
			return append(encode(t, Gzip, data[:half]), encode(t, Gzip, data[half:])...)
		}},
		{"lz4", func(t *testing.T) []byte {
			return append(lz4Encode(t, data[:half], lz4.BlockChecksumOption(true),
				lz4.SizeOption(uint64(half))), encode(t, LZ4, data[half:])...)
		}},
		{"lz4", func(t *testing.T) []byte { return lz4Encode(t, data, lz4.ChecksumOption(false)) }},
		{"bzip2", func(t *testing.T) []byte {
			return append(encode(t, Bzip2, data[:half]), encode(t, Bzip2, data[half:])...)
		}},
	}
	for i, tt := range tests {
		got, err := decode(tt.method, bytes.NewReader(tt.enc(t)))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("case %d (%s): got %d bytes, error %v", i, tt.method, len(got), err)
		}
	}
}

func xzEncode(t testing.TB, data []byte, cfg xz.WriterConfig) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := cfg.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// zstdEncodeAll writes a frame that declares its content size.
func zstdEncodeAll(t testing.TB, data []byte) []byte {
	t.Helper()
	e, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	out := e.EncodeAll(data, nil)
	var h zstd.Header
	if err := h.Decode(out); err != nil || !h.HasFCS || h.FrameContentSize != uint64(len(data)) {
		t.Fatalf("EncodeAll frame header %+v, %v: want a content size of %d", h, err, len(data))
	}
	return out
}

func lz4Encode(t testing.TB, data []byte, opts ...lz4.Option) []byte {
	t.Helper()
	var b bytes.Buffer
	w := lz4.NewWriter(&b)
	if err := w.Apply(opts...); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const sampleSHA256 = "e5cfbbb3a9b5ce6e03d8cb4191dee789d7cf48ec8c78cd5318e5cb0c60446fb2"

// fixtures maps each file in testdata, written by the reference tools, to
// its method.
var fixtures = map[string]string{
	"sample.nar.xz":              XZ,
	"sample-multistream.nar.xz":  XZ,
	"sample.nar.zst":             Zstd,
	"sample-nosize.nar.zst":      Zstd,
	"sample.nar.bz2":             Bzip2,
	"sample-multistream.nar.bz2": Bzip2,
	"sample-multimember.nar.gz":  Gzip,
	"sample.nar.lz4":             LZ4,
	"sample.nar":                 None,
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFixtures(t *testing.T) {
	want := readFixture(t, "sample.nar")
	if sum := sha256.Sum256(want); hex.EncodeToString(sum[:]) != sampleSHA256 {
		t.Fatalf("testdata/sample.nar has sha256 %x", sum)
	}
	for file, method := range fixtures {
		enc := readFixture(t, file)
		if got, ok := Detect(head(enc)); !ok || got != method {
			t.Errorf("%s detected as %q, %v; want %s", file, got, ok, method)
		}
		ext, _ := Ext(method)
		if got, err := Resolve(ext, head(enc)); err != nil || got != method {
			t.Errorf("Resolve(%q) of %s = %q, %v; want %s", ext, file, got, err, method)
		}
		got, err := decode(method, bytes.NewReader(enc))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: decoded %d bytes, error %v; want sample.nar", file, len(got), err)
		}
	}
}

// cutPoints returns the lengths to truncate a stream of n bytes to: every
// length within edge bytes of either end and every stride-th in between.
func cutPoints(n, edge, stride int) []int {
	var cuts []int
	for i := 0; i < n; i++ {
		if i < edge || i >= n-edge || i%stride == 0 {
			cuts = append(cuts, i)
		}
	}
	return cuts
}

// TestTruncated checks that no prefix of a valid stream decodes without an
// error: a cut stream must never look like a shorter, complete one. (A cut
// exactly between two concatenated streams is the one exception no decoder
// can see; none of the cut points falls there.)
func TestTruncated(t *testing.T) {
	data := testData(50_000)
	sample := readFixture(t, "sample.nar")
	type stream struct {
		enc, dec []byte
		cuts     []int
	}
	streams := map[string]stream{}
	for _, m := range allMethods {
		enc := encode(t, m, data)
		streams[m+" (go encoder)"] = stream{enc, data, cutPoints(len(enc), 40, 331)}
	}
	for file, m := range fixtures {
		if m != None {
			enc := readFixture(t, file)
			streams[m+" "+file] = stream{enc, sample, cutPoints(len(enc), 24, 1499)}
		}
	}
	for label, s := range streams {
		m, _, _ := strings.Cut(label, " ")
		enc := s.enc
		silent := 0
		for _, n := range s.cuts {
			got, err := decode(m, bytes.NewReader(enc[:n]))
			if err == nil && bytes.Equal(got, s.dec) {
				continue // only optional padding was cut
			}
			if err == nil {
				silent++
				if silent <= 3 {
					t.Errorf("%s: cut to %d of %d bytes decodes without an error", label, n, len(enc))
				}
				continue
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Method != m {
				t.Errorf("%s: cut to %d bytes: error %v is not a *DecodeError for %s", label, n, err, m)
			}
		}
	}
}

// TestCorrupt checks that damaged streams are rejected. Every method but
// brotli carries a checksum of its content; brotli may decode damage into
// other bytes, which is what a NAR's own hash is for.
func TestCorrupt(t *testing.T) {
	data := testData(200_000)
	for _, m := range allMethods {
		enc := encode(t, m, data)
		for _, pos := range []int{len(enc) / 3, len(enc) / 2, len(enc) * 9 / 10} {
			for _, damage := range []string{"flip", "zero run", "garbage run"} {
				bad := bytes.Clone(enc)
				switch damage {
				case "flip":
					bad[pos] ^= 0x10
				case "zero run":
					clear(bad[pos : pos+64])
				case "garbage run":
					copy(bad[pos:], bytes.Repeat([]byte{0xa5, 0x3c}, 32))
				}
				got, err := decode(m, bytes.NewReader(bad))
				if err == nil && (m != Brotli || bytes.Equal(got, data)) {
					t.Errorf("%s: %s at %d of %d decodes without an error", m, damage, pos, len(enc))
				}
			}
		}
	}
}

func TestTrailingGarbage(t *testing.T) {
	data := testData(10_000)
	for _, m := range allMethods {
		enc := encode(t, m, data)
		for _, tail := range []string{"garbage after the stream", "\x00", "\xfd7zXZ"} {
			got, err := decode(m, bytes.NewReader(append(bytes.Clone(enc), tail...)))
			if err == nil {
				t.Errorf("%s followed by %q: decoded %d bytes without an error", m, tail, len(got))
			}
		}
	}
}

func TestEmptyInput(t *testing.T) {
	for _, m := range allMethods {
		_, err := decode(m, bytes.NewReader(nil))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s of empty input: error %v, want io.ErrUnexpectedEOF", m, err)
		}
	}
	if got, err := decode(None, bytes.NewReader(nil)); err != nil || len(got) != 0 {
		t.Errorf("none of empty input: %q, %v", got, err)
	}
}

// TestWrongMethod feeds every method's output to every other decoder.
func TestWrongMethod(t *testing.T) {
	data := testData(5000)
	for _, from := range allMethods {
		enc := encode(t, from, data)
		for _, to := range allMethods {
			if to == from {
				continue
			}
			if got, err := decode(to, bytes.NewReader(enc)); err == nil {
				t.Errorf("%s data decoded as %s without an error (%d bytes)", from, to, len(got))
			}
		}
	}
}

// TestUnderlyingError checks that an error of the compressed input reaches
// the caller, wrapped.
func TestUnderlyingError(t *testing.T) {
	boom := errors.New("connection reset")
	data := testData(200_000)
	for _, m := range allMethods {
		enc := encode(t, m, data)
		r := io.MultiReader(bytes.NewReader(enc[:len(enc)/2]), errReader{boom})
		_, err := decode(m, r)
		if !errors.Is(err, boom) {
			t.Errorf("%s: error %v does not wrap the input's error", m, err)
		}
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestNoGoroutines checks that decoding starts no goroutine.
func TestNoGoroutines(t *testing.T) {
	data := testData(300_000)
	encs := map[string][]byte{}
	for _, m := range allMethods {
		encs[m] = encode(t, m, data)
	}
	before := runtime.NumGoroutine()
	for m, enc := range encs {
		rc, err := NewReader(m, bytes.NewReader(enc))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(io.Discard, rc, 1000); err != nil {
			t.Fatal(err)
		}
		if n := runtime.NumGoroutine(); n != before {
			t.Errorf("%s: %d goroutines while decoding, %d before", m, n, before)
		}
		if err := rc.Close(); err != nil {
			t.Error(err)
		}
	}
}

// TestZstdWindowLimit checks that frames asking for more than
// DefaultMaxWindow are refused up front.
func TestZstdWindowLimit(t *testing.T) {
	data := testData(10_000)
	// Frames with a window descriptor (exponent e: 1 KiB << e) and one
	// empty, last raw block.
	for _, tt := range []struct {
		exp byte
		ok  bool
	}{{16, true}, {17, false}, {31, false}} {
		frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, tt.exp << 3, 0x01, 0, 0}
		_, err := decode(Zstd, bytes.NewReader(frame))
		if tt.ok && err != nil {
			t.Errorf("window of %d bytes: %v", 1024<<tt.exp, err)
		}
		var le *LimitError
		if !tt.ok && (!errors.As(err, &le) || le.Need != 1024<<tt.exp || le.Max != DefaultMaxWindow) {
			t.Errorf("window of %d bytes: error %v, want a *LimitError", 1024<<tt.exp, err)
		}
	}
	// What the encoder writes with the largest window is accepted.
	var b bytes.Buffer
	w, err := zstd.NewWriter(&b, zstd.WithWindowSize(DefaultMaxWindow))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := decode(Zstd, &b); err != nil || !bytes.Equal(got, data) {
		t.Errorf("encoder's largest window: %d bytes, %v", len(got), err)
	}
	// A single-segment frame's window is its declared content size: 1 GiB.
	frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0x01, 0, 0}
	start := time.Now()
	if _, err := decode(Zstd, bytes.NewReader(frame)); err == nil {
		t.Error("single-segment frame of 1 GiB decodes without an error")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing a 1 GiB single-segment frame took %v", d)
	}
}

func TestGzipHeaderError(t *testing.T) {
	_, err := NewReader(Gzip, strings.NewReader("not gzip at all"))
	var de *DecodeError
	if !errors.As(err, &de) || de.Method != Gzip {
		t.Fatalf("error %v, want a *DecodeError for gzip", err)
	}
	if !strings.HasPrefix(err.Error(), "decoding gzip data: ") {
		t.Errorf("message %q", err)
	}
	_ = gzip.ErrHeader
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c chunkReader) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), c.n)])
}

// TestSmallPiecesAtTheEnd delivers the last bytes of every stream one per
// Read after a large first piece, the way a network upload may end.
func TestSmallPiecesAtTheEnd(t *testing.T) {
	data := testData(300_000)
	for _, m := range allMethods {
		enc := encode(t, m, data)
		for k := 1; k <= 24; k++ {
			r := io.MultiReader(bytes.NewReader(enc[:len(enc)-k]), oneByteReader{bytes.NewReader(enc[len(enc)-k:])})
			if got, err := decode(m, r); err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s with the last %d bytes one by one: %d bytes, %v", m, k, len(got), err)
			}
		}
		for _, n := range []int{1, 3, 7, 8, 9, 4093} {
			if got, err := decode(m, chunkReader{bytes.NewReader(enc), n}); err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s in pieces of %d bytes: %d bytes, %v", m, n, len(got), err)
			}
		}
	}
}

func TestHoldTail(t *testing.T) {
	data := testData(200_000)
	for _, piece := range []int{1, 5, 16, 17, 1000, 1 << 20} {
		for _, readLen := range []int{1, 7, 16, 100, 32 << 10} {
			h := newHoldTail(chunkReader{bytes.NewReader(data), piece})
			var got []byte
			buf := make([]byte, readLen)
			var last int
			for {
				n, err := h.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if n > 0 {
					last = n
				}
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("pieces %d, reads %d: got %d bytes", piece, readLen, len(got))
			}
			if readLen >= holdLen && last < holdLen {
				t.Errorf("pieces %d, reads %d: final read of %d bytes", piece, readLen, last)
			}
		}
	}
}

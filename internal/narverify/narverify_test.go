package narverify

import (
	"bytes"
	"crypto/md5"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/larder-cache/larder/internal/compression"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// TestVerifyMethods verifies a NAR of a tree compressed with every method,
// with the size known and unknown, and with its MD5 asked for, and checks
// the Result against hashes computed independently.
func TestVerifyMethods(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 3<<20))
	for _, m := range allMethods {
		t.Run(m, func(t *testing.T) {
			file := compress(t, m, narData)
			fileHash := sha(file)
			for i, size := range []int64{int64(len(file)), -1, int64(len(file))} {
				withMD5 := i == 2
				opts := Options{Ext: ext(t, m), Size: size, ExpectFileHash: fileHash[:], MD5: withMD5}
				out, res, err := verify(file, opts)
				if err != nil {
					t.Fatalf("size %d: %v", size, err)
				}
				if !bytes.Equal(out, file) {
					t.Fatalf("size %d: the reader changed the bytes", size)
				}
				want := Result{
					Compression: m,
					FileHash:    fileHash,
					FileSize:    int64(len(file)),
					NarHash:     sha(narData),
					NarSize:     int64(len(narData)),
				}
				if withMD5 {
					want.FileMD5 = md5.Sum(file)
				}
				if res != want {
					t.Fatalf("size %d: Result\n%+v, want\n%+v", size, res, want)
				}
			}
		})
	}
}

// TestVerifyFixtures verifies the files the reference compression tools
// wrote, kept with the compression package.
func TestVerifyFixtures(t *testing.T) {
	dir := filepath.Join("..", "compression", "testdata")
	narData, err := os.ReadFile(filepath.Join(dir, "sample.nar"))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		_, after, ok := strings.Cut(name, ".nar")
		if !ok {
			continue
		}
		if after == ".gz" {
			after = "" // Nix names gzip NARs without an extension
		}
		file, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		_, res, err := verify(file, Options{Ext: after, Size: int64(len(file))})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if res.NarHash != sha(narData) || res.NarSize != int64(len(narData)) || res.FileHash != sha(file) {
			t.Errorf("%s: Result %+v", name, res)
		}
		n++
	}
	if n < 9 {
		t.Errorf("verified %d fixtures, want 9", n)
	}
}

// TestReadPatterns reads a verified upload with reads of many sizes.
func TestReadPatterns(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 300_000))
	file := compress(t, compression.Zstd, narData)
	for _, bufSize := range []int{1, 7, 512, 32 << 10, 1 << 20, len(file), len(file) + 1} {
		for _, size := range []int64{int64(len(file)), -1} {
			v := NewReader(&chunkedReader{data: file, piece: 1000}, Options{Ext: ".zst", Size: size})
			var out []byte
			buf := make([]byte, bufSize)
			var err error
			for err == nil {
				var n int
				n, err = v.Read(buf)
				out = append(out, buf[:n]...)
			}
			if err != io.EOF || !bytes.Equal(out, file) {
				t.Fatalf("reads of %d, size %d: %d bytes, %v", bufSize, size, len(out), err)
			}
			if n, err := v.Read(buf); n != 0 || err != io.EOF {
				t.Fatalf("Read after the end: %d, %v", n, err)
			}
			if res, err := v.Result(); err != nil || res.NarHash != sha(narData) {
				t.Fatalf("reads of %d: Result %+v, %v", bufSize, res, err)
			}
		}
	}
}

// chunkedReader yields data in pieces of at most piece bytes, the last
// together with io.EOF when eofWithData is set.
type chunkedReader struct {
	data        []byte
	piece       int
	eofWithData bool
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.piece)], c.data)
	c.data = c.data[n:]
	if len(c.data) == 0 && c.eofWithData {
		return n, io.EOF
	}
	return n, nil
}

func TestEOFWithLastBytes(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 10_000))
	for _, size := range []int64{int64(len(narData)), -1} {
		v := NewReader(&chunkedReader{data: narData, piece: 4096, eofWithData: true}, Options{Size: size})
		out, err := io.ReadAll(v)
		if err != nil || !bytes.Equal(out, narData) {
			t.Fatalf("size %d: %d bytes, %v", size, len(out), err)
		}
	}
}

func TestTruncatedBody(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 10_000))
	half := narData[:len(narData)/2]
	_, _, err := verify(half, Options{Size: int64(len(narData))})
	wantError(t, err, KindTruncated, "body ended after")
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("error %v does not wrap io.ErrUnexpectedEOF", err)
	}
	want := "body ended after " + strconv.Itoa(len(half)) + " of " + strconv.Itoa(len(narData)) + " bytes"
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q, want it to start with %q", err, want)
	}
	// With the size unknown, a cut NAR is an invalid one.
	_, _, err = verify(half, Options{Size: -1})
	wantError(t, err, KindInvalid, "upload is not a valid NAR")
}

func TestLongerBody(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 10_000))
	body := append(bytes.Clone(narData), "more"...)
	size := int64(len(narData))
	_, _, err := verify(body, Options{Size: size})
	wantError(t, err, KindTruncated, "body is longer than its Content-Length ("+strconv.Itoa(len(narData))+" bytes)")
	// A consumer reading exactly size bytes gets the error too.
	v := NewReader(bytes.NewReader(body), Options{Size: size})
	defer v.Close()
	if _, err := io.ReadFull(v, make([]byte, size)); kindOf(err) != KindTruncated {
		t.Errorf("ReadFull of the declared size: %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestReadError checks that the input's own errors stay apart from invalid
// data: the caller takes them for a client that went away.
func TestReadError(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 100_000))
	boom := errors.New("connection reset by peer")
	for _, m := range []string{compression.None, compression.XZ} {
		file := compress(t, m, narData)
		for _, size := range []int64{int64(len(file)), -1} {
			r := io.MultiReader(bytes.NewReader(file[:len(file)/2]), errReader{boom})
			v := NewReader(r, Options{Ext: ext(t, m), Size: size})
			_, err := io.ReadAll(v)
			wantError(t, err, KindReadFailed, "reading the upload after")
			if !errors.Is(err, boom) {
				t.Errorf("%s: error %v does not wrap the read error", m, err)
			}
			if _, err2 := v.Read(make([]byte, 10)); err2 != err {
				t.Errorf("%s: a later Read returned %v, not the same error", m, err2)
			}
			if _, err2 := v.Result(); err2 != err {
				t.Errorf("%s: Result returned %v, not the same error", m, err2)
			}
		}
	}
}

// TestCorruptCompressed damages compressed NARs. The decoders hand on data
// before they reach the checksum that covers it, so damage is reported
// either by the decoder or by the NAR parser that sees the damaged data
// first; both are KindInvalid.
func TestCorruptCompressed(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 300_000))
	for _, m := range allMethods[1:] {
		t.Run(m, func(t *testing.T) {
			file := compress(t, m, narData)
			for _, pos := range []int{len(file) / 2, len(file) - 8} {
				bad := bytes.Clone(file)
				copy(bad[pos:], bytes.Repeat([]byte{0xa5, 0x3c}, 4))
				_, res, err := verify(bad, Options{Ext: ext(t, m), Size: int64(len(bad))})
				if err == nil && m == compression.Brotli && res.NarHash != sha(narData) {
					continue // no checksum: the damage shows in the NarHash
				}
				wantCorrupt(t, err, m)
			}
			// A stream cut short, with a matching Content-Length.
			cut := file[:len(file)-10]
			_, _, err := verify(cut, Options{Ext: ext(t, m), Size: int64(len(cut))})
			wantCorrupt(t, err, m)
		})
	}
}

func wantCorrupt(t *testing.T, err error, method string) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), "data is not a valid NAR") {
		wantError(t, err, KindInvalid, "decompressed "+method+" data is not a valid NAR")
		return
	}
	wantError(t, err, KindInvalid, "nar is not valid "+method+" data")
}

func TestNotANAR(t *testing.T) {
	junk := randomBytes(100_000, 7)
	for _, m := range allMethods {
		t.Run(m, func(t *testing.T) {
			file := compress(t, m, junk)
			_, _, err := verify(file, Options{Ext: ext(t, m), Size: int64(len(file))})
			want := "decompressed " + m + " data is not a valid NAR: reading the NAR magic"
			if m == compression.None {
				want = "upload is not a valid NAR: reading the NAR magic"
			}
			wantError(t, err, KindInvalid, want)
		})
	}
	_, _, err := verify(nil, Options{Size: 0})
	wantError(t, err, KindInvalid, "upload is not a valid NAR")
	_, _, err = verify(nil, Options{Size: -1})
	wantError(t, err, KindInvalid, "upload is not a valid NAR")
}

func TestTrailingData(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 10_000))
	withTail := append(bytes.Clone(narData), "trailing"...)
	for _, m := range allMethods {
		file := compress(t, m, withTail)
		_, _, err := verify(file, Options{Ext: ext(t, m), Size: int64(len(file))})
		wantError(t, err, KindInvalid, "has trailing data after the NAR")
	}
	// Garbage after the compressed stream.
	for _, m := range allMethods[1:] {
		file := append(compress(t, m, narData), "trailing garbage"...)
		_, _, err := verify(file, Options{Ext: ext(t, m), Size: int64(len(file))})
		wantError(t, err, KindInvalid, "nar ")
	}
}

func TestExpectFileHash(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 10_000))
	file := compress(t, compression.XZ, narData)
	good := sha(file)
	bad := good
	bad[0] ^= 1
	_, _, err := verify(file, Options{Ext: ".xz", Size: int64(len(file)), ExpectFileHash: bad[:]})
	want := "file hash is sha256:" + nixbase32.EncodeToString(good[:]) +
		" but the key names sha256:" + nixbase32.EncodeToString(bad[:])
	wantError(t, err, KindInvalid, want)
	_, _, err = verify(file, Options{Ext: ".xz", Size: int64(len(file)), ExpectFileHash: good[:5]})
	wantError(t, err, KindInvalid, "expected file hash has 5 bytes")
	if _, _, err := verify(file, Options{Ext: ".xz", Size: -1, ExpectFileHash: good[:]}); err != nil {
		t.Errorf("matching hash: %v", err)
	}
}

func TestCompressionMismatch(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 10_000))
	tests := []struct {
		method, ext, want string
	}{
		{compression.Zstd, ".xz", `extension ".nar.xz" means xz compression but the content is zstd data`},
		{compression.XZ, "", `extension ".nar" means an uncompressed or gzip NAR but the content is xz data`},
		{compression.None, ".zst", `extension ".nar.zst" means zstd compression but the content is an uncompressed NAR`},
		{compression.Gzip, ".bz2", `extension ".nar.bz2" means bzip2 compression but the content is gzip data`},
		{compression.LZ4, ".br", `extension ".nar.br" means br compression but the content is lz4 data`},
	}
	for _, tt := range tests {
		file := compress(t, tt.method, narData)
		_, _, err := verify(file, Options{Ext: tt.ext, Size: int64(len(file))})
		wantError(t, err, KindInvalid, "nar compression does not match its file name: "+tt.want)
	}
	// Brotli data named gzip (no extension) is neither gzip nor a NAR.
	file := compress(t, compression.Brotli, narData)
	_, _, err := verify(file, Options{Ext: "", Size: int64(len(file))})
	wantError(t, err, KindInvalid, "upload is not a valid NAR")
}

func TestUnsupportedExt(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 1000))
	for _, e := range []string{".gz", ".lzip", "xz", ".zstd"} {
		_, _, err := verify(narData, Options{Ext: e, Size: -1})
		wantError(t, err, KindInvalid, "unsupported compression extension")
		if !errors.Is(err, compression.ErrUnsupported) {
			t.Errorf("%s: error %v does not wrap ErrUnsupported", e, err)
		}
	}
}

// TestUnsortedNAR checks an archive with unsorted entries end to end; the
// parser tests cover the rest of the format.
func TestUnsortedNAR(t *testing.T) {
	b := newNAR().str("(", "type", "directory")
	b.str("entry", "(", "name", "b", "node").file("b").str(")")
	b.str("entry", "(", "name", "a", "node").file("a").str(")")
	b.str(")")
	for _, m := range allMethods {
		file := compress(t, m, b.Bytes())
		_, _, err := verify(file, Options{Ext: ext(t, m), Size: int64(len(file))})
		wantError(t, err, KindInvalid, `entries are not sorted: "a" comes after "b"`)
	}
}

// TestGoNixAgrees checks that go-nix reads back the test tree's NAR with
// every kind of node in it.
func TestGoNixAgrees(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 100_000))
	r, err := nar.NewReader(bytes.NewReader(narData))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var paths []string
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, h.Path)
	}
	want := []string{
		"/", "/bin", "/bin/hello", "/share", "/share/big.dat", "/share/doc",
		"/share/doc/README", "/share/empty", "/share/link", "/share/nested",
		"/share/nested/deeper",
	}
	if !slices.Equal(paths, want) {
		t.Errorf("go-nix reads the nodes %v, want %v", paths, want)
	}
}

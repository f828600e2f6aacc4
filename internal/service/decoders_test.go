package service_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/local"
	"github.com/larder-cache/larder/internal/store/sqlite"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// decoderService returns a service with the given decoder limits and its
// cache main, open for writing.
func decoderService(t *testing.T, window, memory int64, wait time.Duration) (*service.Service, service.Cache) {
	t.Helper()
	dir := t.TempDir()
	meta, err := sqlite.Open(t.Context(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	blobs, err := local.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	limits := testLimits
	limits.MaxDecoderWindow, limits.DecoderMemory, limits.DecoderMemoryWait = window, memory, wait
	svc, err := service.New(t.Context(), service.Options{Meta: meta, Blobs: blobs, Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateCache(t.Context(), service.CacheSpec{Name: "main"}); err != nil {
		t.Fatal(err)
	}
	c, err := svc.Access(t.Context(), "main", "", store.PermRead)
	if err != nil {
		t.Fatal(err)
	}
	return svc, c
}

// zstdNAR returns a NAR of one file of 2 MiB, compressed into one zstd
// frame with the given window, and its key.
func zstdNAR(t *testing.T, window int) ([]byte, nixkey.Key) {
	t.Helper()
	contents := make([]byte, 2<<20)
	rng := rand.New(rand.NewPCG(uint64(window), 1))
	for i := range contents {
		contents[i] = byte(rng.Uint32() % 16)
	}
	var narBuf bytes.Buffer
	for _, s := range []string{"nix-archive-1", "(", "type", "regular", "contents", string(contents), ")"} {
		var n [8]byte
		n[0], n[1], n[2], n[3] = byte(len(s)), byte(len(s)>>8), byte(len(s)>>16), byte(len(s)>>24)
		narBuf.Write(n[:])
		narBuf.WriteString(s)
		narBuf.Write(make([]byte, (8-len(s)%8)%8))
	}
	var b bytes.Buffer
	w, err := zstd.NewWriter(&b, zstd.WithWindowSize(window), zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(narBuf.Bytes())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b.Bytes())
	key, err := nixkey.Parse("nar/" + nixbase32.EncodeToString(sum[:]) + ".nar.zst")
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), key
}

func wantCode(t *testing.T, what string, err error, code service.Code, msg string) {
	t.Helper()
	if service.CodeOf(err) != code || !strings.Contains(service.Message(err), msg) {
		t.Errorf("%s: error %v (code %v), want code %v with a message containing %q", what, err, service.CodeOf(err), code, msg)
	}
}

func wantNoDecoderMemory(t *testing.T, what string, svc *service.Service) {
	t.Helper()
	if n := service.DecoderMemoryInUse(svc); n != 0 {
		t.Errorf("%s: %d bytes of decoder memory still held", what, n)
	}
}

// TestNarWindowRefused checks that a NAR whose window is larger than
// max_decoder_window is refused as too large, with a message that names
// the window, the limit and the setting, and that nothing is stored.
func TestNarWindowRefused(t *testing.T) {
	svc, c := decoderService(t, 4<<20, 64<<20, time.Second)
	file, key := zstdNAR(t, 8<<20)
	_, err := svc.PutNar(t.Context(), c, key, bytes.NewReader(file), int64(len(file)))
	wantCode(t, "8 MiB window", err, service.CodeTooLarge,
		key.String()+": the zstd data needs a window of 8 MiB, more than max_decoder_window (4 MiB); compress with a lower level or raise max_decoder_window")
	wantNoDecoderMemory(t, "refused", svc)
	if _, err := svc.Nar(t.Context(), c, key); service.CodeOf(err) != service.CodeNotFound {
		t.Errorf("the refused NAR is there: %v", err)
	}
	small, key := zstdNAR(t, 4<<20)
	if _, err := svc.PutNar(t.Context(), c, key, bytes.NewReader(small), int64(len(small))); err != nil {
		t.Errorf("4 MiB window: %v", err)
	}
	wantNoDecoderMemory(t, "stored", svc)
}

// TestNarDecoderMemory checks that an upload that finds the decoder memory
// held by others answers CodeUnavailable after the wait, and that the
// memory is given back on every way an upload ends: a client that goes
// away, a body shorter than declared, a wrong hash, corrupt data and
// success.
func TestNarDecoderMemory(t *testing.T) {
	svc, c := decoderService(t, 8<<20, 12<<20, 50*time.Millisecond)
	file, key := zstdNAR(t, 8<<20)

	pr, pw := io.Pipe()
	first := make(chan error, 1)
	go func() {
		_, err := svc.PutNar(t.Context(), c, key, pr, int64(len(file)))
		first <- err
	}()
	if _, err := pw.Write(file[:len(file)/2]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for service.DecoderMemoryInUse(svc) < 8<<20 {
		if time.Now().After(deadline) {
			t.Fatal("the stalled upload reserves no decoder memory")
		}
		time.Sleep(time.Millisecond)
	}
	held := service.DecoderMemoryInUse(svc)
	_, err := svc.PutNar(t.Context(), c, key, bytes.NewReader(file), int64(len(file)))
	wantCode(t, "second upload", err, service.CodeUnavailable,
		"uploads being decompressed held all of decoder_memory (12 MiB) for decoder_memory_wait (50ms); try again")
	if n := service.DecoderMemoryInUse(svc); n != held {
		t.Errorf("after the refused upload %d bytes are held, want %d", n, held)
	}
	pw.CloseWithError(errors.New("connection reset"))
	if err := <-first; service.CodeOf(err) != service.CodeClientGone {
		t.Errorf("client gone: %v", err)
	}
	wantNoDecoderMemory(t, "client gone", svc)

	corrupt := bytes.Clone(file)
	copy(corrupt[len(corrupt)/2:], bytes.Repeat([]byte{0xa5, 0x3c}, 32))
	sum := sha256.Sum256(corrupt)
	corruptKey, _ := nixkey.Parse("nar/" + nixbase32.EncodeToString(sum[:]) + ".nar.zst")
	wrongKey, _ := nixkey.Parse("nar/" + nixbase32.EncodeToString(make([]byte, 32)) + ".nar.zst")
	for _, tt := range []struct {
		name string
		key  nixkey.Key
		body []byte
		size int64
	}{
		{"short body", key, file[:len(file)-10], int64(len(file))},
		{"wrong hash", wrongKey, file, int64(len(file))},
		{"corrupt", corruptKey, corrupt, int64(len(corrupt))},
	} {
		_, err := svc.PutNar(t.Context(), c, tt.key, bytes.NewReader(tt.body), tt.size)
		if service.CodeOf(err) != service.CodeInvalid {
			t.Errorf("%s: %v", tt.name, err)
		}
		wantNoDecoderMemory(t, tt.name, svc)
	}
	if _, err := svc.PutNar(t.Context(), c, key, bytes.NewReader(file), int64(len(file))); err != nil {
		t.Fatal(err)
	}
	wantNoDecoderMemory(t, "stored", svc)
}

// TestDecodeBody checks the bounds on bodies sent with a Content-Encoding.
func TestDecodeBody(t *testing.T) {
	svc, _ := decoderService(t, 4<<20, 64<<20, time.Second)
	big, _ := zstdNAR(t, 8<<20)
	_, err := svc.DecodeBody(t.Context(), "zstd", bytes.NewReader(big))
	wantCode(t, "8 MiB window", err, service.CodeTooLarge, "needs a window of 8 MiB, more than the 4 MiB allowed")
	_, err = svc.DecodeBody(t.Context(), "zstd", strings.NewReader("not zstd"))
	wantCode(t, "not zstd", err, service.CodeInvalid, "zstd")
	small, _ := zstdNAR(t, 1<<20)
	rc, err := svc.DecodeBody(t.Context(), "zstd", bytes.NewReader(small))
	if err != nil {
		t.Fatal(err)
	}
	if service.DecoderMemoryInUse(svc) == 0 {
		t.Error("decoding a body reserves no decoder memory")
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	wantNoDecoderMemory(t, "decoded", svc)
}

package narverify

import (
	"bytes"
	"crypto/sha256"
	"runtime"
	"testing"
	"time"
)

// TestAsyncHash: writes of every size, reusing the caller's buffer at
// once, hash to what hashing them in turn gives; Close can be called
// twice, and ends the goroutine.
func TestAsyncHash(t *testing.T) {
	before := runtime.NumGoroutine()
	data := bytes.Repeat([]byte("larder, a Nix binary cache "), 100000) // 2.7 MB
	h := sha256.New()
	a := newAsyncHash(h)
	buf := make([]byte, asyncBufferSize*2+17)
	for off, step := 0, 1; off < len(data); step = step*3 + 1 {
		n := copy(buf, data[off:min(off+step, len(data), off+len(buf))])
		a.Write(buf[:n])
		for i := range buf[:n] {
			buf[i] = 0 // the copy queued must not see this
		}
		off += n
	}
	a.Close()
	a.Close()
	if got, want := h.Sum(nil), sha256.Sum256(data); !bytes.Equal(got, want[:]) {
		t.Fatalf("hash %x, want %x", got, want)
	}
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

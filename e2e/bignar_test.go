package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/testserver"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// narString encodes s as NAR strings are: length, bytes, zero padding.
func narString(s string) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, uint64(len(s)))
	b.WriteString(s)
	b.Write(make([]byte, (8-len(s)%8)%8))
	return b.Bytes()
}

// bigNAR is the NAR of one regular file of size pseudo-random bytes,
// generated on the fly, the same each time it is read.
func bigNAR(size int64, seed uint64) (io.Reader, int64) {
	var head bytes.Buffer
	for _, s := range []string{"nix-archive-1", "(", "type", "regular", "contents"} {
		head.Write(narString(s))
	}
	_ = binary.Write(&head, binary.LittleEndian, uint64(size))
	tail := append(make([]byte, (8-size%8)%8), narString(")")...)
	body := io.LimitReader(&chacha{rand.NewChaCha8([32]byte{byte(seed)})}, size)
	total := int64(head.Len()) + size + int64(len(tail))
	return io.MultiReader(&head, body, bytes.NewReader(tail)), total
}

type chacha struct{ r *rand.ChaCha8 }

func (c *chacha) Read(p []byte) (int, error) { return c.r.Read(p) }

// rssPeak returns a process's peak resident set size in bytes.
func rssPeak(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			must(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// TestBigNARBoundedMemory pushes a big NAR to larder on an S3 store and
// reads it back, checking the bytes and that larder's peak RSS stays under
// 200 MB: NARs stream both ways. The default run uses 512 MiB; with
// LARDER_LONG=1 it is 4 GiB (about 35 s here), and LARDER_BIG_NAR_MIB sets
// any size.
func TestBigNARBoundedMemory(t *testing.T) {
	size := int64(512 << 20)
	if os.Getenv("LARDER_LONG") == "1" {
		size = 4 << 30
	}
	if v := os.Getenv("LARDER_BIG_NAR_MIB"); v != "" {
		mib, err := strconv.Atoi(v)
		must(t, err)
		size = int64(mib) << 20
	}
	s3 := testserver.MinIO(t)
	srv := startServer(t, "--blobs", s3.URL("larder").String(), "--max-upload-size", "8GiB", "--max-nar-size", "8GiB")
	h := sha256.New()
	r, total := bigNAR(size, 1)
	_, err := io.Copy(h, r)
	must(t, err)
	fh := nixbase32.EncodeToString(h.Sum(nil))
	url := srv.cacheURL("main") + "/nar/" + fh + ".nar"

	start := time.Now()
	body, _ := bigNAR(size, 1)
	req, err := http.NewRequest("PUT", url, body)
	must(t, err)
	req.ContentLength = total
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT of the %d-byte NAR: %d %s", total, resp.StatusCode, msg)
	}
	up := time.Since(start)

	start = time.Now()
	resp, err = http.Get(url)
	must(t, err)
	back := sha256.New()
	n, err := io.Copy(back, resp.Body)
	resp.Body.Close()
	must(t, err)
	if n != total || nixbase32.EncodeToString(back.Sum(nil)) != fh {
		t.Fatalf("read back %d bytes hashing to %s, want %d bytes hashing to %s", n, nixbase32.EncodeToString(back.Sum(nil)), total, fh)
	}
	peak := rssPeak(t, srv.cmd.Process.Pid)
	t.Logf("%d MiB NAR: push %v (%.0f MB/s), read back %v; larder peak RSS %d MB",
		total>>20, up.Round(time.Second), float64(total)/up.Seconds()/1e6, time.Since(start).Round(time.Second), peak/1e6)
	if peak > 200e6 {
		t.Errorf("larder's peak RSS was %d MB, over 200 MB", peak/1e6)
	}
}

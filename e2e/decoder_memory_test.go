package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// stalledUploads is how many uploads TestStalledUploadsBoundedMemory
// holds open at once: as many as blob_concurrency lets run by default.
const stalledUploads = 64

// TestStalledUploadsBoundedMemory sends 64 zstd NAR uploads at once that
// each stop 4 KB before their end and stay open, the way slow or hostile
// clients hold a server's memory, and checks that larder's peak RSS stays
// under 1 GiB. Before decoder memory was bounded, each such upload with a
// 128 MiB window ("zstd --long=27") held about 136 MB. Now such NARs are
// refused by default; with the window allowed, and with NARs of the 8 MiB
// window of "zstd -19", what bounds the memory is decoder_memory: the
// uploads past it wait, then are answered 503 with Retry-After.
func TestStalledUploadsBoundedMemory(t *testing.T) {
	cases := []struct {
		name   string
		window int
		size   int64 // of the NAR, more than the window so that the decoder fills it
		extra  []string
		refuse bool
	}{
		{"128 MiB window, refused", 128 << 20, 160 << 20, nil, true},
		{"8 MiB window", 8 << 20, 12 << 20, nil, false},
		{"128 MiB window, allowed", 128 << 20, 160 << 20, []string{"--max-decoder-window", "128MiB"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files := stallNARs(t, tc.window, tc.size)
			srv := startServer(t, append([]string{"--decoder-memory-wait", "1s"}, tc.extra...)...)
			start := time.Now()
			ups := make([]*stalledUpload, len(files))
			for i, f := range files {
				ups[i] = startStalledUpload(t, srv, f)
			}
			defer func() {
				for _, u := range ups {
					u.conn.Close()
				}
			}()
			// Every upload past the budget is answered once its wait (1s)
			// is over; those admitted have by then decoded what they got.
			// The server says nothing of those that wait, so this waits
			// for the answers to stop coming.
			settled := time.Now()
			for last := -1; time.Since(start) < 20*time.Second; time.Sleep(100 * time.Millisecond) {
				n := answeredCount(ups)
				if n == len(ups) {
					break
				}
				if n != last {
					last, settled = n, time.Now()
				} else if time.Since(start) > 2*time.Second && time.Since(settled) > time.Second {
					break
				}
			}
			// And for the admitted ones to decode all they got.
			settled = time.Now()
			for last := int64(-1); time.Since(settled) < time.Second && time.Since(start) < 30*time.Second; {
				time.Sleep(100 * time.Millisecond)
				if n := rssPeak(t, srv.cmd.Process.Pid); n != last {
					last, settled = n, time.Now()
				}
			}
			peak := rssPeak(t, srv.cmd.Process.Pid)
			answered := map[int]int{}
			for _, u := range ups {
				if r := u.response(); r != nil {
					answered[r.status]++
					if tc.refuse && (r.status != http.StatusRequestEntityTooLarge ||
						!strings.Contains(r.body, "needs a window of 128 MiB, more than max_decoder_window (64 MiB)")) {
						t.Errorf("refused upload: %d %s", r.status, r.body)
					}
					if !tc.refuse && (r.status != http.StatusServiceUnavailable || r.retryAfter == "" ||
						!strings.Contains(r.body, "decoder_memory")) {
						t.Errorf("upload past the budget: %d (Retry-After %q) %s", r.status, r.retryAfter, r.body)
					}
				}
			}
			waiting := len(ups)
			for _, n := range answered {
				waiting -= n
			}
			t.Logf("%d uploads of %d MiB NARs with a %d MiB window, stalled 4 KB before their end: answered %v after %v, "+
				"%d still decoding; larder peak RSS %d MB", len(ups), tc.size>>20, tc.window>>20, answered,
				time.Since(start).Round(100*time.Millisecond), waiting, peak/1e6)
			if peak > 1<<30 {
				t.Errorf("larder's peak RSS was %d MB, over 1 GiB", peak/1e6)
			}
			switch {
			case tc.refuse && waiting > 0:
				t.Errorf("%d uploads needing a 128 MiB window were not refused", waiting)
			case !tc.refuse && (waiting == 0 || answered[http.StatusServiceUnavailable] == 0):
				t.Errorf("%d uploads decoding and %d answered 503: the budget should admit some and hold back others",
					waiting, answered[http.StatusServiceUnavailable])
			}
			if tc.refuse {
				return
			}
			// Once the stalled uploads are gone, their memory is free for
			// the next: a whole upload fits.
			for _, u := range ups {
				u.conn.Close()
			}
			last := files[0]
			req, err := http.NewRequest("PUT", srv.cacheURL("main")+"/nar/"+last.hash+".nar.zst", bytes.NewReader(last.data))
			must(t, err)
			req.Header.Set("Authorization", "Bearer "+srv.AdminToken)
			resp, err := http.DefaultClient.Do(req)
			must(t, err)
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("a whole upload after the stalled ones closed: %d %s", resp.StatusCode, msg)
			}
		})
	}
}

// stallNAR is a compressed NAR file and its nix32 file hash.
type stallNAR struct {
	data []byte
	hash string
}

// stallNARs returns stalledUploads different zstd files of one NAR of size
// bytes, compressed with the given window. The NAR is compressed once; each
// file starts with a skippable frame of its own, which decoders pass over,
// so that every upload has its own file hash.
func stallNARs(t *testing.T, window int, size int64) []stallNAR {
	t.Helper()
	stallMu.Lock()
	defer stallMu.Unlock()
	key := [2]int64{int64(window), size}
	if files, ok := stallMade[key]; ok {
		return files
	}
	var z bytes.Buffer
	w, err := zstd.NewWriter(&z, zstd.WithWindowSize(window), zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1))
	must(t, err)
	nar := bufio.NewWriter(w)
	for _, s := range []string{"nix-archive-1", "(", "type", "regular", "contents"} {
		nar.Write(narString(s))
	}
	must(t, binary.Write(nar, binary.LittleEndian, uint64(size)))
	// 4 KiB chunks of a repeated pattern with random bytes spread over
	// it, as many as make the file 2 to 3 MiB: small enough to send
	// quickly, large enough that a refused upload's unread rest (over 256
	// KiB) makes Go's server answer at once rather than first read it.
	rng := rand.New(rand.NewPCG(uint64(window), uint64(size)))
	chunk := bytes.Repeat([]byte("larder "), 4096/7+1)[:4096]
	random := int(min(4096, 4096*(2<<20)/size))
	for n := int64(0); n < size; n += 4096 {
		for i := range random {
			chunk[i*4096/random] = byte(rng.Uint32())
		}
		nar.Write(chunk[:min(4096, size-n)])
	}
	nar.Write(make([]byte, (8-size%8)%8))
	nar.Write(narString(")"))
	must(t, nar.Flush())
	must(t, w.Close())
	var h zstd.Header
	if err := h.Decode(z.Bytes()); err != nil || h.WindowSize != uint64(window) {
		t.Fatalf("zstd frame header %+v, %v: want a window of %d", h, err, window)
	}
	files := make([]stallNAR, stalledUploads)
	for i := range files {
		skip := []byte{0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0}
		skip = binary.LittleEndian.AppendUint32(skip, uint32(i))
		data := append(skip, z.Bytes()...)
		sum := sha256.Sum256(data)
		files[i] = stallNAR{data: data, hash: nixbase32.EncodeToString(sum[:])}
	}
	stallMade[key] = files
	return files
}

// stallMade keeps the files stallNARs made, by window and size.
var (
	stallMu   sync.Mutex
	stallMade = map[[2]int64][]stallNAR{}
)

// stalledUpload is a PUT of a NAR that sends all but the last 4 KB of its
// body and then waits, reading whatever response comes.
type stalledUpload struct {
	conn net.Conn
	mu   sync.Mutex
	resp *uploadResponse
}

type uploadResponse struct {
	status     int
	retryAfter string
	body       string
}

func startStalledUpload(t *testing.T, srv *server, f stallNAR) *stalledUpload {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Addr)
	must(t, err)
	u := &stalledUpload{conn: conn}
	head := fmt.Sprintf("PUT /main/nar/%s.nar.zst HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/x-nix-nar\r\nContent-Length: %d\r\n\r\n", f.hash, srv.Addr, srv.AdminToken, len(f.data))
	go func() {
		// Writing stops when the server stops reading; the response may
		// come first.
		_, _ = conn.Write(append([]byte(head), f.data[:len(f.data)-4096]...))
	}()
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return // closed by the test
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		u.mu.Lock()
		u.resp = &uploadResponse{resp.StatusCode, resp.Header.Get("Retry-After"), string(body)}
		u.mu.Unlock()
	}()
	return u
}

// response returns the response the server sent, or nil if none has come.
func (u *stalledUpload) response() *uploadResponse {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.resp
}

// answeredCount returns how many of the uploads have been answered.
func answeredCount(ups []*stalledUpload) int {
	n := 0
	for _, u := range ups {
		if u.response() != nil {
			n++
		}
	}
	return n
}

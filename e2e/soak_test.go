package e2e

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// TestSoak runs a sustained read load against a server holding a few
// hundred paths, for LARDER_SOAK_DURATION (default 10m); it runs only with
// LARDER_SOAK=1. A bounded load generator (16 keep-alive connections on
// 127.0.0.1) asks for narinfos that exist and narinfos that do not, and
// for NAR files, existing and not. Every answer must be right: a hit 200
// with the very body (or, for HEAD, the length) first served, a miss 404,
// and no transport error. The server's resident memory must stay flat: it
// is sampled every 10 s, and at the end it may exceed the sample taken
// after the warm-up (the first minute, or the first third of a shorter
// run) by at most 20 % + 10 MiB.
//
// The server logs at level warn: an access log line per request would
// pile up in the test's copy of the output.
func TestSoak(t *testing.T) {
	if os.Getenv("LARDER_SOAK") != "1" {
		t.Skip("a soak test; run it with LARDER_SOAK=1 (and LARDER_SOAK_DURATION, default 10m)")
	}
	duration := 10 * time.Minute
	if v := os.Getenv("LARDER_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Second {
			t.Fatalf("LARDER_SOAK_DURATION=%q is not a duration of at least 10s", v)
		}
		duration = d
	}
	warmup := min(time.Minute, duration/3)
	const (
		workers        = 16
		sampleInterval = 10 * time.Second
	)

	srv := startServer(t, "--log-level", "warn")
	paths := soakPaths()
	start := time.Now()
	srv.pushGo(t, "main", srv.AdminToken, paths[:100]...) // leaves first
	srv.pushGo(t, "main", srv.AdminToken, paths[100:]...)
	var total int
	for _, p := range paths {
		total += len(p.NAR)
	}
	t.Logf("pushed %d paths (%.1f MB of NAR) in %v", len(paths), float64(total)/1e6, time.Since(start).Round(time.Millisecond))

	// What a hit must answer: the narinfo as first served, checked once.
	narinfos := make([][]byte, len(paths))
	for i, p := range paths {
		code, body := httpDo(t, "GET", srv.cacheURL("main")+"/"+p.Hash()+".narinfo", "", nil)
		f := narInfoFields(body)
		if code != 200 || firstValue(f["StorePath"]) != p.StorePath || firstValue(f["URL"]) != p.NarKey() || len(f["Sig"]) == 0 {
			t.Fatalf("narinfo of %s: %d\n%s", p.StorePath, code, body)
		}
		narinfos[i] = []byte(body)
	}

	var dials atomic.Int64
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		},
		MaxIdleConns:        workers,
		MaxIdleConnsPerHost: workers,
		MaxConnsPerHost:     workers,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	base := srv.cacheURL("main") + "/"

	var (
		requests, failures atomic.Int64
		kinds              [5]atomic.Int64
		mu                 sync.Mutex
		firstErrs          []string
	)
	fail := func(format string, args ...any) {
		failures.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if len(firstErrs) < 20 {
			firstErrs = append(firstErrs, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
		}
	}
	// one sends a request and checks its answer: status, and the body
	// (want, nil for none to check) or, for HEAD, the Content-Length.
	one := func(buf *bytes.Buffer, method, url string, wantCode int, want []byte) {
		requests.Add(1)
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			fail("%s %s: %v", method, url, err)
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			fail("%s %s: %v", method, url, err)
			return
		}
		buf.Reset()
		_, err = io.Copy(buf, resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			fail("%s %s: reading the body: %v", method, url, err)
		case resp.StatusCode != wantCode:
			fail("%s %s: %d, want %d: %.200s", method, url, resp.StatusCode, wantCode, buf.String())
		case wantCode != 200:
		case want == nil: // nix-cache-info: any body
		case method == "HEAD":
			if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(want)) || buf.Len() != 0 {
				fail("HEAD %s: Content-Length %q and %d body bytes, want %d and none", url, cl, buf.Len(), len(want))
			}
		case !bytes.Equal(buf.Bytes(), want):
			fail("%s %s: %d bytes that differ from the %d expected", method, url, buf.Len(), len(want))
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for ctx.Err() == nil {
				i := rand.IntN(len(paths))
				p := paths[i]
				switch k := rand.IntN(100); {
				case k < 40: // narinfo hit
					kinds[0].Add(1)
					one(&buf, "GET", base+p.Hash()+".narinfo", 200, narinfos[i])
				case k < 45: // narinfo hit, as Nix's HEAD
					kinds[0].Add(1)
					one(&buf, "HEAD", base+p.Hash()+".narinfo", 200, narinfos[i])
				case k < 65: // narinfo miss
					kinds[1].Add(1)
					one(&buf, "GET", base+randomNix32(20)+".narinfo", 404, nil)
				case k < 95: // NAR hit
					kinds[2].Add(1)
					one(&buf, "GET", base+p.NarKey(), 200, p.NAR)
				case k < 99: // NAR miss
					kinds[3].Add(1)
					one(&buf, "GET", base+"nar/"+randomNix32(32)+".nar", 404, nil)
				default:
					kinds[4].Add(1)
					one(&buf, "GET", base+"nix-cache-info", 200, nil)
				}
			}
		}()
	}

	// Resident memory, every 10 s, from the start of the load to its end.
	type sample struct {
		at  time.Duration
		rss int64 // bytes
	}
	var series []sample
	loadStart := time.Now()
	take := func() {
		rss, err := srv.rss()
		if err != nil {
			stop()
			wg.Wait()
			t.Fatalf("read the server's resident memory: %v\n%s", err, tail(srv.log.String(), 30))
		}
		series = append(series, sample{time.Since(loadStart), rss})
	}
	take()
	for at := sampleInterval; ; at += sampleInterval {
		at = min(at, duration)
		time.Sleep(time.Until(loadStart.Add(at)))
		take()
		if at == duration {
			break
		}
	}
	stop()
	wg.Wait()
	elapsed := time.Since(loadStart)

	n := requests.Load()
	t.Logf("%d requests in %v: %.0f req/s over %d connections (%d dialled); %d narinfo hits, %d narinfo misses, %d NAR hits, %d NAR misses, %d nix-cache-info; %d errors",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), workers, dials.Load(),
		kinds[0].Load(), kinds[1].Load(), kinds[2].Load(), kinds[3].Load(), kinds[4].Load(), failures.Load())
	var rs []string
	for _, s := range series {
		rs = append(rs, fmt.Sprintf("%ds:%.1fMiB", int(s.at.Round(time.Second).Seconds()), float64(s.rss)/(1<<20)))
	}
	t.Logf("server RSS: %s", strings.Join(rs, " "))

	if f := failures.Load(); f > 0 {
		t.Errorf("%d of %d requests went wrong; the first:\n%s", f, n, strings.Join(firstErrs, "\n"))
	}
	if n < int64(duration.Seconds()) {
		t.Errorf("only %d requests in %v", n, elapsed)
	}
	if d := dials.Load(); d > 2*workers {
		t.Errorf("%d connections dialled for %d keep-alive workers: the server closes connections", d, workers)
	}
	// The baseline is the first sample at or after the warm-up.
	var baseline sample
	for _, s := range series {
		if s.at >= warmup-time.Second {
			baseline = s
			break
		}
	}
	last := series[len(series)-1]
	limit := baseline.rss + baseline.rss/5 + 10<<20
	t.Logf("RSS after the %v warm-up %.1f MiB, at the end %.1f MiB (limit %.1f MiB)",
		warmup, float64(baseline.rss)/(1<<20), float64(last.rss)/(1<<20), float64(limit)/(1<<20))
	if last.rss > limit {
		t.Errorf("the server's RSS grew from %.1f MiB after the warm-up to %.1f MiB at the end, more than 20%% + 10 MiB",
			float64(baseline.rss)/(1<<20), float64(last.rss)/(1<<20))
	}
	select {
	case <-srv.exited:
		t.Fatalf("the server exited during the soak (%v):\n%s", srv.waitErr, tail(srv.log.String(), 30))
	default:
	}
	if errs := grepLines(srv.log.String(), "level=ERROR"); len(errs) > 0 {
		t.Errorf("the server logged %d errors during the soak:\n%s", len(errs), tail(strings.Join(errs, "\n"), 20))
	}
}

// soakPaths makes the paths of TestSoak: 100 leaves and 200 paths
// referring to some of them; most NARs are small, some up to 512 kB and a
// few of 2 to 4 MB, as in a real cache.
func soakPaths() []*goPath {
	size := func(i int) int {
		switch {
		case i%60 == 7:
			return 2<<20 + rand.IntN(2<<20)
		case i%6 == 1:
			return 64<<10 + rand.IntN(448<<10)
		default:
			return 200 + rand.IntN(64<<10)
		}
	}
	var paths []*goPath
	for i := range 100 {
		paths = append(paths, newGoPath(fmt.Sprintf("soak-leaf-%d", i), size(i)))
	}
	for i := range 200 {
		var refs []*goPath
		for _, j := range rand.Perm(100)[:rand.IntN(4)] {
			refs = append(refs, paths[j])
		}
		paths = append(paths, newGoPath(fmt.Sprintf("soak-app-%d", i), size(100+i), refs...))
	}
	return paths
}

// randomNix32 returns n random bytes in nix32: with 20, the hash part of a
// store path no cache holds; with 32, the file hash of a NAR file none
// holds.
func randomNix32(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return nixbase32.EncodeToString(b)
}

// pid is the process ID of the server.
func (s *server) pid() int { return s.cmd.Process.Pid }

// rss returns the server process's resident memory (VmRSS), in bytes.
func (s *server) rss() (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(s.pid()), "status"))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected VmRSS line %q", l)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", s.pid())
}

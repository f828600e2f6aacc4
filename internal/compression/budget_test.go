package compression

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// queued returns how many reservations wait on b.
func (b *Budget) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// waitQueued waits until n reservations wait on b.
func waitQueued(t *testing.T, b *Budget, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.queued() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d reservations wait, want %d", b.queued(), n)
		}
		runtime.Gosched()
	}
}

// acquireAsync acquires n bytes of b in a goroutine and sends the result.
func acquireAsync(ctx context.Context, b *Budget, n int64, grow bool) <-chan error {
	done := make(chan error, 1)
	go func() { done <- b.acquire(ctx, n, grow) }()
	return done
}

func TestBudgetReserveRelease(t *testing.T) {
	b := NewBudget(100, time.Minute)
	for _, n := range []int64{40, 60} {
		if err := b.acquire(t.Context(), n, false); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.InUse(); got != 100 {
		t.Fatalf("in use %d, want 100", got)
	}
	done := acquireAsync(t.Context(), b, 30, false)
	waitQueued(t, b, 1)
	b.release(40)
	if err := <-done; err != nil {
		t.Fatalf("waiting reservation: %v", err)
	}
	b.release(60)
	b.release(30)
	if got := b.InUse(); got != 0 {
		t.Errorf("in use %d after every release, want 0", got)
	}
}

func TestBudgetWaitThenFail(t *testing.T) {
	b := NewBudget(100, 20*time.Millisecond)
	if err := b.acquire(t.Context(), 80, false); err != nil {
		t.Fatal(err)
	}
	err := b.acquire(t.Context(), 30, false)
	var be *BusyError
	if !errors.As(err, &be) || be.Need != 30 || be.Total != 100 || be.Wait != 20*time.Millisecond {
		t.Fatalf("error %v, want a *BusyError for 30 of 100 bytes", err)
	}
	if got, q := b.InUse(), b.queued(); got != 80 || q != 0 {
		t.Errorf("after the failed wait: %d in use, %d waiting; want 80, 0", got, q)
	}
	// A failed wait leaves the room it did not get to the others.
	if err := b.acquire(t.Context(), 20, false); err != nil {
		t.Error(err)
	}
}

func TestBudgetContextEndsWait(t *testing.T) {
	b := NewBudget(100, time.Hour)
	if err := b.acquire(t.Context(), 100, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	first := acquireAsync(ctx, b, 50, false)
	waitQueued(t, b, 1)
	second := acquireAsync(t.Context(), b, 10, false)
	waitQueued(t, b, 2)
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	waitQueued(t, b, 1)
	b.release(10)
	if err := <-second; err != nil {
		t.Fatalf("the reservation behind the cancelled one: %v", err)
	}
	if got := b.InUse(); got != 100 {
		t.Errorf("in use %d, want 100", got)
	}
}

// TestBudgetOrder checks that reservations are served in order of arrival,
// so that a large one is not starved by small ones, except that growing a
// reservation goes first.
func TestBudgetOrder(t *testing.T) {
	b := NewBudget(100, time.Hour)
	if err := b.acquire(t.Context(), 60, false); err != nil {
		t.Fatal(err)
	}
	large := acquireAsync(t.Context(), b, 50, false)
	waitQueued(t, b, 1)
	small := acquireAsync(t.Context(), b, 10, false)
	waitQueued(t, b, 2)
	select {
	case err := <-small:
		t.Fatalf("a small reservation went before a larger one that waited first (%v)", err)
	default:
	}
	// Growing goes first, and fits.
	if err := b.acquire(t.Context(), 30, true); err != nil {
		t.Fatalf("growing: %v", err)
	}
	b.release(30)
	b.release(60)
	if err := <-large; err != nil {
		t.Fatal(err)
	}
	if err := <-small; err != nil {
		t.Fatal(err)
	}
	if got := b.InUse(); got != 60 {
		t.Errorf("in use %d, want 60", got)
	}
}

func TestBudgetMoreThanTotal(t *testing.T) {
	b := NewBudget(100, time.Hour)
	err := b.acquire(t.Context(), 101, false)
	var le *LimitError
	if !errors.As(err, &le) || !le.Budget || le.Need != 101 || le.Max != 100 {
		t.Fatalf("error %v, want a *LimitError of the budget", err)
	}
	if b.InUse() != 0 || b.queued() != 0 {
		t.Error("a refused reservation holds or waits")
	}
}

func TestReservationNeeds(t *testing.T) {
	b := NewBudget(1000, time.Hour)
	r := &reservation{ctx: t.Context(), budget: b}
	steps := []struct{ need, held int64 }{
		{100, 100}, // the first frame
		{50, 100},  // a smaller frame reuses what is held
		{100, 100},
		{300, 400}, // a larger one adds its whole need
		{200, 400},
	}
	for _, s := range steps {
		if err := r.need(s.need); err != nil {
			t.Fatal(err)
		}
		if got := b.InUse(); got != s.held {
			t.Fatalf("after a need of %d: %d in use, want %d", s.need, got, s.held)
		}
	}
	r.release()
	r.release()
	if got := b.InUse(); got != 0 {
		t.Errorf("in use %d after release, want 0", got)
	}
	if err := r.need(2000); err == nil || r.err != err {
		t.Errorf("a need over the budget: %v, kept %v", err, r.err)
	}
}

// TestReservationsCoverDecoders checks, for streams of each method with
// their largest needs, that what a decoder holds on the heap in the middle
// of a stream is no more than it reserved. It measures the heap, so it does
// not run in parallel with other tests.
func TestReservationsCoverDecoders(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes streams with windows up to 64 MiB")
	}
	data := testData(3 << 20)
	type stream struct {
		name, method string
		enc          []byte
	}
	var streams []stream
	add := func(name, method string, enc []byte) { streams = append(streams, stream{name, method, enc}) }
	for _, w := range []int{1 << 10, 64 << 10, 1 << 20, 8 << 20, 64 << 20} {
		add("zstd window "+mib(int64(w)), Zstd, zstdWindowEncode(t, data, w))
	}
	// A second frame with a larger window than the first.
	add("zstd growing", Zstd, append(zstdWindowEncode(t, data[:1<<20], 1<<20), zstdWindowEncode(t, data, 8<<20)...))
	for _, d := range []int{1 << 20, 8 << 20, 64 << 20} {
		add("xz dictionary "+mib(int64(d)), XZ, xzEncode(t, data, xz.WriterConfig{DictCap: d, BlockSize: 1 << 20}))
	}
	for _, w := range []int{16, 22, 24} {
		var b bytes.Buffer
		bw := brotli.NewWriterOptions(&b, brotli.WriterOptions{Quality: 1, LGWin: w})
		bw.Write(data)
		bw.Close()
		add("brotli window "+mib(1<<w), Brotli, b.Bytes())
	}
	add("lz4 64 KiB blocks", LZ4, lz4Encode(t, data, lz4.BlockSizeOption(lz4.Block64Kb)))
	add("lz4 4 MiB blocks", LZ4, lz4Encode(t, data, lz4.BlockSizeOption(lz4.Block4Mb)))
	add("lz4 legacy", LZ4, lz4Encode(t, testData(20<<20), lz4.LegacyOption(true)))
	add("lz4 growing", LZ4, append(lz4Encode(t, data[:1<<20], lz4.BlockSizeOption(lz4.Block64Kb)),
		lz4Encode(t, data, lz4.BlockSizeOption(lz4.Block4Mb))...))
	add("gzip", Gzip, encode(t, Gzip, data))
	add("bzip2 -9", Bzip2, runTool(t, data, "bzip2", "-9", "-c"))

	for _, s := range streams {
		budget := NewBudget(1<<30, time.Second)
		before := liveHeap()
		rc, err := Open(t.Context(), s.method, bytes.NewReader(s.enc), Options{Budget: budget})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		// Well into the stream (and into a second frame where there is one).
		if _, err := io.CopyN(io.Discard, rc, 2<<20+(1<<20)/2); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		held := liveHeap() - before
		reserved := budget.InUse()
		if held > reserved {
			t.Errorf("%s: the decoder holds %s, more than the %s it reserved", s.name, mib(held), mib(reserved))
		} else {
			t.Logf("%s: holds %s of the %s reserved", s.name, mib(held), mib(reserved))
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		rc.Close()
		if got := budget.InUse(); got != 0 {
			t.Errorf("%s: %d bytes still reserved after Close", s.name, got)
		}
	}
}

// liveHeap returns the bytes of live heap objects.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC() // and what the pools kept from before
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// zstdWindowEncode writes one frame of data with the given window, its
// content size not declared, as a streaming encoder does.
func zstdWindowEncode(t testing.TB, data []byte, window int) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := zstd.NewWriter(&b, zstd.WithWindowSize(window), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	h, err := parseZstdHeader(b.Bytes()[:zstdMaxHeader])
	if err != nil || h.window != int64(window) {
		t.Fatalf("frame header %+v, %v: want a window of %d", h, err, window)
	}
	return b.Bytes()
}

// TestWindowLimits checks that each method with a window refuses streams
// needing more than Options.MaxWindow, in the first frame or a later one,
// before allocating for them, and accepts those within it.
func TestWindowLimits(t *testing.T) {
	data := testData(1 << 20)
	var br bytes.Buffer
	bw := brotli.NewWriterOptions(&br, brotli.WriterOptions{Quality: 1, LGWin: 22})
	bw.Write(data)
	bw.Close()
	xz8 := xzEncode(t, data, xz.WriterConfig{DictCap: 8 << 20})
	xz1 := xzEncode(t, data, xz.WriterConfig{DictCap: 1 << 20})
	tests := []struct {
		name, method, what string
		enc                []byte
		need               int64
	}{
		{"zstd", Zstd, "window", zstdWindowEncode(t, data, 8<<20), 8 << 20},
		{"zstd, later frame", Zstd, "window", append(zstdWindowEncode(t, data, 1<<20), zstdWindowEncode(t, data, 8<<20)...), 8 << 20},
		{"xz", XZ, "dictionary", xz8, 8 << 20},
		{"xz, later stream", XZ, "dictionary", append(bytes.Clone(xz1), xz8...), 8 << 20},
		{"brotli", Brotli, "window", br.Bytes(), 4 << 20},
	}
	for _, tt := range tests {
		budget := NewBudget(1<<30, time.Second)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := decodeWith(tt.method, tt.enc, Options{MaxWindow: 2 << 20, Budget: budget})
		runtime.ReadMemStats(&after)
		var le *LimitError
		var de *DecodeError
		if !errors.As(err, &de) || !errors.As(err, &le) || le.Method != tt.method || le.What != tt.what ||
			le.Need != tt.need || le.Max != 2<<20 {
			t.Errorf("%s: error %v, want a *LimitError of a %s of %d bytes", tt.name, err, tt.what, tt.need)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(tt.need) {
			t.Errorf("%s: refusing allocated %s", tt.name, mib(int64(alloc)))
		}
		if got, err := decodeWith(tt.method, tt.enc, Options{MaxWindow: tt.need, Budget: budget}); err != nil ||
			!bytes.HasPrefix(got, data) {
			t.Errorf("%s within the limit: %d bytes, %v", tt.name, len(got), err)
		}
		if n := budget.InUse(); n != 0 {
			t.Errorf("%s: %d bytes still reserved", tt.name, n)
		}
	}
	want := "needs a window of 8 MiB, more than the 2 MiB allowed"
	if got := (&LimitError{Method: Zstd, What: "window", Need: 8 << 20, Max: 2 << 20}).Error(); got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

// decodeWith decodes enc as Open does with opts.
func decodeWith(method string, enc []byte, opts Options) ([]byte, error) {
	rc, err := Open(context.Background(), method, bytes.NewReader(enc), opts)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// TestDecoderWaitsForBudget checks that a decoder waits for the room its
// stream needs, fails once the wait is over, and gives back what it held
// on every way out: success, a failed wait, an error of its input, corrupt
// data and being closed early.
func TestDecoderWaitsForBudget(t *testing.T) {
	data := testData(1 << 20)
	enc := zstdWindowEncode(t, data, 8<<20)
	need := zstdNeed(8 << 20)
	budget := NewBudget(need+need/2, 20*time.Millisecond)
	if err := budget.acquire(t.Context(), need, false); err != nil {
		t.Fatal(err)
	}
	_, err := Open(t.Context(), Zstd, bytes.NewReader(enc), Options{Budget: budget})
	var be *BusyError
	var de *DecodeError
	if !errors.As(err, &de) || !errors.As(err, &be) || be.Need != need {
		t.Fatalf("error %v, want a *BusyError for %d bytes", err, need)
	}
	if got := budget.InUse(); got != need {
		t.Fatalf("in use %d after a failed wait, want %d", got, need)
	}
	// Room that comes free during the wait is taken.
	wait := NewBudget(budget.Total(), time.Hour)
	if err := wait.acquire(t.Context(), need, false); err != nil {
		t.Fatal(err)
	}
	opened := make(chan error, 1)
	go func() {
		got, err := decodeWith(Zstd, enc, Options{Budget: wait})
		if err == nil && !bytes.Equal(got, data) {
			err = errors.New("decoded other bytes")
		}
		opened <- err
	}()
	waitQueued(t, wait, 1)
	wait.release(need)
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	if got := wait.InUse(); got != 0 {
		t.Errorf("in use %d after decoding, want 0", got)
	}

	budget.release(need)
	boom := errors.New("connection reset")
	corrupt := bytes.Clone(enc)
	copy(corrupt[len(corrupt)/2:], bytes.Repeat([]byte{0xa5}, 64))
	for name, r := range map[string]io.Reader{
		"input error": io.MultiReader(bytes.NewReader(enc[:len(enc)/2]), errReader{boom}),
		"truncated":   bytes.NewReader(enc[:len(enc)/2]),
		"corrupt":     bytes.NewReader(corrupt),
	} {
		rc, err := Open(t.Context(), Zstd, r, Options{Budget: budget})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := io.Copy(io.Discard, rc); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
		rc.Close()
		if got := budget.InUse(); got != 0 {
			t.Errorf("%s: %d bytes still reserved after Close", name, got)
		}
	}
	rc, err := Open(t.Context(), Zstd, bytes.NewReader(enc), Options{Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, rc, 1000); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	rc.Close()
	if got := budget.InUse(); got != 0 {
		t.Errorf("closed early: %d bytes still reserved", got)
	}
}

// TestGrowingPastTheBudget checks that a later frame needing more than the
// budget can give, counting what the stream holds already, is refused at
// once rather than after a wait that could not end well.
func TestGrowingPastTheBudget(t *testing.T) {
	data := testData(1 << 20)
	enc := append(zstdWindowEncode(t, data, 1<<20), zstdWindowEncode(t, data, 8<<20)...)
	budget := NewBudget(zstdNeed(8<<20)+zstdNeed(1<<20)/2, time.Hour)
	got, err := decodeWith(Zstd, enc, Options{Budget: budget})
	var le *LimitError
	if !errors.As(err, &le) || !le.Budget || le.Need != zstdNeed(1<<20)+zstdNeed(8<<20) {
		t.Fatalf("error %v, want a *LimitError of the budget", err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("decoded %d bytes of the first frame, want %d", len(got), len(data))
	}
	if n := budget.InUse(); n != 0 {
		t.Errorf("%d bytes still reserved", n)
	}
}

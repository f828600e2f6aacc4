package narverify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/larder-cache/larder/internal/compression"
)

// zstdWindow compresses data into one zstd frame with the given window.
func zstdWindow(t testing.TB, data []byte, window int) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := zstd.NewWriter(&b, zstd.WithWindowSize(window), zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1))
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

// stalled is an upload whose first half has been read by its Reader, which
// then waits for the rest.
type stalled struct {
	v    *Reader
	pw   *io.PipeWriter
	done chan error
}

// startStalled starts verifying file, feeding it half of it.
func startStalled(t *testing.T, file []byte, opts Options) *stalled {
	t.Helper()
	pr, pw := io.Pipe()
	s := &stalled{v: NewReader(pr, opts), pw: pw, done: make(chan error, 1)}
	go func() {
		_, err := io.Copy(io.Discard, s.v)
		s.done <- err
	}()
	if _, err := pw.Write(file[:len(file)/2]); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitInUse waits until the budget holds at least n bytes.
func waitInUse(t *testing.T, b *compression.Budget, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.InUse() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the budget holds %d bytes, want at least %d", b.InUse(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDecoderBudgetReleased checks that the decompressor of every method
// reserves from the budget while it runs and that the budget is back to
// zero however the verification ends: success, corrupt data, a client that
// goes away, a body shorter than its size, a wrong file hash, data that is
// not a NAR, a limit exceeded, trailing data and Close.
func TestDecoderBudgetReleased(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 1<<20))
	budget := compression.NewBudget(1<<30, time.Second)
	for _, m := range allMethods[1:] {
		t.Run(m, func(t *testing.T) {
			file := compress(t, m, narData)
			opts := Options{Ext: ext(t, m), Size: int64(len(file)), Decoder: compression.Options{Budget: budget}}
			hash := sha256.Sum256(file)

			s := startStalled(t, file, opts)
			waitInUse(t, budget, 1)
			s.pw.CloseWithError(errors.New("connection reset"))
			if err := <-s.done; kindOf(err) != KindReadFailed {
				t.Errorf("client gone: %v", err)
			}
			if n := budget.InUse(); n != 0 {
				t.Errorf("client gone: %d bytes still reserved", n)
			}

			corrupt := bytes.Clone(file)
			copy(corrupt[len(corrupt)/3:], bytes.Repeat([]byte{0xa5, 0x3c}, 32))
			notNAR := compress(t, m, bytes.Repeat([]byte("not a nar "), 1000))
			wrong := opts
			wrong.ExpectFileHash = make([]byte, 32)
			small := opts
			small.Limits.MaxNarSize = 1 << 20
			long := append(bytes.Clone(file), compress(t, m, []byte("more"))...)
			cases := []struct {
				name string
				in   []byte
				opts Options
				kind Kind
			}{
				{"success", file, opts, 0},
				{"corrupt", corrupt, opts, KindInvalid},
				{"short body", file[:len(file)-100], opts, KindTruncated},
				{"wrong file hash", file, wrong, KindInvalid},
				{"not a NAR", notNAR, Options{Ext: opts.Ext, Size: -1, Decoder: opts.Decoder}, KindInvalid},
				{"too large", file, small, KindTooLarge},
				{"trailing data", long, Options{Ext: opts.Ext, Size: -1, Decoder: opts.Decoder}, KindInvalid},
			}
			for _, c := range cases {
				_, res, err := verify(c.in, c.opts)
				if c.kind == 0 && (err != nil || res.FileHash != hash) {
					t.Errorf("%s: %v", c.name, err)
				}
				if c.kind != 0 && kindOf(err) != c.kind && (m != compression.Brotli || c.name != "corrupt") {
					t.Errorf("%s: error %v, want kind %v", c.name, err, c.kind)
				}
				if n := budget.InUse(); n != 0 {
					t.Errorf("%s: %d bytes still reserved", c.name, n)
				}
			}

			v := NewReader(bytes.NewReader(file), opts)
			if _, err := io.ReadFull(v, make([]byte, len(file)/2)); err != nil {
				t.Fatal(err)
			}
			v.Close()
			if n := budget.InUse(); n != 0 {
				t.Errorf("closed early: %d bytes still reserved", n)
			}
		})
	}
}

// TestDecoderWindowRefused checks that a stream needing a larger window
// than allowed is refused as too large, naming the window and the limit.
func TestDecoderWindowRefused(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 1<<20))
	file := zstdWindow(t, narData, 8<<20)
	budget := compression.NewBudget(1<<30, time.Second)
	_, _, err := verify(file, Options{Ext: ".zst", Size: int64(len(file)),
		Decoder: compression.Options{MaxWindow: 4 << 20, Budget: budget}})
	wantError(t, err, KindTooLarge, "zstd data is too large to decode: needs a window of 8 MiB, more than the 4 MiB allowed")
	var le *compression.LimitError
	if !errors.As(err, &le) || le.Need != 8<<20 || le.Max != 4<<20 {
		t.Errorf("error %v does not carry the *compression.LimitError", err)
	}
	if n := budget.InUse(); n != 0 {
		t.Errorf("%d bytes still reserved", n)
	}
	if _, _, err := verify(file, Options{Ext: ".zst", Size: int64(len(file)),
		Decoder: compression.Options{MaxWindow: 8 << 20, Budget: budget}}); err != nil {
		t.Errorf("within the limit: %v", err)
	}
}

// TestDecoderBudgetBusy checks that an upload waits for room in the budget
// while others hold it, fails as busy once the wait is over, gives up when
// its context ends, and goes on when room comes free.
func TestDecoderBudgetBusy(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 1<<20))
	file := zstdWindow(t, narData, 8<<20)
	budget := compression.NewBudget(12<<20, 50*time.Millisecond)
	opts := Options{Ext: ".zst", Size: int64(len(file)), Decoder: compression.Options{Budget: budget}}

	first := startStalled(t, file, opts)
	waitInUse(t, budget, 8<<20)
	held := budget.InUse()

	_, _, err := verify(file, opts)
	wantError(t, err, KindBusy, "no decoder memory free for the zstd data")
	var be *compression.BusyError
	if !errors.As(err, &be) || be.Total != 12<<20 {
		t.Errorf("error %v does not carry the *compression.BusyError", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	cancelled := opts
	cancelled.Context = ctx
	_, _, err = verify(file, cancelled)
	wantError(t, err, KindReadFailed, "gave up waiting for decoder memory")
	if n := budget.InUse(); n != held {
		t.Errorf("after failed waits the budget holds %d bytes, want %d", n, held)
	}

	first.pw.CloseWithError(errors.New("connection reset"))
	<-first.done

	// With a long wait, an upload waits for the one before it to finish
	// (the two do not fit together) and then goes on.
	patient := compression.NewBudget(12<<20, time.Hour)
	opts.Decoder.Budget = patient
	first = startStalled(t, file, opts)
	waitInUse(t, patient, 8<<20)
	second := make(chan error, 1)
	go func() {
		_, _, err := verify(file, opts)
		second <- err
	}()
	if _, err := first.pw.Write(file[len(file)/2:]); err != nil {
		t.Fatal(err)
	}
	first.pw.Close()
	if err := <-first.done; err != nil {
		t.Fatalf("first upload: %v", err)
	}
	if err := <-second; err != nil {
		t.Errorf("second upload: %v", err)
	}
	if n := patient.InUse() + budget.InUse(); n != 0 {
		t.Errorf("%d bytes still reserved", n)
	}
}

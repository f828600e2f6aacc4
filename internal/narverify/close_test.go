package narverify

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/larder-cache/larder/internal/compression"
)

func TestCloseEarly(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 2<<20))
	for _, m := range allMethods {
		t.Run(m, func(t *testing.T) {
			file := compress(t, m, narData)
			before := runtime.NumGoroutine()
			v := NewReader(bytes.NewReader(file), Options{Ext: ext(t, m), Size: int64(len(file))})
			if _, err := io.ReadFull(v, make([]byte, len(file)/2)); err != nil {
				t.Fatal(err)
			}
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
			waitGoroutines(t, before)
			if _, err := v.Read(make([]byte, 10)); !errors.Is(err, ErrClosed) {
				t.Errorf("Read after Close: %v", err)
			}
			if _, err := v.Result(); !errors.Is(err, ErrClosed) {
				t.Errorf("Result after Close: %v", err)
			}
			if err := v.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestCloseBeforeRead(t *testing.T) {
	before := runtime.NumGoroutine()
	src := &countingReader{r: bytes.NewReader([]byte("x"))}
	v := NewReader(src, Options{Size: -1})
	v.Close()
	if _, err := v.Read(make([]byte, 10)); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if src.reads != 0 {
		t.Errorf("the body was read %d times", src.reads)
	}
	waitGoroutines(t, before)
}

func TestCloseAfterSuccess(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 1000))
	v := NewReader(bytes.NewReader(narData), Options{Size: int64(len(narData))})
	if _, err := io.Copy(io.Discard, v); err != nil {
		t.Fatal(err)
	}
	v.Close()
	if res, err := v.Result(); err != nil || res.NarSize != int64(len(narData)) {
		t.Errorf("Result after Close: %+v, %v", res, err)
	}
}

func TestResultBeforeEnd(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 100_000))
	v := NewReader(bytes.NewReader(narData), Options{Size: -1})
	defer v.Close()
	if _, err := v.Result(); !errors.Is(err, ErrNotFinished) {
		t.Errorf("Result before reading: %v", err)
	}
	if _, err := io.ReadFull(v, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Result(); !errors.Is(err, ErrNotFinished) {
		t.Errorf("Result while reading: %v", err)
	}
}

// TestNoGoroutineLeaks runs verifications that end in every way and checks
// that no goroutine outlives them.
func TestNoGoroutineLeaks(t *testing.T) {
	narData := dumpNAR(t, makeTree(t, 200_000))
	xzFile := compress(t, compression.XZ, narData)
	unsorted := newNAR().dir("b", fileNode(""), "a", fileNode("")).Bytes()
	boom := errors.New("boom")
	cases := []struct {
		body io.Reader
		opts Options
	}{
		{bytes.NewReader(xzFile), Options{Ext: ".xz", Size: -1}},
		{bytes.NewReader(xzFile[:1000]), Options{Ext: ".xz", Size: int64(len(xzFile))}},
		{bytes.NewReader(xzFile[:len(xzFile)/2]), Options{Ext: ".xz", Size: -1}},
		{bytes.NewReader(unsorted), Options{Size: -1}},
		{bytes.NewReader(xzFile), Options{Ext: ".zst", Size: -1}},
		{bytes.NewReader(xzFile), Options{Ext: ".xz", Size: -1, Limits: Limits{MaxNarSize: 1000}}},
		{io.MultiReader(bytes.NewReader(xzFile[:5000]), errReader{boom}), Options{Ext: ".xz", Size: -1}},
		{bytes.NewReader(append(bytes.Clone(narData), 1)), Options{Size: int64(len(narData))}},
	}
	before := runtime.NumGoroutine()
	for i := range 3 {
		for j, c := range cases {
			if i > 0 {
				if s, ok := c.body.(io.Seeker); ok {
					s.Seek(0, io.SeekStart)
				} else {
					continue
				}
			}
			v := NewReader(c.body, c.opts)
			_, err := io.Copy(io.Discard, v)
			if j == 0 && err != nil {
				t.Fatalf("case %d: %v", j, err)
			}
			if j > 0 && err == nil {
				t.Fatalf("case %d succeeded", j)
			}
		}
	}
	waitGoroutines(t, before)
}

func TestErrorType(t *testing.T) {
	cause := errors.New("cause")
	e := newError(KindInvalid, cause, "nar is not valid %s data", "xz")
	if e.Error() != "nar is not valid xz data: cause" || !errors.Is(e, cause) {
		t.Errorf("Error() = %q, Is(cause) = %v", e, errors.Is(e, cause))
	}
	if got := newError(KindTooLarge, nil, "too big").Error(); got != "too big" {
		t.Errorf("Error() without cause = %q", got)
	}
	names := map[Kind]string{
		KindInvalid: "invalid", KindTooLarge: "too large", KindTruncated: "truncated",
		KindReadFailed: "read failed", KindBusy: "busy", 0: "Kind(0)",
	}
	for k, want := range names {
		if k.String() != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), k.String(), want)
		}
	}
}

package storetest

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// Peak is how much memory a function took at most: the Go heap in use,
// sampled every few milliseconds, and the resident set of the process.
type Peak struct {
	Heap uint64 // bytes of the Go heap in use
	RSS  uint64 // bytes resident (VmHWM); 0 where the system does not say
}

// MeasurePeak runs fn and returns its peak memory. The resident peak is
// the process's since MeasurePeak reset it through /proc/self/clear_refs,
// or since the process started where that is not possible.
func MeasurePeak(fn func()) Peak {
	runtime.GC()
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	var p Peak
	var mu sync.Mutex
	done := make(chan struct{})
	var wg sync.WaitGroup
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		p.Heap = max(p.Heap, ms.HeapInuse)
		mu.Unlock()
	}
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	})
	fn()
	close(done)
	wg.Wait()
	sample()
	p.RSS = vmHWM()
	return p
}

// vmHWM returns the peak resident set size of the process, or 0.
func vmHWM() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			kb, err := strconv.ParseUint(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

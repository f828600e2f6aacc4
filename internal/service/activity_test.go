package service

import (
	"context"
	"testing"
	"time"
)

// TestWaitQuiet: queued chunking waits for uploads to pause, and no
// longer than its deadline.
func TestWaitQuiet(t *testing.T) {
	ctx := context.Background()
	const quiet = 200 * time.Millisecond
	var a activity
	began := time.Now()
	if !a.waitQuiet(ctx, quiet, began.Add(time.Minute)) || time.Since(began) > quiet/2 {
		t.Fatalf("nothing ever ran: waited %v, want no wait", time.Since(began))
	}

	end := a.start()
	began = time.Now()
	if !a.waitQuiet(ctx, quiet, began.Add(3*quiet)) {
		t.Fatal("waitQuiet reported its context ended")
	}
	if took := time.Since(began); took < 3*quiet || took > 3*quiet+time.Second {
		t.Fatalf("an upload running: waited %v, want the deadline, %v", took, 3*quiet)
	}

	go func() { time.Sleep(quiet); end() }()
	began = time.Now()
	a.waitQuiet(ctx, quiet, began.Add(time.Minute))
	if took := time.Since(began); took < 2*quiet || took > 2*quiet+time.Second {
		t.Fatalf("an upload ending after %v: waited %v, want it and then %v quiet", quiet, took, quiet)
	}

	cctx, cancel := context.WithCancel(ctx)
	end = a.start()
	defer end()
	go func() { time.Sleep(quiet); cancel() }()
	if a.waitQuiet(cctx, quiet, time.Now().Add(time.Minute)) {
		t.Fatal("context cancelled while waiting: waitQuiet reported true")
	}
}

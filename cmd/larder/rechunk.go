package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/larder-cache/larder/internal/service"
)

// rechunkCmd stores every NAR file still stored whole as chunks now, as a
// server does in the background; each file is read back from its chunks
// and checked before its whole copy is deleted. It can be stopped and run
// again, beside a running server.
type rechunkCmd struct{}

func (c *rechunkCmd) flags(*flag.FlagSet) {}

func (c *rechunkCmd) run(ctx context.Context, e *env, _ []string) error {
	if !e.cfg.Chunking {
		return errors.New("chunking is off (chunking = false): nothing to do")
	}
	a, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	start := time.Now()
	last := start
	r, err := a.Service.Rechunk(ctx, func(r service.RechunkReport) {
		if time.Since(last) > 5*time.Second {
			last = time.Now()
			fmt.Fprintf(e.stdout, "chunked %d NAR files (%s) so far\n", r.Nars, sizeText(r.NarBytes))
		}
	})
	secs := max(time.Since(start).Seconds(), 0.001)
	fmt.Fprintf(e.stdout, "chunked %d NAR files of %s (%s stored whole) into %s of new chunks in %.1fs (%.0f MB/s); %d failed and stay whole\n",
		r.Nars, sizeText(r.NarBytes), sizeText(r.Before), sizeText(r.After), secs, float64(r.NarBytes)/secs/1e6, r.Failed)
	if err != nil {
		return userError(err)
	}
	if r.Failed > 0 {
		return fmt.Errorf("%d NAR files could not be chunked; see the log", r.Failed)
	}
	return nil
}

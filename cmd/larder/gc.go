package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// gcCmd runs a garbage collection now and prints what it removed (or,
// with --dry-run, what it would remove).
type gcCmd struct {
	cache           string
	dryRun, verbose bool
}

func (c *gcCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.cache, "cache", "", "collect only the cache `NAME`")
	fs.BoolVar(&c.dryRun, "dry-run", false, "say what would be removed, remove nothing")
	fs.BoolVar(&c.verbose, "verbose", false, "also list each narinfo removed (or that would be)")
}

func (c *gcCmd) run(ctx context.Context, e *env, _ []string) error {
	opts := service.CollectOptions{Cache: c.cache, DryRun: c.dryRun}
	verb := "removed"
	if c.dryRun {
		verb = "would remove"
	}
	stdout, stderr := e.stdout, e.stderr
	var bar *progress
	logTo := stderr
	if isTerminal(stderr) {
		bar = &progress{w: stderr, verb: verb}
		opts.Progress = bar.cache
		logTo = bar // log lines go above the progress line
	}
	a, err := e.openLogging(ctx, logTo)
	if err != nil {
		return err
	}
	defer a.Close()
	opts.Removed = func(cache string, hashes []string) {
		if c.verbose {
			for _, h := range hashes {
				fmt.Fprintf(stdout, "%s %s/%s.narinfo\n", verb, cache, h)
			}
		}
		bar.removed(len(hashes))
	}
	start := time.Now()
	reports, err := a.Service.Collect(ctx, opts)
	if opts.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if errors.Is(err, service.ErrCollecting) {
		return fmt.Errorf("%w; try again when it has finished", err)
	}
	if err != nil {
		return userError(err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "CACHE\tKEPT PATHS\tKEPT\t%s PATHS\t%s\tPINNED\tNOTES\n", upper(verb), upper(verb))
	for _, r := range reports {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%d\t%s\n", r.Cache, r.Result.KeptPaths, sizeText(r.Result.KeptBytes),
			r.Result.RemovedPaths, sizeText(r.Result.RemovedBytes), r.PinnedPaths, notes(r))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var first service.CollectReport
	if len(reports) > 0 {
		first = reports[0]
	}
	if c.dryRun {
		verb += " up to"
	}
	fmt.Fprintf(stdout, "%s %d NAR files no cache uses (%s) and %d orphaned blobs (%s) in %s\n", verb,
		first.NarsDeleted, sizeText(first.BytesDeleted), first.BlobsSwept, sizeText(first.SweptBytes),
		time.Since(start).Round(time.Millisecond))
	return nil
}

func notes(r service.CollectReport) string {
	var s string
	add := func(format string, args ...any) {
		if s != "" {
			s += "; "
		}
		s += fmt.Sprintf(format, args...)
	}
	if r.Result.DroppedRoots > 0 {
		add("%d roots dropped to fit %s", r.Result.DroppedRoots, sizeText(r.Policy.MaxSize))
	}
	if r.Result.OverQuota {
		add("pins alone exceed max size")
	}
	if r.PinsExpired > 0 {
		add("%d pin revisions expired", r.PinsExpired)
	}
	if r.Policy == (store.Policy{}) {
		add("keeps everything (no policy)")
	}
	return s
}

func upper(s string) string {
	if s == "removed" {
		return "REMOVED"
	}
	return "WOULD REMOVE"
}

// isTerminal reports whether w is a terminal, for progress output.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress is the line larder gc keeps up to date on a terminal: the cache
// it collects, of how many, and how many paths it has removed from it.
type progress struct {
	mu          sync.Mutex // log lines may come from other goroutines
	w           io.Writer
	verb        string
	name        string
	done, total int
	paths       int
}

// cache starts the line of the next cache.
func (p *progress) cache(name string, done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.name, p.done, p.total, p.paths = name, done, total, 0
	p.draw()
}

// removed counts paths removed from the current cache; nil does nothing.
func (p *progress) removed(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paths += n
	p.draw()
}

func (p *progress) draw() {
	fmt.Fprintf(p.w, "\r\033[Kcollecting %s [%d/%d]: %s %d paths", p.name, p.done+1, p.total, p.verb, p.paths)
}

// Write writes a log line above the progress line, which it then draws
// again.
func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, "\r\033[K")
	n, err := p.w.Write(b)
	if p.name != "" {
		p.draw()
	}
	return n, err
}

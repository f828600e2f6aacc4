package main

import (
	"fmt"
	"io"
	"path"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/larder-cache/larder/internal/push"
)

// lineReporter writes a line per path pushed, for logs and CI.
type lineReporter struct {
	mu sync.Mutex
	w  io.Writer
}

func newLineReporter(w io.Writer) *lineReporter { return &lineReporter{w: w} }

func (r *lineReporter) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.w, format, args...)
}

func (r *lineReporter) Planned(paths, cached int, todo []push.PathInfo, narBytes int64) {
	r.printf("%d paths: %d already cached, %d to push (%s of NARs)\n", paths, cached, len(todo), sizeText(narBytes))
}

func (r *lineReporter) Started(push.PathInfo)                {}
func (r *lineReporter) Advanced(push.PathInfo, int64, int64) {}

func (r *lineReporter) Finished(p push.PathInfo, sent int64, took time.Duration, err error) {
	if err != nil {
		r.printf("failed %s: %v\n", p.Path, err)
		return
	}
	r.printf("pushed %s (%s sent, NAR %s) in %s\n", p.Path, sizeText(sent), sizeText(p.NarSize), took.Round(time.Millisecond))
}

func (r *lineReporter) summary(res push.Result, err error) {
	verb := "pushed"
	if err != nil {
		verb = "failed after pushing"
	}
	cached := fmt.Sprintf("%d already cached", res.Cached)
	if res.Upstream > 0 {
		cached += fmt.Sprintf(", %d upstream", res.Upstream)
	}
	r.printf("%s %d paths (%s), %s in %s\n", verb, res.Pushed, cached, sizeText(res.Sent),
		res.Took.Round(time.Millisecond))
}

// barReporter draws a progress bar per path being pushed and one for the
// whole push, on a terminal.
type barReporter struct {
	mu    sync.Mutex
	w     io.Writer
	p     *mpb.Progress
	total *mpb.Bar
	bars  map[string]*mpb.Bar
	lines *lineReporter // finished paths, printed above the bars
}

func newBarReporter(w io.Writer) *barReporter {
	p := mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	return &barReporter{w: w, p: p, bars: map[string]*mpb.Bar{}, lines: newLineReporter(p)}
}

func (r *barReporter) Planned(paths, cached int, todo []push.PathInfo, narBytes int64) {
	r.lines.Planned(paths, cached, todo, narBytes)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total = r.p.AddBar(max(narBytes, 1), mpb.BarPriority(1<<30),
		mpb.PrependDecorators(decor.Name("total ", decor.WC{W: 8}), decor.CountersKibiByte("% .1f / % .1f")),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), " % .1f"), decor.Name(" ETA "),
			decor.AverageETA(decor.ET_STYLE_GO)))
	if len(todo) == 0 {
		r.total.SetTotal(1, true)
	}
}

func (r *barReporter) Started(p push.PathInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bars[p.Path] = r.p.AddBar(p.NarSize, mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(shortName(p.Path), decor.WC{W: 30, C: decor.DindentRight})),
		mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f")))
}

func (r *barReporter) Advanced(p push.PathInfo, done, total int64) {
	r.mu.Lock()
	b := r.bars[p.Path]
	r.mu.Unlock()
	if b != nil {
		b.SetTotal(total, false)
		b.SetCurrent(min(done, total-1)) // complete only once pushed
	}
}

func (r *barReporter) Finished(p push.PathInfo, sent int64, took time.Duration, err error) {
	r.lines.Finished(p, sent, took, err)
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.bars[p.Path]; b != nil {
		if err != nil {
			b.Abort(true)
		} else {
			b.SetTotal(b.Current(), true)
		}
		delete(r.bars, p.Path)
	}
	if r.total != nil {
		r.total.IncrInt64(p.NarSize)
	}
}

func (r *barReporter) summary(res push.Result, err error) {
	r.mu.Lock()
	for _, b := range r.bars {
		b.Abort(true)
	}
	if r.total != nil && !r.total.Completed() {
		r.total.SetTotal(r.total.Current(), true)
	}
	r.mu.Unlock()
	r.p.Wait()
	newLineReporter(r.w).summary(res, err) // below the bars, now drawn
}

// shortName is the name part of a store path, for a bar's label.
func shortName(p string) string {
	base := path.Base(p)
	if len(base) > 33 {
		base = base[33:]
	}
	if len(base) > 28 {
		base = base[:27] + "…"
	}
	return base
}

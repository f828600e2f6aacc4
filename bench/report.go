//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// row is one measure: the values of each run for larder and its reference.
type row struct {
	measure   string
	unit      string
	reference string // what larder is compared with
	larder    []float64
	ref       []float64
	target    string // e.g. "≥ 1.0"
}

// growthRow is the figures at one cache size.
type growthRow struct {
	paths   int
	startup time.Duration
	restart time.Duration // the start-up from the presence snapshot
	rss     int64         // the most under load, started without a snapshot
	// restartRSS is the resident memory once started from the snapshot.
	restartRSS int64
	hit, miss  load
}

type report struct {
	started time.Time
	quick   bool
	runs    int
	rows    []*row
	growth  []growthRow
	notes   []string
}

// add records the values of one run of a measure.
func (r *report) add(measure, unit, reference, target string, larder, ref float64) {
	for _, x := range r.rows {
		if x.measure == measure {
			x.larder, x.ref = append(x.larder, larder), append(x.ref, ref)
			return
		}
	}
	r.rows = append(r.rows, &row{measure: measure, unit: unit, reference: reference, target: target,
		larder: []float64{larder}, ref: []float64{ref}})
	fmt.Printf("  %s: larder %.4g %s, %s %.4g\n", measure, larder, unit, reference, ref)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// table renders the ratio table.
func (r *report) table() string {
	if len(r.rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| measure | larder | reference | ratio larder ÷ reference | target |\n|---|---|---|---|---|\n")
	for _, x := range r.rows {
		l, f := median(x.larder), median(x.ref)
		ratio := "-"
		if f != 0 {
			ratio = fmt.Sprintf("%.2f", l/f)
		}
		fmt.Fprintf(&b, "| %s | %s %s | %s: %s %s | %s | %s |\n", x.measure, num(l), x.unit, x.reference, num(f), x.unit, ratio, x.target)
	}
	return b.String()
}

func (r *report) growthTable() string {
	if len(r.growth) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| paths | start-up | start-up from snapshot | RSS | RSS from snapshot | hits req/s | hit p50 / p99 | misses req/s | miss p50 / p99 |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range r.growth {
		fmt.Fprintf(&b, "| %s | %.2f s | %.2f s | %.0f MiB | %.0f MiB | %s | %.3f / %.3f ms | %s | %.3f / %.3f ms |\n", num(float64(g.paths)),
			g.startup.Seconds(), g.restart.Seconds(), float64(g.rss)/(1<<20), float64(g.restartRSS)/(1<<20), num(g.hit.rps), g.hit.p50, g.hit.p99, num(g.miss.rps), g.miss.p50, g.miss.p99)
	}
	return b.String()
}

func num(v float64) string {
	switch {
	case v >= 1e6 && v == float64(int64(v)):
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// write writes the report to dir as DATE-COMMIT.md and returns its path.
func (r *report) write(dir string) (string, error) {
	commit := strings.TrimSpace(cmdOut("git", "rev-parse", "--short", "HEAD"))
	if strings.TrimSpace(cmdOut("git", "status", "--porcelain", "--untracked-files=no")) != "" {
		commit += "-dirty"
	}
	mode := "full"
	if r.quick {
		mode = "quick"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# larder benchmark, %s\n\n", r.started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- commit: %s; mode: %s; median of %d runs; took %s\n", commit, mode, r.runs, time.Since(r.started).Round(time.Second))
	fmt.Fprintf(&b, "- machine: %s\n", machine())
	fmt.Fprintf(&b, "- references: %s\n\n", versions())
	b.WriteString(r.table())
	if g := r.growthTable(); g != "" {
		b.WriteString("\n## Growth (SQLite, generated narinfos; wrk, 2 threads, 32 connections)\n\n" + g)
	}
	if len(r.notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range r.notes {
			b.WriteString("- " + n + "\n")
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, r.started.UTC().Format("2006-01-02-1504")+"-"+commit+"-"+mode+".md")
	fmt.Print("\n" + b.String())
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

func cmdOut(args ...string) string {
	out, _ := exec.Command(args[0], args[1:]...).CombinedOutput()
	return string(out)
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
		if len(f) >= 2 {
			var kb int64
			fmt.Sscan(f[1], &kb)
			mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
		}
	}
	kernel := strings.TrimSpace(cmdOut("uname", "-sr"))
	return fmt.Sprintf("%s, %d cores%s, %s, %s", cpu, runtime.NumCPU(), mem, kernel, runtime.Version())
}

func versions() string {
	var v []string
	if out, err := exec.Command("nginx", "-v").CombinedOutput(); err == nil {
		v = append(v, strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: "))
	}
	if out, err := exec.Command("wrk", "-v").CombinedOutput(); err == nil || len(out) > 0 {
		v = append(v, strings.Fields(string(out) + " wrk")[0]+" "+strings.Fields(string(out) + " x x")[1])
	}
	if out, err := exec.Command("minio", "--version").CombinedOutput(); err == nil {
		v = append(v, strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0])
	}
	if out, err := exec.Command("nix", "--version").CombinedOutput(); err == nil {
		v = append(v, strings.TrimSpace(string(out)))
	}
	return strings.Join(v, "; ")
}

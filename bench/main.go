//go:build linux

// Command bench measures larder against references on the same machine in
// the same run: nginx serving the same cache as static files (narinfo
// lookups, NAR downloads), nix copy to a file:// store (pushes), and MinIO
// (S3 objects); plus lookup latency, memory and start-up time as a cache
// grows to ten million paths, and the bytes chunking saves on successive
// versions of real packages (against each version's NAR stored whole). It reports each measure as a ratio larder ÷
// reference, the median of several runs, in a markdown table written to
// bench/results/. Run it with bench/run, which installs the references.
// It runs on Linux only: it installs them with apt-get and reads /proc.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// options are the command line.
type options struct {
	quick   bool
	runs    int
	out     string
	only    map[string]bool
	work    string
	larder  string // the larder binary
	seconds int    // length of each load run
	sizes   []int  // growth sizes
	profile string // directory for CPU profiles of larder under load

	dedupData      string // where the dedup measure keeps what it downloads
	dedupChunkSize string // LARDER_CHUNK_SIZE of the dedup measure ("": larder's default)
	dedupChunking  bool   // false: the dedup measure keeps NARs whole (ratios near 1)
	dedupSets      string // comma-separated labels of the data sets to measure ("": all)
}

func main() {
	var o options
	var only string
	flag.BoolVar(&o.quick, "quick", false, "smaller data, shorter runs, growth to 1M paths: under 10 minutes")
	flag.IntVar(&o.runs, "runs", 3, "runs of each measure; the report quotes their median")
	flag.StringVar(&o.out, "out", "bench/results", "directory for the report")
	flag.StringVar(&only, "only", "", "comma-separated measures to run: narinfo,nar,push,s3,growth,dedup (default all)")
	flag.StringVar(&o.larder, "larder", "", "larder binary (default: built from this checkout)")
	flag.StringVar(&o.profile, "profile", "", "write CPU profiles of larder during the narinfo runs to this directory")
	cache, _ := os.UserCacheDir()
	flag.StringVar(&o.dedupData, "dedup-data", filepath.Join(cache, "larder-bench", "dedup"), "directory the dedup measure downloads its data sets to, and finds them in on later runs")
	flag.StringVar(&o.dedupChunkSize, "dedup-chunk-size", "", "average chunk size of the dedup measure, e.g. 64KiB (default: larder's)")
	flag.BoolVar(&o.dedupChunking, "dedup-chunking", true, "store NARs as chunks in the dedup measure (false: whole, the reference's way)")
	flag.StringVar(&o.dedupSets, "dedup-sets", "", "comma-separated data sets of the dedup measure: x-tools-src,go-src,go-bin (default all)")
	var sizes string
	flag.StringVar(&sizes, "growth", "", "comma-separated cache sizes of the growth measure (default 10k,100k,1M, and 10M unless --quick)")
	flag.Parse()
	o.only = map[string]bool{}
	for _, m := range strings.Split(only, ",") {
		if m != "" {
			o.only[m] = true
		}
	}
	o.seconds = 10
	o.sizes = []int{10_000, 100_000, 1_000_000, 10_000_000}
	if o.quick {
		o.seconds = 4
		o.sizes = o.sizes[:3]
	}
	if sizes != "" {
		o.sizes = nil
		for _, f := range strings.Split(sizes, ",") {
			n, err := parseCount(f)
			if err != nil || n <= 0 {
				log.Fatalf("--growth: %q is not a number of paths (such as 50000, 100k or 10M)", f)
			}
			o.sizes = append(o.sizes, n)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Fatal(err)
	}
}

func (o options) wants(measure string) bool { return len(o.only) == 0 || o.only[measure] }

func run(ctx context.Context, o options) error {
	work, err := os.MkdirTemp("", "larder-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	o.work = work
	if o.larder == "" {
		o.larder = filepath.Join(work, "larder")
		if err := sh(ctx, nil, "go", "build", "-o", o.larder, "./cmd/larder"); err != nil {
			return fmt.Errorf("build larder: %w", err)
		}
	}
	r := &report{started: time.Now(), quick: o.quick, runs: o.runs}
	if o.wants("narinfo") || o.wants("nar") || o.wants("push") {
		if err := cacheMeasures(ctx, o, r); err != nil {
			return err
		}
	}
	if o.wants("s3") {
		if err := s3Measures(ctx, o, r); err != nil {
			return err
		}
	}
	if o.wants("growth") {
		if err := growthMeasures(ctx, o, r); err != nil {
			return err
		}
	}
	if o.wants("dedup") {
		if err := dedupMeasures(ctx, o, r); err != nil {
			return err
		}
	}
	path, err := r.write(o.out)
	if err != nil {
		return err
	}
	fmt.Printf("\nreport written to %s\n", path)
	return nil
}

// parseCount parses a number of paths, with k or M for thousands or
// millions: the whole text, so that 10M is not read as 10.
func parseCount(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "k"):
		s, mult = strings.TrimSuffix(s, "k"), 1000
	case strings.HasSuffix(s, "M"):
		s, mult = strings.TrimSuffix(s, "M"), 1_000_000
	}
	n, err := strconv.Atoi(s)
	return n * mult, err
}

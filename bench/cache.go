//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// nixEnv runs the real Nix client with a private configuration (its own
// narinfo cache, no substituters), as the end-to-end tests do.
type nixEnv struct {
	home  string
	netrc string
}

func newNix(work, name string) *nixEnv {
	home := filepath.Join(work, "nix-"+name)
	_ = os.MkdirAll(home, 0o755)
	return &nixEnv{home: home}
}

func (n *nixEnv) env() []string {
	conf := []string{
		"experimental-features = nix-command",
		"build-users-group =",
		"sandbox = false",
		"substituters =",
		"narinfo-cache-negative-ttl = 0",
	}
	if n.netrc != "" {
		conf = append(conf, "netrc-file = "+n.netrc)
	}
	return []string{"HOME=" + n.home, "XDG_CACHE_HOME=" + filepath.Join(n.home, "cache"), "NIX_CONFIG=" + strings.Join(conf, "\n")}
}

func (n *nixEnv) run(ctx context.Context, args ...string) (string, error) {
	return output(ctx, n.env(), args...)
}

// dataset is the realistic closure and the download paths.
type dataset struct {
	top       string   // its closure is the realistic data
	paths     []string // the closure
	bytes     int64    // NAR bytes of the closure
	downloads map[string]string
}

// machineFiles lists regular files of this machine's system directories,
// by path, with their sizes.
func machineFiles() ([]string, map[string]int64) {
	sizes := map[string]int64{}
	var list []string
	for _, root := range []string{"/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/share/doc", "/usr/share/man", "/usr/lib/go", "/usr/local/go"} {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() || strings.ContainsAny(p, " '\"\\$`") {
				return nil
			}
			if info, err := d.Info(); err == nil && info.Mode().Perm()&0o444 == 0o444 {
				sizes[p] = info.Size()
				list = append(list, p)
			}
			return nil
		})
	}
	slices.Sort(list)
	return list, sizes
}

// buildDataset builds, with real Nix, packages made of this machine's
// files (sizes from a few bytes to tens of MB, referring to each other), a
// 100 MB path cut from its largest files, and the download paths of random
// bytes.
func buildDataset(ctx context.Context, o options, n *nixEnv) (*dataset, error) {
	files, sizes := machineFiles()
	scale := int64(1)
	if o.quick {
		scale = 4
	}
	targets := []int64{0, 10 << 10, 100 << 10, 500 << 10, 1 << 20, 2 << 20, 5 << 20, 10 << 20, 20 << 20, 40 << 20, 60 << 20}
	var b strings.Builder
	seed := fmt.Sprint(time.Now().UnixNano())
	b.WriteString("let\n  sys = builtins.currentSystem;\n")
	// The file lists go to the builder in a file (passAsFile): thousands of
	// names are too long for its command line.
	b.WriteString("  pkg = name: files: deps: derivation { name = \"${name}-" + seed + "\"; system = sys; builder = \"/bin/sh\";\n")
	b.WriteString("    inherit files; passAsFile = [ \"files\" ];\n")
	b.WriteString("    args = [ \"-c\" \"/usr/bin/mkdir -p $out; n=0; for f in $(/usr/bin/cat $filesPath); do n=$((n+1)); /usr/bin/cp $f $out/$n-$(/usr/bin/basename $f); done; echo ${toString deps} > $out/deps\" ]; };\n")
	b.WriteString("  cut = name: size: files: derivation { name = \"${name}-" + seed + "\"; system = sys; builder = \"/bin/sh\";\n")
	b.WriteString("    inherit files; passAsFile = [ \"files\" ];\n")
	b.WriteString("    args = [ \"-c\" \"/usr/bin/cat $(/usr/bin/cat $filesPath) | /usr/bin/head -c ${toString size} > $out\" ]; };\n")
	b.WriteString("  rand = name: size: derivation { name = \"${name}-" + seed + "\"; system = sys; builder = \"/bin/sh\";\n")
	b.WriteString("    args = [ \"-c\" \"/usr/bin/head -c ${toString size} /dev/urandom > $out\" ]; };\n")
	i := 0
	var names []string
	for k, target := range targets {
		target /= scale
		var picked []string
		var sum int64
		for ; i < len(files) && (sum < target || len(picked) == 0); i += 7 { // a spread of directories
			picked = append(picked, fmt.Sprintf("%q", files[i]))
			sum += sizes[files[i]]
			if target == 0 {
				break
			}
		}
		name := fmt.Sprintf("p%d", k)
		deps := ""
		if k > 0 {
			deps = fmt.Sprintf("p%d p%d", k-1, k/2)
		}
		fmt.Fprintf(&b, "  %s = pkg %q [ %s ] [ %s ];\n", name, name, strings.Join(picked, " "), deps)
		names = append(names, name)
	}
	big := slices.SortedFunc(slices.Values(files), func(a, c string) int { return int(sizes[c] - sizes[a]) })[:40]
	for j := range big {
		big[j] = fmt.Sprintf("%q", big[j])
	}
	fmt.Fprintf(&b, "  big = cut \"big\" %d [ %s ];\n", 100_000_000/scale, strings.Join(big, " "))
	fmt.Fprintf(&b, "  top = pkg \"top\" [ ] [ %s big ];\n", strings.Join(names, " "))
	downloads := map[string]int64{"nar1M": 1 << 20, "nar100M": 100 << 20}
	if !o.quick {
		downloads["nar1G"] = 1 << 30
	}
	for name, size := range downloads {
		fmt.Fprintf(&b, "  %s = rand %q %d;\n", name, name, size)
	}
	b.WriteString("in { inherit top")
	for name := range downloads {
		b.WriteString(" " + name)
	}
	b.WriteString("; }\n")
	expr := filepath.Join(o.work, "dataset.nix") // too long for a command line in full mode
	if err := os.WriteFile(expr, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	out, err := n.run(ctx, "nix-build", "--no-out-link", expr)
	if err != nil {
		return nil, err
	}
	d := &dataset{downloads: map[string]string{}}
	for _, p := range strings.Fields(out) {
		base := filepath.Base(p)[33:]
		name := strings.TrimSuffix(base, "-"+seed)
		if name == "top" {
			d.top = p
		} else if _, ok := downloads[name]; ok {
			d.downloads[name] = p
		}
	}
	out, err = n.run(ctx, "nix-store", "--query", "--requisites", d.top)
	if err != nil {
		return nil, err
	}
	d.paths = strings.Fields(out)
	out, err = n.run(ctx, "nix", "path-info", "--json", d.top, "--recursive")
	if err == nil {
		d.bytes = sumNarSize(out)
	}
	return d, nil
}

// sumNarSize adds the NAR sizes of nix path-info --json output.
func sumNarSize(js string) int64 {
	var infos []struct {
		NarSize int64 `json:"narSize"`
	}
	if err := json.Unmarshal([]byte(js), &infos); err != nil {
		return 0
	}
	var total int64
	for _, i := range infos {
		total += i.NarSize
	}
	return total
}

// cacheMeasures compares larder with nginx serving the same caches as
// static files (narinfo lookups, NAR downloads), and nix copy to larder
// with nix copy to a file:// store.
func cacheMeasures(ctx context.Context, o options, r *report) error {
	n := newNix(o.work, "build")
	fmt.Println("building the data set with Nix…")
	d, err := buildDataset(ctx, o, n)
	if err != nil {
		return fmt.Errorf("build data set: %w", err)
	}
	r.note("data set: a closure of %d paths, %.0f MB of NARs, made from this machine's files (bytes to %d MB each); downloads of random bytes",
		len(d.paths), float64(d.bytes)/1e6, map[bool]int{true: 25, false: 100}[o.quick])
	data := filepath.Join(o.work, "larder-data")
	l, err := startProfiled(ctx, o, data)
	if err != nil {
		return err
	}
	defer l.stop()
	for i := 1; i <= o.runs; i++ {
		if _, err := l.cli(ctx, "cache", "create", fmt.Sprintf("push%d", i)); err != nil {
			return err
		}
	}
	if _, err := l.cli(ctx, "cache", "create", "downloads"); err != nil {
		return err
	}
	pusher := newNix(o.work, "push")
	pusher.netrc = filepath.Join(o.work, "netrc")
	host := strings.TrimPrefix(strings.Split(l.URL, ":")[1], "//")
	if err := os.WriteFile(pusher.netrc, []byte(fmt.Sprintf("machine %s\nlogin larder\npassword %s\n", host, l.admin)), 0o600); err != nil {
		return err
	}
	if err := waitCache(ctx, l.URL, "downloads"); err != nil {
		return err
	}
	export := filepath.Join(o.work, "export")
	var dl []string
	for _, p := range d.downloads {
		dl = append(dl, p)
	}
	for _, c := range []struct{ to, what string }{
		{l.URL + "/main?compression=zstd", d.top},
		{"file://" + export + "/main?compression=zstd", d.top},
		{l.URL + "/downloads?compression=none", strings.Join(dl, " ")},
		{"file://" + export + "/downloads?compression=none", strings.Join(dl, " ")},
	} {
		if _, err := pusher.run(ctx, append([]string{"nix", "copy", "--to", c.to}, strings.Fields(c.what)...)...); err != nil {
			return fmt.Errorf("fill the caches: %w", err)
		}
	}
	l.settle(ctx)
	cert, key, err := selfSigned(o.work)
	if err != nil {
		return err
	}
	ng, err := startNginx(ctx, o.work, export, cert, key)
	if err != nil {
		return err
	}
	defer ng.stop()

	if o.wants("narinfo") {
		if err := narinfoMeasures(ctx, o, r, l, ng.URL, d); err != nil {
			return err
		}
	}
	if o.wants("nar") {
		if err := narMeasures(ctx, o, r, l.URL, ng.URL, d); err != nil {
			return err
		}
	}
	if o.wants("push") {
		if err := pushMeasures(ctx, o, r, l, pusher, d); err != nil {
			return err
		}
	}
	r.note("larder under load: %.0f MiB resident at the end, peak %.0f MiB (SQLite, local blobs, log level warn)",
		float64(l.rss())/(1<<20), float64(l.peakRSS())/(1<<20))
	if o.wants("narinfo") {
		// The same data over HTTPS: a server of its own on the data
		// directory, which one server at a time may hold.
		l.stop()
		hits, misses := narinfoPaths(d)
		if err := h2Measures(ctx, o, r, data, d, hits, misses, ng.TLSURL, cert, key); err != nil {
			return err
		}
	}
	return nil
}

// waitCache waits until the server serves the cache's nix-cache-info.
func waitCache(ctx context.Context, base, cache string) error {
	for range 200 {
		resp, err := http.Get(base + "/" + cache + "/nix-cache-info")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("cache %s did not appear", cache)
}

// narinfoMeasures: hits and misses, larder vs nginx, requests/s and p99.
func narinfoMeasures(ctx context.Context, o options, r *report, l *larder, nginxURL string, d *dataset) error {
	larderURL := l.URL
	hits, misses := narinfoPaths(d)
	dur := time.Duration(o.seconds) * time.Second
	for run := range o.runs {
		fmt.Printf("narinfo lookups, run %d…\n", run+1)
		for _, c := range []struct {
			name  string
			paths []string
			hit   bool
		}{{"hits", hits, true}, {"misses", misses, false}} {
			stopProfile := l.profile(ctx, o.profile, fmt.Sprintf("narinfo-%s-%d", c.name, run+1), dur)
			lr, err := runWrk(ctx, o.work, larderURL, c.paths, 64, dur)
			stopProfile()
			if err != nil {
				return err
			}
			nr, err := runWrk(ctx, o.work, nginxURL, c.paths, 64, dur)
			if err != nil {
				return err
			}
			if c.hit && (lr.non2xx > 0 || nr.non2xx > 0) || !c.hit && (lr.non2xx != lr.requests || nr.non2xx != nr.requests) {
				return fmt.Errorf("narinfo %s answered wrongly: larder %d of %d not 2xx, nginx %d of %d", c.name,
					lr.non2xx, lr.requests, nr.non2xx, nr.requests)
			}
			r.add("narinfo "+c.name+", requests/s (64 connections)", "req/s", "nginx", "≥ 1.0", lr.rps, nr.rps)
			r.add("narinfo "+c.name+", p99 latency", "ms", "nginx", "(lower is better)", lr.p99, nr.p99)
		}
	}
	return nil
}

// narinfoPaths returns the narinfo requests of the lookups: one of each
// path of the closure, and a thousand misses.
func narinfoPaths(d *dataset) (hits, misses []string) {
	for _, p := range d.paths {
		hits = append(hits, "/main/"+filepath.Base(p)[:32]+".narinfo")
	}
	for i := range 1000 {
		misses = append(misses, fmt.Sprintf("/main/%032d.narinfo", i))
	}
	return hits, misses
}

// narMeasures: NAR downloads of each size, four at a time, MB/s.
func narMeasures(ctx context.Context, o options, r *report, larderURL, nginxURL string, d *dataset) error {
	return downloadMeasures(ctx, o, r, d, larderURL, nginxURL, "", plainClient)
}

// downloadMeasures measures the downloads of the data set's NAR files from
// larder and from nginx with clients that newClient makes, one per
// server and file; over names the transport in the report ("": plain
// HTTP/1.1).
func downloadMeasures(ctx context.Context, o options, r *report, d *dataset, larderURL, nginxURL, over string, newClient func() *http.Client) error {
	names := slices.Sorted(maps.Keys(d.downloads))
	label, suffix := "", ""
	if over != "" {
		label, suffix = " over "+over, ", "+over
	}
	for run := range o.runs {
		fmt.Printf("NAR downloads%s, run %d…\n", label, run+1)
		for _, name := range names {
			var mbs [2]float64
			for i, base := range []string{larderURL, nginxURL} {
				// Each server names the file as its narinfo says: larder's
				// key changes once the NAR file is stored as chunks.
				client := newClient()
				key, size, err := narKey(base, "downloads", d.downloads[name], client)
				if err != nil {
					return err
				}
				if mbs[i], err = download(ctx, client, base+"/downloads/"+key, size, time.Duration(o.seconds)*time.Second); err != nil {
					return err
				}
			}
			r.add(fmt.Sprintf("NAR download %s%s, 4 streams", strings.TrimPrefix(name, "nar"), suffix), "MB/s", "nginx", "≥ 0.9", mbs[0], mbs[1])
		}
	}
	return nil
}

// narKey reads the NAR file's key and size from the narinfo a server serves.
func narKey(base, cache, storePath string, client *http.Client) (string, int64, error) {
	resp, err := client.Get(base + "/" + cache + "/" + filepath.Base(storePath)[:32] + ".narinfo")
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var key string
	var size int64
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, "URL: "); ok {
			key = v
		}
		if v, ok := strings.CutPrefix(l, "FileSize: "); ok {
			fmt.Sscan(v, &size)
		}
	}
	if key == "" {
		return "", 0, fmt.Errorf("no URL in the narinfo of %s: %s", storePath, body)
	}
	return key, size, nil
}

// plainClient is the client of the downloads over plain HTTP/1.1: a
// connection per stream.
func plainClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}}
}

// download fetches url with four streams for about d (at least once each)
// and returns MB/s, checking every body's length.
func download(ctx context.Context, client *http.Client, url string, size int64, d time.Duration) (float64, error) {
	var total atomic.Int64
	var firstErr error
	var mu sync.Mutex
	began := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for once := true; once || time.Since(began) < d; once = false {
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				resp, err := client.Do(req)
				if err == nil {
					var n int64
					var said []byte
					if resp.StatusCode != http.StatusOK {
						said, _ = io.ReadAll(io.LimitReader(resp.Body, 300))
					}
					n, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && (resp.StatusCode != 200 || n != size) {
						err = fmt.Errorf("GET %s: %d, %d bytes of %d %q", url, resp.StatusCode, n+int64(len(said)), size, said)
					}
					total.Add(n)
				}
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(total.Load()) / 1e6 / time.Since(began).Seconds(), firstErr
}

// pushMeasures: nix copy of the closure to a fresh larder cache and to a
// fresh file:// store, zstd both, wall time.
func pushMeasures(ctx context.Context, o options, r *report, l *larder, pusher *nixEnv, d *dataset) error {
	for run := 1; run <= o.runs; run++ {
		fmt.Printf("pushes, run %d…\n", run)
		cache := fmt.Sprintf("push%d", run)
		if err := waitCache(ctx, l.URL, cache); err != nil {
			return err
		}
		var took [2]time.Duration
		targets := []string{l.URL + "/" + cache + "?compression=zstd",
			"file://" + filepath.Join(o.work, "push-"+cache) + "?compression=zstd"}
		order := []int{0, 1}
		if run%2 == 0 {
			order = []int{1, 0} // neither always reads the store first
		}
		for _, i := range order {
			to := targets[i]
			_ = os.RemoveAll(filepath.Join(pusher.home, "cache")) // Nix forgets what it asked before
			stopProfile := func() {}
			if i == 0 {
				stopProfile = l.profile(ctx, o.profile, fmt.Sprintf("push-%d", run), 3*time.Second)
			}
			began := time.Now()
			if _, err := pusher.run(ctx, "nix", "copy", "--to", to, d.top); err != nil {
				return err
			}
			took[i] = time.Since(began)
			stopProfile()
		}
		r.add(fmt.Sprintf("push %d paths (%.0f MB), nix copy, zstd", len(d.paths), float64(d.bytes)/1e6), "s",
			"file://", "≤ 1.10", took[0].Seconds(), took[1].Seconds())
		if err := clientPush(ctx, o, r, pusher, d, run); err != nil {
			return err
		}
	}
	return nil
}

// clientPush: larder push of the closure against nix copy of it, zstd
// both, each to a larder server of its own that holds none of its files
// (a server already holding Nix's compressed files would spare nix copy
// the writes), in turns.
func clientPush(ctx context.Context, o options, r *report, pusher *nixEnv, d *dataset, run int) error {
	var took [2]time.Duration
	for i := range 2 {
		data := filepath.Join(o.work, fmt.Sprintf("client-push-%d-%d", run, i))
		l, _, err := startLarder(ctx, o.larder, data)
		if err != nil {
			return err
		}
		if err := waitCache(ctx, l.URL, "main"); err != nil {
			l.stop()
			return err
		}
		_ = os.RemoveAll(filepath.Join(pusher.home, "cache"))
		netrc := filepath.Join(o.work, fmt.Sprintf("netrc-%d-%d", run, i))
		host := strings.TrimPrefix(strings.Split(l.URL, ":")[1], "//")
		if err := os.WriteFile(netrc, []byte(fmt.Sprintf("machine %s\nlogin larder\npassword %s\n", host, l.admin)), 0o600); err != nil {
			l.stop()
			return err
		}
		args := []string{"nix", "copy", "--netrc-file", netrc, "--to", l.URL + "/main?compression=zstd", d.top}
		if i == 1 {
			args = []string{o.larder, "push", "--server", l.URL, "--cache", "main", "--netrc-file", netrc, d.top}
		}
		began := time.Now()
		_, err = output(ctx, pusher.env(), args...)
		took[i] = time.Since(began)
		l.stop()
		if err != nil {
			return err
		}
	}
	r.add(fmt.Sprintf("push %d paths (%.0f MB), larder push vs nix copy, each to a fresh larder", len(d.paths), float64(d.bytes)/1e6),
		"s", "nix copy", "≤ 0.8", took[1].Seconds(), took[0].Seconds())
	return nil
}

//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// dedupMeasures pushes ten successive versions of each data set with
// nix copy (zstd) to a larder keeping NAR files whole and to one storing
// them as chunks, and compares the bytes and objects each stores; it
// checks that every path substitutes from the chunked cache into a fresh
// store and verifies, and times larder rechunk.
func dedupMeasures(ctx context.Context, o options, r *report) error {
	began := time.Now()
	if err := os.MkdirAll(o.dedupData, 0o755); err != nil {
		return err
	}
	n := newNix(o.work, "dedup")
	store := "local?root=" + filepath.Join(o.work, "dedup-store")
	for _, s := range versionSets() {
		if o.dedupSets != "" && !slices.Contains(strings.Split(o.dedupSets, ","), s.label) {
			continue
		}
		if o.quick {
			s.versions = s.versions[len(s.versions)-4:]
		}
		if err := dedupSet(ctx, o, r, n, store, s); err != nil {
			return fmt.Errorf("dedup, %s: %w", s.name, err)
		}
	}
	chunking := "chunk_size " + o.dedupChunkSize
	if o.dedupChunkSize == "" {
		chunking = "default chunk_size"
	}
	if !o.dedupChunking {
		chunking = "chunking off (larder keeps every NAR whole)"
	}
	r.note("dedup: versions added to a throwaway chroot store with nix store add-path, pushed with nix copy "+
		"(zstd) to larder (SQLite, blobs in a directory), %s; stored bytes and objects are the files of the blob "+
		"directory after larder rechunk and larder gc; the measure took %s, data cached in %s",
		chunking, time.Since(began).Round(time.Second), o.dedupData)
	return nil
}

// dedupSet measures one data set.
func dedupSet(ctx context.Context, o options, r *report, n *nixEnv, store string, s versionSet) error {
	fmt.Printf("dedup: %s, %d versions…\n", s.name, len(s.versions))
	began := time.Now()
	paths, narBytes, err := addVersions(ctx, n, o.dedupData, store, s)
	if err != nil {
		return err
	}
	fmt.Printf("  %d store paths, %.0f MB of NAR, fetched and added in %s\n", len(paths), float64(narBytes)/1e6,
		time.Since(began).Round(time.Second))
	whole, err := wholeRun(ctx, o, n, store, paths, filepath.Join(o.work, "dedup-whole-"+s.label))
	if err != nil {
		return err
	}
	chunked, err := chunkedRun(ctx, o, n, store, paths, filepath.Join(o.work, "dedup-chunked-"+s.label))
	if err != nil {
		return err
	}
	mb := func(b int64) float64 { return float64(b) / 1e6 }
	label := fmt.Sprintf("dedup %s, %d versions (%.0f MB of NAR)", s.name, len(paths), mb(narBytes))
	r.add(label+": stored bytes", "MB", "whole NARs, zstd", s.target, mb(chunked.stored.bytes), mb(whole.stored.bytes))
	r.add(label+": objects", "objects", "whole NARs", "≤ 2", float64(chunked.stored.files), float64(whole.stored.files))
	if o.dedupChunking {
		r.add(label+": larder rechunk of the whole NARs, NAR bytes", "MB/s", "nix copy push, whole", "(higher is better)",
			mb(narBytes)/whole.rechunk.Seconds(), mb(narBytes)/whole.push.Seconds())
		r.note("dedup %s: rechunking the whole-NAR cache stored %.1f MB in %d objects (%.2f of whole); pushing to the "+
			"chunking larder took %.1f s, to the whole one %.1f s", s.name, mb(whole.rechunked.bytes),
			whole.rechunked.files, float64(whole.rechunked.bytes)/float64(whole.stored.bytes), chunked.push.Seconds(),
			whole.push.Seconds())
	}
	r.note("dedup %s: all %d paths substituted from the chunked cache into a fresh store (%.1f s), nix store verify "+
		"passed and their NAR hashes are the originals", s.name, len(paths), chunked.substitute.Seconds())
	for _, d := range []string{whole.data, chunked.data} {
		_ = os.RemoveAll(d)
	}
	return nil
}

// usage is what a blob directory holds.
type usage struct {
	bytes int64
	files int
}

// blobUsage adds up the files under dir.
func blobUsage(dir string) (usage, error) {
	var u usage
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			u.bytes += info.Size()
			u.files++
		}
		return err
	})
	return u, err
}

// dedupRun is what one larder of a data set stored, and how long it took.
type dedupRun struct {
	data       string
	stored     usage         // after the push (and, chunking, rechunk and gc)
	rechunked  usage         // the whole-NAR cache after rechunk and gc
	push       time.Duration // nix copy of every path
	rechunk    time.Duration // larder rechunk of the whole-NAR cache
	substitute time.Duration // of every path into a fresh store
}

// chunkEnv configures larder's chunking.
func chunkEnv(o options, on bool) []string {
	env := []string{fmt.Sprintf("LARDER_CHUNKING=%t", on && o.dedupChunking)}
	if o.dedupChunkSize != "" {
		env = append(env, "LARDER_CHUNK_SIZE="+o.dedupChunkSize)
	}
	return env
}

// wholeRun pushes the paths to a larder keeping NAR files whole and
// measures what it stores; then, the server stopped, it times larder
// rechunk of those files and measures what is left after larder gc.
func wholeRun(ctx context.Context, o options, n *nixEnv, store string, paths []string, data string) (dedupRun, error) {
	run := dedupRun{data: data}
	l, err := startDedupLarder(ctx, o, data, chunkEnv(o, false))
	if err != nil {
		return run, err
	}
	run.push, err = pushVersions(ctx, n, l, store, paths)
	l.stop()
	if err == nil {
		run.stored, err = blobUsage(filepath.Join(data, "blobs"))
	}
	if err != nil || !o.dedupChunking {
		run.rechunked = run.stored
		return run, err
	}
	fmt.Println("  larder rechunk of the whole NARs…")
	if run.rechunk, err = rechunkAndCollect(ctx, o, data); err != nil {
		return run, err
	}
	run.rechunked, err = blobUsage(filepath.Join(data, "blobs"))
	return run, err
}

// chunkedRun pushes the paths to a larder storing NAR files as chunks,
// then, the server stopped, runs larder rechunk (for what the server had
// not chunked yet) and larder gc, and measures what it stores; it starts
// the server again and substitutes every path from it.
func chunkedRun(ctx context.Context, o options, n *nixEnv, store string, paths []string, data string) (dedupRun, error) {
	run := dedupRun{data: data}
	env := chunkEnv(o, true)
	l, err := startDedupLarder(ctx, o, data, env)
	if err != nil {
		return run, err
	}
	run.push, err = pushVersions(ctx, n, l, store, paths)
	l.stop()
	if err != nil {
		return run, err
	}
	if o.dedupChunking {
		if _, err := rechunkAndCollect(ctx, o, data); err != nil {
			return run, err
		}
	}
	if run.stored, err = blobUsage(filepath.Join(data, "blobs")); err != nil {
		return run, err
	}
	if l, err = startDedupLarder(ctx, o, data, env); err != nil {
		return run, err
	}
	defer l.stop()
	run.substitute, err = substituteVersions(ctx, n, l, store, paths, data+"-fresh")
	_ = os.RemoveAll(data + "-fresh")
	return run, err
}

// rechunkAndCollect runs larder rechunk on the data directory, then
// larder gc, and returns how long the rechunk took.
func rechunkAndCollect(ctx context.Context, o options, data string) (time.Duration, error) {
	env := chunkEnv(o, true)
	began := time.Now()
	out, err := output(ctx, env, o.larder, "rechunk", "--data", data)
	took := time.Since(began)
	if err != nil {
		return took, err
	}
	fmt.Print("  " + tail(out, 1) + "\n")
	_, err = output(ctx, env, o.larder, "gc", "--data", data)
	return took, err
}

// startDedupLarder starts larder serve on data with env and waits for its
// cache main.
func startDedupLarder(ctx context.Context, o options, data string, env []string) (*larder, error) {
	addr := freeAddr()
	p, _, err := start(ctx, "larder", "http://"+addr, "/_larder/health", env,
		o.larder, "serve", "--data", data, "--listen", addr, "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	tok, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err == nil {
		err = waitCache(ctx, p.URL, "main")
	}
	if err != nil {
		p.stop()
		return nil, err
	}
	return &larder{proc: p, bin: o.larder, data: data, admin: strings.TrimSpace(string(tok))}, nil
}

// pushVersions copies the paths from store to the cache main of l with
// nix copy, zstd, and returns how long that took.
func pushVersions(ctx context.Context, n *nixEnv, l *larder, store string, paths []string) (time.Duration, error) {
	netrc := l.data + ".netrc"
	if err := os.WriteFile(netrc, []byte("machine 127.0.0.1\nlogin larder\npassword "+l.admin+"\n"), 0o600); err != nil {
		return 0, err
	}
	began := time.Now()
	_, err := n.run(ctx, append([]string{"nix", "copy", "--netrc-file", netrc, "--from", store,
		"--to", l.URL + "/main?compression=zstd"}, paths...)...)
	return time.Since(began), err
}

// substituteVersions substitutes the paths from the cache main of l into
// a fresh chroot store at fresh with nix-store --realise, runs nix store
// verify on them there, and checks their NAR hashes against store's.
func substituteVersions(ctx context.Context, n *nixEnv, l *larder, store string, paths []string, fresh string) (time.Duration, error) {
	key, err := l.cli(ctx, "cache", "pubkey", "main")
	if err != nil {
		return 0, err
	}
	to := "local?root=" + fresh
	began := time.Now()
	_, err = n.run(ctx, append([]string{"nix-store", "--store", to, "--realise",
		"--option", "substituters", l.URL + "/main", "--option", "trusted-public-keys", strings.TrimSpace(key)}, paths...)...)
	took := time.Since(began)
	if err != nil {
		return took, err
	}
	if _, err := n.run(ctx, append([]string{"nix", "store", "verify", "--store", to}, paths...)...); err != nil {
		return took, err
	}
	want, err := narHashes(ctx, n, store, paths)
	if err != nil {
		return took, err
	}
	got, err := narHashes(ctx, n, to, paths)
	if err != nil {
		return took, err
	}
	for _, p := range paths {
		if got[p] == "" || got[p] != want[p] {
			return took, fmt.Errorf("%s: NAR hash %q substituted, %q pushed", p, got[p], want[p])
		}
	}
	return took, nil
}

// narHashes returns the NAR hash of each path in store.
func narHashes(ctx context.Context, n *nixEnv, store string, paths []string) (map[string]string, error) {
	out, err := n.run(ctx, append([]string{"nix", "path-info", "--json", "--store", store}, paths...)...)
	if err != nil {
		return nil, err
	}
	var infos []struct{ Path, NarHash string }
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		return nil, err
	}
	h := map[string]string{}
	for _, i := range infos {
		h[i.Path] = i.NarHash
	}
	return h, nil
}

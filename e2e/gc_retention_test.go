package e2e

import (
	"strings"
	"testing"
	"time"
)

// These tests let the server run its own collections (--gc-interval 1s)
// rather than larder gc: a collection run by the server first writes the
// narinfo reads it has recorded, so a fetch made just before counts as a
// use. larder gc is another process, which sees reads only once the server
// has flushed them (every 10 s); waiting for that would make the tests
// slower and no more certain. The tests poll the cache's S3 listing (which
// reads no narinfo) until the collection they expect has happened.

// TestGCRetention: with a retention of 2 s, a path older than that and
// unused is removed; a path fetched recently is kept with its closure; a
// dependency it shares with an old root survives while that root, and the
// root's own dependency, go. The kept root substitutes with real Nix into an
// empty store; the removed one does not.
func TestGCRetention(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--gc-grace", "1s", "--gc-interval", "1s")
	n := needNix(t)
	key := srv.pubkey(t, "main")
	l := srv.lister(t, "main")
	p := n.buildGraph("ret-"+randomHex(4),
		graphNode{Name: "shared", Size: 20000},
		graphNode{Name: "keptdep", Size: 20000},
		graphNode{Name: "kept", Size: 1000, Refs: []string{"shared", "keptdep"}},
		graphNode{Name: "olddep", Size: 20000},
		graphNode{Name: "old", Size: 1000, Refs: []string{"shared", "olddep"}},
		graphNode{Name: "lone", Size: 20000},
	)
	keep := []string{p["kept"], p["keptdep"], p["shared"]}
	gone := []string{p["old"], p["olddep"], p["lone"]}

	pusher := n.withNetrc(srv.Host, srv.token(t, "main", "write"))
	pusher.run("nix", "copy", "--to", srv.cacheURL("main")+"?compression=zstd", p["kept"], p["old"], p["lone"])
	for path, ok := range l.holds("main", append(keep, gone...)...) {
		if !ok {
			t.Fatalf("%s is not in the cache after the push", path)
		}
	}
	srv.setPolicy(t, "main", "2s", "")

	// Fetch kept's narinfo as a client would, every 250 ms, until the old
	// paths are gone; kept and what it refers to must never go.
	waitFor(t, "the collection of the old paths", 20*time.Second, 250*time.Millisecond, func() bool {
		if code := srv.narInfoStatus(t, "main", p["kept"]); code != 200 {
			t.Fatalf("narinfo of the fetched path %s: %d", p["kept"], code)
		}
		held := l.holds("main", append(keep, gone...)...)
		for _, k := range keep {
			if !held[k] {
				t.Fatalf("%s was collected, but a recently fetched path needs it", k)
			}
		}
		left := 0
		for _, g := range gone {
			if held[g] {
				left++
			}
		}
		return left == 0
	})

	for _, k := range keep {
		if code := srv.narInfoStatus(t, "main", k); code != 200 {
			t.Errorf("narinfo of kept %s: %d, want 200", k, code)
		}
	}
	for _, g := range gone {
		if code := srv.narInfoStatus(t, "main", g); code != 404 {
			t.Errorf("narinfo of collected %s: %d, want 404", g, code)
		}
	}
	// The NAR files of the collected paths are deleted too: one file per
	// kept path is left, on disk and in the listing.
	if got := srv.narFiles(t); got != len(keep) {
		t.Errorf("%d NAR files on disk after the collection, want %d", got, len(keep))
	}
	if _, nars := l.list("main"); len(nars) != len(keep) {
		t.Errorf("the cache lists %d NAR files, want %d: %v", len(nars), len(keep), nars)
	}
	substitute(t, srv, "main", key, p["kept"], keep)
	cannotSubstitute(t, srv, "main", key, p["old"])
}

// TestGCQuota: a cache without a retention but over its size limit drops
// roots least recently used first (by push or fetch) until it fits, each
// drop taking only what no remaining root needs; every path still served
// then substitutes with real Nix into an empty store with its whole
// closure, and larder cache list shows the size under the limit.
func TestGCQuota(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--gc-grace", "1s", "--gc-interval", "1s")
	n := needNix(t)
	key := srv.pubkey(t, "main")
	l := srv.lister(t, "main")
	p := n.buildGraph("quota-"+randomHex(4),
		graphNode{Name: "base", Size: 100000},
		graphNode{Name: "adep", Size: 300000},
		graphNode{Name: "a", Size: 1000, Refs: []string{"base", "adep"}},
		graphNode{Name: "bdep", Size: 300000},
		graphNode{Name: "b", Size: 1000, Refs: []string{"base", "bdep"}},
		graphNode{Name: "cdep", Size: 300000},
		graphNode{Name: "c", Size: 1000, Refs: []string{"base", "cdep"}},
	)
	// Pushed a, b, c, in different seconds (stores keep times to the
	// second), without compression so that file sizes are NAR sizes.
	pusher := n.withNetrc(srv.Host, srv.token(t, "main", "write"))
	for i, top := range []string{"a", "b", "c"} {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond)
		}
		pusher.run("nix", "copy", "--to", srv.cacheURL("main")+"?compression=none", p[top])
	}
	// a is fetched, which makes b the least recently used root.
	if code := srv.narInfoStatus(t, "main", p["a"]); code != 200 {
		t.Fatalf("narinfo of %s: %d", p["a"], code)
	}
	size := map[string]int64{}
	for path, pi := range n.pathInfos("", p["a"]) {
		size[path] = pi.NarSize
	}
	for path, pi := range n.pathInfos("", p["b"]) {
		size[path] = pi.NarSize
	}
	for path, pi := range n.pathInfos("", p["c"]) {
		size[path] = pi.NarSize
	}
	total := srv.apiCaches(t, srv.AdminToken)["main"].Bytes
	var sum int64
	for _, s := range size {
		sum += s
	}
	if total != sum {
		t.Fatalf("the cache holds %d bytes, the seven NARs are %d", total, sum)
	}
	// Room for all but half of b's own paths: b and bdep must go; a, c and
	// their dependencies, base and adep (though adep, least recently
	// used, is itself a dropped root) stay.
	quota := total - (size[p["b"]]+size[p["bdep"]])/2
	keep := []string{p["a"], p["adep"], p["base"], p["c"], p["cdep"]}
	gone := []string{p["b"], p["bdep"]}
	from := srv.logSize()
	srv.setPolicy(t, "main", "", itoa(quota))

	waitFor(t, "the collection under the quota", 20*time.Second, 250*time.Millisecond, func() bool {
		held := l.holds("main", append(keep, gone...)...)
		for _, k := range keep {
			if !held[k] {
				t.Fatalf("%s was dropped, but it or a root needing it is among the most recently used that fit", k)
			}
		}
		return !held[p["b"]] && !held[p["bdep"]]
	})
	srv.waitLogLine(t, from, `msg="collected cache"`, "removed_paths=2")
	if logLine(srv.log.String()[from:], `msg="collected cache"`, "dropped_roots=0", "removed_paths=2") {
		t.Errorf("the collection that removed b reports no dropped roots:\n%s", tail(srv.log.String()[from:], 10))
	}

	api := srv.apiCaches(t, srv.AdminToken)["main"]
	if api.Bytes > quota || api.Paths != int64(len(keep)) || api.MaxSize != quota {
		t.Errorf("after the collection the cache holds %d paths of %d bytes (limit %d), want %d paths under %d",
			api.Paths, api.Bytes, api.MaxSize, len(keep), quota)
	}
	row := srv.cacheList(t)["main"]
	if got := parseSize(t, row.Size); got > float64(quota) || row.Paths != itoa(int64(len(keep))) {
		t.Errorf("larder cache list shows %s paths of %s (%.0f bytes), want %d paths under %d bytes", row.Paths, row.Size, got, len(keep), quota)
	}
	if got := parseSize(t, row.MaxSize); got < float64(quota)*0.99 || got > float64(quota)*1.01 {
		t.Errorf("larder cache list shows the limit as %s, want %d bytes", row.MaxSize, quota)
	}
	if row.LastGC == "never" {
		t.Errorf("larder cache list shows no last collection: %+v", row)
	}

	// Every path still served is a root of its own (there is no retention):
	// each substitutes with its closure into an empty store.
	for _, k := range keep {
		substitute(t, srv, "main", key, k, n.closureOf(k))
	}
	cannotSubstitute(t, srv, "main", key, p["b"])
	if t.Failed() {
		t.Logf("collections:\n%s", strings.Join(grepLines(srv.log.String(), "collected cache"), "\n"))
	}
}

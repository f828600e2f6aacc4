package e2e

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGCDuringPushes runs real nix copy pushes, and a chain of uploads over
// HTTP where each path refers to the one before, while the server collects
// every second and removes an old closure under the pushes' feet: every
// push succeeds, every pushed closure then substitutes with real Nix into
// an empty store, and the whole chain, kept as the closure of its newest
// link, is still there byte for byte.
func TestGCDuringPushes(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--gc-grace", "1s", "--gc-interval", "1s")
	n := needNix(t)
	key := srv.pubkey(t, "main")
	l := srv.lister(t, "main")
	const workers, rounds = 3, 3
	nodes := []graphNode{
		{Name: "shared", Size: 20000},
		{Name: "olddep", Size: 20000},
		{Name: "old", Size: 1000, Refs: []string{"shared", "olddep"}},
	}
	for w := range workers {
		for r := range rounds {
			dep, top := fmt.Sprintf("dep%d_%d", w, r), fmt.Sprintf("top%d_%d", w, r)
			nodes = append(nodes, graphNode{Name: dep, Size: 30000},
				graphNode{Name: top, Size: 1000, Refs: []string{"shared", dep}})
		}
	}
	p := n.buildGraph("conc-"+randomHex(4), nodes...)
	write := srv.token(t, "main", "write")
	pusher := n.withNetrc(srv.Host, write)
	url := srv.cacheURL("main") + "?compression=zstd"
	pusher.run("nix", "copy", "--to", url, p["old"])
	srv.setPolicy(t, "main", "6s", "")
	oldPushed := time.Now()
	time.Sleep(4 * time.Second) // old becomes collectable two seconds into the pushes
	from := srv.logSize()

	var wg sync.WaitGroup
	var done atomic.Bool
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				concurrentPush(t, pusher, url, p[fmt.Sprintf("top%d_%d", w, r)], w)
				time.Sleep(300 * time.Millisecond)
			}
		}()
	}
	var chain []*goPath
	var chainErr error
	chainDone := make(chan struct{})
	go func() {
		defer close(chainDone)
		var prev []*goPath
		for !done.Load() {
			gp := newGoPath(fmt.Sprintf("chain%d", len(chain)), 2000, prev...)
			if chainErr = srv.tryPush("main", write, gp); chainErr != nil {
				return
			}
			chain, prev = append(chain, gp), []*goPath{gp}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	wg.Wait()
	// The pushes may end before the old closure is due: keep the chain
	// going until a collection has removed it.
	waitFor(t, "the collection of the old closure", 20*time.Second, 100*time.Millisecond, func() bool {
		return !l.holds("main", p["old"])[p["old"]]
	})
	done.Store(true)
	<-chainDone
	// Nothing pushed since is old enough to go: make the retention long
	// so that the checks below do not race the next collections.
	srv.setPolicy(t, "main", "1h", "")
	if chainErr != nil {
		t.Fatalf("an upload of the chain failed during the collections: %v", chainErr)
	}
	if _, removing := collections(srv.log.String()[from:]); removing == 0 {
		t.Fatalf("no collection removed anything during the pushes (old pushed %s ago)", time.Since(oldPushed))
	}
	t.Logf("%d chain links pushed; collections during the pushes: %d", len(chain), func() int {
		all, _ := collections(srv.log.String()[from:])
		return all
	}())

	if held := l.holds("main", p["olddep"]); held[p["olddep"]] {
		t.Errorf("olddep, needed only by the collected old, was kept")
	}
	for w := range workers {
		for r := range rounds {
			top := p[fmt.Sprintf("top%d_%d", w, r)]
			substitute(t, srv, "main", key, top, n.closureOf(top))
		}
	}
	narinfos, _ := l.list("main")
	for _, gp := range chain {
		if !narinfos[gp.Hash()] {
			t.Errorf("chain link %s was collected, but the newest link, pushed just now, refers to it through the chain", gp.StorePath)
			continue
		}
		srv.checkNar(t, "main", gp)
	}
}

// TestGCNarBeforeNarInfo: a NAR file uploaded within the grace period
// before its narinfo survives the collections in between, so the narinfo
// that follows is accepted and served; a NAR file whose narinfo never
// comes is deleted once the grace period is over.
func TestGCNarBeforeNarInfo(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--gc-grace", "4s", "--gc-interval", "1s")
	write := srv.token(t, "main", "write")
	srv.setPolicy(t, "main", "1h", "")
	late, orphan := newGoPath("late", 5000), newGoPath("orphan", 5000)
	for _, gp := range []*goPath{late, orphan} {
		if code, body, err := srv.put("main", gp.NarKey(), write, gp.NAR); err != nil || (code != 200 && code != 201) {
			t.Fatalf("PUT %s: %d %s %v", gp.NarKey(), code, body, err)
		}
	}
	from := srv.logSize()
	waitFor(t, "two collections", 10*time.Second, 100*time.Millisecond, func() bool {
		all, _ := collections(srv.log.String()[from:])
		return all >= 2
	})
	if code, body, err := srv.put("main", late.Hash()+".narinfo", write, []byte(late.NarInfo())); err != nil || (code != 200 && code != 201) {
		t.Fatalf("the narinfo of a NAR uploaded %s before it was refused: %d %s %v (the NAR was collected)",
			"two collections", code, body, err)
	}
	srv.checkNar(t, "main", late)
	waitFor(t, "the deletion of the orphan NAR file", 15*time.Second, 200*time.Millisecond, func() bool {
		code, _ := httpDo(t, "GET", srv.cacheURL("main")+"/"+orphan.NarKey(), srv.AdminToken, nil)
		return code == 404
	})
	if got := srv.narFiles(t); got != 1 {
		t.Errorf("%d NAR files on disk, want only that of the narinfo that came late", got)
	}
}

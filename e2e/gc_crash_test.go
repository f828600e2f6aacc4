package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGCCrash kills larder gc with SIGKILL at later and later moments of a
// collection that removes two thirds of a cache of 1500 paths (chains of 50,
// a third of them pinned), while the server keeps serving. After every
// kill the cache is consistent: each narinfo it lists has its NAR file,
// listed and on disk, and the links of its chain it refers to; a dry run
// changes nothing. A collection left to finish then leaves exactly the
// pinned chains and their files, with no stray NAR or temporary files.
func TestGCCrash(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--gc-grace", "1s", "--gc-interval", "0s")
	write := srv.token(t, "main", "write")
	l := srv.lister(t, "main")
	const chains, length = 30, 50
	all := make([][]*goPath, chains)
	for i := range all {
		all[i] = make([]*goPath, length)
	}
	for j := range length { // a layer at a time: each link refers to the one before
		layer := make([]*goPath, 0, chains)
		for i := range chains {
			var refs []*goPath
			if j > 0 {
				refs = []*goPath{all[i][j-1]}
			}
			all[i][j] = newGoPath(fmt.Sprintf("c%d-%d", i, j), 3000, refs...)
			layer = append(layer, all[i][j])
		}
		srv.pushGo(t, "main", write, layer...)
	}
	kept := map[string]bool{}
	for i := 0; i < chains; i += 3 {
		srv.cli(t, "pin", "add", "main", all[i][length-1].StorePath, "--name", fmt.Sprintf("chain%d", i))
		for _, gp := range all[i] {
			kept[gp.Hash()] = true
		}
	}
	srv.setPolicy(t, "main", "1s", "")
	time.Sleep(2200 * time.Millisecond)

	check := func(when string) (narinfos int) {
		t.Helper()
		listed, nars := l.list("main")
		for i := range all {
			for j, gp := range all[i] {
				if !listed[gp.Hash()] {
					if kept[gp.Hash()] {
						t.Fatalf("%s: pinned %s was removed", when, gp.StorePath)
					}
					continue
				}
				narinfos++
				if !nars[gp.NarKey()] {
					t.Fatalf("%s: %s is listed without its NAR file %s", when, gp.StorePath, gp.NarKey())
				}
				if _, err := os.Stat(srv.narBlob(gp)); err != nil {
					t.Fatalf("%s: the NAR file of listed %s is not on disk: %v", when, gp.StorePath, err)
				}
				if j > 0 && !listed[all[i][j-1].Hash()] {
					t.Fatalf("%s: %s is listed, but %s, which it refers to, is not", when, gp.StorePath, all[i][j-1].StorePath)
				}
			}
		}
		return narinfos
	}
	before := check("before")
	files := srv.narFiles(t)
	if dry := srv.collect(t, "--dry-run"); dry.Caches["main"].Removed != chains*length-len(kept) {
		t.Fatalf("the dry run predicts %+v, want %d removed", dry.Caches["main"], chains*length-len(kept))
	}
	if got := check("after the dry run"); got != before || srv.narFiles(t) != files {
		t.Fatalf("the dry run changed the cache: %d narinfos, %d files; were %d and %d", got, srv.narFiles(t), before, files)
	}

	partial := 0
	for delay := 20 * time.Millisecond; ; delay += 10 * time.Millisecond {
		finished := srv.killedGC(t, delay)
		got, onDisk := check(fmt.Sprintf("after a kill at %s", delay)), srv.narFiles(t)
		if finished {
			t.Logf("larder gc finished within %s; %d kills left the collection partly done", delay, partial)
			break
		}
		if (got < before && got > len(kept)) || (got == len(kept) && onDisk > len(kept)) {
			partial++
		}
		if delay > 20*time.Second {
			t.Fatalf("larder gc did not finish within %s", delay)
		}
	}
	if partial == 0 {
		t.Errorf("no kill landed in the middle of a collection")
	}
	// Whatever a killed run left, the next collection finishes, but for
	// the blobs a kill left without their records: it finds them orphaned,
	// and the first collection at least the grace period later sweeps them.
	srv.collect(t)
	if got := check("after the next collection"); got != len(kept) {
		t.Errorf("%d narinfos after the next collection, want the %d pinned", got, len(kept))
	}
	time.Sleep(1100 * time.Millisecond)
	srv.collect(t)
	if got := check("after the last collection"); got != len(kept) {
		t.Errorf("%d narinfos after the last collection, want the %d pinned", got, len(kept))
	}
	if got := srv.narFiles(t); got != len(kept) {
		t.Errorf("%d NAR files on disk after the last collection, want %d", got, len(kept))
	}
	if got := srv.countFiles(t, filepath.Join("blobs", "tmp~")); got != 0 {
		t.Errorf("%d temporary files left in the blob store", got)
	}
}

// narBlob is where the local blob store keeps the NAR file of p: each copy
// of a file has a key of its own, the file hash and a random suffix. It
// returns a path that does not exist unless there is exactly one copy.
func (s *server) narBlob(p *goPath) string {
	h := strings.TrimSuffix(strings.TrimPrefix(p.NarKey(), "nar/"), ".nar")
	dir := filepath.Join(s.Data, "blobs", "nar", h[:2])
	copies, _ := filepath.Glob(filepath.Join(dir, h+"-*"))
	if len(copies) != 1 {
		return filepath.Join(dir, fmt.Sprintf("%s (%d copies)", h, len(copies)))
	}
	return copies[0]
}

// killedGC starts larder gc on the server's stores, kills it with SIGKILL
// after delay, and reports whether it had finished by then.
func (s *server) killedGC(t *testing.T, delay time.Duration) bool {
	t.Helper()
	cmd := exec.Command(larderBin, append([]string{"gc", "--data", s.Data}, s.extra...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LARDER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("larder gc failed: %v\n%s", err, out.String())
		}
		return true
	case <-time.After(delay):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		if err := <-exited; err == nil {
			return true // it finished just before the signal
		}
		return false
	}
}

package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/testserver"
	"github.com/minio/minio-go/v7"
)

// sharedStores are the PostgreSQL database and S3 bucket of a scaled-out
// installation, as larder's flags name them.
type sharedStores struct {
	meta, blobs string
	s3          testserver.S3Server
	extra       []string // more settings for every server
}

func (s sharedStores) flags() []string {
	return append([]string{"--meta", s.meta, "--blobs", s.blobs}, s.extra...)
}

func newSharedStores(t *testing.T, s3 testserver.S3Server, dsn string) sharedStores {
	return sharedStores{meta: dsn, blobs: s3.URL("larder").String(), s3: s3}
}

// replicas starts n larder servers on the shared stores, one after the
// other, each with its own data directory; the first sets the installation
// up and its admin token is given to the others.
func replicas(t *testing.T, st sharedStores, n int) []*server {
	t.Helper()
	first := startServer(t, st.flags()...)
	out := []*server{first}
	for range n - 1 {
		data := t.TempDir()
		must(t, os.WriteFile(filepath.Join(data, "admin-token"), []byte(first.AdminToken+"\n"), 0o600))
		out = append(out, startServerOn(t, data, freeAddr(t), st.flags()...))
	}
	return out
}

// countNARs counts the NAR files in the bucket.
func countNARs(t *testing.T, st sharedStores) int {
	t.Helper()
	c := st.s3.Client(t)
	n := 0
	for o := range c.ListObjects(context.Background(), st.s3.Bucket, minio.ListObjectsOptions{Prefix: "larder/nar/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		n++
	}
	return n
}

// TestReplicas runs two replicas on one PostgreSQL database and one S3
// bucket: a closure pushed through one is listed by the other at once and
// substituted through it; caches created through one work on the other; the
// same closure pushed through both at the same time is stored once.
func TestReplicas(t *testing.T) {
	t.Parallel()
	st := newSharedStores(t, testserver.MinIO(t), testserver.Postgres(t))
	// It counts whole NAR files in the bucket; TestChunkedReplicas has
	// replicas chunk them.
	st.extra = []string{"--chunking=false"}
	rs := replicas(t, st, 2)
	a, b := rs[0], rs[1]
	n := needNix(t)
	key := a.pubkey(t, "main")
	if got := b.pubkey(t, "main"); got != key {
		t.Fatalf("the replicas disagree on the key of main: %s and %s", key, got)
	}

	c := n.buildClosure("replicas-" + randomHex(4))
	hashes, files := n.narHashes("", c.Paths), snapshot(t, c.Paths)
	n.withNetrc(a.Host, a.AdminToken).run("nix", "copy", "--to", a.cacheURL("main")+"?compression=zstd", c.Top)
	listed := lines(needNix(t).run("nix", "path-info", "--store", b.cacheURL("main"), "-r", c.Top))
	if !sameSet(listed, c.Paths) {
		t.Fatalf("right after the push through one replica the other lists %v, want %v", listed, c.Paths)
	}
	n.deleteLocal(append(append([]string{}, c.Paths...), c.Drvs...)...)
	subst := needNix(t)
	subst.run("nix-store", "-r", c.Top, "--option", "substituters", b.cacheURL("main"), "--option", "trusted-public-keys", key)
	checkRestored(t, subst, "substituting through the other replica", c, hashes, files)
	if got := countNARs(t, st); got != len(c.Paths) {
		t.Errorf("%d NAR files in the bucket, want %d", got, len(c.Paths))
	}

	// A cache created through one replica's configuration is served by the
	// other at once.
	a.cli(t, "cache", "create", "fresh")
	if code, body := httpDo(t, "GET", b.cacheURL("fresh")+"/nix-cache-info", "", nil); code != 200 {
		t.Fatalf("the other replica does not serve the new cache: %d %s", code, body)
	}

	// One closure pushed through both replicas at once: both succeed, each
	// NAR is stored once.
	before := countNARs(t, st)
	d := n.buildClosure("together-" + randomHex(4))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			concurrentPush(t, needNix(t).withNetrc(r.Host, a.AdminToken), r.cacheURL("main")+"?compression=xz", d.Top, i)
		}()
	}
	wg.Wait()
	for i, r := range rs {
		if failed := refusedPuts(r.log.String()); len(failed) > 0 {
			t.Errorf("replica %d refused uploads of the concurrent pushes:\n%s", i, strings.Join(failed, "\n"))
		}
	}
	if got := countNARs(t, st) - before; got != len(d.Paths) {
		t.Errorf("the concurrent pushes added %d NAR files, want %d", got, len(d.Paths))
	}
	needNix(t).run("nix", "store", "verify", "--store", a.cacheURL("main"), "--trusted-public-keys", key, "-r", d.Top)
}

// TestReplicaKilledMidPush kills a replica with SIGKILL during a push; the
// push through the survivor then succeeds and verifies, and nothing the
// dead replica left is served half-done.
func TestReplicaKilledMidPush(t *testing.T) {
	t.Parallel()
	st := newSharedStores(t, testserver.MinIO(t), testserver.Postgres(t))
	rs := replicas(t, st, 2)
	a, b := rs[0], rs[1]
	n := needNix(t)
	key := a.pubkey(t, "main")
	c := n.buildClosureSize("killed-"+randomHex(4), 30_000_000)
	push := exec.Command("nix", "copy", "--to", a.cacheURL("main")+"?compression=none", c.Top)
	push.Env = n.withNetrc(a.Host, a.AdminToken).env()
	must(t, push.Start())
	a.waitLog(t, "kind=nar")
	_ = a.cmd.Process.Kill()
	<-a.exited
	_ = push.Wait()
	for _, p := range c.Paths {
		if b.narInfoStatus(t, "main", p) == 200 {
			needNix(t).run("nix", "store", "verify", "--store", b.cacheURL("main"), "--trusted-public-keys", key, p)
		}
	}
	needNix(t).withNetrc(b.Host, a.AdminToken).run("nix", "copy", "--to", b.cacheURL("main")+"?compression=none", c.Top)
	needNix(t).run("nix", "store", "verify", "--store", b.cacheURL("main"), "--trusted-public-keys", key, "-r", c.Top)
}

// TestStoreOutages makes each shared store unavailable under a running
// larder: with S3 down a NAR read answers 503 with Retry-After (which Nix
// retries), never a partial file; after a PostgreSQL restart larder
// serves and takes pushes again without being restarted.
func TestStoreOutages(t *testing.T) {
	t.Parallel()
	s3 := testserver.PrivateMinIO(t)
	pg := testserver.NewPostgresServer(t)
	st := newSharedStores(t, s3, pg.NewDatabase(t))
	srv := startServer(t, st.flags()...)
	n := needNix(t)
	key := srv.pubkey(t, "main")
	c := n.buildPair("outage-" + randomHex(4))
	n.withNetrc(srv.Host, srv.AdminToken).run("nix", "copy", "--to", srv.cacheURL("main"), c.Top)
	narURL := srv.cacheURL("main") + "/" + narinfoURL(t, srv, c.Top)

	must(t, s3.Server.Stop())
	resp, err := http.Get(narURL)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("NAR read with S3 down: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	must(t, s3.Server.Start())
	if code, _ := httpDo(t, "GET", narURL, "", nil); code != 200 {
		t.Fatalf("NAR read after S3 came back: %d", code)
	}

	// PostgreSQL restarts while clients keep reading.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				if r, err := http.Get(srv.cacheURL("main") + "/" + hashPart(c.Top) + ".narinfo"); err == nil {
					r.Body.Close()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	pg.Restart(t)
	close(stop)
	<-done
	d := n.buildPair("after-restart-" + randomHex(4))
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, errOut, err := n.withNetrc(srv.Host, srv.AdminToken).try("nix", "copy", "--to", srv.cacheURL("main"), d.Top)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no push succeeded within 30s of the PostgreSQL restart:\n%s", errOut)
		}
		time.Sleep(200 * time.Millisecond)
	}
	needNix(t).run("nix", "store", "verify", "--store", srv.cacheURL("main"), "--trusted-public-keys", key, "-r", c.Top, d.Top)
}

// narinfoURL returns the URL field of a path's served narinfo.
func narinfoURL(t *testing.T, srv *server, path string) string {
	t.Helper()
	code, body := httpDo(t, "GET", srv.cacheURL("main")+"/"+hashPart(path)+".narinfo", "", nil)
	if code != 200 {
		t.Fatalf("narinfo of %s: %d", path, code)
	}
	return narInfoFields(body)["URL"][0]
}

// concurrentPush runs nix copy while another push of the same closure runs
// through another replica. Nix 2.8 has a client-side race there: a path
// that becomes valid between its first query and its upload makes the copy
// fail with "coroutine has finished", after every request got a success.
// Such a push is run again, while the other push may still be running and
// so may make it hit the race again, up to four times in all; the last
// must succeed, and any other failure fails the test.
func concurrentPush(t *testing.T, n *nix, url, top string, i int) {
	const attempts = 4
	for a := 1; ; a++ {
		_, errOut, err := n.try("nix", "copy", "--to", url, top)
		switch {
		case err == nil:
			return
		case !strings.Contains(errOut, "coroutine has finished") || a == attempts:
			t.Errorf("push %d through replica %d: %v\n%s", a, i, err, errOut)
			return
		}
		t.Logf("push %d through replica %d hit Nix 2.8's race with the other push; running it again", a, i)
	}
}

// refusedPuts returns the log lines of uploads a server answered with an
// error status.
func refusedPuts(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "method=PUT") && (strings.Contains(l, "status=4") || strings.Contains(l, "status=5")) {
			out = append(out, l)
		}
	}
	return out
}

package e2e

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// push runs larder push against server (a URL) with the Nix of n and the
// token in LARDER_TOKEN.
func (n *nix) push(server, token string, args ...string) (string, string, error) {
	env := append(n.env(), "LARDER_TOKEN="+token)
	return runLarder(env, append([]string{"push", "--server", server}, args...)...)
}

// requests counts the lines of the server's access log since from that
// have all the given parts.
func (s *server) requests(from int, parts ...string) int {
	n := 0
	for _, l := range strings.Split(s.log.String()[from:], "\n") {
		if logLine(l, parts...) {
			n++
		}
	}
	return n
}

// TestPushClosure: larder push uploads a closure built by real Nix, a
// second push of it uploads nothing (one question, no PUT), and the
// closure then substitutes into an empty store from the cache, verified
// with the cache's key. The same with a netrc file as Nix reads it, and a
// refused token, which fails with a clear message.
func TestPushClosure(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	n := needNix(t)
	key := srv.pubkey(t, "main")
	write := srv.token(t, "main", "write")
	c := n.buildClosure("push-" + randomHex(4))
	from := srv.logSize()
	out, errOut, err := n.push(srv.URL, write, "--cache", "main", c.Top)
	if err != nil {
		t.Fatalf("larder push: %v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(out, fmt.Sprintf("pushed %d paths (0 already cached)", len(c.Paths))) {
		t.Errorf("larder push printed:\n%s", out)
	}
	for _, p := range c.Paths {
		if !strings.Contains(out, "pushed "+p+" (") {
			t.Errorf("larder push printed no line for %s:\n%s", p, out)
		}
	}
	if got := srv.requests(from, "method=PUT", "kind=narinfo", "status=201"); got != len(c.Paths) {
		t.Errorf("%d narinfos were created, want %d", got, len(c.Paths))
	}
	from = srv.logSize()
	out, errOut, err = n.push(srv.URL, write, "--cache", "main", "--pin", "release", "--keep-revisions", "2", c.Top)
	if err != nil {
		t.Fatalf("second larder push: %v\n%s%s", err, out, errOut)
	}
	if pins := srv.cli(t, "pin", "list", "main"); !strings.Contains(pins, "release") || !strings.Contains(pins, c.Top) {
		t.Errorf("larder push --pin release made no pin of %s:\n%s", c.Top, pins)
	}
	if !strings.Contains(out, fmt.Sprintf("pushed 0 paths (%d already cached)", len(c.Paths))) {
		t.Errorf("second larder push printed:\n%s", out)
	}
	if puts := srv.requests(from, "method=PUT", "kind=nar"); puts != 0 {
		t.Errorf("the second push sent %d NAR files, want none", puts)
	}
	if puts := srv.requests(from, "method=PUT", "kind=narinfo"); puts != 0 {
		t.Errorf("the second push sent %d narinfos, want none", puts)
	}
	if asked := srv.requests(from, "method=POST", "kind=api"); asked != 2 {
		t.Errorf("the second push asked %d questions, want 2 (what is missing, and the check at the end)", asked)
	}
	substitute(t, srv, "main", key, c.Top, c.Paths)

	// The token from a netrc file, as nix copy reads it.
	srv.cli(t, "cache", "create", "second")
	netrc := n.netrcFile(srv.Host, srv.token(t, "second", "write"))
	out, errOut, err = runLarder(n.env(), "push", "--server", srv.URL, "--cache", "second", "--netrc-file", netrc, c.Top)
	if err != nil || !strings.Contains(out, fmt.Sprintf("pushed %d paths", len(c.Paths))) {
		t.Errorf("larder push with a netrc file: %v\n%s%s", err, out, errOut)
	}
	// A token that may only read the cache pushed to (which lacks the
	// closure), and one the server does not know.
	srv.cli(t, "cache", "create", "third")
	for tok, says := range map[string]string{
		srv.token(t, "third", "read"):    "the token may not do this (403)",
		"lrd_" + strings.Repeat("x", 39): "the server refused the token (401)",
	} {
		out, errOut, err = n.push(srv.URL, tok, "--cache", "third", c.Top)
		if err == nil || !strings.Contains(out+errOut, says) {
			t.Errorf("larder push with a refused token: %v, want a message saying %q\n%s%s", err, says, out, errOut)
		}
	}
}

// bodyLimit is a proxy in front of a server that refuses bodies larger
// than max, as a load balancer with a body limit does.
func bodyLimit(t *testing.T, target string, max int64) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	must(t, err)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			http.Error(w, "413 Request Entity Too Large (proxy)", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, max)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

// addRandomFile adds a file of size random bytes to the store and returns
// its store path.
func (n *nix) addRandomFile(name string, size int64) string {
	n.t.Helper()
	f := filepath.Join(n.t.TempDir(), name)
	w, err := os.Create(f)
	must(n.t, err)
	_, err = io.CopyN(w, rand.Reader, size)
	must(n.t, err)
	must(n.t, w.Close())
	p := strings.TrimSpace(n.run("nix-store", "--add", f))
	must(n.t, os.Remove(f))
	return p
}

// TestPushInParts: a 300 MB path goes through a proxy that refuses bodies
// over 100 MB, in parts, where nix copy is refused; the cache then serves
// it whole, verified by Nix against the cache's key.
func TestPushInParts(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	n := needNix(t)
	key := srv.pubkey(t, "main")
	write := srv.token(t, "main", "write")
	proxy := bodyLimit(t, srv.URL, 100<<20)
	big := n.addRandomFile("big-"+randomHex(4), 300<<20)
	if _, errOut, err := n.withNetrc("127.0.0.1", write).try("nix", "copy", "--to", proxy.URL+"/main?compression=none", big); err == nil {
		t.Fatal("nix copy of 300 MB went through a proxy that refuses bodies over 100 MB: the test proves nothing")
	} else if !strings.Contains(errOut, "413") {
		t.Logf("nix copy through the proxy failed, as it should, saying:\n%s", errOut)
	}
	from := srv.logSize()
	out, errOut, err := n.push(proxy.URL, write, "--cache", "main", "--part-size", "32MiB", big)
	if err != nil {
		t.Fatalf("larder push of 300 MB through the proxy: %v\n%s%s", err, out, errOut)
	}
	if parts := srv.requests(from, "method=PUT", "kind=api", "status=200"); parts < 9 {
		t.Errorf("the push sent %d parts, want at least 9 of 32 MiB", parts)
	}
	n.run("nix", "store", "verify", "--store", srv.cacheURL("main"), "--trusted-public-keys", key, big)
}

// TestPushSurvivesRestart: the server is killed in the middle of a push in
// parts and started again; the client tries again and finishes, and the
// cache then holds the closure whole.
func TestPushSurvivesRestart(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	n := needNix(t)
	key := srv.pubkey(t, "main")
	write := srv.token(t, "main", "write")
	c := n.buildClosureSize("restart-"+randomHex(4), 60<<20)
	cmd := exec.Command(larderBin, "push", "--server", srv.URL, "--cache", "main", "--part-size", "5MiB", "-j", "1", c.Top)
	cmd.Env = append(n.env(), "LARDER_TOKEN="+write)
	var out, errOut syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	from := srv.logSize()
	must(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor(t, "the push to send a part", 60*time.Second, 20*time.Millisecond, func() bool {
		return srv.requests(from, "method=PUT", "kind=api", "status=200") > 0
	})
	must(t, srv.cmd.Process.Signal(syscall.SIGKILL))
	<-srv.exited
	time.Sleep(500 * time.Millisecond) // the client's tries meet a closed port
	srv = startServerOn(t, srv.Data, srv.Addr)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("larder push across a restart: %v\n%s%s", err, out.String(), errOut.String())
		}
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("larder push did not finish after the restart:\n%s%s", out.String(), errOut.String())
	}
	if !strings.Contains(errOut.String(), "trying again") {
		t.Errorf("the push did not say it tried again:\n%s", errOut.String())
	}
	substitute(t, srv, "main", key, c.Top, c.Paths)
}

// TestPushWatchStore: larder push --watch-store pushes a path built after
// it started, with its closure, and stops cleanly on SIGINT. It runs alone
// (not in parallel), since it pushes whatever appears in the store.
func TestPushWatchStore(t *testing.T) {
	srv := startServer(t)
	n := needNix(t)
	write := srv.token(t, "main", "write")
	cmd := exec.Command(larderBin, "push", "--server", srv.URL, "--cache", "main", "--watch-store")
	cmd.Env = append(n.env(), "LARDER_TOKEN="+write)
	stderr, err := cmd.StderrPipe()
	must(t, err)
	var out syncBuffer
	cmd.Stdout = &out
	must(t, cmd.Start())
	var logs syncBuffer
	watching := make(chan struct{})
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write([]byte(sc.Text() + "\n"))
			if strings.Contains(sc.Text(), "watching the Nix store") {
				once.Do(func() { close(watching) })
			}
		}
	}()
	select {
	case <-watching:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("larder push --watch-store did not start:\n%s", logs.String())
	}
	c := n.buildClosure("watched-" + randomHex(4))
	waitFor(t, "the watcher to push the new closure", 60*time.Second, 200*time.Millisecond, func() bool {
		for _, p := range c.Paths {
			if srv.narInfoStatus(t, "main", p) != http.StatusOK {
				return false
			}
		}
		return true
	})
	must(t, cmd.Process.Signal(os.Interrupt))
	if err := cmd.Wait(); err != nil {
		t.Errorf("larder push --watch-store after SIGINT: %v\n%s", err, logs.String())
	}
	if !strings.Contains(out.String(), "pushed "+c.Top) {
		t.Errorf("the watcher printed no line for %s:\n%s", c.Top, out.String())
	}
	for _, d := range c.Drvs {
		if srv.narInfoStatus(t, "main", d) == http.StatusOK {
			t.Errorf("the watcher pushed the derivation %s", d)
		}
	}
}

// TestPushOnTerminal: on a terminal (script(1) gives it one), larder push
// draws its bars, a total with rate and ETA, and ends with its summary.
func TestPushOnTerminal(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	n := needNix(t)
	c := n.buildClosureSize("tty-"+randomHex(4), 20<<20)
	// Without a terminal of its own, script's has no size: give it one.
	line := "stty cols 120 rows 40; " + strings.Join([]string{larderBin, "push", "--server", srv.URL, "--cache", "main", c.Top}, " ")
	cmd := exec.Command("script", "--quiet", "--return", "--command", line, "/dev/null")
	cmd.Env = append(n.env(), "LARDER_TOKEN="+srv.token(t, "main", "write"), "TERM=xterm")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("larder push on a terminal: %v\n%s", err, out)
	}
	for _, want := range []string{"total", fmt.Sprintf("pushed %d paths (0 already cached)", len(c.Paths)), "ETA"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("larder push on a terminal printed no %q:\n%q", want, out)
		}
	}
	for _, p := range c.Paths {
		if srv.narInfoStatus(t, "main", p) != http.StatusOK {
			t.Errorf("%s is not in the cache", p)
		}
	}
}

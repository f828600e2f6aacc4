package e2e

// Helpers of the upstream tests: an upstream cache is nginx serving what
// nix copy --to file:// wrote, signed with a key nix-store made, on
// loopback.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// needNginx returns the path of nginx, or skips the test when it is not
// installed (and fails it instead under LARDER_REQUIRE_NGINX=1, as
// ./test.sh sets).
func needNginx(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("LARDER_REQUIRE_NGINX") == "1" {
		t.Fatalf("nginx is not installed (apt-get install nginx)")
	}
	t.Skip("nginx is not installed; ./test.sh installs it")
	return ""
}

// nginxConf serves root on addr, logging each request to access.log in
// dir; rate, if not empty, limits each response to that many bytes a
// second (nginx's limit_rate), so that a download lasts long enough to be
// joined.
const nginxConf = `
worker_processes 1;
%[5]s
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
daemon off;
events { worker_connections 256; }
http {
  access_log %[1]s/access.log;
  default_type application/octet-stream;
  types { text/x-nix-narinfo narinfo; }
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen %[2]s;
    root %[3]s;
    %[4]s
  }
}
`

// upstreamCache is a binary cache nix copy wrote to a directory, signed
// with its own key, served by nginx.
type upstreamCache struct {
	t      *testing.T
	n      *nix
	dir    string // the cache, as nix copy --to file:// wrote it
	work   string // nginx's files
	secret string // the signing key's file
	Key    string // its public key
	URL    string // where nginx serves it
	addr   string
	rate   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// newUpstreamCache makes an empty upstream cache with a key named name and
// serves it.
func newUpstreamCache(t *testing.T, n *nix, name, rate string) *upstreamCache {
	t.Helper()
	u := &upstreamCache{t: t, n: n, dir: t.TempDir(), work: t.TempDir(), addr: freeAddr(t), rate: rate}
	u.secret, u.Key = n.genKey(name)
	u.URL = "http://" + u.addr
	// nix copy writes nix-cache-info with the first path; larder needs none.
	u.start()
	t.Cleanup(u.stop)
	return u
}

// add copies paths (with their closures) into the upstream cache, signed.
func (u *upstreamCache) add(paths ...string) {
	u.t.Helper()
	u.n.run(append([]string{"nix", "copy", "--to", "file://" + u.dir + "?secret-key=" + u.secret}, paths...)...)
}

func (u *upstreamCache) start() {
	u.t.Helper()
	bin := needNginx(u.t)
	user := ""
	if os.Getuid() == 0 {
		user = "user root;" // the workers read the test's private directories
	}
	limit := ""
	if u.rate != "" {
		limit = "location /nar/ { limit_rate " + u.rate + "; }"
	}
	conf := filepath.Join(u.work, "nginx.conf")
	must(u.t, os.WriteFile(conf, fmt.Appendf(nil, nginxConf, u.work, u.addr, u.dir, limit, user), 0o644))
	u.cmd = exec.Command(bin, "-c", conf, "-p", u.work)
	u.cmd.Stdout, u.cmd.Stderr = os.Stderr, os.Stderr
	must(u.t, u.cmd.Start())
	u.exited = make(chan struct{})
	go func() { _ = u.cmd.Wait(); close(u.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", u.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-u.exited:
			b, _ := os.ReadFile(filepath.Join(u.work, "error.log"))
			u.t.Fatalf("nginx exited before it listened:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("nginx does not listen on %s", u.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop stops nginx, and waits until its port is closed.
func (u *upstreamCache) stop() {
	select {
	case <-u.exited:
		return
	default:
	}
	_ = u.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-u.exited:
	case <-time.After(10 * time.Second):
		_ = u.cmd.Process.Kill()
		<-u.exited
	}
}

// requests counts the requests of nginx's access log whose line holds
// every one of parts (such as `"GET /nar/`).
func (u *upstreamCache) requests(parts ...string) int {
	b, err := os.ReadFile(filepath.Join(u.work, "access.log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		u.t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if logLine(l, parts...) {
			n++
		}
	}
	return n
}

// spec is the --upstream value of the upstream cache.
func (u *upstreamCache) spec() string { return u.URL + "=" + u.Key }

// hang listens on a free port and accepts connections, but never answers:
// an upstream that is up and dead. It returns its URL.
func hang(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String()
}

// removedPaths adds up the paths the server's collections of cache
// removed, as its log says.
func removedPaths(log, cache string) int {
	total := 0
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, `msg="collected cache"`) || !strings.Contains(l, "cache="+cache+" ") ||
			!strings.Contains(l, "dry_run=false") {
			continue
		}
		for f := range strings.FieldsSeq(l) {
			if v, ok := strings.CutPrefix(f, "removed_paths="); ok {
				n, _ := strconv.Atoi(v)
				total += n
			}
		}
	}
	return total
}

// upstreams runs larder cache update CACHE with args (--upstream …) and
// restarts the server, which otherwise picks the new upstreams up at its
// next sync (within sync_interval), so that the test goes on with them
// in use. It returns the restarted server and what the command printed.
func (s *server) upstreams(t *testing.T, cache string, args ...string) (*server, string) {
	t.Helper()
	out := s.cli(t, append([]string{"cache", "update", cache}, args...)...)
	return s.restart(t), out
}

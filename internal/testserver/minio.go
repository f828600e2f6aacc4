package testserver

// This file runs MinIO, an S3 server, for tests that need a real S3
// endpoint. MinIO is a test peer only: its binary is looked for on the
// machine (see minioBinary), never imported. Without it the tests that ask
// for it are skipped, unless LARDER_REQUIRE_S3=1 makes them fail.
//
// Each MinIO process runs under a small shell that holds the read end of a
// pipe whose write end only this process has. When the test binary exits,
// however it exits, the pipe closes and the shell kills MinIO and removes
// its data, so no server outlives the tests.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"go/build"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	// minioRegion is the region of every MinIO server started here.
	minioRegion = "us-east-1"
	// minioStartTimeout bounds the wait for a starting server to answer.
	minioStartTimeout = 60 * time.Second
	// minioRequireEnv makes a missing MinIO binary fail the tests.
	minioRequireEnv = "LARDER_REQUIRE_S3"
)

// minioWatch is the shell that runs MinIO: "$1" is the server's directory,
// the other arguments the MinIO command. It kills MinIO when a line arrives
// on its standard input, keeping the data if the line is "keep", and when
// the input ends, removing the directory.
const minioWatch = `dir=$1; shift
trap '' INT HUP
"$@" </dev/null >>"$dir/log" 2>&1 &
pid=$!
read -r cmd
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
[ "$cmd" = keep ] || rm -rf "$dir"
`

// S3Server is an S3 endpoint with a bucket of one test's own.
type S3Server struct {
	Endpoint  string // "http://127.0.0.1:PORT"
	AccessKey string
	SecretKey string
	Region    string
	Bucket    string // created for the test; removed with its objects at its cleanup
	// Server is the MinIO process behind Endpoint, for tests that make S3
	// unreachable for a while.
	Server *MinIOServer
}

// URL returns the s3:// URL of the bucket, with objects under prefix (""
// for none), in the form larder's configuration takes, the keys in its
// query.
func (s S3Server) URL(prefix string) *url.URL {
	q := url.Values{}
	q.Set("endpoint", s.Endpoint)
	q.Set("region", s.Region)
	q.Set("access_key", s.AccessKey)
	q.Set("secret_key", s.SecretKey)
	return &url.URL{Scheme: "s3", Host: s.Bucket, Path: "/" + prefix, RawQuery: q.Encode()}
}

// Client returns a client of the server, for looking behind the back of
// the code under test.
func (s S3Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := s.Server.client()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// MinIOServer is a running MinIO process, with its data in a directory of
// its own. Its methods are safe for concurrent use.
type MinIOServer struct {
	bin       string
	dir       string // holds data/, certs/ and log
	addr      string // host:port of the S3 API
	console   string // host:port of the (disabled) console
	accessKey string
	secretKey string

	mu      sync.Mutex
	cmd     *exec.Cmd      // the shell; nil when stopped
	stdin   io.WriteCloser // the shell's input
	logFrom int64          // where the log of the latest start begins
}

// minioShared is the server every MinIO call of a test binary shares.
var minioShared struct {
	mu  sync.Mutex
	srv *MinIOServer
	err error // why it could not start
}

// minioBuckets numbers the buckets made by this process.
var minioBuckets atomic.Int64

// MinIO returns a bucket of its own for t on the MinIO server the whole test
// binary shares, starting the server on first use. The bucket is removed at
// t's cleanup. A test that stops the server (S3Server.Server.Stop) must not
// run in parallel with others that use it; PrivateMinIO gives it a server of
// its own.
func MinIO(t testing.TB) S3Server {
	t.Helper()
	bin := minioRequire(t)
	minioShared.mu.Lock()
	if minioShared.srv == nil && minioShared.err == nil {
		minioShared.srv, minioShared.err = startMinIO(bin)
	}
	srv, err := minioShared.srv, minioShared.err
	minioShared.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	s := srv.newBucket(t)
	t.Cleanup(func() { srv.removeBucket(t, s.Bucket) })
	return s
}

// PrivateMinIO starts a MinIO server for t alone and returns a bucket on it.
// The server is stopped and its data removed at t's cleanup. It suits tests
// that stop the server.
func PrivateMinIO(t testing.TB) S3Server {
	t.Helper()
	bin := minioRequire(t)
	srv, err := startMinIO(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.close(); err != nil {
			t.Errorf("stop minio: %v", err)
		}
	})
	return srv.newBucket(t)
}

// minioRequire returns the MinIO binary, or skips t (fails it if
// LARDER_REQUIRE_S3=1) when there is none.
func minioRequire(t testing.TB) string {
	t.Helper()
	bin := minioBinary()
	if bin != "" {
		return bin
	}
	msg := "no minio binary on PATH, in <module>/.tools/bin, /tmp/gobin or $GOPATH/bin " +
		"(go install github.com/minio/minio@latest)"
	if os.Getenv(minioRequireEnv) == "1" {
		t.Fatal(msg + "; " + minioRequireEnv + "=1 requires it")
	}
	t.Skip(msg)
	return ""
}

// minioBinary finds the MinIO server binary: on PATH, then in .tools/bin of
// the module the tests run in, then in /tmp/gobin, then in the bin
// directories of GOPATH. It returns "" if there is none.
var minioBinary = sync.OnceValue(func() string {
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	var candidates []string
	if root := minioModuleRoot(); root != "" {
		candidates = append(candidates, filepath.Join(root, ".tools", "bin", "minio"))
	}
	candidates = append(candidates, "/tmp/gobin/minio")
	for _, dir := range filepath.SplitList(minioGoPath()) {
		candidates = append(candidates, filepath.Join(dir, "bin", "minio"))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return c
		}
	}
	return ""
})

// minioModuleRoot returns the directory of the go.mod above the working
// directory (a test runs in its package's directory), or "".
func minioModuleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// minioGoPath returns what "go env GOPATH" says, or the default GOPATH.
func minioGoPath() string {
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if p := strings.TrimSpace(string(out)); err == nil && p != "" {
		return p
	}
	return build.Default.GOPATH
}

// startMinIO starts a server from bin in a new temporary directory. It
// tries again with other ports if the first ones were taken meanwhile.
func startMinIO(bin string) (*MinIOServer, error) {
	var err error
	for range 3 {
		var m *MinIOServer
		m, err = tryMinIO(bin)
		if err == nil || !strings.Contains(err.Error(), "already in use") {
			return m, err
		}
	}
	return nil, err
}

// tryMinIO starts a server from bin in a new temporary directory, on ports
// that are free when it looks.
func tryMinIO(bin string) (*MinIOServer, error) {
	dir, err := os.MkdirTemp("", "larder-minio-")
	if err != nil {
		return nil, fmt.Errorf("minio directory: %w", err)
	}
	addr, err1 := minioFreeAddr()
	console, err2 := minioFreeAddr()
	if err := errors.Join(err1, err2); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("minio ports: %w", err)
	}
	m := &MinIOServer{
		bin: bin, dir: dir, addr: addr, console: console,
		accessKey: "larder-test",
		secretKey: strings.ToLower(rand.Text()),
	}
	if err := m.Start(); err != nil {
		m.close()
		return nil, err
	}
	return m, nil
}

// minioFreeAddr returns a loopback address with a port no one listens on.
func minioFreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Endpoint returns the URL of the server's S3 API.
func (m *MinIOServer) Endpoint() string { return "http://" + m.addr }

// Running reports whether the server has been started and not stopped.
func (m *MinIOServer) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

// Start starts the server, if it is not running, on its address and its
// data, and waits until it answers.
func (m *MinIOServer) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return nil
	}
	cmd := exec.Command("/bin/sh", "-c", minioWatch, "sh", m.dir,
		m.bin, "server", filepath.Join(m.dir, "data"),
		"--address", m.addr, "--console-address", m.console,
		"--certs-dir", filepath.Join(m.dir, "certs"), "--quiet", "--anonymous")
	cmd.Env = m.env()
	m.logFrom = 0
	if fi, err := os.Stat(filepath.Join(m.dir, "log")); err == nil {
		m.logFrom = fi.Size()
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("start minio: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start minio: %w", err)
	}
	m.cmd, m.stdin = cmd, stdin
	if err := m.waitLive(); err != nil {
		m.stopLocked("keep")
		return err
	}
	return nil
}

// Stop kills the server, as a crash would, keeping its data: connections
// to it are refused until Start. Stopping a stopped server does nothing.
func (m *MinIOServer) Stop() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stopLocked("keep")
}

// close stops the server for good and removes its directory.
func (m *MinIOServer) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.stopLocked("")
	if rerr := os.RemoveAll(m.dir); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// stopLocked tells the shell to kill the server, ending the line with cmd
// ("keep" keeps the data; an empty input removes it), and waits for it.
// m.mu is held.
func (m *MinIOServer) stopLocked(cmd string) error {
	if m.cmd == nil {
		return nil
	}
	var werr error
	if cmd != "" {
		_, werr = io.WriteString(m.stdin, cmd+"\n")
	}
	cerr := m.stdin.Close()
	err := m.cmd.Wait()
	m.cmd, m.stdin = nil, nil
	if err := errors.Join(werr, cerr, err); err != nil {
		return fmt.Errorf("stop minio: %w", err)
	}
	return nil
}

// env returns the environment of the server: the test's, without what
// could change how MinIO runs, and with the server's own settings.
func (m *MinIOServer) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "AWS_CA_BUNDLE" || strings.HasPrefix(name, "MINIO_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"MINIO_ROOT_USER="+m.accessKey,
		"MINIO_ROOT_PASSWORD="+m.secretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
	)
}

// waitLive waits until the server answers its liveness probe, failing
// early if its log reports a fatal error.
func (m *MinIOServer) waitLive() error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(minioStartTimeout)
	for {
		resp, err := client.Get(m.Endpoint() + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		log := m.logTail()
		if strings.Contains(log, "FATAL") || time.Now().After(deadline) {
			return fmt.Errorf("minio on %s did not start; its log ends with:\n%s", m.addr, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logTail returns the end of what the server logged since its latest
// start. m.mu is held.
func (m *MinIOServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(m.dir, "log"))
	b = b[min(m.logFrom, int64(len(b))):]
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// client returns a client of the server with its root keys.
func (m *MinIOServer) client() (*minio.Client, error) {
	c, err := minio.New(m.addr, &minio.Options{
		Creds:        credentials.NewStaticV4(m.accessKey, m.secretKey, ""),
		Region:       minioRegion,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return nil, fmt.Errorf("minio client: %w", err)
	}
	return c, nil
}

// newBucket makes a new bucket for t.
func (m *MinIOServer) newBucket(t testing.TB) S3Server {
	t.Helper()
	name := fmt.Sprintf("larder-%d-%s", minioBuckets.Add(1), strings.ToLower(rand.Text()[:8]))
	c, err := m.client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: minioRegion}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
	return S3Server{
		Endpoint:  m.Endpoint(),
		AccessKey: m.accessKey,
		SecretKey: m.secretKey,
		Region:    minioRegion,
		Bucket:    name,
		Server:    m,
	}
}

// removeBucket removes a bucket with everything in it, first starting the
// server again if a test left it stopped.
func (m *MinIOServer) removeBucket(t testing.TB, name string) {
	t.Helper()
	if err := m.Start(); err != nil {
		t.Errorf("remove bucket %s: %v", name, err)
		return
	}
	c, err := m.client()
	if err != nil {
		t.Errorf("remove bucket %s: %v", name, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.RemoveBucketWithOptions(ctx, name, minio.RemoveBucketOptions{ForceDelete: true}); err != nil {
		t.Errorf("remove bucket %s: %v", name, err)
	}
}

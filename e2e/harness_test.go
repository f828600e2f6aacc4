// Package e2e tests larder as its users run it: the real binary, started as
// a process on a fresh data directory, driven by the real Nix client
// (Debian's nix-bin) and by its own CLI.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/testserver"
)

// larderBin is the binary under test, built once by TestMain.
var larderBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "larder-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	larderBin = filepath.Join(dir, "larder")
	build := exec.Command("go", "build", "-o", larderBin, "../cmd/larder")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build larder:", err)
		os.Exit(1)
	}
	code := m.Run()
	testserver.StopPostgres()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running larder process.
type server struct {
	URL        string // http://127.0.0.1:PORT
	Host       string // 127.0.0.1
	Addr       string // 127.0.0.1:PORT
	Data       string
	AdminToken string
	extra      []string
	cmd        *exec.Cmd
	log        *syncBuffer
	exited     chan struct{} // closed when the process has exited
	waitErr    error         // the process's exit status, once exited is closed
}

// startServer starts larder on a fresh data directory and a free port and
// waits until it answers. It is stopped with SIGTERM when the test ends.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	return startServerOn(t, t.TempDir(), freeAddr(t), extra...)
}

// startServerOn starts larder on the given data directory and address.
func startServerOn(t *testing.T, data, addr string, extra ...string) *server {
	t.Helper()
	s := &server{
		URL: "http://" + addr, Host: "127.0.0.1", Addr: addr, Data: data,
		extra: extra, log: &syncBuffer{}, exited: make(chan struct{}),
	}
	args := append([]string{"serve", "--data", data, "--listen", addr}, extra...)
	s.cmd = exec.Command(larderBin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start larder: %v", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/_larder/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("larder exited before answering (%v):\n%s", s.waitErr, s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("larder did not start:\n%s", s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		t.Fatalf("read admin token: %v", err)
	}
	s.AdminToken = strings.TrimSpace(string(tok))
	return s
}

// terminate sends SIGTERM and waits for the process to exit, returning its
// exit status (nil for exit code 0).
func (s *server) terminate(t *testing.T) error {
	t.Helper()
	select {
	case <-s.exited:
		return s.waitErr
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.waitErr
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("larder did not stop within 30s of SIGTERM")
	}
}

func (s *server) stop(t *testing.T) {
	select {
	case <-s.exited:
		return // stopped (and checked) by the test itself
	default:
	}
	if err := s.terminate(t); err != nil {
		t.Errorf("larder exited with %v after SIGTERM:\n%s", err, s.log.String())
	}
	if t.Failed() {
		t.Logf("larder output:\n%s", tail(s.log.String(), 60))
	}
}

// restart stops the server with SIGTERM, checks that it exited cleanly, and
// starts a new process on the same data directory and address.
func (s *server) restart(t *testing.T) *server {
	t.Helper()
	if err := s.terminate(t); err != nil {
		t.Fatalf("larder exited with %v after SIGTERM:\n%s", err, s.log.String())
	}
	return startServerOn(t, s.Data, s.Addr, s.extra...)
}

// cacheURL is the substituter URL of a cache.
func (s *server) cacheURL(name string) string { return s.URL + "/" + name }

// waitLog waits until the server's output contains substr, and fails the
// test if it does not within a few seconds (the output reaches the test
// through a pipe, so it may trail the response that caused it).
func (s *server) waitLog(t *testing.T, substr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.log.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("server output does not contain %q:\n%s", substr, tail(s.log.String(), 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logLine reports whether some line of log holds every one of parts
// (such as "method=GET", "kind=realisation", "status=200").
func logLine(log string, parts ...string) bool {
	for _, l := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			if !strings.Contains(l, p) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// waitLogLine waits until a line of the server's output after its first
// from bytes holds every one of parts, and fails the test if none does
// within a few seconds (the output reaches the test through a pipe, so it
// may trail the response that caused it).
func (s *server) waitLogLine(t *testing.T, from int, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !logLine(s.log.String()[from:], parts...) {
		if time.Now().After(deadline) {
			t.Fatalf("no line of the server output holds %q:\n%s", parts, tail(s.log.String()[from:], 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logSize is the length of the server's output so far, to look only at
// what comes after with waitLogLine.
func (s *server) logSize() int { return len(s.log.String()) }

// cli runs a larder CLI command on the server's data directory and returns
// its standard output; it fails the test if the command fails.
func (s *server) cli(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := s.tryCLI(args...)
	if err != nil {
		t.Fatalf("larder %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func (s *server) tryCLI(args ...string) (stdout, stderr string, err error) {
	// The server's extra flags are settings (stores, configuration file),
	// which the CLI must share with it.
	return runLarder(nil, append(append(args, "--data", s.Data), s.extra...)...)
}

// runLarder runs the larder binary with the test process's environment plus
// env (KEY=VALUE entries, which win), without any LARDER_* variable of the
// test process leaking in.
func runLarder(env []string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(larderBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LARDER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// pubkey returns the public key of a cache, as `larder cache pubkey` prints it.
func (s *server) pubkey(t *testing.T, cache string) string {
	return strings.TrimSpace(s.cli(t, "cache", "pubkey", cache))
}

// token creates a token and returns its text, checking that the command
// printed exactly that one line.
func (s *server) token(t *testing.T, cache, perm string, more ...string) string {
	t.Helper()
	out := s.cli(t, append([]string{"token", "create", "--cache", cache, "--perm", perm}, more...)...)
	if l := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(l) != 1 || !strings.HasPrefix(l[0], "lrd_") {
		t.Fatalf("token create printed %q, want one line with the token", out)
	}
	return strings.TrimSpace(out)
}

// tokenID returns the ID `larder token list` shows for the token with the
// given description.
func (s *server) tokenID(t *testing.T, description string) string {
	t.Helper()
	out := s.cli(t, "token", "list")
	for _, l := range lines(out) {
		if f := strings.Fields(l); len(f) > 0 && strings.HasSuffix(l, " "+description) {
			return f[0]
		}
	}
	t.Fatalf("token list has no token described %q:\n%s", description, out)
	return ""
}

// countFiles counts the regular files under the data directory's dir.
func (s *server) countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	root := filepath.Join(s.Data, dir)
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if os.IsNotExist(err) {
			return filepath.SkipDir
		}
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return n
}

// narInfoStatus returns the HTTP status of GET of a store path's narinfo in
// a cache, asked with the admin token (so it is not hidden by access rules).
func (s *server) narInfoStatus(t *testing.T, cache, storePath string) int {
	t.Helper()
	code, _ := httpDo(t, "GET", s.cacheURL(cache)+"/"+hashPart(storePath)+".narinfo", s.AdminToken, nil)
	return code
}

func freeAddr(t *testing.T) string { return testserver.FreeAddr(t) }

// syncBuffer is a bytes.Buffer safe for a process writing while tests read.
type syncBuffer = testserver.SyncBuffer

func tail(s string, lines int) string {
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// httpGetQuick sends a GET with a short timeout and closes the response.
func httpGetQuick(url string) (int, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// httpDo sends a request with an optional token and returns the status and
// body.
func httpDo(t *testing.T, method, url, token string, body io.Reader) (int, string) {
	t.Helper()
	code, _, b := httpDoHeader(t, method, url, token, body)
	return code, b
}

// httpDoHeader is httpDo that also returns the response header.
func httpDoHeader(t *testing.T, method, url, token string, body io.Reader) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// lines splits command output into its non-empty lines.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// hashPart returns the 32-character hash of a store path.
func hashPart(storePath string) string {
	base := filepath.Base(storePath)
	if len(base) < 32 {
		return base
	}
	return base[:32]
}

// narInfoFields parses a narinfo into its fields; repeated fields (Sig)
// keep every value.
func narInfoFields(body string) map[string][]string {
	m := map[string][]string{}
	for _, l := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			m[k] = append(m[k], v)
		}
	}
	return m
}

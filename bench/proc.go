//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sh runs a command, with env added to the environment, and returns its
// error with its output.
func sh(ctx context.Context, env []string, args ...string) error {
	_, err := output(ctx, env, args...)
	return err
}

// output runs a command and returns its standard output.
func output(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		cmdline := strings.Join(args, " ")
		if len(cmdline) > 300 {
			cmdline = cmdline[:300] + "…"
		}
		return o.String(), fmt.Errorf("%s: %w\n%s", cmdline, err, tail(e.String(), 20))
	}
	return o.String(), nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freeAddr returns a free 127.0.0.1 address.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a server process the benchmark started.
type proc struct {
	name   string
	URL    string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	exited chan struct{} // closed once the process has been waited for
}

// probeClient asks servers whether they are up; it accepts the benchmark's
// self-signed certificate.
var probeClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// start starts a server and waits until GET of health answers 2xx, and
// returns it with the time that took.
func start(ctx context.Context, name, url, health string, env []string, args ...string) (*proc, time.Duration, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("start %s: %w", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p := &proc{name: name, URL: url, cmd: cmd, log: &log, exited: exited}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		resp, err := probeClient.Get(url + health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return p, time.Since(began), nil
			}
		}
		select {
		case <-exited:
			return nil, 0, fmt.Errorf("%s exited:\n%s", name, tail(log.String(), 20))
		case <-ctx.Done():
			p.stop()
			return nil, 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, 0, fmt.Errorf("%s did not answer %s", name, health)
		}
	}
}

// stop ends the process and its children.
func (p *proc) stop() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// rss returns the resident memory of the process, in bytes.
func (p *proc) rss() int64 { return rssOf(p.cmd.Process.Pid) }

// peakRSS returns the process's peak resident memory, in bytes.
func (p *proc) peakRSS() int64 { return statusField(p.cmd.Process.Pid, "VmHWM:") }

func rssOf(pid int) int64 { return statusField(pid, "VmRSS:") }

// cpuTime returns the CPU time the process has used so far, user and
// system, in clock ticks (USER_HZ, 100 a second on Linux).
func (p *proc) cpuTime() int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "stat"))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses:
	// state is the first, utime the 12th and stime the 13th.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	user, _ := strconv.ParseInt(f[11], 10, 64)
	sys, _ := strconv.ParseInt(f[12], 10, 64)
	return user + sys
}

// settle waits, at most a minute, until the process has used under 5% of
// a core for three seconds running: until what a push started in the
// background (its NARs cut into chunks, which begins a second after the
// last upload) is done, so that it is not measured as the lookups' cost.
func (p *proc) settle(ctx context.Context) {
	last, quiet := p.cpuTime(), 0
	for range 60 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		now := p.cpuTime()
		if now-last < 5 {
			quiet++
		} else {
			quiet = 0
		}
		if quiet == 3 {
			return
		}
		last = now
	}
}

func statusField(pid int, field string) int64 {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// larder is a larder server on a data directory.
type larder struct {
	*proc
	bin, data string
	admin     string
	debug     string // address of its profiling endpoints, if any
}

// startLarder starts larder serve on data, logging only warnings (nginx
// runs without an access log too), and returns it with its start-up time.
func startLarder(ctx context.Context, bin, data string, extra ...string) (*larder, time.Duration, error) {
	addr := freeAddr()
	args := append([]string{bin, "serve", "--data", data, "--listen", addr, "--log-level", "warn"}, extra...)
	scheme := "http://"
	if slices.Contains(extra, "--tls-cert") {
		scheme = "https://"
	}
	p, took, err := start(ctx, "larder", scheme+addr, "/_larder/health", nil, args...)
	if err != nil {
		return nil, 0, err
	}
	tok, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		p.stop()
		return nil, 0, err
	}
	return &larder{proc: p, bin: bin, data: data, admin: strings.TrimSpace(string(tok))}, took, nil
}

// startProfiled starts larder as startLarder does, with its profiling
// endpoints on when o asks for profiles.
func startProfiled(ctx context.Context, o options, data string, extra ...string) (*larder, error) {
	debug := ""
	if o.profile != "" {
		debug = freeAddr()
		extra = append(extra, "--debug-listen", debug)
	}
	l, _, err := startLarder(ctx, o.larder, data, extra...)
	if err != nil {
		return nil, err
	}
	l.debug = debug
	return l, nil
}

// cli runs a larder command on the server's data directory.
func (l *larder) cli(ctx context.Context, args ...string) (string, error) {
	return output(ctx, nil, append(append([]string{l.bin}, args...), "--data", l.data)...)
}

// profile takes a CPU profile of the server for most of d, if it serves
// profiling endpoints, into dir/name.pprof; the returned function waits
// for it.
func (l *larder) profile(ctx context.Context, dir, name string, d time.Duration) func() {
	if l.debug == "" || dir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		secs := max(1, int(d.Seconds())-1)
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", l.debug, secs))
		if err != nil {
			fmt.Println("profile:", err)
			return
		}
		defer resp.Body.Close()
		_ = os.MkdirAll(dir, 0o755)
		f, err := os.Create(filepath.Join(dir, name+".pprof"))
		if err == nil {
			_, _ = io.Copy(f, resp.Body)
			f.Close()
		}
	}()
	return func() { <-done }
}

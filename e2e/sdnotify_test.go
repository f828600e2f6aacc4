package e2e

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket is the service manager's end of NOTIFY_SOCKET: it hands
// each datagram larder sends to the test.
type notifySocket struct {
	conn *net.UnixConn
	msgs chan string // closed when reading stops
}

func listenNotify(t *testing.T, name string) *notifySocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &notifySocket{conn: conn, msgs: make(chan string, 1000)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(s.msgs)
				return
			}
			s.msgs <- string(buf[:n])
		}
	}()
	return s
}

// await returns the next datagram that holds state (a line such as
// "READY=1"), with those before it, and fails t if none comes in time.
func (s *notifySocket) await(t *testing.T, state string, within time.Duration) (msg string, before []string) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				t.Fatalf("notify socket closed before %s; got %q", state, before)
			}
			if hasState(m, state) {
				return m, before
			}
			before = append(before, m)
		case <-deadline:
			t.Fatalf("no %s within %v; got %q", state, within, before)
		}
	}
}

// rest stops reading once the socket is empty and returns what was left
// (the sender must have exited: then all it sent is queued at the socket).
func (s *notifySocket) rest() []string {
	s.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var rest []string
	for m := range s.msgs {
		rest = append(rest, m)
	}
	return rest
}

func hasState(msg, state string) bool {
	for _, l := range strings.Split(msg, "\n") {
		if l == state {
			return true
		}
	}
	return false
}

// TestSystemdNotify runs larder serve as systemd runs a Type=notify unit
// with WatchdogSec=: NOTIFY_SOCKET names a socket the test listens on, and
// WATCHDOG_USEC asks for a ping every 0.2 s. READY=1 comes once the server
// answers (a request sent the moment it arrives is answered), WATCHDOG=1
// keeps coming, and SIGTERM brings STOPPING=1, after which no ping comes,
// and a clean exit. Over HTTP on 127.0.0.1 with a socket in the abstract
// namespace, and over HTTPS on the wildcard address (which the server's
// own health check reaches on the loopback) with a socket file.
func TestSystemdNotify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"http, abstract socket", false}, {"https on 0.0.0.0, socket file", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := t.TempDir()
			addr := freeAddr(t)
			url := "http://" + addr
			sockName := "@larder-e2e-notify-" + randomHex(8)
			args := []string{"serve", "--data", data, "--listen", addr}
			client := http.DefaultClient
			if tc.tls {
				sockName = filepath.Join(t.TempDir(), "notify")
				_, port, _ := net.SplitHostPort(addr)
				certFile, keyFile := selfSigned(t)
				args = []string{"serve", "--data", data, "--listen", "0.0.0.0:" + port,
					"--public-url", "https://" + addr, "--tls-cert", certFile, "--tls-key", keyFile}
				url = "https://" + addr
				client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
			}
			sock := listenNotify(t, sockName)

			cmd := exec.Command(larderBin, args...)
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "LARDER_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") && !strings.HasPrefix(kv, "WATCHDOG_") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sockName, "WATCHDOG_USEC=400000")
			log := &syncBuffer{}
			cmd.Stdout, cmd.Stderr = log, log
			must(t, cmd.Start())
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				if t.Failed() {
					t.Logf("larder output:\n%s", tail(log.String(), 40))
				}
			}()
			defer func() {
				select {
				case <-exited:
				default:
					cmd.Process.Kill()
					<-exited
				}
			}()

			ready, before := sock.await(t, "READY=1", time.Minute)
			resp, err := client.Get(url + "/main/nix-cache-info")
			if err != nil {
				t.Fatalf("GET nix-cache-info right after READY=1: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET nix-cache-info right after READY=1: %s", resp.Status)
			}
			if len(before) > 0 {
				t.Errorf("larder sent %q before READY=1", before)
			}
			if !hasState(ready, "STATUS=serving "+strings.Replace(url, "0.0.0.0", "127.0.0.1", 1)) {
				t.Errorf("READY=1 came with %q, want the status to say what it serves", ready)
			}
			for i := 0; i < 3; i++ {
				if _, other := sock.await(t, "WATCHDOG=1", 30*time.Second); len(other) > 0 {
					t.Errorf("between pings: %q", other)
				}
			}

			must(t, cmd.Process.Signal(syscall.SIGTERM))
			sock.await(t, "STOPPING=1", 30*time.Second)
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("larder exited with %v after SIGTERM", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("larder did not exit within 30s of SIGTERM")
			}
			close(exited) // the deferred kill finds it exited
			for _, m := range sock.rest() {
				if hasState(m, "WATCHDOG=1") || hasState(m, "READY=1") {
					t.Errorf("larder sent %q after STOPPING=1", m)
				}
			}
			if !strings.Contains(log.String(), "msg=starting version=") {
				t.Errorf("serve did not log its version as it started:\n%s", tail(log.String(), 20))
			}
		})
	}
}

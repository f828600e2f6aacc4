package sdnotify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// manager is the service manager's end: a unixgram socket the test reads.
type manager struct {
	name string // as NOTIFY_SOCKET gives it
	conn *net.UnixConn
}

func listen(t *testing.T, name string) *manager {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &manager{name: name, conn: conn}
}

// next returns the next datagram, waiting for it a while.
func (m *manager) next(t *testing.T) string {
	t.Helper()
	m.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := m.conn.Read(buf)
	if err != nil {
		t.Fatalf("read notification: %v", err)
	}
	return string(buf[:n])
}

// queued returns the datagrams already sent: a datagram is queued at the
// socket by the time its sender's write returns, so reading stops at the
// first that does not come at once. (An expired deadline would fail the
// read before it tried.)
func (m *manager) queued(t *testing.T) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 4096)
	for {
		m.conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, err := m.conn.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(buf[:n]))
	}
}

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func abstractName() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "@larder-sdnotify-test-" + hex.EncodeToString(b)
}

func TestNew(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	cases := []struct {
		name     string
		env      func(string) string
		nilOK    bool // a nil notifier, no error
		err      bool
		watchdog time.Duration
	}{
		{"not under systemd", env(), true, false, 0},
		{"watchdog without a socket", env("WATCHDOG_USEC", "1000000"), true, false, 0},
		{"path", env("NOTIFY_SOCKET", "/run/systemd/notify"), false, false, 0},
		{"abstract", env("NOTIFY_SOCKET", "@/org/freedesktop/systemd1/notify"), false, false, 0},
		{"relative", env("NOTIFY_SOCKET", "notify"), false, true, 0},
		{"vsock", env("NOTIFY_SOCKET", "vsock:2:1234"), false, true, 0},
		{"watchdog", env("NOTIFY_SOCKET", "/n", "WATCHDOG_USEC", "30000000"), false, false, 15 * time.Second},
		{"watchdog for this pid", env("NOTIFY_SOCKET", "/n", "WATCHDOG_USEC", "2000", "WATCHDOG_PID", self), false, false, time.Millisecond},
		{"watchdog for another pid", env("NOTIFY_SOCKET", "/n", "WATCHDOG_USEC", "2000", "WATCHDOG_PID", "1"), false, false, 0},
		{"bad watchdog", env("NOTIFY_SOCKET", "/n", "WATCHDOG_USEC", "30s"), false, true, 0},
		{"zero watchdog", env("NOTIFY_SOCKET", "/n", "WATCHDOG_USEC", "0"), false, true, 0},
	}
	for _, c := range cases {
		n, err := New(c.env)
		switch {
		case c.err:
			if err == nil {
				t.Errorf("%s: no error", c.name)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.nilOK != (n == nil):
			t.Errorf("%s: notifier %v", c.name, n)
		case n.WatchdogInterval() != c.watchdog:
			t.Errorf("%s: watchdog every %v, want %v", c.name, n.WatchdogInterval(), c.watchdog)
		}
	}
}

func TestSend(t *testing.T) {
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), abstractName()} {
		m := listen(t, name)
		n, err := New(env("NOTIFY_SOCKET", name))
		if err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			send func() error
			want string
		}{
			{func() error { return n.Ready("serving http://x\nand more") }, "READY=1\nSTATUS=serving http://x\n"},
			{func() error { return n.Status("busy") }, "STATUS=busy\n"},
			{func() error { return n.Send("WATCHDOG=1") }, "WATCHDOG=1\n"},
			{func() error { return n.Stopping("stopping") }, "STOPPING=1\nSTATUS=stopping\n"},
		}
		for _, s := range steps {
			if err := s.send(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got := m.next(t); got != s.want {
				t.Errorf("%s: got %q, want %q", name, got, s.want)
			}
		}
		if err := n.Send("STATUS=a\nREADY=1"); err == nil {
			t.Errorf("%s: a state with a newline was sent", name)
		}
		if got := m.queued(t); len(got) > 0 {
			t.Errorf("%s: more was sent: %q", name, got)
		}
	}
}

func TestNilNotifierSendsNothing(t *testing.T) {
	var n *Notifier
	if err := n.Ready("x"); err != nil {
		t.Error(err)
	}
	if err := n.Stopping("x"); err != nil {
		t.Error(err)
	}
	if n.WatchdogInterval() != 0 {
		t.Error("a nil notifier has a watchdog")
	}
	n.Watch(t.Context(), func(context.Context) error { t.Error("checked"); return nil }, func(error) {})
}

// TestWatchPingsOnlyWhileCheckPasses runs the watchdog through a sequence
// of checks, passing and failing, and counts the pings.
func TestWatchPingsOnlyWhileCheckPasses(t *testing.T) {
	name := abstractName()
	m := listen(t, name)
	n, err := New(env("NOTIFY_SOCKET", name, "WATCHDOG_USEC", "2000"))
	if err != nil {
		t.Fatal(err)
	}
	fail := errors.New("unhealthy")
	results := []error{nil, fail, fail, nil, nil, fail}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	calls := 0
	check := func(cctx context.Context) error {
		if _, ok := cctx.Deadline(); !ok {
			t.Error("the check has no deadline")
		}
		i := calls
		calls++
		if i == len(results) {
			cancel() // the service is stopping
			return context.Canceled
		}
		return results[i]
	}
	n.Watch(ctx, check, func(err error) { t.Errorf("ping failed: %v", err) })
	if calls != len(results)+1 {
		t.Fatalf("watch ran %d checks, want %d", calls, len(results)+1)
	}
	want := slices.Repeat([]string{"WATCHDOG=1\n"}, 3)
	if got := m.queued(t); !slices.Equal(got, want) {
		t.Errorf("pings: %q, want %q (one per passed check)", got, want)
	}
}

func TestWatchReportsFailedPings(t *testing.T) {
	n, err := New(env("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"), "WATCHDOG_USEC", "2000"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var failures []error
	n.Watch(ctx, func(context.Context) error { return nil }, func(err error) {
		failures = append(failures, err)
		cancel()
	})
	if len(failures) != 1 {
		t.Fatalf("failed was given %v, want one error", failures)
	}
}

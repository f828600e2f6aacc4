// Package sdnotify speaks systemd's notification protocol (sd_notify(3)):
// a service that systemd starts with Type=notify tells it, in datagrams
// sent to the unix socket that NOTIFY_SOCKET names, when it is ready
// (READY=1), what it is doing (STATUS=…) and that it is stopping
// (STOPPING=1); when the unit sets WatchdogSec=, it also says that it is
// alive (WATCHDOG=1) at least every WATCHDOG_USEC microseconds, or is
// restarted.
//
// It imports nothing of larder's.
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Notifier sends notifications to the service manager. A nil *Notifier,
// what New returns when no manager listens, sends nothing.
type Notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration // how often to send WATCHDOG=1; 0: never
}

// New returns the notifier that the environment asks for, read through
// getenv (os.Getenv): nil when NOTIFY_SOCKET is not set. NOTIFY_SOCKET is a
// path, or "@name" for a socket in the abstract namespace. The watchdog is
// on when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is this process.
func New(getenv func(string) string) (*Notifier, error) {
	socket := getenv("NOTIFY_SOCKET")
	if socket == "" {
		return nil, nil
	}
	if !strings.HasPrefix(socket, "/") && !strings.HasPrefix(socket, "@") {
		return nil, fmt.Errorf("NOTIFY_SOCKET %q: not a path or @name of a unix socket", socket)
	}
	n := &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}} // Go reads @ as abstract
	usec := getenv("WATCHDOG_USEC")
	if usec == "" {
		return n, nil
	}
	if pid := getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return n, nil // meant for another process of the service
	}
	us, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || us <= 0 {
		return nil, fmt.Errorf("WATCHDOG_USEC %q: not a positive number of microseconds", usec)
	}
	// Half the timeout, as sd_watchdog_enabled(3) advises, so that one
	// late ping does not get the service killed.
	n.watchdog = time.Duration(us) * time.Microsecond / 2
	return n, nil
}

// Send sends states, such as "READY=1" and "STATUS=serving", in one
// datagram. A state must not hold a newline.
func (n *Notifier) Send(states ...string) error {
	if n == nil {
		return nil
	}
	for _, s := range states {
		if strings.ContainsRune(s, '\n') {
			return fmt.Errorf("notify: state %q holds a newline", s)
		}
	}
	// A socket per message, as sd_notify does: it reaches a manager that
	// was restarted (and bound its socket again) meanwhile.
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notify %s: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(states, "\n") + "\n")); err != nil {
		return fmt.Errorf("notify %s: %w", n.addr.Name, err)
	}
	return nil
}

// Ready says that the service is ready, with status as its STATUS.
func (n *Notifier) Ready(status string) error {
	return n.Send("READY=1", "STATUS="+oneLine(status))
}

// Status says what the service is doing.
func (n *Notifier) Status(status string) error { return n.Send("STATUS=" + oneLine(status)) }

// Stopping says that the service is stopping, with status as its STATUS.
func (n *Notifier) Stopping(status string) error {
	return n.Send("STOPPING=1", "STATUS="+oneLine(status))
}

// WatchdogInterval is how often Watch pings the watchdog: half of
// WATCHDOG_USEC, or 0 when there is no watchdog for this process.
func (n *Notifier) WatchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// Watch sends WATCHDOG=1 every WatchdogInterval until ctx ends, each time
// only if check passes: a service whose check keeps failing is restarted
// by the manager once WATCHDOG_USEC passes without a ping. check gets half
// an interval to answer, and reports its failures itself; a ping that
// cannot be sent is given to failed. Without a watchdog Watch returns at
// once.
func (n *Notifier) Watch(ctx context.Context, check func(context.Context) error, failed func(error)) {
	every := n.WatchdogInterval()
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, every/2)
		err := check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if err := n.Send("WATCHDOG=1"); err != nil {
				failed(err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// oneLine keeps status to its first line: a newline would start another
// state.
func oneLine(status string) string {
	line, _, _ := strings.Cut(status, "\n")
	return line
}

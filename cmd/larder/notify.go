package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/larder-cache/larder/internal/sdnotify"
)

// serviceManager tells systemd, when it runs serve as a Type=notify
// service, how serve is doing: READY=1 once the server answers its health
// check, WATCHDOG=1 while it goes on answering it (when the unit sets
// WatchdogSec=), and STOPPING=1 when it shuts down. Without NOTIFY_SOCKET
// it does nothing.
type serviceManager struct {
	n      *sdnotify.Notifier
	log    *slog.Logger
	health func(context.Context) error
	status string // what STATUS says while serving
	// unhealthy is set while the health check fails; only the watchdog's
	// goroutine uses it.
	unhealthy bool

	stop     context.CancelFunc
	stopped  chan struct{}
	stopOnce sync.Once
}

// readyRetry is how often the server's health is checked until it is
// ready.
const readyRetry = 50 * time.Millisecond

// startServiceManager starts telling the service manager about a server
// that serves on ln, status being what it serves. It waits in the
// background for the server's first answer to its health check, then sends
// READY=1 and keeps the watchdog fed.
func startServiceManager(n *sdnotify.Notifier, log *slog.Logger, ln net.Listener, useTLS bool, status string) *serviceManager {
	ctx, stop := context.WithCancel(context.Background())
	m := &serviceManager{n: n, log: log, health: healthCheck(ln.Addr(), useTLS), status: status,
		stop: stop, stopped: make(chan struct{})}
	if n == nil {
		close(m.stopped)
		return m
	}
	go func() {
		defer close(m.stopped)
		if !m.awaitReady(ctx) {
			return
		}
		log.Info("told the service manager larder is ready", "watchdog_interval", n.WatchdogInterval().String())
		n.Watch(ctx, m.check, func(err error) { log.Warn("watchdog", "err", err) })
	}()
	return m
}

// awaitReady sends READY=1 once the health check passes, and reports
// whether it did before ctx ended.
func (m *serviceManager) awaitReady(ctx context.Context) bool {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := m.health(cctx)
		cancel()
		if err == nil {
			if err := m.n.Ready(m.status); err != nil {
				m.log.Error("tell the service manager larder is ready", "err", err)
			}
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(readyRetry):
		}
	}
}

// check is the watchdog's check: the health check, whose failures and
// recovery are logged and shown in the service's status.
func (m *serviceManager) check(ctx context.Context) error {
	err := m.health(ctx)
	switch {
	case err != nil && !m.unhealthy:
		m.log.Error("health check failed: the watchdog is not told larder is alive", "err", err)
		_ = m.n.Status("health check failing: " + err.Error())
	case err == nil && m.unhealthy:
		m.log.Info("health check passes again")
		_ = m.n.Status(m.status)
	}
	m.unhealthy = err != nil
	return err
}

// stopping stops feeding the watchdog and tells the service manager, once,
// that the server is stopping.
func (m *serviceManager) stopping() {
	m.stopOnce.Do(func() {
		m.stop()
		<-m.stopped
		if err := m.n.Stopping("stopping"); err != nil {
			m.log.Error("tell the service manager larder is stopping", "err", err)
		}
	})
}

// healthCheck returns a check that GETs /_larder/health from the server
// listening at addr, over a new connection each time, so that it passes
// only while the server accepts connections and answers as it does to
// any monitor. A wildcard address is reached on the loopback.
func healthCheck(addr net.Addr, useTLS bool) func(context.Context) error {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + "/_larder/health"
	client := &http.Client{Transport: &http.Transport{
		Proxy:             nil, // never through a proxy the environment names
		DisableKeepAlives: true,
		// The server checks itself: its certificate need not name the
		// loopback address.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

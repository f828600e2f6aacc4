package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/larder-cache/larder/internal/app"
	"github.com/larder-cache/larder/internal/buildinfo"
	"github.com/larder-cache/larder/internal/coalesce"
	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/connlimit"
	"github.com/larder-cache/larder/internal/nixhttp"
	"github.com/larder-cache/larder/internal/plainhttp"
	"github.com/larder-cache/larder/internal/s3api"
	"github.com/larder-cache/larder/internal/sdnotify"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/web"
)

// serveCmd runs the server until SIGINT or SIGTERM.
type serveCmd struct{ noFlags }

func (serveCmd) run(ctx context.Context, e *env, _ []string) error {
	notify, err := sdnotify.New(os.Getenv)
	if err != nil {
		return err
	}
	log := app.NewLogger(e.cfg, e.stderr)
	log.Info("starting", "version", buildinfo.Version(), "commit", buildinfo.Commit(),
		"go", runtime.Version(), "platform", runtime.GOOS+"/"+runtime.GOARCH)
	a, err := app.Open(ctx, e.cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.ClaimForServing(ctx); err != nil {
		return err
	}
	cfg := a.Config

	tcp, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ln := limitConnections(tcp, a)
	nix := nixhttp.New(a.Service, nixhttp.Options{
		Logger:      a.Log.With("component", "http"),
		BodyTimeout: time.Duration(cfg.BodyTimeout),
		PublicURL:   config.Redact("public_url", cfg.PublicURL),
		Metrics:     a.Metrics,
	})
	s3 := s3api.New(a.Service, s3api.Options{
		Logger:      a.Log.With("component", "s3"),
		Region:      cfg.S3Region,
		Domain:      cfg.S3Domain,
		Metrics:     a.Metrics,
		BodyTimeout: time.Duration(cfg.BodyTimeout),
	})
	dash, err := web.New(a.Service, web.Options{
		Logger:    a.Log.With("component", "web"),
		Metrics:   a.Metrics,
		PublicURL: config.Redact("public_url", cfg.PublicURL),
		TLS:       cfg.TLSCert != "",
	})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           frontEnds(nix, s3, dash, a.Metrics.Handler()),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	tuneGC(a)
	if cfg.DebugListen != "" {
		if err := serveDebug(cfg.DebugListen, a); err != nil {
			return err
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		a.Run(runCtx)
	}()
	// Stopped before the stores close (a.Close, deferred above), so that
	// the reads recorded since the last flush are written.
	defer func() { cancel(); <-ran }()

	if err := printWelcome(ctx, e.stdout, a); err != nil {
		return err
	}
	a.Log.Info("serving", "listen", ln.Addr().String(), "url", config.Redact("public_url", cfg.PublicURL), "data", cfg.Data)

	var shutdown func(context.Context) error = srv.Shutdown
	serve := func() error { return srv.Serve(ln) }
	switch {
	case cfg.TLSCert != "":
		// Coalesced under TLS: HTTP/2 answers many streams at once, and
		// would otherwise write each answer in a record and a system call
		// of its own.
		serve = func() error { return srv.ServeTLS(coalesce.NewListener(ln), cfg.TLSCert, cfg.TLSKey) }
	case cfg.FastLookups:
		plain := plainhttp.New(srv.Handler, srv, plainhttp.Options{Logger: a.Log.With("component", "http"),
			ReadHeaderTimeout: srv.ReadHeaderTimeout, IdleTimeout: srv.IdleTimeout, MaxHeaderBytes: srv.MaxHeaderBytes,
			Quick: nix})
		serve, shutdown = func() error { return plain.Serve(ln) }, plain.Shutdown
	}
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	sm := startServiceManager(notify, a.Log.With("component", "systemd"), ln, cfg.TLSCert != "",
		"serving "+config.Redact("public_url", cfg.PublicURL))
	defer sm.stopping()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sm.stopping()
	a.Log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	shutCtx, done := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
	defer done()
	if err := shutdown(shutCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shut down: %w", err)
	}
	a.Log.Info("stopped")
	return nil
}

// metricsPath is where the server serves its Prometheus metrics: under
// /_larder/, which no cache name can take.
const metricsPath = "/_larder/metrics"

// frontEnds serves both protocols and the dashboard on one listener: a
// request signed for S3 goes to the S3 API; the dashboard's pages (under
// /_larder/ui/, and / when a browser asks for it) to the dashboard;
// anything else is the Nix binary cache protocol, but for the metrics.
// Path-style S3 keys and substituter URLs are the same strings.
func frontEnds(nix, s3, dash, metrics http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == metricsPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) && !s3api.Is(r) {
			metrics.ServeHTTP(w, r)
			return
		}
		switch {
		case s3api.Is(r):
			s3.ServeHTTP(w, r)
		case web.Is(r):
			dash.ServeHTTP(w, r)
		default:
			nix.ServeHTTP(w, r)
		}
	})
}

// printWelcome tells the operator how to use the server: the substituter
// URLs and keys of its caches, the nix.conf lines, and a push command.
func printWelcome(ctx context.Context, w io.Writer, a *app.App) error {
	caches, err := a.Service.ListCaches(ctx)
	if err != nil {
		return userError(err)
	}
	base := config.Redact("public_url", a.Config.PublicURL)
	host := base
	if u, err := url.Parse(base); err == nil {
		host = u.Hostname()
	}
	fmt.Fprintf(w, "larder is serving %s (data in %s)\n", base, a.Config.Data)
	if a.Initialised {
		fmt.Fprintf(w, "First start: created the cache main and an admin token in %s\n", a.Config.AdminTokenPath())
	}
	var first *store.Cache
	for i, c := range caches {
		vis := "public"
		if c.Private {
			vis = "private"
		}
		fmt.Fprintf(w, "\ncache %s (%s): %s/%s\n  public key: %s\n", c.Name, vis, base, c.Name, c.PublicKey)
		if first == nil {
			first = &caches[i]
		}
	}
	if first == nil {
		fmt.Fprintln(w, "\nThere are no caches yet: larder cache create NAME")
		return nil
	}
	fmt.Fprintf(w, `
To substitute from %[1]s, add to nix.conf:
  extra-substituters = %[2]s/%[1]s
  extra-trusted-public-keys = %[3]s

To push, give Nix a token through a netrc file and copy a closure:
  printf 'machine %[4]s\nlogin larder\npassword %%s\n' "$(cat %[5]s)" > larder.netrc
  nix copy --netrc-file "$PWD/larder.netrc" --to '%[2]s/%[1]s' "$(nix-build '<nixpkgs>' -A hello)"
`, first.Name, base, first.PublicKey, host, a.Config.AdminTokenPath())
	return nil
}

// limitConnections bounds the connections ln keeps open to max_connections,
// answering those past it over plain HTTP with a 503 that names the
// setting, and exports the count. A few more come in from the loopback:
// the watchdog's health check (see healthCheck) must pass while the server
// is full but working, or systemd would restart a server under load.
func limitConnections(ln net.Listener, a *app.App) net.Listener {
	opts := connlimit.Options{Logger: a.Log.With("component", "http"), Refused: a.Metrics.ConnectionRefused,
		Spare: loopbackSpare, Exempt: isLoopback}
	if a.Config.TLSCert == "" {
		opts.Answer = connlimit.HTTPAnswer(a.Config.MaxConnections, "max_connections")
	}
	l := connlimit.New(ln, a.Config.MaxConnections, opts)
	a.Metrics.Connections(l.Open)
	return l
}

// loopbackSpare is how many connections from the loopback are let in past
// max_connections.
const loopbackSpare = 8

func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// serveDebug serves Go's profiling endpoints on their own listener, apart
// from the caches.
func serveDebug(addr string, a *app.App) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("debug listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	a.Log.Warn("serving profiling endpoints", "listen", ln.Addr().String())
	go func() { _ = http.Serve(ln, mux) }()
	return nil
}

// gcAllowance is about how much garbage the server lets build up between
// collections once its presence index is large.
const gcAllowance = 24 << 20

// tuneGC lowers the garbage collector's target when the presence index is
// large. The index lives as long as the process and holds no pointers, so
// it costs a collection almost nothing to mark; but the Go runtime lets
// garbage grow as large as the live heap, which at ten million paths
// would add the index's size again to the resident memory. Unless GOGC is
// set, the target is lowered so that garbage stays near gcAllowance.
func tuneGC(a *app.App) {
	if os.Getenv("GOGC") != "" {
		return
	}
	idx := a.Service.IndexBytes()
	if idx <= 2*gcAllowance {
		return
	}
	pct := max(10, int(100*gcAllowance/idx))
	debug.SetGCPercent(pct)
	a.Log.Info("tuned the garbage collector to the presence index", "index_bytes", idx, "gc_percent", pct)
}

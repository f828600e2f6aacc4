// Package app assembles larder from a configuration: it opens the stores the
// configuration names, builds the service on them, and sets up a new data
// directory on first use. Every command (the server and the CLI) goes
// through Open, so they all see the same data in the same way.
//
// This is the one package that chooses store implementations.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/chunk"
	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/metrics"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// App is an assembled larder.
type App struct {
	Config  config.Config
	Log     *slog.Logger
	Meta    store.MetaStore
	Blobs   store.BlobStore
	Service *service.Service
	// Metrics are the server's; the service records collections in them.
	Metrics *metrics.Metrics
	// Initialised is set when Open set up a new installation: it created the
	// cache main and wrote an admin token to Config.AdminTokenPath().
	Initialised bool

	meta  metaStore
	blobs blobStore
	lock  *os.File // the data directory's serve.lock, held while serving
}

// Open opens the stores of cfg (which must be validated) and the service on
// them. On an installation without caches and tokens it creates the cache
// main and an admin token for every cache, written to admin-token (0600).
func Open(ctx context.Context, cfg config.Config, log *slog.Logger) (*App, error) {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	meta, err := openMeta(ctx, cfg)
	if err != nil {
		return nil, err
	}
	blobs, err := openBlobs(ctx, cfg)
	if err != nil {
		meta.Close()
		return nil, err
	}
	m, b := stack(cfg, meta.MetaStore, blobs.BlobStore)
	mx := metrics.New()
	svc, err := service.New(ctx, service.Options{
		Metrics: mx,
		Meta:    m, Blobs: b, Logger: log.With("component", "service"),
		Limits:     Limits(cfg),
		KeyHost:    keyHost(),
		HeldTTL:    time.Duration(cfg.HeldTTL),
		GCInterval: time.Duration(cfg.GCInterval),
		GCGrace:    time.Duration(cfg.GCGrace),

		HistoryInterval: time.Duration(cfg.HistoryInterval),
		Upstream: service.UpstreamOptions{
			Timeout:     time.Duration(cfg.UpstreamTimeout),
			NegativeTTL: time.Duration(cfg.UpstreamNegativeTTL),
			Recheck:     time.Duration(cfg.UpstreamRecheck),
		},
		Chunking: service.ChunkOptions{
			Enabled:    cfg.Chunking,
			Chunk:      chunk.Options{Average: int64(cfg.ChunkSize)},
			MinNarSize: int64(cfg.ChunkMinNarSize),
			PackSize:   int64(cfg.PackSize),
		},
		// Every command starts from it; only the server's Run writes it.
		SnapshotPath: filepath.Join(cfg.Data, "presence.snapshot"),
	})
	if err != nil {
		meta.Close()
		return nil, err
	}
	a := &App{Config: cfg, Log: log, Meta: m, Blobs: b, Service: svc, Metrics: mx, meta: meta, blobs: blobs}
	if err := a.initialise(ctx); err != nil {
		meta.Close()
		return nil, err
	}
	return a, nil
}

// Limits returns the service limits a configuration sets.
func Limits(cfg config.Config) service.Limits {
	return service.Limits{
		MaxNarInfoSize: int64(cfg.MaxNarInfoSize),
		MaxSignatures:  cfg.MaxSignatures,
		MaxUploadSize:  int64(cfg.MaxUploadSize),
		MaxNarSize:     int64(cfg.MaxNarSize),
		MaxFileSize:    int64(cfg.MaxFileSize),
		MaxRatio:       cfg.MaxDecompressionRatio,
		RatioFloor:     int64(cfg.DecompressionFloor),

		MaxDecoderWindow:  int64(cfg.MaxDecoderWindow),
		DecoderMemory:     int64(cfg.DecoderMemory),
		DecoderMemoryWait: time.Duration(cfg.DecoderMemoryWait),
	}
}

// initialise sets up a new installation: the cache main and an admin token.
func (a *App) initialise(ctx context.Context) error {
	caches, err := a.Service.ListCaches(ctx)
	if err != nil {
		return err
	}
	tokens, err := a.Service.ListTokens(ctx)
	if err != nil {
		return err
	}
	if len(caches) > 0 || len(tokens) > 0 {
		return nil
	}
	_, token, err := a.Service.Bootstrap(ctx)
	if service.ReasonOf(err) == service.ReasonCacheExists {
		return nil // another replica, starting at the same time, set it up
	}
	if err != nil {
		return fmt.Errorf("set up new data directory: %w", err)
	}
	if err := writeSecret(a.Config.AdminTokenPath(), token+"\n"); err != nil {
		return err
	}
	a.Initialised = true
	a.Log.Info("set up new data directory", "dir", a.Config.Data, "cache", "main", "admin_token", a.Config.AdminTokenPath())
	return nil
}

// writeSecret writes a file readable by its owner only, atomically.
func writeSecret(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err == nil {
		_, err = io.WriteString(tmp, content)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

var errLocked = errors.New("another larder serve is using this data directory")

// ClaimForServing prepares this process to serve. With the embedded stores
// it takes a lock on the data directory that a second server cannot get,
// and then reclaims every temporary file an interrupted upload left behind,
// since no other process can be writing one. With shared stores any number
// of replicas serve at once: leftovers are reclaimed only once they are
// old enough that no live upload can own them.
func (a *App) ClaimForServing(ctx context.Context) error {
	if a.meta.shared && a.blobs.local == nil {
		return a.reclaim(ctx, staleUpload)
	}
	path := filepath.Join(a.Config.Data, "serve.lock")
	lock, err := lockFile(path)
	if err != nil {
		if errors.Is(err, errLocked) {
			return fmt.Errorf("%s: %w", a.Config.Data, err)
		}
		return err
	}
	a.lock = lock
	return a.reclaim(ctx, 0)
}

// staleUpload is how long an upload may stay unfinished before its
// leftovers are reclaimed, when other replicas may be writing.
const staleUpload = time.Hour

func (a *App) reclaim(ctx context.Context, olderThan time.Duration) error {
	n, err := a.blobs.reclaim(ctx, olderThan)
	if err != nil {
		return fmt.Errorf("reclaim leftovers of interrupted uploads: %w", err)
	}
	if n > 0 {
		a.Log.Info("reclaimed leftovers of interrupted uploads", "count", n)
	}
	return nil
}

// Run does the server's background work until ctx ends: it keeps the
// service in step with other processes (woken at once by stores that
// notify) and reclaims the leftovers of uploads a crash interrupted.
func (a *App) Run(ctx context.Context) {
	served := make(chan struct{})
	go func() {
		defer close(served)
		a.Service.Run(ctx, time.Duration(a.Config.SyncInterval))
	}()
	defer func() { <-served }() // its last flush of reads needs the stores open
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.reclaim(ctx, staleUpload); err != nil {
				a.Log.Error("reclaim", "err", err)
			}
		}
	}
}

// Close releases the stores, and the data directory if the app claimed it
// for serving.
func (a *App) Close() error {
	err := a.Meta.Close()
	if a.lock != nil {
		a.lock.Close()
	}
	return err
}

// keyHost is the host part of the names of new signing keys.
func keyHost() string {
	h, err := os.Hostname()
	if err != nil {
		return "larder"
	}
	h = strings.ToLower(h)
	h = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return -1
	}, h)
	if h == "" {
		return "larder"
	}
	return h
}

// NewLogger returns the logger the configuration asks for, writing to w.
func NewLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/limit"
	"github.com/larder-cache/larder/internal/store/local"
	"github.com/larder-cache/larder/internal/store/postgres"
	"github.com/larder-cache/larder/internal/store/retry"
	"github.com/larder-cache/larder/internal/store/s3blob"
	"github.com/larder-cache/larder/internal/store/sqlite"
)

// metaStore is a MetaStore as opened, with what the app needs to know of it.
type metaStore struct {
	store.MetaStore
	shared bool // other processes on other machines may use it (PostgreSQL)
}

// openMeta opens the metadata store the configuration names. The choice is
// an explicit switch on the URL's scheme.
func openMeta(ctx context.Context, cfg config.Config) (metaStore, error) {
	u := cfg.MetaURL()
	switch u.Scheme {
	case "sqlite":
		path, err := config.LocalPath(u)
		if err != nil {
			return metaStore{}, fmt.Errorf("meta: %w", err)
		}
		// The database holds the caches' signing keys: readable by its
		// owner only. SQLite gives its -wal and -shm files the same mode.
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return metaStore{}, fmt.Errorf("create database directory: %w", err)
		}
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o600); err == nil {
			f.Close()
		}
		m, err := sqlite.Open(ctx, path)
		if err != nil {
			return metaStore{}, fmt.Errorf("open database %s: %w", path, err)
		}
		return metaStore{MetaStore: m}, nil
	case "postgres", "postgresql":
		m, err := postgres.Open(ctx, u.String())
		if err != nil {
			return metaStore{}, fmt.Errorf("open database %s: %w", config.Redact("meta", u.String()), err)
		}
		return metaStore{MetaStore: m, shared: true}, nil
	}
	return metaStore{}, fmt.Errorf("meta: unsupported scheme %q", u.Scheme)
}

// blobStore is a BlobStore as opened, with its way of reclaiming what
// interrupted uploads left behind.
type blobStore struct {
	store.BlobStore
	local *local.Store // set for the local directory store
	// reclaim removes leftovers of uploads interrupted longer than
	// olderThan ago, and reports how many.
	reclaim func(ctx context.Context, olderThan time.Duration) (int, error)
}

// openBlobs opens the blob store the configuration names, by an explicit
// switch on the URL's scheme.
func openBlobs(ctx context.Context, cfg config.Config) (blobStore, error) {
	u := cfg.BlobsURL()
	switch u.Scheme {
	case "file":
		dir, err := config.LocalPath(u)
		if err != nil {
			return blobStore{}, fmt.Errorf("blobs: %w", err)
		}
		b, err := local.Open(dir)
		if err != nil {
			return blobStore{}, fmt.Errorf("open blob store %s: %w", dir, err)
		}
		return blobStore{BlobStore: b, local: b, reclaim: func(_ context.Context, d time.Duration) (int, error) {
			return b.Reclaim(d)
		}}, nil
	case "s3":
		b, err := s3blob.Open(ctx, u)
		if err != nil {
			return blobStore{}, fmt.Errorf("open blob store %s: %w", config.Redact("blobs", u.String()), err)
		}
		return blobStore{BlobStore: b, reclaim: b.Reclaim}, nil
	}
	return blobStore{}, fmt.Errorf("blobs: unsupported scheme %q", u.Scheme)
}

// stack wraps the stores in what every backend gets, in one place: a limit
// on the blob operations running at once, and retries of reads that failed
// for a transient reason (each retry queues for a slot again).
func stack(cfg config.Config, meta store.MetaStore, blobs store.BlobStore) (store.MetaStore, store.BlobStore) {
	return retry.Meta(meta, retry.Default), retry.Blobs(limit.Blobs(blobs, cfg.BlobConcurrency), retry.Default)
}

// Stores are a configuration's stores opened on their own, without the
// service and without setting anything up: for maintenance commands.
type Stores struct {
	Meta  store.MetaStore
	Blobs store.BlobStore
	meta  metaStore
}

// Close releases the stores.
func (s *Stores) Close() error { return s.meta.Close() }

// OpenStores opens the stores of cfg (which must be validated), applying
// pending schema migrations, and nothing else.
//
// Opening the blob store reaches it (an S3 bucket is checked), so a command
// that needs only the metadata opens that alone: see MigrateMeta.
func OpenStores(ctx context.Context, cfg config.Config) (*Stores, error) {
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
	return &Stores{Meta: m, Blobs: b, meta: meta}, nil
}

// MigrateMeta applies pending schema migrations to the metadata store of
// cfg (which must be validated). It opens nothing else, so the blob store
// need not be reachable.
func MigrateMeta(ctx context.Context, cfg config.Config) error {
	meta, err := openMeta(ctx, cfg)
	if err != nil {
		return err
	}
	return meta.Close()
}

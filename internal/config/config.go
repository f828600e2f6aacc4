// Package config owns larder's configuration: its defaults, the TOML file,
// LARDER_* environment variables and command-line flags, applied in that
// order, and the validation that runs before anything starts.
//
// Every setting is one field of Config. Its toml tag names it in the file;
// the environment variable is LARDER_ followed by the upper-cased name, and
// the flag is the name with dashes for underscores. The help tag documents it
// for flags and the README alike. Nothing else in larder reads the
// environment for settings.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config holds every setting of larder.
type Config struct {
	Data      string `toml:"data" help:"data directory: SQLite database, blobs and admin-token"`
	Blobs     string `toml:"blobs" help:"where NAR files and other blobs go: file:///DIR or s3://BUCKET/PREFIX?endpoint=URL&region=R (default file://DATA/blobs)"`
	Meta      string `toml:"meta" help:"where metadata goes: sqlite:///FILE or postgres://USER@HOST/DB (default sqlite://DATA/larder.db)"`
	Listen    string `toml:"listen" help:"address to listen on (host:port)"`
	PublicURL string `toml:"public_url" help:"URL clients reach larder at, used in printed instructions (default http://LISTEN)"`
	TLSCert   string `toml:"tls_cert" help:"PEM certificate file; with tls_key, serve HTTPS"`
	TLSKey    string `toml:"tls_key" help:"PEM private key file of tls_cert"`

	S3Region string `toml:"s3_region" help:"the only region S3 requests may be signed for (default: any)"`
	S3Domain string `toml:"s3_domain" help:"base domain for virtual-host style S3 requests (CACHE.DOMAIN); default: path style only"`

	LogLevel  string `toml:"log_level" help:"log level: debug, info, warn or error"`
	LogFormat string `toml:"log_format" help:"log format: text or json"`

	MaxNarInfoSize        ByteSize `toml:"max_narinfo_size" help:"largest narinfo accepted, or kept once signatures are merged into it"`
	MaxSignatures         int      `toml:"max_signatures" help:"most signatures a narinfo keeps, besides the cache's own"`
	MaxUploadSize         ByteSize `toml:"max_upload_size" help:"largest compressed NAR accepted"`
	MaxNarSize            ByteSize `toml:"max_nar_size" help:"largest uncompressed NAR accepted"`
	MaxFileSize           ByteSize `toml:"max_file_size" help:"largest listing, log, realisation or debuginfo file accepted"`
	MaxDecompressionRatio float64  `toml:"max_decompression_ratio" help:"largest NarSize/FileSize ratio once past decompression_ratio_floor (0: no limit)"`
	DecompressionFloor    ByteSize `toml:"decompression_ratio_floor" help:"uncompressed bytes a NAR may reach before max_decompression_ratio applies"`

	MaxDecoderWindow  ByteSize `toml:"max_decoder_window" help:"largest window (zstd, brotli) or dictionary (xz) a NAR upload may need to be decompressed"`
	DecoderMemory     ByteSize `toml:"decoder_memory" help:"memory the decompressors of all NAR uploads may hold at once; uploads past it wait"`
	DecoderMemoryWait Duration `toml:"decoder_memory_wait" help:"how long an upload waits for decoder memory before it is answered 503"`

	FastLookups bool `toml:"fast_lookups" help:"answer narinfo lookups on the plain-HTTP listener with fasthttp, and hand every other request to net/http (false: net/http only)"`

	MaxConnections int `toml:"max_connections" help:"most connections the server keeps open; past it a new one is answered 503 over plain HTTP, closed over TLS (0: no limit)"`

	BodyTimeout     Duration `toml:"body_timeout" help:"how long an upload may send nothing before it is abandoned"`
	ShutdownTimeout Duration `toml:"shutdown_timeout" help:"how long a stopping server waits for requests in flight"`
	SyncInterval    Duration `toml:"sync_interval" help:"how often the server picks up changes made by other processes"`
	HeldTTL         Duration `toml:"held_narinfo_ttl" help:"how long a narinfo uploaded over S3 before its NAR waits for it"`

	GCInterval Duration `toml:"gc_interval" help:"how often the server collects garbage (0s: never; larder gc runs one now)"`
	GCGrace    Duration `toml:"gc_grace" help:"how long anything recently pushed, fetched or uploaded is kept whatever the policy"`

	HistoryInterval Duration `toml:"history_interval" help:"how often the history of each cache (size, lookups, hits) is sampled for the dashboard"`

	UpstreamTimeout     Duration `toml:"upstream_timeout" help:"how long a lookup at a cache's upstreams may take, all of them together; past it larder answers from what it has"`
	UpstreamNegativeTTL Duration `toml:"upstream_negative_ttl" help:"how long an upstream's answer that it lacks a path is remembered"`
	UpstreamRecheck     Duration `toml:"upstream_recheck" help:"how long an upstream-only path goes before its upstream is asked again whether it still holds it"`

	Chunking        bool     `toml:"chunking" help:"store NAR files as content-defined chunks, each chunk once, and serve them as zstd (false: keep each file whole, as uploaded)"`
	ChunkSize       ByteSize `toml:"chunk_size" help:"average size of a chunk, a power of two from 16KiB to 4MiB; changing it makes new chunks unlike the stored ones"`
	ChunkMinNarSize ByteSize `toml:"chunk_min_nar_size" help:"NARs smaller than this stay whole"`
	PackSize        ByteSize `toml:"pack_size" help:"size the blobs that hold new chunks are filled to"`

	BlobConcurrency int `toml:"blob_concurrency" help:"most uploads, and most other calls, running against the blob store at once"`

	DebugListen string `toml:"debug_listen" help:"address for Go's profiling endpoints, /debug/pprof/ (empty: none; keep it on localhost)"`
}

// Default returns the configuration larder runs with when nothing is set.
func Default() Config {
	return Config{
		Data:                  "larder-data",
		Listen:                "127.0.0.1:8080",
		LogLevel:              "info",
		LogFormat:             "text",
		MaxNarInfoSize:        1 << 20,
		MaxSignatures:         16,
		MaxUploadSize:         32 << 30,
		MaxNarSize:            32 << 30,
		MaxFileSize:           64 << 20,
		MaxDecompressionRatio: 1000,
		DecompressionFloor:    64 << 20,
		MaxDecoderWindow:      64 << 20,
		DecoderMemory:         256 << 20,
		DecoderMemoryWait:     Duration(30 * time.Second),
		MaxConnections:        4096,
		BodyTimeout:           Duration(time.Minute),
		ShutdownTimeout:       Duration(30 * time.Second),
		SyncInterval:          Duration(2 * time.Second),
		HeldTTL:               Duration(time.Hour),
		BlobConcurrency:       64,
		GCInterval:            Duration(time.Hour),
		GCGrace:               Duration(time.Hour),
		HistoryInterval:       Duration(5 * time.Minute),
		UpstreamTimeout:       Duration(time.Second),
		UpstreamNegativeTTL:   Duration(time.Minute),
		UpstreamRecheck:       Duration(24 * time.Hour),
		Chunking:              true,
		FastLookups:           true,
		ChunkSize:             128 << 10,
		ChunkMinNarSize:       256 << 10,
		PackSize:              32 << 20,
	}
}

// LoadFile applies the settings of the TOML file at path to c. Keys the file
// sets that Config does not know are an error, so a typo does not pass
// silently.
func (c *Config) LoadFile(path string) error {
	md, err := toml.DecodeFile(path, c)
	if err != nil {
		return fmt.Errorf("read config file %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("read config file %s: unknown setting %s", path, strings.Join(keys, ", "))
	}
	return nil
}

// Validate checks that c can be used, and fills in values derived from
// others (PublicURL from Listen).
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Data == "" {
		bad("data: must not be empty")
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		bad("listen: %q is not host:port", c.Listen)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls_cert and tls_key: set both or neither")
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Listen
		if c.TLSCert != "" {
			c.PublicURL = "https://" + c.Listen
		}
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("public_url: %q is not an http(s) URL", Redact("public_url", c.PublicURL))
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level: %q is not debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("log_format: %q is not text or json", c.LogFormat)
	}
	if c.MaxSignatures < 1 {
		bad("max_signatures: must be at least 1")
	}
	for name, v := range map[string]ByteSize{
		"max_narinfo_size": c.MaxNarInfoSize, "max_upload_size": c.MaxUploadSize,
		"max_nar_size": c.MaxNarSize, "max_file_size": c.MaxFileSize,
	} {
		if v <= 0 {
			bad("%s: must be positive", name)
		}
	}
	switch {
	case c.MaxDecoderWindow < 1<<10:
		bad("max_decoder_window: must be at least 1KiB, the smallest zstd window")
	case c.DecoderMemory < c.MaxDecoderWindow:
		bad("decoder_memory: must be at least max_decoder_window (%s)", c.MaxDecoderWindow)
	case c.DecoderMemoryWait <= 0:
		bad("decoder_memory_wait: must be positive")
	}
	if c.MaxConnections < 0 {
		bad("max_connections: must not be negative (0: no limit)")
	}
	if c.BlobConcurrency < 1 {
		bad("blob_concurrency: must be at least 1")
	}
	if c.MaxDecompressionRatio < 0 || math.IsNaN(c.MaxDecompressionRatio) {
		// NaN fails every comparison, so it would turn the check off.
		bad("max_decompression_ratio: must be a number, not negative (0: no limit)")
	}
	if c.GCInterval < 0 || c.GCGrace <= 0 {
		bad("gc_interval must not be negative and gc_grace must be positive")
	}
	if c.HistoryInterval < Duration(time.Second) || c.HistoryInterval > Duration(time.Hour) {
		bad("history_interval: must be from 1s to 1h")
	}
	if c.BodyTimeout <= 0 || c.ShutdownTimeout <= 0 || c.SyncInterval <= 0 || c.HeldTTL <= 0 {
		bad("body_timeout, shutdown_timeout, sync_interval and held_narinfo_ttl must be positive")
	}
	if n := int64(c.ChunkSize); n < 16<<10 || n > 4<<20 || n&(n-1) != 0 {
		bad("chunk_size must be a power of two from 16KiB to 4MiB")
	}
	if c.ChunkMinNarSize < 0 || c.PackSize < 1<<20 || c.PackSize > 1<<30 {
		bad("chunk_min_nar_size must not be negative, and pack_size must be from 1MiB to 1GiB")
	}
	if c.UpstreamTimeout <= 0 || c.UpstreamNegativeTTL <= 0 || c.UpstreamRecheck <= 0 {
		bad("upstream_timeout, upstream_negative_ttl and upstream_recheck must be positive")
	}
	if c.Blobs != "" {
		u, err := url.Parse(c.Blobs)
		switch {
		case err != nil || (u.Scheme != "file" && u.Scheme != "s3") || (u.Scheme == "s3" && u.Host == ""):
			bad("blobs: %q is not file:///DIR or s3://BUCKET/PREFIX?endpoint=…", Redact("blobs", c.Blobs))
		case u.Scheme == "file":
			if _, err := LocalPath(u); err != nil {
				bad("blobs: %v", err)
			}
		}
	}
	if c.Meta != "" {
		u, err := url.Parse(c.Meta)
		switch {
		case err != nil || (u.Scheme != "sqlite" && u.Scheme != "postgres" && u.Scheme != "postgresql"):
			bad("meta: %q is not sqlite:///FILE or postgres://…", Redact("meta", c.Meta))
		case u.Scheme == "sqlite":
			if _, err := LocalPath(u); err != nil {
				bad("meta: %v", err)
			}
		}
	}
	if c.S3Domain != "" && (strings.Contains(c.S3Domain, "/") || strings.HasPrefix(c.S3Domain, ".")) {
		bad("s3_domain: %q is not a domain name", c.S3Domain)
	}
	return errors.Join(errs...)
}

// BlobsURL is where blobs go: Blobs, or the embedded directory under Data.
func (c *Config) BlobsURL() *url.URL {
	if c.Blobs != "" {
		u, _ := url.Parse(c.Blobs) // checked by Validate
		return u
	}
	return &url.URL{Scheme: "file", Path: filepath.Join(c.Data, "blobs")}
}

// MetaURL is where metadata goes: Meta, or the embedded SQLite database
// under Data.
func (c *Config) MetaURL() *url.URL {
	if c.Meta != "" {
		u, _ := url.Parse(c.Meta) // checked by Validate
		return u
	}
	return &url.URL{Scheme: "sqlite", Path: filepath.Join(c.Data, "larder.db")}
}

// AdminTokenPath is the file the first start writes the admin token to.
func (c *Config) AdminTokenPath() string { return filepath.Join(c.Data, "admin-token") }

// Load builds a Config the way every larder command does: defaults, then the
// file named by configPath (or LARDER_CONFIG), then the environment. Flags
// are applied by the caller afterwards (see Flags), then Validate.
func Load(configPath string, environ []string) (Config, error) {
	c := Default()
	if configPath == "" {
		configPath = lookupEnv(environ, "LARDER_CONFIG")
	}
	if configPath != "" {
		if err := c.LoadFile(configPath); err != nil {
			return c, err
		}
	}
	if err := c.ApplyEnv(environ); err != nil {
		return c, err
	}
	return c, nil
}

func lookupEnv(environ []string, name string) string {
	if v := lookupEnvOK(environ, name); v != nil {
		return *v
	}
	return ""
}

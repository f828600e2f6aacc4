package nixhttp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/larder-cache/larder/internal/app"
	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/nixhttp"
	"github.com/larder-cache/larder/internal/store"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/ulikunitz/xz"
)

// env is larder assembled as the server runs it (SQLite and a local blob
// directory in a temporary data directory) behind an httptest server.
type env struct {
	t       testing.TB
	app     *app.App
	meta    store.MetaStore
	blobs   store.BlobStore
	blobDir string
	srv     *httptest.Server
	h       *nixhttp.Handler
	admin   string // a token with admin rights on every cache
	logs    *logBuffer
}

func newEnv(t testing.TB, tweak ...func(*config.Config)) *env {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.MaxDecompressionRatio = 50
	cfg.DecompressionFloor = 1 << 20
	for _, f := range tweak {
		f(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	a, err := app.Open(t.Context(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	tok, err := os.ReadFile(cfg.AdminTokenPath())
	if err != nil {
		t.Fatal(err)
	}
	h := nixhttp.New(a.Service, nixhttp.Options{Logger: log, PublicURL: "http://larder.test", Metrics: a.Metrics})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{t: t, app: a, meta: a.Meta, blobs: a.Blobs, blobDir: cfg.BlobsURL().Path,
		srv: srv, h: h, admin: strings.TrimSpace(string(tok)), logs: logs}
}

// do sends a request and returns the response with its body read.
func (e *env) do(method, path, token string, body []byte, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, e.srv.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, string(b)
}

// expect sends a request and fails unless the status is want.
func (e *env) expect(want int, method, path, token string, body []byte, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	resp, b := e.do(method, path, token, body, hdr...)
	if resp.StatusCode != want {
		e.t.Fatalf("%s %s: status %d, want %d; body: %s", method, path, resp.StatusCode, want, b)
	}
	return resp, b
}

// snapshot is what the stores hold, to check that a refused request changed
// nothing.
type snapshot struct {
	narinfos int
	blobs    []string
	nars     int
}

func (e *env) snapshot() snapshot {
	e.t.Helper()
	ctx := e.t.Context()
	keys, err := e.meta.ListNarInfoKeys(ctx, 0, 1<<30)
	if err != nil {
		e.t.Fatal(err)
	}
	var s snapshot
	s.narinfos = len(keys)
	err = e.blobs.List(ctx, "", func(b store.BlobInfo) error {
		s.blobs = append(s.blobs, b.Key)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) mustUnchanged(before snapshot) {
	e.t.Helper()
	after := e.snapshot()
	if after.narinfos != before.narinfos || strings.Join(after.blobs, ",") != strings.Join(before.blobs, ",") {
		e.t.Fatalf("store changed: before %+v, after %+v", before, after)
	}
	tmp, _ := filepath.Glob(filepath.Join(e.blobDir, "tmp~", "*"))
	if len(tmp) > 0 {
		e.t.Fatalf("temporary files left behind: %v", tmp)
	}
}

// path is a store path with its NAR file, as nix copy would upload it.
type path struct {
	StorePath   string
	Hash        string // hash part
	NAR         []byte
	File        []byte // NAR compressed
	Compression string
	Refs        []string
}

// URL is the cache-relative key of the NAR file.
func (p *path) URL() string { return "nar/" + nix32sha(p.File) + ".nar" + extOf(p.Compression) }

// NarInfo renders the narinfo nix copy would upload.
func (p *path) NarInfo() string {
	return fmt.Sprintf("StorePath: %s\nURL: %s\nCompression: %s\nFileHash: sha256:%s\nFileSize: %d\nNarHash: sha256:%s\nNarSize: %d\nReferences: %s\n",
		p.StorePath, p.URL(), p.Compression, nix32sha(p.File), len(p.File), nix32sha(p.NAR), len(p.NAR), strings.Join(p.Refs, " "))
}

func extOf(method string) string {
	switch method {
	case "xz":
		return ".xz"
	case "zstd":
		return ".zst"
	}
	return ""
}

// newPath makes a store path whose NAR holds one regular file with content.
func newPath(t testing.TB, name string, content []byte, compression string) *path {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, content, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, f); err != nil {
		t.Fatal(err)
	}
	digest := make([]byte, 20)
	_, _ = rand.Read(digest)
	hash := nixbase32.EncodeToString(digest)
	return &path{
		StorePath:   "/nix/store/" + hash + "-" + name,
		Hash:        hash,
		NAR:         buf.Bytes(),
		File:        compress(t, compression, buf.Bytes()),
		Compression: compression,
	}
}

func compress(t testing.TB, method string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch method {
	case "none":
		return data
	case "zstd":
		w, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case "xz":
		w, err := xz.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("no compressor for %s in tests", method)
	}
	return buf.Bytes()
}

func nix32sha(b []byte) string {
	sum := sha256.Sum256(b)
	return nixbase32.EncodeToString(sum[:])
}

// push uploads p to the cache as nix copy does: the NAR, then the narinfo.
func (e *env) push(cache string, p *path) {
	e.t.Helper()
	e.expect(http.StatusCreated, "PUT", "/"+cache+"/"+p.URL(), e.admin, p.File)
	e.expect(http.StatusCreated, "PUT", "/"+cache+"/"+p.Hash+".narinfo", e.admin, []byte(p.NarInfo()))
}

// logBuffer collects the server's log, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

package service_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/local"
	"github.com/larder-cache/larder/internal/store/sqlite"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// midway is a body that calls fn once half of data has been read.
type midway struct {
	data []byte
	off  int
	fn   func()
}

func (m *midway) Read(p []byte) (int, error) {
	if m.off >= len(m.data) {
		return 0, io.EOF
	}
	half := len(m.data) / 2
	if m.off == half && m.fn != nil {
		m.fn()
		m.fn = nil
	}
	end := len(m.data)
	if m.off < half {
		end = half
	}
	n := copy(p, m.data[m.off:end])
	m.off += n
	return n, nil
}

// raceEnv is a service with a short grace period and two caches, whose
// metadata store can be made to forget the claims of uploads.
type raceEnv struct {
	t            *testing.T
	svc          *service.Service
	meta         *forgetfulMeta
	blobs        string
	main, other  service.Cache
	nar          []byte
	narKey, hash string
}

// forgetfulMeta drops the claims of uploads when forget is set, as a claim
// that could not be renewed in time would be.
type forgetfulMeta struct {
	store.MetaStore
	forget bool
}

func (m *forgetfulMeta) ClaimNar(ctx context.Context, fileHash string, ttl time.Duration) (store.Nar, error) {
	if m.forget {
		n, err := m.MetaStore.GetNar(ctx, fileHash)
		if err == nil && n.Missing {
			return store.Nar{}, store.ErrNotFound
		}
		return n, err
	}
	return m.MetaStore.ClaimNar(ctx, fileHash, ttl)
}

func newRaceEnv(t *testing.T) *raceEnv {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlite.Open(t.Context(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := local.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	meta := &forgetfulMeta{MetaStore: db}
	svc, err := service.New(t.Context(), service.Options{Meta: meta, Blobs: blobs, Limits: testLimits, GCGrace: testGrace})
	if err != nil {
		t.Fatal(err)
	}
	e := &raceEnv{t: t, svc: svc, meta: meta, blobs: filepath.Join(dir, "blobs")}
	for _, name := range []string{"main", "other"} {
		if _, err := svc.CreateCache(t.Context(), service.CacheSpec{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	e.main, e.other = e.operate("main"), e.operate("other")
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, bytes.Repeat([]byte("raced "+randomHash()), 4000), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, f); err != nil {
		t.Fatal(err)
	}
	e.nar = buf.Bytes()
	sum := sha256.Sum256(e.nar)
	e.narKey = "nar/" + nixbase32.EncodeToString(sum[:]) + ".nar"
	e.hash = randomHash()
	return e
}

func (e *raceEnv) operate(name string) service.Cache {
	c, err := e.svc.Operate(e.t.Context(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *raceEnv) narInfo() []byte {
	fh := e.narKey[len("nar/") : len(e.narKey)-len(".nar")]
	return fmt.Appendf(nil, "StorePath: /nix/store/%s-raced\nURL: %s\nCompression: none\nNarHash: sha256:%s\nNarSize: %d\nReferences: \n",
		e.hash, e.narKey, fh, len(e.nar))
}

func (e *raceEnv) putNar(c service.Cache, body io.Reader) error {
	_, err := e.svc.PutObject(e.t.Context(), c, e.narKey, body, int64(len(e.nar)), service.ObjectMeta{})
	return err
}

func (e *raceEnv) putNarInfo(c service.Cache) error {
	key, _ := nixkey.Parse(e.hash + ".narinfo")
	_, err := e.svc.PutNarInfo(e.t.Context(), c, key, e.narInfo())
	return err
}

// orphanNar pushes the path to main, deletes its NAR file there, so that
// no cache links it, and waits until it is older than the grace period.
func (e *raceEnv) orphanNar() {
	e.t.Helper()
	if err := e.putNar(e.main, bytes.NewReader(e.nar)); err != nil {
		e.t.Fatal(err)
	}
	if err := e.putNarInfo(e.main); err != nil {
		e.t.Fatal(err)
	}
	if err := e.svc.DeleteObject(e.t.Context(), e.main, e.narKey); err != nil {
		e.t.Fatal(err)
	}
	time.Sleep(2 * tick)
}

// collect runs a collection and returns how many NAR files it deleted.
func (e *raceEnv) collect() int {
	e.t.Helper()
	r, err := e.svc.Collect(context.Background(), service.CollectOptions{})
	if err != nil {
		e.t.Error(err)
		return -1
	}
	return r[0].NarsDeleted
}

// served reads the NAR file from the cache as a client would and reports
// whether it is there, byte for byte.
func (e *raceEnv) served(c service.Cache) bool {
	ctx := e.t.Context()
	k, _ := nixkey.Parse(e.narKey)
	n, err := e.svc.Nar(ctx, c, k)
	if err != nil {
		return false
	}
	r, err := e.svc.ReadNar(ctx, c, n, 0, -1)
	if err != nil {
		return false
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	return err == nil && bytes.Equal(got, e.nar)
}

// TestUploadClaimsNarAgainstCollection: a NAR file no cache links any
// more, uploaded again to another cache while a collection runs in the
// middle of its body, is kept: the upload claimed it. The upload and its
// narinfo are accepted and the file is served.
func TestUploadClaimsNarAgainstCollection(t *testing.T) {
	t.Parallel()
	e := newRaceEnv(t)
	e.orphanNar()
	deleted := -1
	body := &midway{data: e.nar, fn: func() {
		time.Sleep(tick) // the upload outlasts the grace period
		deleted = e.collect()
	}}
	if err := e.putNar(e.other, body); err != nil {
		t.Fatalf("upload racing a collection: %v", err)
	}
	if deleted != 0 {
		t.Errorf("the collection deleted %d NAR files while one was being uploaded", deleted)
	}
	if err := e.putNarInfo(e.other); err != nil {
		t.Fatalf("narinfo after the raced upload: %v", err)
	}
	if !e.served(e.other) {
		t.Fatal("the raced NAR file is not served")
	}
	time.Sleep(2 * tick)
	if n := e.collect(); n != 0 || !e.served(e.other) {
		t.Fatalf("a later collection deleted %d NAR files; served: %v", n, e.served(e.other))
	}
}

// TestUploadOfCollectedNarRefused: should a collection delete the file
// all the same while its upload reads the body (a claim that could not be
// renewed), the upload is refused with a retryable error and links
// nothing, so the narinfo is refused too and nothing unservable is
// served; the upload done again stores the file.
func TestUploadOfCollectedNarRefused(t *testing.T) {
	t.Parallel()
	e := newRaceEnv(t)
	e.orphanNar()
	e.meta.forget = true
	deleted := -1
	body := &midway{data: e.nar, fn: func() { deleted = e.collect() }}
	err := e.putNar(e.other, body)
	if service.CodeOf(err) != service.CodeUnavailable {
		t.Fatalf("upload of a NAR file collected under it: %v, want a retryable refusal", err)
	}
	if deleted != 1 {
		t.Fatalf("the collection deleted %d NAR files, want 1 (the claim was forgotten)", deleted)
	}
	if err := e.putNarInfo(e.other); service.CodeOf(err) != service.CodeConflict {
		t.Fatalf("narinfo whose NAR upload was refused: %v, want a conflict", err)
	}
	if e.served(e.other) {
		t.Fatal("a NAR file whose upload was refused is served")
	}
	e.meta.forget = false
	if err := e.putNar(e.other, bytes.NewReader(e.nar)); err != nil {
		t.Fatalf("upload again: %v", err)
	}
	if err := e.putNarInfo(e.other); err != nil {
		t.Fatal(err)
	}
	if !e.served(e.other) {
		t.Fatal("the NAR file uploaded again is not served")
	}
}

// TestLostNarWithdrawn: a NAR file whose blob disappeared is answered as
// missing, with its narinfo, once a read finds it so, and an upload of
// the same file brings both back.
func TestLostNarWithdrawn(t *testing.T) {
	t.Parallel()
	e := newRaceEnv(t)
	if err := e.putNar(e.main, bytes.NewReader(e.nar)); err != nil {
		t.Fatal(err)
	}
	if err := e.putNarInfo(e.main); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.NarInfo(t.Context(), e.main, e.hash); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(e.blobs, "nar")); err != nil {
		t.Fatal(err)
	}
	if e.served(e.main) {
		t.Fatal("a NAR file without its blob is served")
	}
	k, _ := nixkey.Parse(e.narKey)
	if _, err := e.svc.Nar(t.Context(), e.main, k); service.CodeOf(err) != service.CodeNotFound {
		t.Fatalf("the lost NAR file is described: %v, want not found", err)
	}
	if _, err := e.svc.NarInfo(t.Context(), e.main, e.hash); service.CodeOf(err) != service.CodeNotFound {
		t.Fatalf("the narinfo of a lost NAR file: %v, want not found", err)
	}
	if err := e.putNar(e.main, bytes.NewReader(e.nar)); err != nil {
		t.Fatalf("upload the lost file again: %v", err)
	}
	if err := e.putNarInfo(e.main); err != nil {
		t.Fatalf("narinfo again: %v", err)
	}
	if !e.served(e.main) {
		t.Fatal("the NAR file uploaded again is not served")
	}
	if _, err := e.svc.NarInfo(t.Context(), e.main, e.hash); err != nil {
		t.Fatalf("the narinfo after the new upload: %v", err)
	}
}

// TestNarInfoOfLostNarNotServed: a narinfo whose NAR file's blob is gone
// is not served even before anything reads the NAR file: the lookup finds
// the blob missing and withdraws the file, so that the NAR file is
// answered as missing too.
func TestNarInfoOfLostNarNotServed(t *testing.T) {
	t.Parallel()
	e := newRaceEnv(t)
	if err := e.putNar(e.main, bytes.NewReader(e.nar)); err != nil {
		t.Fatal(err)
	}
	if err := e.putNarInfo(e.main); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(e.blobs, "nar")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.NarInfo(t.Context(), e.main, e.hash); service.CodeOf(err) != service.CodeNotFound {
		t.Fatalf("the narinfo of a NAR file whose blob is gone: %v, want not found", err)
	}
	k, _ := nixkey.Parse(e.narKey)
	if _, err := e.svc.Nar(t.Context(), e.main, k); service.CodeOf(err) != service.CodeNotFound {
		t.Fatalf("the lost NAR file, after its narinfo was looked up: %v, want not found", err)
	}
}

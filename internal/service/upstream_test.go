package service_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/narinfo"
	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/local"
	"github.com/larder-cache/larder/internal/store/sqlite"
	"github.com/larder-cache/larder/internal/testserver"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// fakeUpstream is a binary cache for the tests: narinfos signed with its
// key and NAR files, served from memory, counting the NAR files it sends.
type fakeUpstream struct {
	t    *testing.T
	key  narinfo.SecretKey
	pub  string
	srv  *httptest.Server
	mu   sync.Mutex
	file map[string][]byte
	// narGets counts the GETs of NAR files.
	narGets atomic.Int64
	// gate, if set, stops each NAR file after its first half until it is
	// closed.
	gate chan struct{}
	// short, if set, makes NAR files end early (with a Content-Length of
	// their FileSize).
	short bool
}

func newFakeUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	sec, pub, err := narinfo.GenerateKey("upstream.test-1")
	if err != nil {
		t.Fatal(err)
	}
	key, err := narinfo.ParseSecretKey(sec)
	if err != nil {
		t.Fatal(err)
	}
	u := &fakeUpstream{t: t, key: key, pub: pub, file: map[string][]byte{}}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.stop)
	return u
}

func (u *fakeUpstream) stop() {
	u.mu.Lock()
	if u.gate != nil {
		select {
		case <-u.gate:
		default:
			close(u.gate)
		}
	}
	u.mu.Unlock()
	u.srv.Close()
}

func (u *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	body, ok := u.file[r.URL.Path]
	gate, short := u.gate, u.short
	u.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/nar/") {
		_, _ = w.Write(body)
		return
	}
	u.narGets.Add(1)
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	half := len(body) / 2
	_, _ = w.Write(body[:half])
	w.(http.Flusher).Flush()
	if gate != nil {
		<-gate
	}
	if short {
		return
	}
	_, _ = w.Write(body[half:])
}

// upPath is a path of the fake upstream.
type upPath struct {
	hash, storePath, narKey string
	nar                     []byte
	ni                      *narinfo.NarInfo
}

// add adds a path with a NAR file of size random bytes, referring to
// refs (store paths), signed by the upstream's key after edit, if given,
// changed its narinfo; serve, if given, changes the NAR file it serves.
func (u *fakeUpstream) add(size int, refs []string, edit func(*narinfo.NarInfo), serve func([]byte) []byte) upPath {
	u.t.Helper()
	f := filepath.Join(u.t.TempDir(), "f")
	content := make([]byte, size)
	_, _ = rand.Read(content)
	if err := os.WriteFile(f, content, 0o644); err != nil {
		u.t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, f); err != nil {
		u.t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	h, _ := narinfo.ParseHash("sha256:" + nixbase32.EncodeToString(sum[:]))
	hash := randomHash()
	var refNames []string
	for _, r := range refs {
		refNames = append(refNames, filepath.Base(r))
	}
	ni := &narinfo.NarInfo{
		StorePath: "/nix/store/" + hash + "-up", URL: "nar/" + h.Nix32() + ".nar", Compression: "none",
		FileHash: h, FileSize: uint64(buf.Len()), NarHash: h, NarSize: uint64(buf.Len()), References: refNames,
	}
	if edit != nil {
		edit(ni)
	}
	ni.Sign(u.key)
	served := buf.Bytes()
	if serve != nil {
		served = serve(bytes.Clone(served))
	}
	u.mu.Lock()
	u.file["/"+hash+".narinfo"] = ni.Bytes()
	u.file["/"+ni.URL] = served
	u.mu.Unlock()
	return upPath{hash: hash, storePath: ni.StorePath, narKey: "nar/" + h.Nix32() + ".nar", nar: buf.Bytes(), ni: ni}
}

// remove makes the upstream forget a path.
func (u *fakeUpstream) remove(p upPath) {
	u.mu.Lock()
	delete(u.file, "/"+p.hash+".narinfo")
	u.mu.Unlock()
}

// upEnv is a service whose cache main has upstreams, with a writer token
// and a log the test reads.
type upEnv struct {
	t      *testing.T
	svc    *service.Service
	meta   store.MetaStore
	blobs  string
	log    *testserver.SyncBuffer
	writer string
}

func newUpEnv(t *testing.T, opts service.UpstreamOptions) *upEnv {
	t.Helper()
	dir := t.TempDir()
	meta, err := sqlite.Open(t.Context(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	blobs, err := local.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 500 * time.Millisecond
	}
	if opts.SpoolDir == "" {
		opts.SpoolDir = t.TempDir()
	}
	log := &testserver.SyncBuffer{}
	svc, err := service.New(t.Context(), service.Options{Meta: meta, Blobs: blobs, Limits: testLimits,
		Logger: slog.New(slog.NewTextHandler(log, nil)), Upstream: opts})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateCache(t.Context(), service.CacheSpec{Name: "main"}); err != nil {
		t.Fatal(err)
	}
	tok, _, err := svc.CreateToken(t.Context(), service.TokenSpec{Cache: "main", Perm: store.PermWrite})
	if err != nil {
		t.Fatal(err)
	}
	return &upEnv{t: t, svc: svc, meta: meta, blobs: filepath.Join(dir, "blobs"), log: log, writer: tok}
}

// setUpstreams gives main the upstreams, skipping and pulling through as
// said.
func (e *upEnv) setUpstreams(skip, pull bool, ups ...*fakeUpstream) {
	e.t.Helper()
	cfg := store.UpstreamConfig{Skip: skip, PullThrough: pull}
	for _, u := range ups {
		cfg.Upstreams = append(cfg.Upstreams, store.Upstream{URL: u.srv.URL, Keys: []string{u.pub}})
	}
	if err := e.svc.SetUpstream(e.t.Context(), "main", cfg); err != nil {
		e.t.Fatal(err)
	}
}

func (e *upEnv) cache() service.Cache {
	e.t.Helper()
	c, err := e.svc.Operate(e.t.Context(), "main")
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// usage returns the paths and bytes of main.
func (e *upEnv) usage() (int64, int64) {
	e.t.Helper()
	c, err := e.svc.GetCache(e.t.Context(), "main")
	if err != nil {
		e.t.Fatal(err)
	}
	paths, bytes, err := e.svc.CacheUsage(e.t.Context(), c)
	if err != nil {
		e.t.Fatal(err)
	}
	return paths, bytes
}

// blobFiles counts the NAR files in the blob store.
func (e *upEnv) blobFiles() int {
	e.t.Helper()
	n := 0
	_ = filepath.WalkDir(filepath.Join(e.blobs, "nar"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// readNar reads the NAR file a served narinfo names, as a reader would:
// from the cache if it holds it, else from its upstream.
func (e *upEnv) readNar(ctx context.Context, body []byte) ([]byte, error) {
	e.t.Helper()
	ni, err := narinfo.Parse(body)
	if err != nil {
		e.t.Fatalf("served narinfo: %v\n%s", err, body)
	}
	path, query, _ := strings.Cut(ni.URL, "?")
	key, err := nixkey.Parse(path)
	if err != nil {
		e.t.Fatal(err)
	}
	c := e.cache()
	if n, err := e.svc.Nar(ctx, c, key); err == nil {
		r, err := e.svc.ReadNar(ctx, c, n, 0, -1)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r)
	}
	u, err := e.svc.UpstreamNar(ctx, c, key, strings.TrimPrefix(query, "hash="))
	if err != nil {
		return nil, err
	}
	r, err := e.svc.ReadUpstreamNar(ctx, c, u, 0, -1)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// mustSigned fails the test unless body is a narinfo of p signed by the
// upstream and by the cache.
func (e *upEnv) mustSigned(body []byte, p upPath, u *fakeUpstream) {
	e.t.Helper()
	ni, err := narinfo.Parse(body)
	if err != nil {
		e.t.Fatalf("served narinfo: %v", err)
	}
	c, _ := e.svc.GetCache(e.t.Context(), "main")
	upKey, _ := narinfo.ParsePublicKey(u.pub)
	own, _ := narinfo.ParsePublicKey(c.PublicKey)
	if ni.StorePath != p.storePath || !ni.Verify([]narinfo.PublicKey{upKey}) || !ni.Verify([]narinfo.PublicKey{own}) {
		e.t.Fatalf("served narinfo of %s is not signed by both the upstream and the cache:\n%s", p.storePath, body)
	}
}

func TestUpstreamSkipOnWriterLookup(t *testing.T) {
	e := newUpEnv(t, service.UpstreamOptions{})
	u := newFakeUpstream(t)
	e.setUpstreams(true, false, u)
	p := u.add(1000, nil, nil, nil)
	other := u.add(1000, nil, nil, nil)
	ctx := t.Context()
	c := e.cache()
	// A reader of a cache that does not pull through is not told of it.
	if _, err := e.svc.NarInfoFor(ctx, c, other.hash, ""); service.CodeOf(err) != service.CodeNotFound {
		t.Fatalf("reader lookup of a path only the upstream holds: %v, want not found", err)
	}
	text, err := e.svc.NarInfoFor(ctx, c, p.hash, e.writer)
	body := text.Body
	if err != nil {
		t.Fatalf("writer lookup of a path the upstream holds: %v", err)
	}
	e.mustSigned(body, p, u)
	if !strings.Contains(string(body), "URL: "+p.narKey+"?hash="+p.hash+"\n") {
		t.Fatalf("served narinfo does not name its NAR file under the cache:\n%s", body)
	}
	// Recorded: present for every reader now, and served from the upstream.
	text, err = e.svc.NarInfoFor(ctx, c, p.hash, "")
	body = text.Body
	if err != nil {
		t.Fatalf("reader lookup of an upstream-only path: %v", err)
	}
	got, err := e.readNar(ctx, body)
	if err != nil || !bytes.Equal(got, p.nar) {
		t.Fatalf("NAR file of an upstream-only path: %d bytes, %v", len(got), err)
	}
	if paths, bytes := e.usage(); paths != 1 || bytes != 0 || e.blobFiles() != 0 {
		t.Fatalf("after serving an upstream-only path: %d paths, %d bytes, %d NAR files; want 1, 0, 0", paths, bytes, e.blobFiles())
	}
	res, err := e.svc.MissingPaths(ctx, c, []string{p.hash, other.hash}, false)
	if err != nil || len(res.Missing) != 1 || res.Missing[0] != other.hash || len(res.Upstream) != 1 || res.Upstream[0] != p.hash {
		t.Fatalf("missing paths (as a reader): %+v, %v", res, err)
	}
	// The dashboard shows it, with the upstream that holds it.
	d, err := e.svc.Path(ctx, c, p.hash)
	if err != nil || d.NarInfo.Upstream == "" || !slices.Contains(d.Fields, [2]string{"Upstream", d.NarInfo.Upstream}) ||
		!slices.Contains(d.Fields, [2]string{"StorePath", d.NarInfo.StorePath}) {
		t.Fatalf("dashboard of an upstream-only path: %+v, %v", d, err)
	}
}

func TestUpstreamSkipOnPut(t *testing.T) {
	e := newUpEnv(t, service.UpstreamOptions{})
	u := newFakeUpstream(t)
	e.setUpstreams(true, false, u)
	ctx := t.Context()
	c := e.cache()
	p := u.add(2000, nil, nil, nil)
	// Uploaded as nix copy does, NAR file first: the narinfo is taken as
	// upstream-only, and the NAR file's bytes are not the cache's.
	key, _ := nixkey.Parse(p.narKey)
	if _, err := e.svc.PutNar(ctx, c, key, bytes.NewReader(p.nar), int64(len(p.nar))); err != nil {
		t.Fatal(err)
	}
	nkey, _ := nixkey.Parse(p.hash + ".narinfo")
	created, err := e.svc.PutNarInfo(ctx, c, nkey, p.ni.Bytes())
	if err != nil || !created {
		t.Fatalf("put narinfo of a path the upstream holds: %v, %v", created, err)
	}
	if paths, bytes := e.usage(); paths != 1 || bytes != 0 {
		t.Fatalf("after an upload the upstream holds: %d paths, %d bytes; want 1 path, 0 bytes", paths, bytes)
	}
	res, _ := e.svc.MissingPaths(ctx, c, []string{p.hash}, true)
	if len(res.Missing) != 0 || len(res.Upstream) != 1 {
		t.Fatalf("missing paths after the upload: %+v", res)
	}
	// Another build of a path the upstream holds, with other contents,
	// and a path no upstream holds: both stored.
	q := u.add(1000, nil, nil, nil)
	rebuilt, own := u.add(3000, nil, nil, nil), u.add(4000, nil, nil, nil)
	rebuilt.ni.StorePath, rebuilt.hash = q.storePath, q.hash
	var stored int64
	for _, mine := range []upPath{rebuilt, own} {
		u.remove(own)
		key, _ := nixkey.Parse(mine.narKey)
		if _, err := e.svc.PutNar(ctx, c, key, bytes.NewReader(mine.nar), int64(len(mine.nar))); err != nil {
			t.Fatal(err)
		}
		mine.ni.Sigs = nil
		nkey, _ := nixkey.Parse(mine.hash + ".narinfo")
		if _, err := e.svc.PutNarInfo(ctx, c, nkey, mine.ni.Bytes()); err != nil {
			t.Fatalf("put narinfo of %s: %v", mine.ni.StorePath, err)
		}
		stored += int64(len(mine.nar))
	}
	if paths, bytes := e.usage(); paths != 3 || bytes != stored {
		t.Fatalf("after two uploads the upstream does not hold: %d paths, %d bytes; want 3 paths, %d bytes", paths, bytes, stored)
	}
	res, _ = e.svc.MissingPaths(ctx, c, []string{p.hash, q.hash, own.hash}, false)
	if len(res.Missing) != 0 || !sameStrings(res.Upstream, []string{p.hash}) {
		t.Fatalf("missing paths after the uploads: %+v, want p alone upstream-only", res)
	}
}

func TestUpstreamMissingPaths(t *testing.T) {
	e := newUpEnv(t, service.UpstreamOptions{})
	u := newFakeUpstream(t)
	e.setUpstreams(true, false, u)
	ctx := t.Context()
	c := e.cache()
	var ups, mine []string
	for range 20 {
		ups = append(ups, u.add(100, nil, nil, nil).hash)
		mine = append(mine, randomHash())
	}
	all := append(append([]string{}, ups...), mine...)
	res, err := e.svc.MissingPaths(ctx, c, all, false)
	if err != nil || len(res.Missing) != 40 || len(res.Upstream) != 0 {
		t.Fatalf("missing paths, asked by a reader: %d missing, %d upstream, %v; want 40, 0", len(res.Missing), len(res.Upstream), err)
	}
	res, err = e.svc.MissingPaths(ctx, c, all, true)
	if err != nil || !sameStrings(res.Missing, mine) || !sameStrings(res.Upstream, ups) {
		t.Fatalf("missing paths, asked by a writer: %+v, %v", res, err)
	}
	// Recorded: a reader is told the same now, from the database.
	res, err = e.svc.MissingPaths(ctx, c, all, false)
	if err != nil || !sameStrings(res.Missing, mine) || !sameStrings(res.Upstream, ups) {
		t.Fatalf("missing paths, asked by a reader afterwards: %+v, %v", res, err)
	}
}

func sameStrings(a, b []string) bool {
	x, y := append([]string{}, a...), append([]string{}, b...)
	if len(x) != len(y) {
		return false
	}
	seen := map[string]int{}
	for _, s := range x {
		seen[s]++
	}
	for _, s := range y {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestUpstreamPullThrough: readers of a cache that pulls through get a
// path only the upstream holds; eight at once make one download, and
// once it is stored the upstream is not needed.
func TestUpstreamPullThrough(t *testing.T) {
	e := newUpEnv(t, service.UpstreamOptions{})
	u := newFakeUpstream(t)
	e.setUpstreams(false, true, u)
	ctx := t.Context()
	c := e.cache()
	p := u.add(1<<20, nil, nil, nil)
	text, err := e.svc.NarInfoFor(ctx, c, p.hash, "")
	body := text.Body
	if err != nil {
		t.Fatalf("reader lookup in a cache that pulls through: %v", err)
	}
	e.mustSigned(body, p, u)
	u.mu.Lock()
	u.gate = make(chan struct{})
	u.mu.Unlock()
	var wg sync.WaitGroup
	results := make([][]byte, 8)
	errs := make([]error, 8)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = e.readNar(ctx, body) })
	}
	// A range of the file, asked while it arrives.
	key, _ := nixkey.Parse(p.narKey)
	un, err := e.svc.UpstreamNar(ctx, c, key, p.hash)
	if err != nil {
		t.Fatal(err)
	}
	var ranged []byte
	wg.Go(func() {
		r, err := e.svc.ReadUpstreamNar(ctx, c, un, 1000, 5000)
		if err != nil {
			errs[0] = err
			return
		}
		defer r.Close()
		ranged, _ = io.ReadAll(r)
	})
	for u.narGets.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the readers join the fetch
	u.mu.Lock()
	close(u.gate)
	u.gate = nil
	u.mu.Unlock()
	wg.Wait()
	for i := range results {
		if errs[i] != nil || !bytes.Equal(results[i], p.nar) {
			t.Fatalf("reader %d: %d bytes, %v", i, len(results[i]), errs[i])
		}
	}
	if !bytes.Equal(ranged, p.nar[1000:6000]) {
		t.Fatalf("the range read during the fetch: %d bytes, want bytes 1000 to 6000", len(ranged))
	}
	if n := u.narGets.Load(); n != 1 {
		t.Fatalf("9 concurrent readers made %d downloads from the upstream, want 1", n)
	}
	// Stored: served by the cache itself, with its own URL, with the
	// upstream gone.
	if paths, bytes := e.usage(); paths != 1 || bytes != int64(len(p.nar)) {
		t.Fatalf("after pulling through: %d paths, %d bytes; want 1, %d", paths, bytes, len(p.nar))
	}
	u.stop()
	text, err = e.svc.NarInfoFor(ctx, c, p.hash, "")
	body = text.Body
	if err != nil || strings.Contains(string(body), "?hash=") {
		t.Fatalf("narinfo once pulled through: %v\n%s", err, body)
	}
	e.mustSigned(body, p, u)
	if got, err := e.readNar(ctx, body); err != nil || !bytes.Equal(got, p.nar) {
		t.Fatalf("NAR file once pulled through, the upstream stopped: %d bytes, %v", len(got), err)
	}
	if !strings.Contains(e.log.String(), "NAR file pulled through") {
		t.Errorf("the log does not say the file was pulled through:\n%s", e.log.String())
	}
}

// TestUpstreamForged: an upstream that serves a NAR file other than its
// narinfo describes, or cuts it short, gets nothing stored or served: the
// readers' answers are cut before their last byte, and the log says why.
func TestUpstreamForged(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*narinfo.NarInfo)
		serve func([]byte) []byte
		short bool
		want  string
	}{
		{name: "tampered", serve: func(b []byte) []byte { b[len(b)-20] ^= 1; return b }, want: "sha256"},
		{name: "narhash", edit: func(ni *narinfo.NarInfo) { ni.NarHash, _ = narinfo.ParseHash("sha256:" + strings.Repeat("1", 52)) },
			want: "not the one its signed narinfo describes"},
		{name: "truncated", short: true, want: "NAR file from an upstream refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newUpEnv(t, service.UpstreamOptions{})
			u := newFakeUpstream(t)
			e.setUpstreams(false, true, u)
			u.short = tc.short
			ctx := t.Context()
			c := e.cache()
			p := u.add(100_000, nil, tc.edit, tc.serve)
			text, err := e.svc.NarInfoFor(ctx, c, p.hash, "")
			body := text.Body
			if err != nil {
				t.Fatalf("%v\n%s", err, e.log.String())
			}
			got, err := e.readNar(ctx, body)
			if err == nil || len(got) >= len(p.nar) {
				t.Fatalf("read of a forged NAR file: %d of %d bytes, %v; want it cut short with an error", len(got), len(p.nar), err)
			}
			if !strings.Contains(e.log.String(), "NAR file from an upstream refused") || !strings.Contains(e.log.String(), tc.want) {
				t.Fatalf("the log does not say the file was refused (%q):\n%s", tc.want, e.log.String())
			}
			if paths, bytes := e.usage(); paths != 0 || bytes != 0 || e.blobFiles() != 0 {
				t.Fatalf("after a forged NAR file: %d paths, %d bytes, %d NAR files; want none", paths, bytes, e.blobFiles())
			}
			if tc.short {
				return
			}
			// Its narinfo is not served any more either.
			if _, err := e.svc.NarInfoFor(ctx, c, p.hash, ""); service.CodeOf(err) != service.CodeNotFound {
				t.Fatalf("narinfo of a path whose NAR file was forged: %v, want not found", err)
			}
		})
	}
}

// TestUpstreamDeadWithinTimeout: an upstream that accepts connections and
// never answers makes no lookup slower than the timeout.
func TestUpstreamDeadWithinTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	const timeout = 500 * time.Millisecond
	e := newUpEnv(t, service.UpstreamOptions{Timeout: timeout})
	_, pub, _ := narinfo.GenerateKey("dead-1")
	if err := e.svc.SetUpstream(t.Context(), "main", store.UpstreamConfig{Skip: true, PullThrough: true,
		Upstreams: []store.Upstream{{URL: "http://" + l.Addr().String(), Keys: []string{pub}}}}); err != nil {
		t.Fatal(err)
	}
	c := e.cache()
	for i, tok := range []string{e.writer, "", e.writer} {
		start := time.Now()
		_, err := e.svc.NarInfoFor(t.Context(), c, randomHash(), tok)
		if took := time.Since(start); service.CodeOf(err) != service.CodeNotFound || took > timeout+time.Second {
			t.Fatalf("lookup %d with a dead upstream: %v after %v; want not found within %v", i, err, took, timeout)
		}
	}
	start := time.Now()
	res, err := e.svc.MissingPaths(t.Context(), c, []string{randomHash(), randomHash()}, true)
	if took := time.Since(start); err != nil || len(res.Missing) != 2 || took > timeout+time.Second {
		t.Fatalf("missing paths with a dead upstream: %+v, %v after %v", res, err, took)
	}
}

// TestUpstreamRecheck: upstream-only paths are asked of the upstream again
// as they age, and dropped once it lacks them.
func TestUpstreamRecheck(t *testing.T) {
	e := newUpEnv(t, service.UpstreamOptions{Recheck: time.Nanosecond, NegativeTTL: time.Nanosecond, PositiveTTL: time.Nanosecond})
	u := newFakeUpstream(t)
	e.setUpstreams(true, false, u)
	ctx := t.Context()
	c := e.cache()
	keep, gone := u.add(100, nil, nil, nil), u.add(100, nil, nil, nil)
	if res, err := e.svc.MissingPaths(ctx, c, []string{keep.hash, gone.hash}, true); err != nil || len(res.Upstream) != 2 {
		t.Fatalf("record two upstream-only paths: %+v, %v", res, err)
	}
	u.remove(gone)
	time.Sleep(1100 * time.Millisecond) // checks are kept to the second
	checked, dropped, err := e.svc.RecheckUpstream(ctx)
	if err != nil || checked != 2 || dropped != 1 {
		t.Fatalf("recheck: %d checked, %d dropped, %v; want 2 and 1", checked, dropped, err)
	}
	res, err := e.svc.MissingPaths(ctx, c, []string{keep.hash, gone.hash}, false)
	if err != nil || len(res.Missing) != 1 || res.Missing[0] != gone.hash {
		t.Fatalf("missing paths after the recheck: %+v, %v", res, err)
	}
	if !strings.Contains(e.log.String(), "upstream-only path dropped") {
		t.Errorf("the log does not say the path was dropped:\n%s", e.log.String())
	}
	// And one its upstream stops serving is dropped when it is read.
	u.remove(keep)
	if _, err := e.svc.NarInfoFor(ctx, c, keep.hash, ""); service.CodeOf(err) != service.CodeNotFound {
		t.Fatalf("lookup of an upstream-only path the upstream lost: %v", err)
	}
	if paths, _ := e.usage(); paths != 0 {
		t.Fatalf("paths after both are gone: %d, want 0", paths)
	}
}

// TestUpstreamSettings: what SetUpstream refuses.
func TestUpstreamSettings(t *testing.T) {
	e := newUpEnv(t, service.UpstreamOptions{})
	_, pub, _ := narinfo.GenerateKey("k-1")
	for _, tc := range []struct {
		ups  []store.Upstream
		want string
	}{
		{[]store.Upstream{{URL: "ftp://x", Keys: []string{pub}}}, "not an http:// or https:// URL"},
		{[]store.Upstream{{URL: "http://x"}}, "give the public key"},
		{[]store.Upstream{{URL: "http://x", Keys: []string{pub}}, {URL: "http://x/", Keys: []string{pub}}}, "given twice"},
	} {
		err := e.svc.SetUpstream(t.Context(), "main", store.UpstreamConfig{Upstreams: tc.ups, Skip: true})
		if service.CodeOf(err) != service.CodeInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetUpstream(%+v) = %v, want an invalid-request error saying %q", tc.ups, err, tc.want)
		}
	}
	if err := e.svc.SetUpstream(t.Context(), "nope", store.UpstreamConfig{}); service.CodeOf(err) != service.CodeNotFound {
		t.Errorf("SetUpstream of a missing cache: %v", err)
	}
}

package push_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/larder-cache/larder/internal/app"
	"github.com/larder-cache/larder/internal/client"
	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/nixhttp"
	"github.com/larder-cache/larder/internal/push"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// fakeStore is a Nix store of made-up paths, each a NAR of one file.
type fakeStore struct {
	nars   map[string][]byte
	broken map[string]bool // paths whose dump fails
}

func (f *fakeStore) PathInfo(context.Context, []string, bool) ([]push.PathInfo, error) {
	return nil, errors.New("not used")
}

func (f *fakeStore) Dump(_ context.Context, p string) (io.ReadCloser, error) {
	if f.broken[p] {
		return nil, fmt.Errorf("nix-store --dump %s: no such path", p)
	}
	return io.NopCloser(bytes.NewReader(f.nars[p])), nil
}

// narOf returns a NAR holding one regular file with content.
func narOf(content []byte) []byte {
	var b bytes.Buffer
	for _, s := range [][]byte{[]byte("nix-archive-1"), []byte("("), []byte("type"), []byte("regular"), []byte("contents"), content, []byte(")")} {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		b.Write(n[:])
		b.Write(s)
		b.Write(make([]byte, (8-len(s)%8)%8))
	}
	return b.Bytes()
}

// add makes a path of size random bytes referring to refs.
func (f *fakeStore) add(name string, size int, refs ...push.PathInfo) push.PathInfo {
	digest := make([]byte, 20)
	_, _ = rand.Read(digest)
	p := "/nix/store/" + nixbase32.EncodeToString(digest) + "-" + name
	content := make([]byte, size)
	_, _ = rand.Read(content)
	nar := narOf(content)
	f.nars[p] = nar
	sum := sha256.Sum256(nar)
	info := push.PathInfo{Path: p, NarHash: "sha256-" + base64.StdEncoding.EncodeToString(sum[:]), NarSize: int64(len(nar))}
	for _, r := range refs {
		info.References = append(info.References, r.Path)
	}
	return info
}

// recorder keeps the order in which narinfos arrive.
type recorder struct {
	mu       sync.Mutex
	narinfos []string // store path hashes
	parts    int
}

func newServer(t *testing.T) (*httptest.Server, string, *recorder) {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	a, err := app.Open(t.Context(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	tok, err := os.ReadFile(cfg.AdminTokenPath())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	h := nixhttp.New(a.Service, nixhttp.Options{Logger: log, PublicURL: "http://larder.test"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		switch {
		case r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, ".narinfo"):
			rec.narinfos = append(rec.narinfos, strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/main/"), ".narinfo"))
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/parts/"):
			rec.parts++
		}
		rec.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, strings.TrimSpace(string(tok)), rec
}

func hashOf(p push.PathInfo) string { return strings.TrimPrefix(p.Path, "/nix/store/")[:32] }

// TestPushOrder: a graph of paths goes up dependencies first, several at a
// time, the large ones in parts; a second push sends nothing; a path whose
// NAR cannot be read keeps what refers to it out of the cache, and the
// push says so.
func TestPushOrder(t *testing.T) {
	t.Parallel()
	srv, token, rec := newServer(t)
	c, err := client.New(srv.URL, client.Options{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	st := &fakeStore{nars: map[string][]byte{}, broken: map[string]bool{}}
	base := st.add("base", 100)
	big := st.add("big", 12<<20, base)
	var mids []push.PathInfo
	for i := range 6 {
		mids = append(mids, st.add(fmt.Sprint("mid", i), 2000, base, big))
	}
	top := st.add("top", 10, mids...)
	all := slices.Concat([]push.PathInfo{top}, mids, []push.PathInfo{big, base})
	res, err := push.Push(t.Context(), c, st, all, push.Options{Cache: "main", Jobs: 4, PartSize: 5 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Pushed != len(all) || res.Cached != 0 || res.Failed != 0 {
		t.Fatalf("result %+v", res)
	}
	order := map[string]int{}
	for i, h := range rec.narinfos {
		order[h] = i
	}
	for _, p := range all {
		for _, r := range p.References {
			if order[hashOf(push.PathInfo{Path: r})] >= order[hashOf(p)] {
				t.Errorf("%s arrived before %s, which it refers to", p.Path, r)
			}
		}
	}
	if rec.parts < 3 {
		t.Errorf("the 12 MiB path went in %d parts, want at least 3 of 5 MiB", rec.parts)
	}
	sent := len(rec.narinfos)
	res, err = push.Push(t.Context(), c, st, all, push.Options{Cache: "main"})
	if err != nil || res.Pushed != 0 || res.Cached != len(all) || len(rec.narinfos) != sent {
		t.Fatalf("second push: %+v %v, %d narinfos sent", res, err, len(rec.narinfos)-sent)
	}

	// A path that cannot be read: it and what refers to it stay out.
	bad := st.add("bad", 100)
	st.broken[bad.Path] = true
	user := st.add("user", 100, bad, base)
	fine := st.add("fine", 100, base)
	res, err = push.Push(t.Context(), c, st, []push.PathInfo{user, bad, fine, base}, push.Options{Cache: "main"})
	if err == nil || !strings.Contains(err.Error(), "lacks 2 of the 4 paths") {
		t.Fatalf("push with an unreadable path: %v", err)
	}
	if res.Pushed != 1 || res.Failed != 2 || res.Cached != 1 {
		t.Errorf("push with an unreadable path: %+v", res)
	}
	missing, _, err := c.Missing(t.Context(), "main", []string{hashOf(user), hashOf(bad), hashOf(fine)})
	if err != nil || !slices.Equal(missing, []string{hashOf(user), hashOf(bad)}) {
		t.Errorf("the cache lacks %v (%v), want user and bad", missing, err)
	}
}

// TestPushRefusesDamagedStore: a NAR whose hash is not what Nix recorded
// is not uploaded.
func TestPushRefusesDamagedStore(t *testing.T) {
	t.Parallel()
	srv, token, rec := newServer(t)
	c, _ := client.New(srv.URL, client.Options{Token: token})
	st := &fakeStore{nars: map[string][]byte{}}
	p := st.add("damaged", 100)
	st.nars[p.Path] = narOf([]byte("other bytes"))
	_, err := push.Push(t.Context(), c, st, []push.PathInfo{p}, push.Options{Cache: "main"})
	if err == nil || len(rec.narinfos) != 0 {
		t.Fatalf("push of a damaged path: %v, %d narinfos sent", err, len(rec.narinfos))
	}
}

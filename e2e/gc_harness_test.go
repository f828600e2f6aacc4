package e2e

// Helpers of the garbage collection tests.
//
// Stores keep times to the second, so a test makes paths old by giving the
// server a grace period of a second (--gc-grace 1s) and its cache a
// retention of a few seconds, and then waiting a little longer than that.
//
// A narinfo read (GET or HEAD) marks the path as used once the server
// flushes its reads, which it does every 10 s and before each collection it
// runs itself. Reading a narinfo to see whether it is still there would
// therefore keep it, so the tests watch what a cache holds through its S3
// listing, which is no read of the narinfos, and read narinfos only where
// that is meant as a use or no longer matters.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// setPolicy sets a cache's retention and size limit with larder cache
// update ("" leaves a setting as it is).
func (s *server) setPolicy(t *testing.T, cache, retention, maxSize string) {
	t.Helper()
	args := []string{"cache", "update", cache}
	if retention != "" {
		args = append(args, "--retention", retention)
	}
	if maxSize != "" {
		args = append(args, "--max-size", maxSize)
	}
	s.cli(t, args...)
}

// gcRow is one cache's line of larder gc's report.
type gcRow struct {
	Kept, Removed, Pinned int
	Notes                 string
}

// gcReport is what larder gc printed: a line per cache and the NAR files
// deleted.
type gcReport struct {
	Caches map[string]gcRow
	Nars   int // NAR files deleted (or, in a dry run, that would be)
	Blobs  int // orphaned blobs swept (or, in a dry run, that would be)
	Out    string
}

// collect runs larder gc with args (--dry-run, --cache NAME) on the
// server's stores and parses its report; it fails the test if the command
// fails.
func (s *server) collect(t *testing.T, args ...string) gcReport {
	t.Helper()
	out := s.cli(t, append([]string{"gc"}, args...)...)
	return parseGC(t, out)
}

func parseGC(t *testing.T, out string) gcReport {
	t.Helper()
	r := gcReport{Caches: map[string]gcRow{}, Out: out}
	ls := lines(out)
	if len(ls) < 2 || !strings.HasPrefix(ls[0], "CACHE") {
		t.Fatalf("larder gc printed no report:\n%s", out)
	}
	for _, l := range ls[1 : len(ls)-1] {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("larder gc report line %q has %d fields, want at least 6", l, len(f))
		}
		num := func(s string) int {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("larder gc report line %q: %q is not a number", l, s)
			}
			return n
		}
		r.Caches[f[0]] = gcRow{Kept: num(f[1]), Removed: num(f[3]), Pinned: num(f[5]), Notes: strings.Join(f[6:], " ")}
	}
	last := strings.Fields(ls[len(ls)-1])
	// "removed N NAR files … and M orphaned blobs …", or "would remove
	// up to …"
	count := func(word string) int {
		for i, w := range last {
			if w == word && i > 0 {
				if n, err := strconv.Atoi(last[i-1]); err == nil {
					return n
				}
			}
		}
		t.Fatalf("larder gc's last line %q does not count %s", ls[len(ls)-1], word)
		return 0
	}
	r.Nars, r.Blobs = count("NAR"), count("orphaned")
	return r
}

// cacheRow is one line of larder cache list.
type cacheRow struct {
	Name, Access, Paths, Size, Retention, MaxSize, LastGC, Upstreams, PublicKey string
}

// cacheList runs larder cache list and returns its lines by cache name.
func (s *server) cacheList(t *testing.T) map[string]cacheRow {
	t.Helper()
	out := s.cli(t, "cache", "list")
	table, _, _ := strings.Cut(out, "\n\n") // the upstreams of caches follow the table
	ls := lines(table)
	want := []string{"NAME", "ACCESS", "PATHS", "SIZE", "RETENTION", "MAX", "SIZE", "LAST", "GC", "UPSTREAMS", "PUBLIC", "KEY"}
	if len(ls) == 0 || strings.Join(strings.Fields(ls[0]), " ") != strings.Join(want, " ") {
		t.Fatalf("larder cache list has an unexpected header:\n%s", out)
	}
	m := map[string]cacheRow{}
	for _, l := range ls[1:] {
		f := strings.Fields(l)
		if len(f) != 9 {
			t.Fatalf("larder cache list line %q has %d fields, want 9", l, len(f))
		}
		m[f[0]] = cacheRow{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]}
	}
	return m
}

// parseSize reads a size as larder cache list prints it ("-", "512B",
// "1.5MiB"), to within the rounding of its one decimal.
func parseSize(t *testing.T, s string) float64 {
	t.Helper()
	if s == "-" {
		return 0
	}
	for i, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if v, ok := strings.CutSuffix(s, unit); ok {
			f, err := strconv.ParseFloat(v, 64)
			must(t, err)
			for range i + 1 {
				f *= 1024
			}
			return f
		}
	}
	v, ok := strings.CutSuffix(s, "B")
	n, err := strconv.Atoi(v)
	if !ok || err != nil {
		t.Fatalf("%q is not a size", s)
	}
	return float64(n)
}

// lister lists the keys of caches over the server's S3 API with a read
// key. Listing reads no narinfo, so it does not mark paths as used.
type lister struct {
	t   *testing.T
	c   *minio.Client
	srv *server
}

func (s *server) lister(t *testing.T, cache string) *lister {
	t.Helper()
	id, secret := s.s3Key(t, cache, "read")
	c, err := minio.New(s.Addr, &minio.Options{
		Creds:        credentials.NewStaticV4(id, secret, ""),
		Region:       s3Region,
		BucketLookup: minio.BucketLookupPath,
	})
	must(t, err)
	return &lister{t: t, c: c, srv: s}
}

// list returns the hashes of the narinfos and the keys of the NAR files a
// cache lists.
func (l *lister) list(cache string) (narinfos, nars map[string]bool) {
	l.t.Helper()
	narinfos, nars = map[string]bool{}, map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for o := range l.c.ListObjects(ctx, cache, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			l.t.Fatalf("list cache %s over S3: %v", cache, o.Err)
		}
		switch {
		case strings.HasSuffix(o.Key, ".narinfo"):
			narinfos[strings.TrimSuffix(o.Key, ".narinfo")] = true
		case strings.HasPrefix(o.Key, "nar/"):
			nars[o.Key] = true
		}
	}
	return narinfos, nars
}

// holds reports which of the store paths the cache lists a narinfo of.
func (l *lister) holds(cache string, paths ...string) map[string]bool {
	l.t.Helper()
	narinfos, _ := l.list(cache)
	m := map[string]bool{}
	for _, p := range paths {
		m[p] = narinfos[hashPart(p)]
	}
	return m
}

// narFiles counts the NAR files in the server's blob directory.
func (s *server) narFiles(t *testing.T) int {
	t.Helper()
	return s.countFiles(t, filepath.Join("blobs", "nar"))
}

// graphNode is a path of a test graph: its name, how many random bytes it
// holds, and the names of the nodes it refers to.
type graphNode struct {
	Name string
	Size int
	Refs []string
}

// buildGraph builds, with real Nix, one store path per node, named
// NAME-SEED, holding Size random bytes and the store paths of its Refs (so
// that Nix records them as references). Nodes must come after the nodes
// they refer to. It returns the store paths by node name.
func (n *nix) buildGraph(seed string, nodes ...graphNode) map[string]string {
	n.t.Helper()
	var b strings.Builder
	b.WriteString("let\n  sys = builtins.currentSystem;\n")
	b.WriteString("  mk = name: size: refs: derivation { name = \"${name}-" + seed + "\"; system = sys; builder = \"/bin/sh\";\n")
	b.WriteString("    args = [ \"-c\" \"/usr/bin/head -c ${toString size} /dev/urandom > $out; echo ${toString refs} >> $out\" ]; };\n")
	for _, nd := range nodes {
		fmt.Fprintf(&b, "  %s = mk %q %d [ %s ];\n", nd.Name, nd.Name, nd.Size, strings.Join(nd.Refs, " "))
	}
	b.WriteString("in {")
	for _, nd := range nodes {
		fmt.Fprintf(&b, " inherit %s;", nd.Name)
	}
	b.WriteString(" }\n")
	out := lines(n.run("nix-build", "--no-out-link", "-E", b.String()))
	paths := map[string]string{}
	for _, p := range out {
		name := strings.TrimSuffix(filepath.Base(p)[33:], "-"+seed)
		paths[name] = p
	}
	for _, nd := range nodes {
		p, ok := paths[nd.Name]
		if !ok {
			n.t.Fatalf("nix-build printed no path for %s: %v", nd.Name, out)
		}
		var want []string
		for _, r := range nd.Refs {
			want = append(want, paths[r])
		}
		refs := lines(n.run("nix-store", "--query", "--references", p))
		if !sameSet(refs, want) {
			n.t.Fatalf("%s refers to %v, want %v", p, refs, want)
		}
	}
	return paths
}

// closureOf returns the closure of a path in the local store.
func (n *nix) closureOf(path string) []string {
	n.t.Helper()
	return lines(n.run("nix-store", "--query", "--requisites", path))
}

// substitute substitutes path from the cache into a new, empty chroot store
// with the cache as the only substituter, trusting only its key, and checks
// that the store then holds exactly want (the path's closure) with the NAR
// hashes of the local store, each verified against its files.
func substitute(t *testing.T, srv *server, cache, key, path string, want []string) {
	t.Helper()
	n := needNix(t)
	chroot := chrootStore(t)
	out, errOut, err := n.try("nix-store", "--store", chroot, "-r", path,
		"--option", "substituters", srv.cacheURL(cache), "--option", "trusted-public-keys", key)
	if err != nil {
		t.Errorf("substituting %s from cache %s into an empty store failed: %v\n%s%s", path, cache, err, out, errOut)
		return
	}
	got := lines(n.run("nix-store", "--store", chroot, "--query", "--requisites", path))
	if !sameSet(got, want) {
		t.Errorf("substituting %s brought %v, want its closure %v", path, got, want)
	}
	local := n.narHashes("", want)
	for p, h := range n.narHashes(chroot, want) {
		if h != local[p] {
			t.Errorf("substituted %s has NAR hash %s, the original %s", p, h, local[p])
		}
	}
	n.run("nix", "store", "verify", "--store", chroot, "--no-trust", "-r", path)
}

// cannotSubstitute checks that path cannot be substituted from the cache
// into an empty store.
func cannotSubstitute(t *testing.T, srv *server, cache, key, path string) {
	t.Helper()
	n := needNix(t)
	chroot := chrootStore(t)
	if _, _, err := n.try("nix-store", "--store", chroot, "-r", path,
		"--option", "substituters", srv.cacheURL(cache), "--option", "trusted-public-keys", key); err == nil {
		t.Errorf("%s was substituted from cache %s, but should have been collected", path, cache)
	}
}

// goPath is a store path made by the test itself, uploaded over HTTP as
// nix copy would (NAR file first, uncompressed, then the narinfo): much
// faster than Nix when a test needs hundreds of paths.
type goPath struct {
	StorePath string
	Refs      []string // base names
	NAR       []byte
}

// newGoPath makes a path whose NAR holds one regular file of size random
// bytes, referring to refs.
func newGoPath(name string, size int, refs ...*goPath) *goPath {
	digest := make([]byte, 20)
	_, _ = rand.Read(digest)
	content := make([]byte, size)
	_, _ = rand.Read(content)
	p := &goPath{StorePath: "/nix/store/" + nixbase32.EncodeToString(digest) + "-" + name}
	for _, r := range refs {
		// A NAR refers to what it names; larder does not scan, but keep
		// the NAR honest.
		content = append(content, []byte(r.StorePath+"\n")...)
		p.Refs = append(p.Refs, filepath.Base(r.StorePath))
	}
	sort.Strings(p.Refs)
	var nar bytes.Buffer
	for _, s := range []string{"nix-archive-1", "(", "type", "regular", "contents", string(content), ")"} {
		nar.Write(narString(s))
	}
	p.NAR = nar.Bytes()
	return p
}

func (p *goPath) Hash() string { return hashPart(p.StorePath) }

func (p *goPath) narHash() string {
	sum := sha256.Sum256(p.NAR)
	return nixbase32.EncodeToString(sum[:])
}

// NarKey is the cache-relative key of the NAR file.
func (p *goPath) NarKey() string { return "nar/" + p.narHash() + ".nar" }

func (p *goPath) NarInfo() string {
	h := p.narHash()
	return fmt.Sprintf("StorePath: %s\nURL: %s\nCompression: none\nFileHash: sha256:%s\nFileSize: %d\nNarHash: sha256:%s\nNarSize: %d\nReferences: %s\n",
		p.StorePath, p.NarKey(), h, len(p.NAR), h, len(p.NAR), strings.Join(p.Refs, " "))
}

// uploadClient sends the uploads of goPaths; requests carry a deadline so
// that a stuck server fails the test instead of hanging it.
var uploadClient = &http.Client{Timeout: 30 * time.Second}

// put uploads body to a cache-relative key and returns the status and
// response body.
func (s *server) put(cache, key, token string, body []byte) (int, string, error) {
	req, err := http.NewRequest("PUT", s.cacheURL(cache)+"/"+key, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := uploadClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// tryPush uploads the NAR file and then the narinfo of each path, in order.
func (s *server) tryPush(cache, token string, paths ...*goPath) error {
	for _, p := range paths {
		for _, up := range []struct {
			key  string
			body []byte
		}{{p.NarKey(), p.NAR}, {p.Hash() + ".narinfo", []byte(p.NarInfo())}} {
			code, body, err := s.put(cache, up.key, token, up.body)
			if err != nil {
				return fmt.Errorf("PUT %s: %w", up.key, err)
			}
			if code != 200 && code != 201 {
				return fmt.Errorf("PUT %s of %s: %d %s", up.key, p.StorePath, code, body)
			}
		}
	}
	return nil
}

// pushGo uploads paths, several at a time; each must come after the paths
// it refers to within its own call, so callers push a layer at a time.
func (s *server) pushGo(t *testing.T, cache, token string, paths ...*goPath) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(paths); i += len(errs) {
				if err := s.tryPush(cache, token, paths[i]); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// checkNar fetches the NAR file of a path from the cache (which is no
// narinfo read) and checks that it is the path's NAR, byte for byte.
func (s *server) checkNar(t *testing.T, cache string, p *goPath) {
	t.Helper()
	code, body := httpDo(t, "GET", s.cacheURL(cache)+"/"+p.NarKey(), s.AdminToken, nil)
	if code != 200 {
		t.Errorf("%s is listed but its NAR file %s is not served: %d %s", p.StorePath, p.NarKey(), code, body)
		return
	}
	if !bytes.Equal([]byte(body), p.NAR) {
		t.Errorf("the NAR file of %s is not what was uploaded (%d bytes, want %d)", p.StorePath, len(body), len(p.NAR))
	}
}

// waitFor polls cond every interval until it holds, and fails the test if
// it does not within the deadline.
func waitFor(t *testing.T, what string, within, interval time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s", what, within)
		}
		time.Sleep(interval)
	}
}

// apiCache is an entry of GET /_larder/api/caches.
type apiCache struct {
	Name         string     `json:"name"`
	Private      bool       `json:"private"`
	PublicKey    string     `json:"publicKey"`
	Paths        int64      `json:"paths"`
	Bytes        int64      `json:"bytes"`
	RetentionSec int64      `json:"retentionSeconds"`
	MaxSize      int64      `json:"maxSize"`
	LastGC       *time.Time `json:"lastGC"`
}

// apiCaches returns GET /_larder/api/caches with token, by cache name.
func (s *server) apiCaches(t *testing.T, token string) map[string]apiCache {
	t.Helper()
	code, body := httpDo(t, "GET", s.URL+"/_larder/api/caches", token, nil)
	if code != 200 {
		t.Fatalf("GET /_larder/api/caches: %d %s", code, body)
	}
	var list []apiCache
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("GET /_larder/api/caches: %v\n%s", err, body)
	}
	m := map[string]apiCache{}
	for _, c := range list {
		m[c.Name] = c
	}
	return m
}

// collections counts the lines of a server's output that report a
// collection of a cache (not a dry run), and those that removed paths.
func collections(log string) (all, removing int) {
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, `msg="collected cache"`) || !strings.Contains(l, "dry_run=false") {
			continue
		}
		all++
		if !strings.Contains(l, " removed_paths=0 ") {
			removing++
		}
	}
	return all, removing
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/ulikunitz/xz"
)

// chunkFlags make small chunks, so that small trees are cut into many.
var chunkFlags = []string{"--chunk-size", "16KiB", "--chunk-min-nar-size", "32KiB"}

// versionTree adds to the store a tree of 30 text files of pseudo-random
// words and numbers (which xz and zstd compress alike), the same for the
// same seed except the files listed, whose text depends on the version
// too: successive versions of one package.
func (n *nix) versionTree(seed string, version int, changed ...int) string {
	n.t.Helper()
	dir := filepath.Join(n.home, fmt.Sprintf("pkg-%s-%d", seed, version))
	must(n.t, os.MkdirAll(filepath.Join(dir, "src"), 0o755))
	words := []string{"nix ", "store ", "path ", "larder ", "chunk ", "pack\n", "zstd ", "frame "}
	for i := range 30 {
		s := uint64(i)
		for _, c := range changed {
			if c == i {
				s += uint64(version) << 32
			}
		}
		r := rand.New(rand.NewPCG(s, uint64(len(seed))))
		var b strings.Builder
		for b.Len() < 40<<10 {
			b.WriteString(words[r.IntN(len(words))])
			fmt.Fprintf(&b, "%d ", r.IntN(100000))
		}
		b.WriteString(seed + "\n")
		must(n.t, os.WriteFile(filepath.Join(dir, "src", fmt.Sprintf("f%02d.txt", i)), []byte(b.String()), 0o644))
	}
	return strings.TrimSpace(n.run("nix-store", "--add", dir))
}

// waitPublished waits until the cache serves the narinfo of path with the
// given compression, and returns its fields.
func waitPublished(t *testing.T, url, path, compression string) map[string][]string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := httpDo(t, "GET", url+"/"+hashPart(path)+".narinfo", "", nil)
		f := narInfoFields(body)
		if code == 200 && len(f["Compression"]) == 1 && f["Compression"][0] == compression {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("the narinfo of %s is still %d %s", path, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dirBytes sums the sizes of the files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if os.IsNotExist(err) {
			return filepath.SkipDir
		}
		if err == nil && d.Type().IsRegular() {
			info, ierr := d.Info()
			if ierr != nil {
				return ierr
			}
			n += info.Size()
		}
		return err
	})
	must(t, err)
	return n
}

// TestChunkedVersions pushes two versions of a tree that differ in two of
// thirty files with real Nix, and checks that larder stores them as chunks
// (the second costing a fraction of the first), publishes them as zstd,
// serves ranges and the URL they were uploaded under, and that a machine
// with only larder as substituter gets both back, verified.
func TestChunkedVersions(t *testing.T) {
	t.Parallel()
	srv := startServer(t, chunkFlags...)
	n := needNix(t)
	seed := "chunk-" + randomHex(4)
	v1, v2 := n.versionTree(seed, 1), n.versionTree(seed, 2, 3, 17)
	paths := []string{v1, v2}
	hashes, files := n.narHashes("", paths), snapshot(t, paths)
	url := srv.cacheURL("main")
	pusher := n.withNetrc(srv.Host, srv.token(t, "main", "write"))

	pusher.run("nix", "copy", "--to", url+"?compression=xz", v1)
	f1 := waitPublished(t, url, v1, "zstd")
	packs1 := dirBytes(t, filepath.Join(srv.Data, "blobs", "pack"))
	pusher.run("nix", "copy", "--to", url+"?compression=xz", v2)
	f2 := waitPublished(t, url, v2, "zstd")
	packs2 := dirBytes(t, filepath.Join(srv.Data, "blobs", "pack"))
	if added := packs2 - packs1; added*4 > packs1 || packs1 == 0 {
		t.Errorf("the first version took %d bytes of packs, the second added %d: want under a quarter", packs1, added)
	}
	if n := srv.countFiles(t, "blobs/nar"); n != 0 {
		t.Errorf("%d whole NAR files left once both are chunked", n)
	}

	// The published file is the one its narinfo describes, ranges of it
	// are its bytes, and the URL uploaded still serves the NAR as xz.
	for _, f := range []map[string][]string{f1, f2} {
		whole := checkPublishedFile(t, url, f)
		checkRanges(t, url+"/"+f["URL"][0], whole)
	}
	checkUploadedURL(t, pusher, url, v2, hashes[v2])

	n.deleteLocal(paths...)
	substituteChecked(t, srv, paths, hashes)
	sameSnapshot(t, "after substituting chunked NARs", files, snapshot(t, paths))
	if out := srv.cli(t, "verify", "--full"); !strings.Contains(out, "0 missing, 0 damaged") {
		t.Errorf("larder verify --full: %s", out)
	}
}

// checkPublishedFile downloads the NAR file a narinfo names and checks its
// hash, size and compression, and returns it.
func checkPublishedFile(t *testing.T, url string, f map[string][]string) []byte {
	t.Helper()
	resp, err := http.Get(url + "/" + f["URL"][0])
	must(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("GET %s: %d, Content-Encoding %q", f["URL"][0], resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
	sum := sha256.Sum256(body)
	if got := "sha256:" + nixbase32.EncodeToString(sum[:]); got != f["FileHash"][0] || fmt.Sprint(len(body)) != f["FileSize"][0] {
		t.Fatalf("%s is %d bytes with %s; its narinfo says %s bytes with %s", f["URL"][0], len(body), got, f["FileSize"][0], f["FileHash"][0])
	}
	d, err := zstd.NewReader(bytes.NewReader(body))
	must(t, err)
	defer d.Close()
	nar, err := io.ReadAll(d)
	must(t, err)
	nsum := sha256.Sum256(nar)
	if got := "sha256:" + nixbase32.EncodeToString(nsum[:]); got != f["NarHash"][0] {
		t.Fatalf("%s decompresses to a NAR with %s, not %s", f["URL"][0], got, f["NarHash"][0])
	}
	return body
}

// checkRanges asks for ranges of a file that cross chunk boundaries and
// checks that each is those bytes of the whole, with no Content-Encoding.
func checkRanges(t *testing.T, fileURL string, whole []byte) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, uint64(len(whole))))
	for range 8 {
		off := r.IntN(len(whole) - 1)
		end := off + r.IntN(min(len(whole)-off, 64<<10))
		req, err := http.NewRequest("GET", fileURL, nil)
		must(t, err)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end))
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		must(t, err)
		if resp.StatusCode != 206 || resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(got, whole[off:end+1]) {
			t.Fatalf("range %d-%d of %s: %d (Content-Encoding %q), %d bytes, not the file's", off, end, fileURL,
				resp.StatusCode, resp.Header.Get("Content-Encoding"), len(got))
		}
	}
}

// checkUploadedURL fetches a chunked NAR under the URL its narinfo had
// when it was uploaded, as a client that kept that narinfo does (as the
// pusher's Nix does: it keeps the narinfo it uploaded), and checks that it
// is the NAR compressed with xz.
func checkUploadedURL(t *testing.T, pusher *nix, url, path, narHash string) {
	t.Helper()
	var infos []struct {
		URL string `json:"url"`
	}
	must(t, json.Unmarshal([]byte(pusher.run("nix", "path-info", "--json", "--store", url, path)), &infos))
	if len(infos) != 1 || !strings.HasSuffix(infos[0].URL, ".nar.xz") {
		t.Fatalf("the pusher remembers %s as %+v, not as the xz file it uploaded", path, infos)
	}
	resp, err := http.Get(url + "/" + infos[0].URL)
	must(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("GET %s: %d, Content-Encoding %q", infos[0].URL, resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
	d, err := xz.NewReader(resp.Body)
	must(t, err)
	h := sha256.New()
	_, err = io.Copy(h, d)
	must(t, err)
	if got := "sha256:" + nixbase32.EncodeToString(h.Sum(nil)); got != narHash {
		t.Fatalf("%s, as uploaded, is now a NAR with %s, not %s", infos[0].URL, got, narHash)
	}
}

// TestChunkMigration: NAR files stored whole by a server with chunking off
// are chunked once it is on, by the server's background pass or larder
// rechunk beside it, with no downtime, and substitute as before.
func TestChunkMigration(t *testing.T) {
	t.Parallel()
	srv := startServer(t, append([]string{"--chunking=false"}, chunkFlags...)...)
	n := needNix(t)
	seed := "rechunk-" + randomHex(4)
	paths := []string{n.versionTree(seed, 1), n.versionTree(seed, 2, 5), n.versionTree(seed, 3, 5, 9)}
	hashes := n.narHashes("", paths)
	url := srv.cacheURL("main")
	n.withNetrc(srv.Host, srv.token(t, "main", "write")).run(append([]string{"nix", "copy", "--to", url + "?compression=xz"}, paths...)...)
	for _, p := range paths {
		waitPublished(t, url, p, "xz")
	}
	whole := dirBytes(t, filepath.Join(srv.Data, "blobs", "nar"))
	if err := srv.terminate(t); err != nil {
		t.Fatal(err)
	}

	srv = startServerOn(t, srv.Data, srv.Addr, chunkFlags...)
	out := srv.cli(t, "rechunk")
	if !strings.Contains(out, "0 failed") {
		t.Errorf("larder rechunk: %s", out)
	}
	for _, p := range paths {
		waitPublished(t, url, p, "zstd")
	}
	if n := srv.countFiles(t, "blobs/nar"); n != 0 {
		t.Errorf("%d whole NAR files left after the migration", n)
	}
	if packs := dirBytes(t, filepath.Join(srv.Data, "blobs", "pack")); packs*2 > whole {
		t.Errorf("three versions took %d bytes whole and %d as chunks: want under half", whole, packs)
	}
	n.deleteLocal(paths...)
	substituteChecked(t, srv, paths, hashes)
}

// substituteChecked substitutes paths with real Nix from the cache main of
// srv, its only substituter, trusting only its key, and checks that they
// have the NAR hashes given and verify.
func substituteChecked(t *testing.T, srv *server, paths []string, hashes map[string]string) {
	t.Helper()
	subst := needNix(t)
	subst.run(append([]string{"nix-store", "-r", "--option", "substituters", srv.cacheURL("main"),
		"--option", "trusted-public-keys", srv.pubkey(t, "main")}, paths...)...)
	for p, h := range subst.narHashes("", paths) {
		if h != hashes[p] {
			t.Errorf("substituted %s has NAR hash %s, want %s", p, h, hashes[p])
		}
	}
	subst.run(append([]string{"nix-store", "--verify-path"}, paths...)...)
}

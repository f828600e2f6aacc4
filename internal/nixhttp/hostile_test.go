package nixhttp_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nix-community/go-nix/pkg/nar"
)

// TestHostileRequests sends malformed, inconsistent and hostile requests.
// Each must get the named 4xx with a message saying what was wrong, and
// leave the store as it was.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	good := newPath(t, "good", []byte("good"), "zstd")
	e.push("main", good)
	p := newPath(t, "victim", bytes.Repeat([]byte("victim\n"), 100), "zstd")
	e.expect(201, "PUT", "/main/"+p.URL(), e.admin, p.File) // NAR present, narinfo not
	q := newPath(t, "nonar", []byte("no nar uploaded"), "xz")
	ni := p.NarInfo()
	edit := func(old, new string) []byte {
		if !strings.Contains(ni, old) {
			t.Fatalf("narinfo has no %q", old)
		}
		return []byte(strings.Replace(ni, old, new, 1))
	}
	narinfoKey := "/main/" + p.Hash + ".narinfo"
	otherHash := strings.Repeat("1", 32)
	notNAR := compress(t, "zstd", []byte("this is not a NAR archive at all"))
	corrupt := append([]byte{}, p.File...)
	corrupt[len(corrupt)/2] ^= 0xff

	cases := []struct {
		name, method, path string
		body               []byte
		status             int
		msg                string // part of the one-line message
	}{
		{"narinfo NarHash mismatch", "PUT", narinfoKey, edit("NarHash: sha256:"+nix32sha(p.NAR), "NarHash: sha256:"+nix32sha([]byte("x"))), 400, "NarHash"},
		{"narinfo NarSize mismatch", "PUT", narinfoKey, edit(fmt.Sprintf("NarSize: %d", len(p.NAR)), "NarSize: 7"), 400, "NarSize"},
		{"narinfo FileHash mismatch", "PUT", narinfoKey, edit("FileHash: sha256:"+nix32sha(p.File), "FileHash: sha256:"+nix32sha([]byte("y"))), 400, "FileHash"},
		{"narinfo FileSize mismatch", "PUT", narinfoKey, edit(fmt.Sprintf("FileSize: %d", len(p.File)), "FileSize: 3"), 400, "FileSize"},
		{"narinfo Compression mismatch", "PUT", narinfoKey, edit("Compression: zstd", "Compression: xz"), 400, ".nar.xz"},
		{"narinfo before its NAR", "PUT", "/main/" + q.Hash + ".narinfo", []byte(q.NarInfo()), 409, "upload the NAR first"},
		{"narinfo StorePath not its key", "PUT", "/main/" + otherHash + ".narinfo", []byte(ni), 400, "StorePath"},
		{"narinfo malformed line", "PUT", narinfoKey, []byte(ni + "this line has no separator\n"), 400, "line"},
		{"narinfo truncated", "PUT", narinfoKey, []byte(ni[:len(ni)-1]), 400, "newline"},
		{"narinfo empty", "PUT", narinfoKey, []byte{}, 400, ""},
		{"narinfo bad store path name", "PUT", narinfoKey, edit("-victim", "-vic tim"), 400, "StorePath"},
		{"narinfo bad reference", "PUT", narinfoKey, edit("References: ", "References: ../../etc/passwd"), 400, "References"},
		{"narinfo URL escapes", "PUT", narinfoKey, edit("URL: "+p.URL(), "URL: ../../etc/passwd"), 400, "URL"},
		{"narinfo NUL byte", "PUT", narinfoKey, edit("References: ", "References: \x00"), 400, ""},
		{"narinfo binary garbage", "PUT", narinfoKey, []byte{0xff, 0xfe, 0, 1, 2, '\n'}, 400, ""},
		{"NAR not matching its name", "PUT", "/main/nar/" + nix32sha([]byte("z")) + ".nar.zst", p.File, 400, "sha256"},
		{"NAR corrupt zstd", "PUT", "/main/nar/" + nix32sha(corrupt) + ".nar.zst", corrupt, 400, "zst"},
		{"NAR not a NAR", "PUT", "/main/nar/" + nix32sha(notNAR) + ".nar.zst", notNAR, 400, "NAR"},
		{"NAR extension lies", "PUT", "/main/nar/" + nix32sha(p.File) + ".nar.xz", p.File, 400, "xz"},
		{"NAR lzip", "PUT", "/main/nar/" + nix32sha(p.File) + ".nar.lzip", p.File, 415, "lzip"},
		{"key with ..", "PUT", "/main/nar/../../../etc/passwd", []byte("x"), 400, "not a binary cache file"},
		{"key with %2e%2e", "PUT", "/main/log/%2e%2e%2f%2e%2e%2fetc", []byte("x"), 400, "not a binary cache file"},
		{"key with encoded slash", "GET", "/main/nar%2f..%2f..%2fx", nil, 400, "not a binary cache file"},
		{"absolute key", "GET", "/main//etc/passwd", nil, 400, "not a binary cache file"},
		{"NUL in key", "GET", "/main/log/" + strings.Repeat("a", 32) + "-x%00.drv", nil, 400, "not a binary cache file"},
		{"over-long key", "PUT", "/main/log/" + strings.Repeat("a", 32) + "-" + strings.Repeat("x", 600) + ".drv", []byte("x"), 400, "not a binary cache file"},
		{"unknown key", "GET", "/main/etc/passwd", nil, 400, "not a binary cache file"},
		{"bad cache name", "GET", "/..%2f/nix-cache-info", nil, 400, "cache name"},
		{"unknown cache", "GET", "/nosuch/nix-cache-info", nil, 404, "no cache named"},
		{"unknown cache write", "PUT", "/nosuch/" + p.URL(), p.File, 404, "no cache named"},
		{"listing not JSON", "PUT", "/main/" + p.Hash + ".ls", []byte("{not json"), 400, "JSON"},
		{"realisation id mismatch", "PUT", "/main/realisations/sha256:" + strings.Repeat("ab", 32) + "!out.doi", []byte(`{"id":"sha256:` + strings.Repeat("cd", 32) + `!out","outPath":"` + otherHash + `-x"}`), 400, "id"},
		{"compressed upload", "PUT", "/main/log/" + strings.Repeat("a", 32) + "-x.drv", []byte("x"), 415, "Content-Encoding"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshot()
			var hdr []string
			if c.name == "compressed upload" {
				hdr = []string{"Content-Encoding", "gzip"}
			}
			resp, msg := e.do(c.method, c.path, e.admin, c.body, hdr...)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, c.status, msg)
			}
			if !strings.HasSuffix(msg, "\n") || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, c.msg) {
				t.Errorf("message %q: want one line containing %q", msg, c.msg)
			}
			e.mustUnchanged(before)
		})
	}
	// The path whose narinfo was attacked is still missing, the good one
	// still served.
	e.expect(404, "GET", narinfoKey, "", nil)
	e.expect(200, "GET", "/main/"+good.Hash+".narinfo", "", nil)
}

// TestDecompressionBomb uploads a small zstd file that expands to far more
// than the configured ratio allows: refused while streaming.
func TestDecompressionBomb(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "zeros")
	if err := os.WriteFile(f, make([]byte, 64<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	zw, _ := zstd.NewWriter(&file, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err := nar.DumpPath(zw, f); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	before := e.snapshot()
	start := time.Now()
	resp, msg := e.do("PUT", "/main/nar/"+nix32sha(file.Bytes())+".nar.zst", e.admin, file.Bytes())
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "ratio") && !strings.Contains(msg, "bomb") {
		t.Fatalf("bomb of %d bytes: status %d %q", file.Len(), resp.StatusCode, msg)
	}
	t.Logf("bomb of %d bytes refused in %v: %s", file.Len(), time.Since(start), strings.TrimSpace(msg))
	e.mustUnchanged(before)
}

// TestSizeLimits checks the configured limits are enforced from the
// Content-Length, before the body is read.
func TestSizeLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *configT) {
		c.MaxUploadSize = 1000
		c.MaxNarInfoSize = 100
		c.MaxFileSize = 10
	})
	p := newPath(t, "big", bytes.Repeat([]byte("big"), 1000), "none")
	before := e.snapshot()
	e.expect(413, "PUT", "/main/"+p.URL(), e.admin, p.File)
	e.expect(413, "PUT", "/main/"+p.Hash+".narinfo", e.admin, []byte(p.NarInfo()))
	e.expect(413, "PUT", "/main/log/"+strings.Repeat("a", 32)+"-x.drv", e.admin, []byte("more than ten bytes"))
	e.mustUnchanged(before)
}

// rawPut sends a PUT over a bare connection, so that the body can disagree
// with its Content-Length, and returns the status line of the response.
func rawPut(t *testing.T, e *env, path string, contentLength int, body []byte) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: larder\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", path, e.admin, contentLength)
	_, _ = conn.Write(body)
	_ = conn.(*net.TCPConn).CloseWrite()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil && err != io.EOF {
		t.Fatalf("read response: %v", err)
	}
	return strings.TrimSpace(line)
}

// TestBodyShorterThanContentLength covers a client that stops sending early
// (and Nix 2.8, which retries a failed PUT with the same Content-Length but
// an empty body): nothing is stored.
func TestBodyShorterThanContentLength(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPath(t, "short", bytes.Repeat([]byte("short body\n"), 200), "zstd")
	before := e.snapshot()
	for _, c := range []struct {
		path string
		body []byte
	}{
		{"/main/" + p.URL(), p.File},
		{"/main/" + p.Hash + ".narinfo", []byte(p.NarInfo())},
		{"/main/log/" + strings.Repeat("a", 32) + "-x.drv", []byte("a log line\n")},
	} {
		for _, sent := range []int{0, len(c.body) / 2, len(c.body) - 1} {
			status := rawPut(t, e, c.path, len(c.body), c.body[:sent])
			if !strings.Contains(status, " 400 ") {
				t.Errorf("%s with %d of %d bytes: %q, want 400", c.path, sent, len(c.body), status)
			}
		}
	}
	e.mustUnchanged(before)
	if !strings.Contains(e.logs.String(), "ended after") {
		t.Errorf("the log does not say the body ended early:\n%s", e.logs.String())
	}
}

// TestBodyLongerThanContentLength sends more bytes than declared. HTTP
// reads exactly Content-Length bytes as the body, so what a store could
// keep is a prefix of what was meant: it fails verification (the NAR's hash
// is its name; a narinfo ends in a newline), and the surplus is not a
// request.
func TestBodyLongerThanContentLength(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPath(t, "long", bytes.Repeat([]byte("long body\n"), 200), "zstd")
	before := e.snapshot()
	if st := rawPut(t, e, "/main/"+p.URL(), len(p.File)-10, p.File); !strings.Contains(st, " 400 ") {
		t.Errorf("NAR with 10 bytes more than declared: %q, want 400", st)
	}
	e.mustUnchanged(before)
	e.expect(201, "PUT", "/main/"+p.URL(), e.admin, p.File)
	before = e.snapshot()
	ni := []byte(p.NarInfo())
	if st := rawPut(t, e, "/main/"+p.Hash+".narinfo", len(ni)-5, ni); !strings.Contains(st, " 400 ") {
		t.Errorf("narinfo with 5 bytes more than declared: %q, want 400", st)
	}
	e.mustUnchanged(before)
}

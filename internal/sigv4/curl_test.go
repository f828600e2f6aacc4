package sigv4

import (
	"bytes"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/smithy-go/encoding/httpbinding"
)

// curlClient runs curl as Nix's S3 store configures it.
type curlClient struct {
	t    *testing.T
	path string
	args []string
	dir  string
}

func newCurlClient(t *testing.T, srv *httptest.Server, tls bool) *curlClient {
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not on PATH")
	}
	c := &curlClient{t: t, path: path, dir: t.TempDir(), args: []string{"--silent", "--show-error", "--fail",
		"--aws-sigv4", "aws:amz:garage:s3", "--user", testKeyID + ":" + testSecret}}
	if tls {
		ca := filepath.Join(c.dir, "ca.pem")
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		c.args = append(c.args, "--cacert", ca)
	}
	return c
}

// run runs curl with extra arguments and returns its output, failing the
// test if curl fails.
func (c *curlClient) run(extra ...string) []byte {
	c.t.Helper()
	cmd := exec.Command(c.path, append(slices.Clone(c.args), extra...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("curl %v: %v: %s%s", extra, err, stderr.Bytes(), out)
	}
	return out
}

// upload writes body to a file and returns its name.
func (c *curlClient) upload(body []byte) string {
	file := filepath.Join(c.dir, "upload")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		c.t.Fatal(err)
	}
	return file
}

// curl --aws-sigv4 is how Nix's S3 store signs from 2.33 on. curl 7.88 sends
// no x-amz-content-sha256 and signs the SHA-256 of the empty string, also for
// uploads; it signs the query as it sends it.
func TestServerCurl(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[tls], func(t *testing.T) {
			s, srv := newObjectServer(t, tls)
			c := newCurlClient(t, srv, tls)
			keys := []string{"plain.txt", "nar/0123abcd.nar.xz", `a b/c+d&e=é"f`, "x//y", "nar/big.nar"}
			for i, key := range keys {
				size := 10 + i*40_000
				if key == "nar/big.nar" {
					size = 3 << 20 // large enough for curl to send Expect: 100-continue
				}
				body := randomBytes(size, uint64(400+i))
				u := srv.URL + "/bucket/" + httpbinding.EscapePath(key, false)
				c.run("-T", c.upload(body), "-H", "Content-MD5: "+md5Base64(body), "-H", "Content-Type: application/x-nix-nar", u)
				if got := c.run(u); !bytes.Equal(got, body) {
					t.Fatalf("GET %q: %d bytes, want %d", key, len(got), len(body))
				}
			}
			// Queries, unsorted and bare, as Nix's multipart upload sends them.
			obj := srv.URL + "/bucket/nar/0123abcd.nar.xz"
			c.run(obj + "?x-id=GetObject&response-content-type=a%20b")
			c.run("-X", "POST", obj+"?uploads")
			c.run("-T", c.upload([]byte("part")), obj+"?partNumber=1&uploadId=abc%2Fdef")
			c.run("-X", "DELETE", obj+"?uploadId=abc%2Fdef")
			for _, r := range s.checkSeen(t, "curl") {
				if r.mode != "" {
					t.Logf("curl %s sent x-amz-content-sha256 %s", r.method, r.mode)
				}
			}
			checkCurlBadMD5(t, s, srv, c)
		})
	}
}

// A Content-MD5 that does not match is refused with BadDigest.
func checkCurlBadMD5(t *testing.T, s *objectServer, srv *httptest.Server, c *curlClient) {
	cmd := exec.Command(c.path, append(slices.Clone(c.args), "-o", os.DevNull, "-w", "%{http_code}",
		"-T", c.upload([]byte("payload")), "-H", "Content-MD5: "+md5Base64([]byte("other")), srv.URL+"/bucket/bad")...)
	out, _ := cmd.Output()
	if strings.TrimSpace(string(out)) != "400" {
		t.Errorf("bad Content-MD5: status %s, want 400", out)
	}
	seen := s.requests()
	if len(seen) != 1 || errCode(t, seen[0].err) != "BadDigest" || seen[0].method != http.MethodPut {
		t.Errorf("bad Content-MD5: server saw %+v, want one BadDigest PUT", seen)
	}
}

package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The S3 clients the end-to-end tests drive, as users run them. Each test
// user gets a private HOME and private configuration files, and an
// environment built from scratch, so nothing of the machine's own AWS, mc,
// rclone or s3cmd configuration (nor an AWS_CA_BUNDLE, which breaks them)
// leaks in.

// s3Region is the region every client signs for; larder accepts any.
const s3Region = "garage"

// clientTimeout bounds one client command, so a hung client fails its
// test instead of the whole run.
const clientTimeout = 3 * time.Minute

var (
	toolMu    sync.Mutex
	toolPaths = map[string]string{}
	toolErrs  = map[string]string{}
)

// needTool returns the path of an S3 client, or skips the test when it is
// not installed (and fails it instead under LARDER_REQUIRE_S3_CLIENTS=1, as
// ./test.sh sets).
func needTool(t *testing.T, name string) string {
	t.Helper()
	toolMu.Lock()
	path, ok := toolPaths[name]
	why := toolErrs[name]
	if !ok && why == "" {
		path, why = findTool(name)
		if why == "" {
			toolPaths[name] = path
		} else {
			toolErrs[name] = why
		}
	}
	toolMu.Unlock()
	if why != "" {
		if os.Getenv("LARDER_REQUIRE_S3_CLIENTS") == "1" {
			t.Fatalf("%s (./test.sh installs it)", why)
		}
		t.Skipf("%s; ./test.sh installs it", why)
	}
	return path
}

// findTool locates a client and checks that it is the one the tests mean.
func findTool(name string) (path, why string) {
	switch name {
	case "aws":
		// Debian's awscli v2; an `aws` earlier on PATH may be a pip v1.
		path = "/usr/bin/aws"
		if _, err := os.Stat(path); err != nil {
			return "", "awscli v2 is not installed at /usr/bin/aws (apt-get install awscli)"
		}
		out, err := exec.Command(path, "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "aws-cli/2.") {
			return "", fmt.Sprintf("/usr/bin/aws is not awscli v2: %v %s", err, out)
		}
		return path, ""
	case "mc":
		var candidates []string
		if p, err := exec.LookPath("mc"); err == nil {
			candidates = append(candidates, p)
		}
		candidates = append(candidates, "/tmp/gobin/mc")
		if gopath, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			for _, dir := range filepath.SplitList(strings.TrimSpace(string(gopath))) {
				candidates = append(candidates, filepath.Join(dir, "bin", "mc"))
			}
		}
		candidates = append(candidates, "../.tools/bin/mc")
		for _, p := range candidates {
			out, err := exec.Command(p, "--version").CombinedOutput()
			// Midnight Commander is also called mc.
			if err == nil && strings.Contains(string(out), "mc version") {
				abs, err := filepath.Abs(p)
				if err != nil {
					return "", err.Error()
				}
				return abs, ""
			}
		}
		return "", fmt.Sprintf("the MinIO client mc is not installed (looked at %v; go install github.com/minio/mc@latest)", candidates)
	case "curl":
		p, err := exec.LookPath("curl")
		if err != nil {
			return "", "curl is not installed"
		}
		out, _ := exec.Command(p, "--help", "all").CombinedOutput()
		if !strings.Contains(string(out), "--aws-sigv4") {
			return "", "curl has no --aws-sigv4 (7.75 or later needed)"
		}
		return p, ""
	default:
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Sprintf("%s is not installed (apt-get install %s)", name, name)
		}
		return p, ""
	}
}

// s3Key creates an S3 access key pair with larder token create --s3 and
// checks that the command printed exactly one line of two fields.
func (s *server) s3Key(t *testing.T, cache, perm string) (id, secret string) {
	t.Helper()
	out := s.cli(t, "token", "create", "--cache", cache, "--perm", perm, "--s3")
	l := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	f := strings.Fields(out)
	if len(l) != 1 || len(f) != 2 {
		t.Fatalf("token create --s3 printed %q, want one line ACCESS_KEY_ID SECRET_ACCESS_KEY", out)
	}
	return f[0], f[1]
}

// s3User is someone with an access key pair and the S3 clients configured
// for larder, each in their own home directory.
type s3User struct {
	t          *testing.T
	srv        *server
	id, secret string
	home       string
	mcOnce     sync.Once
}

// newS3User writes the configuration of every client for a key pair.
func newS3User(t *testing.T, srv *server, id, secret string) *s3User {
	t.Helper()
	u := &s3User{t: t, srv: srv, id: id, secret: secret, home: t.TempDir()}
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(u.home, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o700))
		must(t, os.WriteFile(p, []byte(text), 0o600))
	}
	write(".aws/config", fmt.Sprintf("[default]\nregion = %s\ns3 =\n  addressing_style = path\n", s3Region))
	write(".aws/credentials", fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", id, secret))
	write("s3cfg", fmt.Sprintf(`[default]
access_key = %s
secret_key = %s
host_base = %s
host_bucket = %s
use_https = False
signature_v2 = False
bucket_location = %s
`, id, secret, srv.Addr, srv.Addr, s3Region))
	write("rclone.conf", fmt.Sprintf(`[larder]
type = s3
provider = Other
endpoint = %s
force_path_style = true
access_key_id = %s
secret_access_key = %s
region = %s
`, srv.URL, id, secret, s3Region))
	must(t, os.MkdirAll(filepath.Join(u.home, "mc"), 0o700))
	return u
}

// env is the whole environment of a client: nothing from the test process
// but PATH.
func (u *s3User) env() []string {
	return []string{
		"HOME=" + u.home,
		"PATH=" + os.Getenv("PATH"),
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
		"TMPDIR=" + os.TempDir(),
		"AWS_CONFIG_FILE=" + filepath.Join(u.home, ".aws/config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(u.home, ".aws/credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PAGER=",
		"MC_CONFIG_DIR=" + filepath.Join(u.home, "mc"),
		"RCLONE_CONFIG=" + filepath.Join(u.home, "rclone.conf"),
	}
}

// exec runs a client and returns its standard output and error.
func (u *s3User) exec(bin string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = u.env()
	cmd.Dir = u.home
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%v (killed after %v)", err, clientTimeout)
	}
	return o.String(), e.String(), err
}

// tryAWS runs /usr/bin/aws against larder.
func (u *s3User) tryAWS(args ...string) (string, string, error) {
	u.t.Helper()
	bin := needTool(u.t, "aws")
	return u.exec(bin, append([]string{"--endpoint-url", u.srv.URL}, args...)...)
}

// tryMC runs mc with the alias larder set for this user.
func (u *s3User) tryMC(args ...string) (string, string, error) {
	u.t.Helper()
	bin := needTool(u.t, "mc")
	u.mcOnce.Do(func() {
		if _, errOut, err := u.exec(bin, "alias", "set", "larder", u.srv.URL, u.id, u.secret); err != nil {
			u.t.Fatalf("mc alias set: %v\n%s", err, errOut)
		}
	})
	return u.exec(bin, append([]string{"--no-color"}, args...)...)
}

// tryRclone runs rclone with the remote larder.
func (u *s3User) tryRclone(args ...string) (string, string, error) {
	u.t.Helper()
	bin := needTool(u.t, "rclone")
	return u.exec(bin, append([]string{"--config", filepath.Join(u.home, "rclone.conf")}, args...)...)
}

// tryS3cmd runs s3cmd with this user's configuration file.
func (u *s3User) tryS3cmd(args ...string) (string, string, error) {
	u.t.Helper()
	bin := needTool(u.t, "s3cmd")
	return u.exec(bin, append([]string{"--config", filepath.Join(u.home, "s3cfg")}, args...)...)
}

// ok fails the test if a client command failed, and returns its output.
func (u *s3User) ok(what string, out, errOut string, err error) string {
	u.t.Helper()
	if err != nil {
		u.t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", what, err, tail(out, 30), tail(errOut, 30))
	}
	return out
}

func (u *s3User) aws(args ...string) string {
	u.t.Helper()
	out, errOut, err := u.tryAWS(args...)
	return u.ok("aws "+strings.Join(args, " "), out, errOut, err)
}

func (u *s3User) mc(args ...string) string {
	u.t.Helper()
	out, errOut, err := u.tryMC(args...)
	return u.ok("mc "+strings.Join(args, " "), out, errOut, err)
}

func (u *s3User) rclone(args ...string) string {
	u.t.Helper()
	out, errOut, err := u.tryRclone(args...)
	return u.ok("rclone "+strings.Join(args, " "), out, errOut, err)
}

func (u *s3User) s3cmd(args ...string) string {
	u.t.Helper()
	out, errOut, err := u.tryS3cmd(args...)
	return u.ok("s3cmd "+strings.Join(args, " "), out, errOut, err)
}

// awsKeys lists a bucket with aws s3 ls --recursive and returns its keys.
func (u *s3User) awsKeys(cache string) []string {
	u.t.Helper()
	var keys []string
	for _, l := range lines(u.aws("s3", "ls", "--recursive", "s3://"+cache)) {
		// 2026-01-02 03:04:05       1234 KEY
		m := awsLsLine.FindStringSubmatch(l)
		if m == nil {
			u.t.Fatalf("aws s3 ls printed %q", l)
		}
		keys = append(keys, m[1])
	}
	sort.Strings(keys)
	return keys
}

// awsLsLine is a line of aws s3 ls --recursive: date, time, size, key.
var awsLsLine = regexp.MustCompile(`^\S+ +\S+ +\d+ (.*)$`)

// curlResponse is what curl received.
type curlResponse struct {
	Code   int
	Header http.Header
	Body   string
}

// curl sends one request signed by curl's own --aws-sigv4, as Nix from 2.33
// does: no x-amz-content-sha256, a body from a file (uploaded, so signed
// as the empty payload), extra headers as "Name: value".
func (u *s3User) curl(method, cache, key, query, bodyFile string, headers ...string) curlResponse {
	u.t.Helper()
	bin := needTool(u.t, "curl")
	dir := u.t.TempDir()
	hdrFile, outFile := filepath.Join(dir, "headers"), filepath.Join(dir, "body")
	url := u.srv.URL + "/" + cache + "/" + key
	if query != "" {
		url += "?" + query
	}
	args := []string{"-sS", "--aws-sigv4", "aws:amz:" + s3Region + ":s3", "--user", u.id + ":" + u.secret,
		"-D", hdrFile, "-o", outFile, "-w", "%{http_code}"}
	switch method {
	case http.MethodHead:
		args = append(args, "-I")
	case http.MethodGet:
	default:
		args = append(args, "-X", method)
	}
	if bodyFile != "" {
		args = append(args, "-T", bodyFile)
	}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	out, errOut, err := u.exec(bin, append(args, url)...)
	if err != nil {
		u.t.Fatalf("curl %s %s: %v\n%s", method, url, err, errOut)
	}
	code, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		u.t.Fatalf("curl %s %s printed status %q", method, url, out)
	}
	resp := curlResponse{Code: code, Header: http.Header{}}
	raw, err := os.ReadFile(hdrFile)
	must(u.t, err)
	// The last block of headers is the final response (after 100 Continue).
	for _, l := range strings.Split(string(raw), "\n") {
		l = strings.TrimRight(l, "\r")
		if strings.HasPrefix(l, "HTTP/") {
			resp.Header = http.Header{}
			continue
		}
		if k, v, ok := strings.Cut(l, ":"); ok {
			resp.Header.Add(k, strings.TrimSpace(v))
		}
	}
	if method != http.MethodHead {
		body, err := os.ReadFile(outFile)
		if err != nil && !os.IsNotExist(err) {
			u.t.Fatal(err)
		}
		resp.Body = string(body)
	}
	return resp
}

// binaryCache is a directory Nix wrote with nix copy --to file://DIR: what
// teams keep in their buckets.
type binaryCache struct {
	Dir     string
	Closure closure
	Hashes  map[string]string // NAR hash of each path in the local store
	Files   map[string]string // snapshot of the paths in the local store
	// Order is the closure in dependency order (references first), as Nix
	// uploads it.
	Order    []string
	NarInfos map[string]narInfoFile // by store path
	Keys     []string               // every file of Dir, as a bucket key
}

// narInfoFile is one narinfo of a binaryCache.
type narInfoFile struct {
	Key        string // HASH.narinfo
	NarKey     string // nar/FILEHASH.nar.xz
	References []string
}

// makeBinaryCache copies a closure to a fresh directory with nix copy --to
// file://DIR?compression=xz and describes what is there.
func (n *nix) makeBinaryCache(c closure) *binaryCache {
	n.t.Helper()
	dir := n.t.TempDir()
	n.run(append([]string{"nix", "copy", "--to", "file://" + dir + "?compression=xz"}, c.Paths...)...)
	bc := &binaryCache{Dir: dir, Closure: c, Hashes: n.narHashes("", c.Paths),
		Files: snapshot(n.t, c.Paths), NarInfos: map[string]narInfoFile{}}
	// The files date from an hour ago, as a cache directory kept around
	// does: listings give times in whole seconds (as AWS's do), and mc
	// mirror takes a file modified in the second of its upload for a newer
	// one.
	old := time.Now().Add(-time.Hour)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		bc.Keys = append(bc.Keys, filepath.ToSlash(rel))
		return errors.Join(err, os.Chtimes(p, old, old))
	})
	must(n.t, err)
	sort.Strings(bc.Keys)
	for _, p := range c.Paths {
		key := hashPart(p) + ".narinfo"
		b, err := os.ReadFile(filepath.Join(dir, key))
		if err != nil {
			n.t.Fatalf("nix copy --to file:// wrote no narinfo for %s: %v", p, err)
		}
		f := narInfoFields(string(b))
		if len(f["URL"]) != 1 || !strings.HasSuffix(f["URL"][0], ".nar.xz") {
			n.t.Fatalf("narinfo of %s has URL %v", p, f["URL"])
		}
		var refs []string
		if len(f["References"]) == 1 {
			refs = strings.Fields(f["References"][0])
		}
		bc.NarInfos[p] = narInfoFile{Key: key, NarKey: f["URL"][0], References: refs}
	}
	// Dependency order: a path after every path it refers to.
	done := map[string]bool{}
	var visit func(p string)
	visit = func(p string) {
		if done[p] {
			return
		}
		done[p] = true
		for _, r := range bc.NarInfos[p].References {
			if full := "/nix/store/" + r; full != p {
				visit(full)
			}
		}
		bc.Order = append(bc.Order, p)
	}
	sorted := append([]string{}, c.Paths...)
	sort.Strings(sorted)
	for _, p := range sorted {
		visit(p)
	}
	if len(bc.Order) != len(c.Paths) {
		n.t.Fatalf("dependency order %v does not cover the closure %v", bc.Order, c.Paths)
	}
	return bc
}

// biggestNar returns the key of the largest NAR file of the cache.
func (bc *binaryCache) biggestNar(t *testing.T) (key string, size int64) {
	t.Helper()
	for _, ni := range bc.NarInfos {
		st, err := os.Stat(filepath.Join(bc.Dir, ni.NarKey))
		must(t, err)
		if st.Size() > size {
			key, size = ni.NarKey, st.Size()
		}
	}
	return key, size
}

// checkServed checks that larder serves the whole closure of bc from a
// cache over the Nix protocol: each narinfo signed by the cache, nix
// path-info -r, nix store verify with the cache's key, and a real
// substitution of every path into a fresh chroot store (--store DIR),
// whose NAR hashes and files must be those of the local store.
func checkServed(t *testing.T, srv *server, cache string, bc *binaryCache) {
	t.Helper()
	url := srv.cacheURL(cache)
	key := srv.pubkey(t, cache)
	keyName, _, _ := strings.Cut(key, ":")
	for _, p := range bc.Closure.Paths {
		code, body := httpDo(t, "GET", url+"/"+hashPart(p)+".narinfo", srv.AdminToken, nil)
		if code != 200 {
			t.Fatalf("GET narinfo of %s from cache %s: %d %s", p, cache, code, body)
		}
		f := narInfoFields(body)
		if got := f["StorePath"]; len(got) != 1 || got[0] != p {
			t.Errorf("narinfo of %s has StorePath %v", p, got)
		}
		signed := false
		for _, s := range f["Sig"] {
			signed = signed || strings.HasPrefix(s, keyName+":")
		}
		if !signed {
			t.Errorf("narinfo of %s has Sig %v, none by the cache's key %s", p, f["Sig"], keyName)
		}
	}
	reader := needNix(t)
	if listed := lines(reader.run("nix", "path-info", "--store", url, "-r", bc.Closure.Top)); !sameSet(listed, bc.Closure.Paths) {
		t.Errorf("nix path-info -r lists %v, want %v", listed, bc.Closure.Paths)
	}
	reader.run("nix", "store", "verify", "--store", url, "--trusted-public-keys", key, "-r", bc.Closure.Top)

	chroot := chrootStore(t)
	subst := needNix(t)
	subst.run("nix-store", "--store", chroot, "-r", bc.Closure.Top,
		"--option", "substituters", url, "--option", "trusted-public-keys", key)
	if got := lines(subst.run("nix-store", "--store", chroot, "--query", "--requisites", bc.Closure.Top)); !sameSet(got, bc.Closure.Paths) {
		t.Errorf("substituted closure is %v, want %v", got, bc.Closure.Paths)
	}
	for p, h := range subst.narHashes(chroot, bc.Closure.Paths) {
		if h != bc.Hashes[p] {
			t.Errorf("substituted %s has NAR hash %s, want %s", p, h, bc.Hashes[p])
		}
	}
	subst.run("nix", "store", "verify", "--store", chroot, "--no-trust", "-r", bc.Closure.Top)
	var onDisk []string
	for _, p := range bc.Closure.Paths {
		onDisk = append(onDisk, filepath.Join(chroot, p))
	}
	got := map[string]string{}
	for p, desc := range snapshot(t, onDisk) {
		got[strings.TrimPrefix(p, chroot)] = desc
	}
	sameSnapshot(t, "substituted from cache "+cache, bc.Files, got)
}

// chrootStore returns a fresh directory for a chroot store; its read-only
// store paths are made writable again before the directory is removed.
func chrootStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	return dir
}

// checkNothingServed checks that no path of bc is served by a cache over
// the Nix protocol: no narinfo, no NAR.
func checkNothingServed(t *testing.T, srv *server, cache string, bc *binaryCache) {
	t.Helper()
	url := srv.cacheURL(cache)
	for _, p := range bc.Closure.Paths {
		if code := srv.narInfoStatus(t, cache, p); code != 404 {
			t.Errorf("narinfo of %s: %d, want 404", p, code)
		}
		if code, _ := httpDo(t, "GET", url+"/"+bc.NarInfos[p].NarKey, srv.AdminToken, nil); code != 404 {
			t.Errorf("GET %s: %d, want 404", bc.NarInfos[p].NarKey, code)
		}
	}
}

// checkCacheInfo checks that a cache serves nix-cache-info over the Nix
// protocol.
func checkCacheInfo(t *testing.T, srv *server, cache string) {
	t.Helper()
	code, body := httpDo(t, "GET", srv.cacheURL(cache)+"/nix-cache-info", "", nil)
	if code != 200 || !strings.Contains(body, "StoreDir: /nix/store") {
		t.Errorf("GET nix-cache-info of %s: %d %q, want 200 with StoreDir: /nix/store", cache, code, body)
	}
}

// md5ETag is the ETag S3 gives a single PUT of data.
func md5ETag(data []byte) string {
	sum := md5.Sum(data)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// multipartETag is the ETag S3 gives a multipart upload of data in parts
// of partSize bytes: the MD5 of the parts' binary MD5s, then -N.
func multipartETag(data []byte, partSize int) string {
	var sums []byte
	n := 0
	for off := 0; off < len(data); off += partSize {
		end := min(off+partSize, len(data))
		s := md5.Sum(data[off:end])
		sums = append(sums, s[:]...)
		n++
	}
	all := md5.Sum(sums)
	return fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(all[:]), n)
}

// contentMD5 is the Content-MD5 header of data.
func contentMD5(data []byte) string {
	sum := md5.Sum(data)
	return "Content-MD5: " + base64.StdEncoding.EncodeToString(sum[:])
}

// uploadIDPattern finds the UploadId the way Nix's S3 store does.
var uploadIDPattern = regexp.MustCompile(`<UploadId>([^<]+)</UploadId>`)

// s3Cache makes a cache for an S3 test and a user with a key pair of the
// given permission on it.
func s3Cache(t *testing.T, srv *server, cache, perm string) *s3User {
	t.Helper()
	srv.cli(t, "cache", "create", cache)
	id, secret := srv.s3Key(t, cache, perm)
	return newS3User(t, srv, id, secret)
}

// sameKeys fails the test unless a listing holds the keys of bc, give or
// take nix-cache-info, which every cache has.
func sameKeys(t *testing.T, what string, got []string, bc *binaryCache) {
	t.Helper()
	var want, have []string
	for _, k := range bc.Keys {
		if k != "nix-cache-info" {
			want = append(want, k)
		}
	}
	for _, k := range got {
		if k != "nix-cache-info" {
			have = append(have, k)
		}
	}
	if !sameSet(want, have) {
		t.Errorf("%s lists %v, want %v (and nix-cache-info)", what, got, bc.Keys)
	}
}

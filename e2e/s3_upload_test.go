package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestS3UploadNixCache has real Nix write a binary cache to a directory
// (nix copy --to file://DIR?compression=xz) and uploads that directory to a
// fresh larder with each S3 client, as teams that keep their cache in a
// bucket do: aws s3 sync, mc mirror, rclone copy, s3cmd sync, and curl
// --aws-sigv4 replaying the requests of Nix's own S3 store, with single
// PUTs and with a multipart upload. After each, the client lists what it
// uploaded, and real Nix substitutes every path from larder over HTTP into a
// fresh chroot store and verifies it with the cache's key (checkServed).
func TestS3UploadNixCache(t *testing.T) {
	cases := []struct {
		name   string
		size   int // of the closure's random file
		upload func(t *testing.T, u *s3User, bc *binaryCache)
	}{
		{"aws-s3-sync", 5000000, uploadAWSSync},
		{"mc-mirror", 5000000, uploadMCMirror},
		{"rclone-copy", 5000000, uploadRcloneCopy},
		{"s3cmd-sync", 5000000, uploadS3cmdSync},
		{"curl-nix-order", 5000000, func(t *testing.T, u *s3User, bc *binaryCache) {
			replayNixS3(t, u, "nix", bc, "")
		}},
		// A NAR of three parts of Nix's 5 MiB.
		{"curl-nix-multipart", 11000000, func(t *testing.T, u *s3User, bc *binaryCache) {
			big, size := bc.biggestNar(t)
			if size <= 2*nixPartSize {
				t.Fatalf("the biggest NAR has %d bytes, too few for three parts", size)
			}
			replayNixS3(t, u, "nix", bc, big)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Files read back over S3 as they were written only while they
			// stay whole: TestChunkedS3ReadBack reads chunked ones.
			srv := startServer(t, "--chunking=false")
			u := s3Cache(t, srv, "nix", "write")
			n := needNix(t)
			bc := n.makeBinaryCache(n.buildClosureSize("s3up-"+tc.name+"-"+randomHex(4), tc.size))
			tc.upload(t, u, bc)
			checkServed(t, srv, "nix", bc)
		})
	}
}

func uploadAWSSync(t *testing.T, u *s3User, bc *binaryCache) {
	u.aws("s3", "sync", "--no-progress", bc.Dir, "s3://nix")
	sameKeys(t, "aws s3 ls after aws s3 sync", u.awsKeys("nix"), bc)
	// The NARs read back byte for byte (HEAD, then GET).
	for _, ni := range bc.NarInfos {
		local := filepath.Join(t.TempDir(), "nar")
		u.aws("s3", "cp", "--no-progress", "s3://nix/"+ni.NarKey, local)
		sameFile(t, filepath.Join(bc.Dir, ni.NarKey), local)
	}
}

func uploadMCMirror(t *testing.T, u *s3User, bc *binaryCache) {
	_, errOut, err := u.tryMC("mirror", bc.Dir, "larder/nix")
	if err != nil {
		t.Fatalf("mc mirror: %v\n%s", err, errOut)
	}
	// mc reports a failed object on stderr and still exits 0.
	if strings.Contains(errOut, "<ERROR>") {
		t.Errorf("mc mirror into a fresh cache reported errors:\n%s", errOut)
	}
	sameKeys(t, "mc ls after mc mirror", mcKeys(t, u, "nix"), bc)
}

func uploadRcloneCopy(t *testing.T, u *s3User, bc *binaryCache) {
	if _, errOut, err := u.tryRclone("copy", bc.Dir, "larder:nix"); err != nil {
		t.Errorf("rclone copy: %v\n%s", err, tail(errOut, 30))
	}
	var keys []string
	for _, l := range lines(u.rclone("lsf", "-R", "--files-only", "larder:nix")) {
		keys = append(keys, l)
	}
	sameKeys(t, "rclone lsf after rclone copy", keys, bc)
}

func uploadS3cmdSync(t *testing.T, u *s3User, bc *binaryCache) {
	u.s3cmd("sync", "--no-progress", bc.Dir+"/", "s3://nix/")
	sameKeys(t, "s3cmd ls after s3cmd sync", s3cmdKeys(t, u, "nix"), bc)
}

// mcKeys lists a bucket with mc ls --recursive --json.
func mcKeys(t *testing.T, u *s3User, cache string) []string {
	t.Helper()
	var keys []string
	for _, l := range lines(u.mc("ls", "--recursive", "--json", "larder/"+cache)) {
		var e struct {
			Status string `json:"status"`
			Key    string `json:"key"`
			Type   string `json:"type"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Status != "success" {
			t.Fatalf("mc ls --json printed %q (%v)", l, err)
		}
		if e.Type == "file" {
			keys = append(keys, e.Key)
		}
	}
	return keys
}

// s3cmdKeys lists a bucket with s3cmd ls --recursive.
func s3cmdKeys(t *testing.T, u *s3User, cache string) []string {
	t.Helper()
	var keys []string
	prefix := "s3://" + cache + "/"
	for _, l := range lines(u.s3cmd("ls", "--recursive", "s3://"+cache)) {
		i := strings.Index(l, prefix)
		if i < 0 {
			t.Fatalf("s3cmd ls printed %q", l)
		}
		keys = append(keys, l[i+len(prefix):])
	}
	return keys
}

// sameFile fails the test unless two files hold the same bytes.
func sameFile(t *testing.T, want, got string) {
	t.Helper()
	a, err := os.ReadFile(want)
	must(t, err)
	b, err := os.ReadFile(got)
	must(t, err)
	if md5ETag(a) != md5ETag(b) || len(a) != len(b) {
		t.Errorf("%s (%d bytes, md5 %s) differs from %s (%d bytes, md5 %s)",
			got, len(b), md5ETag(b), want, len(a), md5ETag(a))
	}
}

// nixPartSize is the part size of Nix's S3 store (multipart-chunk-size).
const nixPartSize = 5 << 20

// replayNixS3 uploads a binary cache with curl --aws-sigv4 in the order
// and form of Nix's S3 store (2.33 and later, which signs with curl):
// GET nix-cache-info, GET of each narinfo (absent), then per path in
// dependency order HEAD of its NAR (absent), PUT of the NAR, PUT of the
// narinfo, each upload with Content-MD5. The NAR named multipartKey goes
// up as Nix's multipart upload does: POST ?uploads, PUT of each 5 MiB part
// in order, POST ?uploadId with a <CompleteMultipartUpload> without
// namespace. Each narinfo is served over the Nix protocol at once, as its
// NAR is already there.
func replayNixS3(t *testing.T, u *s3User, cache string, bc *binaryCache, multipartKey string) {
	t.Helper()
	r := u.curl(http.MethodGet, cache, "nix-cache-info", "", "")
	if r.Code != 200 || !strings.Contains(r.Body, "StoreDir: /nix/store") {
		t.Fatalf("GET nix-cache-info: %d %q", r.Code, r.Body)
	}
	for _, p := range bc.Order {
		r := u.curl(http.MethodGet, cache, bc.NarInfos[p].Key, "", "")
		if r.Code != 404 || !strings.Contains(r.Body, "<Code>NoSuchKey</Code>") {
			t.Fatalf("GET %s before the upload: %d %q, want 404 NoSuchKey", bc.NarInfos[p].Key, r.Code, r.Body)
		}
	}
	multipart := false
	for _, p := range bc.Order {
		ni := bc.NarInfos[p]
		if r := u.curl(http.MethodHead, cache, ni.NarKey, "", ""); r.Code != 404 {
			t.Fatalf("HEAD %s before the upload: %d, want 404", ni.NarKey, r.Code)
		}
		narFile := filepath.Join(bc.Dir, ni.NarKey)
		if ni.NarKey == multipartKey {
			multipartUpload(t, u, cache, ni.NarKey, narFile)
			multipart = true
		} else {
			putFile(t, u, cache, ni.NarKey, narFile, "application/x-nix-nar")
		}
		if r := u.curl(http.MethodHead, cache, ni.NarKey, "", ""); r.Code != 200 {
			t.Errorf("HEAD %s after the upload: %d, want 200", ni.NarKey, r.Code)
		}
		putFile(t, u, cache, ni.Key, filepath.Join(bc.Dir, ni.Key), "text/x-nix-narinfo")
		if code := u.srv.narInfoStatus(t, cache, p); code != 200 {
			t.Errorf("narinfo of %s right after its upload (NAR first): %d, want 200", p, code)
		}
	}
	if multipartKey != "" && !multipart {
		t.Fatalf("no NAR is named %s", multipartKey)
	}
}

// putFile uploads a file with curl's PUT, as Nix's PutObject does, and
// checks the ETag.
func putFile(t *testing.T, u *s3User, cache, key, file, contentType string) {
	t.Helper()
	data, err := os.ReadFile(file)
	must(t, err)
	r := u.curl(http.MethodPut, cache, key, "", file, "Content-Type: "+contentType, contentMD5(data))
	if r.Code != 200 {
		t.Fatalf("PUT %s: %d %s", key, r.Code, r.Body)
	}
	if got := r.Header.Get("ETag"); got != md5ETag(data) {
		t.Errorf("PUT %s answered ETag %q, want %s", key, got, md5ETag(data))
	}
}

// multipartUpload uploads a file in Nix's multipart form and checks what
// larder answers at each step.
func multipartUpload(t *testing.T, u *s3User, cache, key, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	must(t, err)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	must(t, os.WriteFile(empty, nil, 0o644))
	r := u.curl(http.MethodPost, cache, key, "uploads", empty, "Content-Type: application/x-nix-nar")
	m := uploadIDPattern.FindStringSubmatch(r.Body)
	if r.Code != 200 || m == nil {
		t.Fatalf("POST %s?uploads: %d %q, want 200 with an UploadId", key, r.Code, r.Body)
	}
	uploadID := m[1]
	var xml strings.Builder
	xml.WriteString("<CompleteMultipartUpload>")
	parts := 0
	for off := 0; off < len(data); off += nixPartSize {
		parts++
		part := data[off:min(off+nixPartSize, len(data))]
		partFile := filepath.Join(dir, fmt.Sprintf("part%d", parts))
		must(t, os.WriteFile(partFile, part, 0o644))
		r := u.curl(http.MethodPut, cache, key, fmt.Sprintf("partNumber=%d&uploadId=%s", parts, uploadID), partFile,
			"Content-Type: application/octet-stream", contentMD5(part))
		etag := r.Header.Get("ETag")
		if r.Code != 200 || etag != md5ETag(part) {
			t.Fatalf("PUT part %d of %s: %d ETag %q %s, want 200 ETag %s", parts, key, r.Code, etag, r.Body, md5ETag(part))
		}
		fmt.Fprintf(&xml, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", parts, etag)
	}
	xml.WriteString("</CompleteMultipartUpload>")
	if parts < 2 {
		t.Fatalf("%s has %d bytes, one part only", key, len(data))
	}
	// Nothing is visible before the upload is complete.
	if code, _ := httpDo(t, "GET", u.srv.cacheURL(cache)+"/"+key, u.srv.AdminToken, nil); code != 404 {
		t.Errorf("GET %s over the Nix protocol before Complete: %d, want 404", key, code)
	}
	xmlFile := filepath.Join(dir, "complete.xml")
	must(t, os.WriteFile(xmlFile, []byte(xml.String()), 0o644))
	r = u.curl(http.MethodPost, cache, key, "uploadId="+uploadID, xmlFile, "Content-Type: text/xml")
	if r.Code != 200 || !strings.Contains(r.Body, "<CompleteMultipartUploadResult") {
		t.Fatalf("POST %s?uploadId (Complete): %d %q", key, r.Code, r.Body)
	}
	want := multipartETag(data, nixPartSize)
	if !strings.Contains(r.Body, strings.Trim(want, `"`)) {
		t.Errorf("Complete answered %q, want the ETag %s", r.Body, want)
	}
	if n := u.srv.countFiles(t, "blobs/upload"); n != 0 {
		t.Errorf("%d files of the upload are left after Complete", n)
	}
	r = u.curl(http.MethodHead, cache, key, "", "")
	if r.Code != 200 || r.Header.Get("Content-Length") != fmt.Sprint(len(data)) {
		t.Errorf("HEAD %s after Complete: %d Content-Length %q, want 200 and %d", key, r.Code, r.Header.Get("Content-Length"), len(data))
	}
}

// TestS3SyncAgain uploads a binary cache with aws s3 sync and with mc
// mirror, then runs the same command on the same directory again: the
// second run must report no error, store no NAR twice, and leave every
// path served and verified.
func TestS3SyncAgain(t *testing.T) {
	cases := []struct {
		name string
		sync func(t *testing.T, u *s3User, bc *binaryCache) (errOut string)
	}{
		{"aws-s3-sync", func(t *testing.T, u *s3User, bc *binaryCache) string {
			_, errOut, err := u.tryAWS("s3", "sync", "--no-progress", bc.Dir, "s3://nix")
			if err != nil {
				t.Errorf("aws s3 sync: %v\n%s", err, errOut)
			}
			return errOut
		}},
		{"mc-mirror", func(t *testing.T, u *s3User, bc *binaryCache) string {
			_, errOut, err := u.tryMC("mirror", bc.Dir, "larder/nix")
			if err != nil {
				t.Errorf("mc mirror: %v\n%s", err, errOut)
			}
			return errOut
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, "--chunking=false") // it counts whole NAR files
			u := s3Cache(t, srv, "nix", "write")
			n := needNix(t)
			bc := n.makeBinaryCache(n.buildClosure("s3again-" + tc.name + "-" + randomHex(4)))
			tc.sync(t, u, bc)
			for _, p := range bc.Closure.Paths {
				if code := srv.narInfoStatus(t, "nix", p); code != 200 {
					t.Fatalf("narinfo of %s after the first %s: %d", p, tc.name, code)
				}
			}
			nars := srv.countFiles(t, "blobs/nar")
			before := srv.logSize()
			errOut := tc.sync(t, u, bc)
			if strings.TrimSpace(errOut) != "" {
				t.Errorf("the second %s reported:\n%s\nlarder saw:\n%s", tc.name, errOut, tail(srv.log.String()[before:], 30))
			}
			if got := srv.countFiles(t, "blobs/nar"); got != nars {
				t.Errorf("%d NAR files after the second %s, %d before", got, tc.name, nars)
			}
			checkServed(t, srv, "nix", bc)
		})
	}
}

// TestS3SyncManyPaths uploads a binary cache of many small paths with aws
// s3 sync, 20 requests at a time, into four caches at once, so that
// narinfos and their NARs arrive together in every order; three rounds, into
// fresh caches each time, while the other tests load the machine. When the
// syncs have returned, every narinfo must be served: one held while its NAR
// was being stored must not stay held.
func TestS3SyncManyPaths(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	id, secret := srv.s3Key(t, "race-*", "write")
	u := newS3User(t, srv, id, secret)
	must(t, os.WriteFile(filepath.Join(u.home, ".aws/config"),
		[]byte("[default]\nregion = "+s3Region+"\ns3 =\n  addressing_style = path\n  max_concurrent_requests = 20\n"), 0o600))
	needTool(t, "aws")
	n := needNix(t)
	seed := randomHex(8)
	dir := t.TempDir()
	var files []string
	for i := range 60 {
		f := filepath.Join(dir, fmt.Sprintf("f%02d", i))
		must(t, os.WriteFile(f, []byte(fmt.Sprintf("file %d of %s\n", i, seed)), 0o644))
		files = append(files, f)
	}
	paths := lines(n.run(append([]string{"nix-store", "--add"}, files...)...))
	if len(paths) != len(files) {
		t.Fatalf("nix-store --add printed %d paths for %d files", len(paths), len(files))
	}
	bc := n.makeBinaryCache(closure{Top: paths[0], Paths: paths})
	for round := range 3 {
		var caches []string
		var wg sync.WaitGroup
		for i := range 4 {
			c := fmt.Sprintf("race-%d-%d", round, i)
			srv.cli(t, "cache", "create", c)
			caches = append(caches, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, errOut, err := u.tryAWS("s3", "sync", "--no-progress", bc.Dir, "s3://"+c); err != nil {
					t.Errorf("aws s3 sync into %s: %v\n%s", c, err, tail(errOut, 20))
				}
			}()
		}
		wg.Wait()
		for _, c := range caches {
			checkAllServed(t, srv, c, bc)
		}
		if t.Failed() {
			return
		}
	}
}

// checkAllServed checks that a cache serves the narinfo of every path of
// bc, allowing a few seconds for a late commit, and shows what larder
// logged about each one that it does not serve.
func checkAllServed(t *testing.T, srv *server, cache string, bc *binaryCache) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range bc.Closure.Paths {
		code := srv.narInfoStatus(t, cache, p)
		for code != 200 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			code = srv.narInfoStatus(t, cache, p)
		}
		if code == 200 {
			continue
		}
		var log []string
		for _, l := range strings.Split(srv.log.String(), "\n") {
			if strings.Contains(l, "cache="+cache+" ") && (strings.Contains(l, hashPart(p)) || strings.Contains(l, bc.NarInfos[p].NarKey)) {
				log = append(log, l)
			}
		}
		narCode, _ := httpDo(t, "HEAD", srv.cacheURL(cache)+"/"+bc.NarInfos[p].NarKey, srv.AdminToken, nil)
		t.Errorf("cache %s: narinfo of %s: %d after aws s3 sync returned (its NAR: %d); larder logged:\n%s",
			cache, p, code, narCode, strings.Join(log, "\n"))
	}
}

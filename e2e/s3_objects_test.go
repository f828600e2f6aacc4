package e2e

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// oddKey is a key with characters that need escaping in URLs, signatures
// and XML listings.
const oddKey = `odd/&+-é" x~y%z.txt`

// TestS3PlainObjects uses a cache as a bucket for other build artefacts, with
// every client: a 20 MiB file through aws s3 cp (multipart, 8 MiB parts),
// mc cp (multipart, 16 MiB parts) and s3cmd put (multipart, 15 MiB parts),
// each with the multipart ETag; s3api head-object with content type and
// metadata; downloads with Range GETs; a presigned URL read by plain curl;
// mc stat; a server-side copy; a key with awkward characters listed and read
// back by every client; rclone copy and rclone check of a directory; and
// deletion.
func TestS3PlainObjects(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	u := s3Cache(t, srv, "nix", "write")
	dir := t.TempDir()
	big := make([]byte, 20<<20)
	rng := rand.New(rand.NewChaCha8([32]byte([]byte(randomHex(16)))))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	bigFile := filepath.Join(dir, "big.bin")
	must(t, os.WriteFile(bigFile, big, 0o644))
	down := func(name string) string { return filepath.Join(t.TempDir(), name) }

	// awscli: multipart upload in 8 MiB parts, with metadata.
	u.aws("s3", "cp", "--no-progress", "--content-type", "application/x-test-artefact",
		"--metadata", "purpose=e2e,build=42", bigFile, "s3://nix/artefacts/aws.bin")
	head := headObject(t, u, "nix", "artefacts/aws.bin")
	if head.ContentLength != int64(len(big)) || head.ETag != multipartETag(big, 8<<20) || head.ContentType != "application/x-test-artefact" {
		t.Errorf("head-object of artefacts/aws.bin: %+v, want %d bytes, ETag %s and the content type given",
			head, len(big), multipartETag(big, 8<<20))
	}
	// S3 keeps metadata names as they were sent (x-amz-meta-purpose), and
	// SDKs hand them to programs under those names.
	if len(head.Metadata) != 2 || head.Metadata["purpose"] != "e2e" || head.Metadata["build"] != "42" {
		t.Errorf("head-object of artefacts/aws.bin has metadata %v, want map[build:42 purpose:e2e]", head.Metadata)
	}
	before := srv.logSize()
	got := down("aws.bin")
	u.aws("s3", "cp", "--no-progress", "s3://nix/artefacts/aws.bin", got)
	sameFile(t, bigFile, got)
	srv.waitLogLine(t, before, "op=GetObject", "status=206")

	// A presigned URL, read by plain curl, in full and in part; a tampered
	// one is refused.
	url := strings.TrimSpace(u.aws("s3", "presign", "s3://nix/artefacts/aws.bin", "--expires-in", "300"))
	curl := needTool(t, "curl")
	got = down("presigned.bin")
	if out, errOut, err := u.exec(curl, "-sS", "-o", got, "-w", "%{http_code}", url); err != nil || out != "200" {
		t.Errorf("curl of a presigned URL: %v %s %s", err, out, errOut)
	} else {
		sameFile(t, bigFile, got)
	}
	if out, errOut, err := u.exec(curl, "-sS", "-o", got, "-r", "100-199", "-w", "%{http_code}", url); err != nil || out != "206" {
		t.Errorf("curl -r 100-199 of a presigned URL: %v %s %s", err, out, errOut)
	} else if b, _ := os.ReadFile(got); string(b) != string(big[100:200]) {
		t.Errorf("curl -r 100-199 of a presigned URL got %d bytes, not bytes 100 to 199", len(b))
	}
	tampered := strings.Replace(url, "X-Amz-Expires=300", "X-Amz-Expires=301", 1)
	if out, _, _ := u.exec(curl, "-sS", "-o", got, "-w", "%{http_code}", tampered); out != "403" {
		t.Errorf("curl of a presigned URL with another expiry: %s, want 403", out)
	} else if b, _ := os.ReadFile(got); !strings.Contains(string(b), "SignatureDoesNotMatch") {
		t.Errorf("a tampered presigned URL is refused with %q, want SignatureDoesNotMatch", b)
	}

	// mc: multipart in 16 MiB parts, stat, download.
	u.mc("cp", "--quiet", bigFile, "larder/nix/artefacts/mc.bin")
	var stat struct {
		Status string `json:"status"`
		Size   int64  `json:"size"`
		ETag   string `json:"etag"`
	}
	if err := json.Unmarshal([]byte(u.mc("stat", "--json", "larder/nix/artefacts/mc.bin")), &stat); err != nil {
		t.Fatalf("mc stat --json: %v", err)
	}
	if stat.Status != "success" || stat.Size != int64(len(big)) || `"`+stat.ETag+`"` != multipartETag(big, 16<<20) {
		t.Errorf("mc stat: %+v, want %d bytes and ETag %s", stat, len(big), multipartETag(big, 16<<20))
	}
	got = down("mc.bin")
	u.mc("cp", "--quiet", "larder/nix/artefacts/mc.bin", got)
	sameFile(t, bigFile, got)

	// s3cmd: multipart in 15 MiB parts.
	u.s3cmd("put", "--no-progress", bigFile, "s3://nix/artefacts/s3cmd.bin")
	if head := headObject(t, u, "nix", "artefacts/s3cmd.bin"); head.ETag != multipartETag(big, 15<<20) {
		t.Errorf("s3cmd put of 20 MiB has ETag %s, want %s", head.ETag, multipartETag(big, 15<<20))
	}
	got = down("s3cmd.bin")
	u.s3cmd("get", "--no-progress", "s3://nix/artefacts/s3cmd.bin", got)
	sameFile(t, bigFile, got)

	// Server-side copies: CopyObject of a small object, and of the 20 MiB
	// one, which awscli copies as a multipart upload of UploadPartCopy.
	small := filepath.Join(dir, "small.txt")
	must(t, os.WriteFile(small, []byte("small "+randomHex(8)+"\n"), 0o644))
	u.aws("s3", "cp", "--no-progress", small, "s3://nix/artefacts/small.txt")
	u.aws("s3", "cp", "--no-progress", "s3://nix/artefacts/small.txt", "s3://nix/artefacts/small-copy.txt")
	want, _ := os.ReadFile(small)
	if got := u.mc("cat", "larder/nix/artefacts/small-copy.txt"); got != string(want) {
		t.Errorf("the copy of artefacts/small.txt holds %q, want %q", got, want)
	}
	if _, errOut, err := u.tryAWS("s3", "cp", "--no-progress", "s3://nix/artefacts/aws.bin", "s3://nix/artefacts/copy.bin"); err != nil {
		t.Errorf("aws s3 cp s3://nix/artefacts/aws.bin s3://nix/artefacts/copy.bin: %v\n%s", err, errOut)
	} else {
		got = down("copy.bin")
		u.mc("cp", "--quiet", "larder/nix/artefacts/copy.bin", got)
		sameFile(t, bigFile, got)
	}

	// A key with awkward characters, written by aws and read by every client.
	u.aws("s3", "cp", "--no-progress", small, "s3://nix/"+oddKey)
	if keys := u.awsKeys("nix"); !contains(keys, oddKey) {
		t.Errorf("aws s3 ls does not list %q: %q", oddKey, keys)
	}
	if keys := mcKeys(t, u, "nix"); !contains(keys, oddKey) {
		t.Errorf("mc ls does not list %q: %q", oddKey, keys)
	}
	if keys := s3cmdKeys(t, u, "nix"); !contains(keys, oddKey) {
		t.Errorf("s3cmd ls does not list %q: %q", oddKey, keys)
	}
	if keys := lines(u.rclone("lsf", "-R", "--files-only", "larder:nix")); !contains(keys, oddKey) {
		t.Errorf("rclone lsf does not list %q: %q", oddKey, keys)
	}
	for what, text := range map[string]string{
		"mc cat":     u.mc("cat", "larder/nix/"+oddKey),
		"rclone cat": u.rclone("cat", "larder:nix/"+oddKey),
		"s3cmd get":  u.s3cmd("get", "--no-progress", "s3://nix/"+oddKey, "-"),
	} {
		if text != string(want) {
			t.Errorf("%s %q: %q, want %q", what, oddKey, text, want)
		}
	}

	// rclone: a directory in, rclone check, the listing.
	tree := filepath.Join(dir, "tree")
	files := map[string]string{"a.txt": "a\n", "sub/b.txt": "bb\n", "sub/deeper/c d.txt": strings.Repeat("c", 70000)}
	for name, text := range files {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(tree, name)), 0o755))
		must(t, os.WriteFile(filepath.Join(tree, name), []byte(text), 0o644))
	}
	u.rclone("copy", tree, "larder:nix/tree")
	u.rclone("check", tree, "larder:nix/tree")
	var names []string
	for name := range files {
		names = append(names, name)
	}
	if listed := lines(u.rclone("lsf", "-R", "--files-only", "larder:nix/tree")); !sameSet(listed, names) {
		t.Errorf("rclone lsf lists %v, want %v", listed, names)
	}

	// Deleting a plain object.
	u.aws("s3", "rm", "s3://nix/artefacts/small-copy.txt")
	if _, errOut, err := u.tryAWS("s3api", "head-object", "--bucket", "nix", "--key", "artefacts/small-copy.txt"); err == nil || !strings.Contains(errOut, "Not Found") {
		t.Errorf("head-object of a deleted object: %v %s, want 404 Not Found", err, errOut)
	}
	if n := srv.countFiles(t, "blobs/upload"); n != 0 {
		t.Errorf("%d files of multipart uploads are left", n)
	}
	// Nor does each finished upload leave its directory behind.
	if left, err := os.ReadDir(filepath.Join(srv.Data, "blobs", "upload")); err == nil && len(left) != 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("blobs/upload still holds %v after every multipart upload completed", names)
	}
}

// s3Head is what aws s3api head-object prints.
type s3Head struct {
	ContentLength int64             `json:"ContentLength"`
	ETag          string            `json:"ETag"`
	ContentType   string            `json:"ContentType"`
	LastModified  string            `json:"LastModified"`
	Metadata      map[string]string `json:"Metadata"`
}

func headObject(t *testing.T, u *s3User, cache, key string) s3Head {
	t.Helper()
	var h s3Head
	out := u.aws("s3api", "head-object", "--bucket", cache, "--key", key)
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatalf("head-object %s: %v\n%s", key, err, out)
	}
	return h
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestS3NixKeysRead reads the keys of a binary cache uploaded over S3 back
// through the clients: over S3 they read back as written (so that sync
// tools see what they uploaded), while the Nix protocol serves each
// narinfo signed by the cache; NARs come back byte for byte as
// application/x-nix-nar, and a NAR shared with another cache keeps one
// Last-Modified in HEAD and in the listing.
func TestS3NixKeysRead(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	u := s3Cache(t, srv, "nix", "write")
	n := needNix(t)
	bc := n.makeBinaryCache(n.buildPair("s3read-" + randomHex(4)))
	u.aws("s3", "sync", "--no-progress", bc.Dir, "s3://nix")
	url := srv.cacheURL("nix")

	for _, p := range bc.Closure.Paths {
		ni := bc.NarInfos[p]
		code, served := httpDo(t, "GET", url+"/"+ni.Key, "", nil)
		if code != 200 || !strings.Contains(served, "Sig: nix.") {
			t.Fatalf("GET %s over the Nix protocol: %d, without the cache's signature:\n%s", ni.Key, code, served)
		}
		written, err := os.ReadFile(filepath.Join(bc.Dir, ni.Key))
		must(t, err)
		if got := u.mc("cat", "larder/nix/"+ni.Key); got != string(written) {
			t.Errorf("mc cat %s:\n%s\nwant it as written:\n%s", ni.Key, got, written)
		}
		if h := headObject(t, u, "nix", ni.Key); h.ContentLength != int64(len(written)) {
			t.Errorf("head-object %s: %+v, want %d bytes as written", ni.Key, h, len(written))
		}
		got := filepath.Join(t.TempDir(), "nar")
		u.aws("s3", "cp", "--no-progress", "s3://nix/"+ni.NarKey, got)
		sameFile(t, filepath.Join(bc.Dir, ni.NarKey), got)
		if h := headObject(t, u, "nix", ni.NarKey); h.ContentType != "application/x-nix-nar" {
			t.Errorf("head-object %s: content type %q, want application/x-nix-nar", ni.NarKey, h.ContentType)
		}
	}
	_, info := httpDo(t, "GET", url+"/nix-cache-info", "", nil)
	if !strings.Contains(info, "WantMassQuery: 1") {
		t.Errorf("the Nix protocol serves nix-cache-info %q, not the cache's own", info)
	}
	writtenInfo, err := os.ReadFile(filepath.Join(bc.Dir, "nix-cache-info"))
	must(t, err)
	if got := u.mc("cat", "larder/nix/nix-cache-info"); got != string(writtenInfo) {
		t.Errorf("mc cat nix-cache-info: %q, want it as written: %q", got, writtenInfo)
	}

	// The same NARs into a second cache, in a later second: its objects'
	// Last-Modified is that of their upload to it, in HEAD as in listings.
	first := time.Now().Truncate(time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for !time.Now().Truncate(time.Second).After(first) {
		if time.Now().After(deadline) {
			t.Fatal("the clock does not move")
		}
		time.Sleep(20 * time.Millisecond)
	}
	second := s3Cache(t, srv, "second", "write")
	second.aws("s3", "sync", "--no-progress", bc.Dir, "s3://second")
	listed := map[string]time.Time{}
	var list struct {
		Contents []struct {
			Key          string `json:"Key"`
			LastModified string `json:"LastModified"`
		} `json:"Contents"`
	}
	out := second.aws("s3api", "list-objects-v2", "--bucket", "second")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list-objects-v2: %v\n%s", err, out)
	}
	for _, c := range list.Contents {
		tm, err := time.Parse(time.RFC3339, c.LastModified)
		if err != nil {
			t.Fatalf("list-objects-v2 gives %s LastModified %q", c.Key, c.LastModified)
		}
		listed[c.Key] = tm
	}
	for _, p := range bc.Closure.Paths {
		for _, key := range []string{bc.NarInfos[p].Key, bc.NarInfos[p].NarKey} {
			h := headObject(t, second, "second", key)
			tm, err := time.Parse(time.RFC3339, h.LastModified)
			if err != nil {
				t.Fatalf("head-object %s LastModified %q", key, h.LastModified)
			}
			if !tm.Equal(listed[key]) {
				t.Errorf("in cache second, %s has Last-Modified %v in HEAD and %v in the listing", key, tm, listed[key])
			}
			if !tm.After(first) {
				t.Errorf("in cache second, %s has Last-Modified %v, before its upload to that cache (after %v)", key, tm, first)
			}
		}
	}
}

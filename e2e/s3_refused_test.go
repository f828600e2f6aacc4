package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestS3Refused tries to upload a binary cache with credentials that must
// not work, with the real clients: a read-only key (aws, mc, rclone), a
// write key of another cache (aws), a wrong secret (aws, mc, s3cmd) and an
// unknown key id (aws). Each client fails with the right S3 error, larder
// logs it, and nothing is stored. The same upload then goes through with a
// write key, so the refusals were about the credentials.
func TestS3Refused(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	writer := s3Cache(t, srv, "nix", "write")
	readID, readSecret := srv.s3Key(t, "nix", "read")
	reader := newS3User(t, srv, readID, readSecret)
	srv.cli(t, "cache", "create", "other")
	otherID, otherSecret := srv.s3Key(t, "other", "write")
	otherWriter := newS3User(t, srv, otherID, otherSecret)
	wrongSecret := newS3User(t, srv, writer.id, "wrong"+writer.secret[5:])
	unknownKey := newS3User(t, srv, "LRD"+strings.ToUpper(randomHex(8)), writer.secret)
	n := needNix(t)
	bc := n.makeBinaryCache(n.buildPair("s3refused-" + randomHex(4)))
	narKey := bc.NarInfos[bc.Closure.Top].NarKey

	nothingStored := func(what string) {
		t.Helper()
		if got := srv.countFiles(t, "blobs"); got != 0 {
			t.Errorf("%s: %d files under blobs, want none", what, got)
		}
		for _, p := range bc.Closure.Paths {
			if code := srv.narInfoStatus(t, "nix", p); code != 404 {
				t.Errorf("%s: narinfo of %s: %d, want 404", what, p, code)
			}
		}
		if keys := writer.awsKeys("nix"); len(keys) > 1 || len(keys) == 1 && keys[0] != "nix-cache-info" {
			t.Errorf("%s: aws s3 ls lists %v, want at most nix-cache-info", what, keys)
		}
	}
	fails := func(what string, want []string, out, errOut string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s succeeded, want a failure with %q\nstdout:\n%s\nstderr:\n%s", what, want, out, errOut)
			return
		}
		for _, w := range want {
			if !strings.Contains(out+errOut, w) {
				t.Errorf("%s failed, but without %q:\nstdout:\n%s\nstderr:\n%s", what, w, tail(out, 20), tail(errOut, 20))
			}
		}
	}

	// A read-only key: every PUT is refused.
	before := srv.logSize()
	out, errOut, err := reader.tryAWS("s3", "sync", "--no-progress", bc.Dir, "s3://nix")
	fails("aws s3 sync with a read key", []string{"AccessDenied", "PutObject"}, out, errOut, err)
	srv.waitLogLine(t, before, "op=PutObject", "status=403", "code=AccessDenied")
	nothingStored("aws s3 sync with a read key")
	// The read key still reads: it lists the bucket.
	if keys := reader.awsKeys("nix"); len(keys) > 1 {
		t.Errorf("aws s3 ls with a read key lists %v, want at most nix-cache-info", keys)
	}
	out, errOut, err = reader.tryMC("cp", filepath.Join(bc.Dir, narKey), "larder/nix/"+narKey)
	fails("mc cp with a read key", []string{"Insufficient permissions"}, out, errOut, err)
	out, errOut, err = reader.tryRclone("copy", "--retries", "1", bc.Dir, "larder:nix")
	fails("rclone copy with a read key", []string{"AccessDenied"}, out, errOut, err)
	nothingStored("mc cp and rclone copy with a read key")

	// Another cache's write key.
	out, errOut, err = otherWriter.tryAWS("s3", "cp", "--no-progress", filepath.Join(bc.Dir, narKey), "s3://nix/"+narKey)
	fails("aws s3 cp with another cache's write key", []string{"AccessDenied"}, out, errOut, err)
	nothingStored("aws s3 cp with another cache's write key")

	// A wrong secret: the signature does not match, on reads and writes.
	before = srv.logSize()
	out, errOut, err = wrongSecret.tryAWS("s3", "ls", "s3://nix")
	fails("aws s3 ls with a wrong secret", []string{"SignatureDoesNotMatch"}, out, errOut, err)
	out, errOut, err = wrongSecret.tryAWS("s3", "cp", "--no-progress", filepath.Join(bc.Dir, narKey), "s3://nix/"+narKey)
	fails("aws s3 cp with a wrong secret", []string{"SignatureDoesNotMatch"}, out, errOut, err)
	srv.waitLogLine(t, before, "status=403", "code=SignatureDoesNotMatch")
	out, errOut, err = wrongSecret.tryS3cmd("put", filepath.Join(bc.Dir, narKey), "s3://nix/"+narKey)
	fails("s3cmd put with a wrong secret", []string{"SignatureDoesNotMatch"}, out, errOut, err)
	out, errOut, err = wrongSecret.exec(needTool(t, "mc"), "alias", "set", "larder", srv.URL, wrongSecret.id, wrongSecret.secret)
	fails("mc alias set with a wrong secret", []string{"signature we calculated does not match"}, out, errOut, err)
	nothingStored("uploads with a wrong secret")

	// An access key id larder never issued.
	out, errOut, err = unknownKey.tryAWS("s3", "sync", "--no-progress", bc.Dir, "s3://nix")
	fails("aws s3 sync with an unknown key id", []string{"InvalidAccessKeyId"}, out, errOut, err)
	nothingStored("aws s3 sync with an unknown key id")

	writer.aws("s3", "sync", "--no-progress", bc.Dir, "s3://nix")
	for _, p := range bc.Closure.Paths {
		if code := srv.narInfoStatus(t, "nix", p); code != 200 {
			t.Errorf("narinfo of %s after aws s3 sync with a write key: %d, want 200", p, code)
		}
	}
	if got := srv.countFiles(t, "blobs/nar"); got != len(bc.Closure.Paths) {
		t.Errorf("%d NAR files after an allowed upload, want %d", got, len(bc.Closure.Paths))
	}
}

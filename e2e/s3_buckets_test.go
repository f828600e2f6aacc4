package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestS3Buckets creates and deletes caches as buckets with the clients: an
// admin key scoped to 'ci-*' makes buckets with aws s3 mb, mc mb and rclone
// mkdir (which tolerates an existing one), sees only them in ListBuckets,
// cannot make one outside its scope, and removes them with aws s3 rb (refused
// while not empty, done by rb --force); a write key for every cache cannot
// make one. A cache made over S3 is a Nix cache like any other.
func TestS3Buckets(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	id, secret := srv.s3Key(t, "ci-*", "admin")
	admin := newS3User(t, srv, id, secret)
	id, secret = srv.s3Key(t, "*", "write")
	writer := newS3User(t, srv, id, secret)
	cacheList := func() string { return srv.cli(t, "cache", "list") }
	hasCache := func(name string) bool {
		for _, l := range lines(cacheList()) {
			if f := strings.Fields(l); len(f) > 0 && f[0] == name {
				return true
			}
		}
		return false
	}
	fails := func(what, want string, out, errOut string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(out+errOut, want) {
			t.Errorf("%s: %v, want a failure with %s\nstdout:\n%s\nstderr:\n%s", what, err, want, out, errOut)
		}
	}

	admin.aws("s3", "mb", "s3://ci-one")
	admin.mc("mb", "larder/ci-two")
	admin.rclone("mkdir", "larder:ci-three")
	admin.rclone("mkdir", "larder:ci-three")
	for _, name := range []string{"ci-one", "ci-two", "ci-three"} {
		if !hasCache(name) {
			t.Errorf("larder cache list has no %s after it was made over S3:\n%s", name, cacheList())
		}
		checkCacheInfo(t, srv, name)
		if key := srv.pubkey(t, name); !strings.HasPrefix(key, name+".") {
			t.Errorf("cache %s made over S3 has public key %q", name, key)
		}
	}
	out, errOut, err := admin.tryAWS("s3", "mb", "s3://ci-one")
	fails("aws s3 mb of an existing bucket", "BucketAlreadyOwnedByYou", out, errOut, err)
	out, errOut, err = admin.tryAWS("s3", "mb", "s3://other-one")
	fails("aws s3 mb outside the key's scope", "AccessDenied", out, errOut, err)
	out, errOut, err = writer.tryAWS("s3", "mb", "s3://ci-four")
	fails("aws s3 mb with a write key", "AccessDenied", out, errOut, err)
	if hasCache("other-one") || hasCache("ci-four") {
		t.Errorf("a refused mb made a cache:\n%s", cacheList())
	}

	var buckets []string
	for _, l := range lines(admin.aws("s3", "ls")) {
		f := strings.Fields(l)
		buckets = append(buckets, f[len(f)-1])
	}
	if !sameSet(buckets, []string{"ci-one", "ci-two", "ci-three"}) {
		t.Errorf("aws s3 ls with a key for 'ci-*' lists %v, want ci-one ci-two ci-three", buckets)
	}

	file := filepath.Join(t.TempDir(), "f.txt")
	must(t, os.WriteFile(file, []byte("x\n"), 0o644))
	admin.aws("s3", "cp", "--no-progress", file, "s3://ci-two/f.txt")
	out, errOut, err = admin.tryAWS("s3", "rb", "s3://ci-two")
	fails("aws s3 rb of a bucket with an object", "BucketNotEmpty", out, errOut, err)
	if !hasCache("ci-two") {
		t.Errorf("a refused rb deleted the cache")
	}
	admin.aws("s3", "rb", "s3://ci-one")
	admin.aws("s3", "rb", "--force", "s3://ci-two")
	if hasCache("ci-one") || hasCache("ci-two") {
		t.Errorf("larder cache list still has a removed bucket:\n%s", cacheList())
	}
	// Without a token a missing cache is refused like a private one; a
	// token that covers the name is told it is gone.
	if code, _ := httpDo(t, "GET", srv.cacheURL("ci-one")+"/nix-cache-info", srv.AdminToken, nil); code != 404 {
		t.Errorf("GET nix-cache-info of a removed cache: %d, want 404", code)
	}
}

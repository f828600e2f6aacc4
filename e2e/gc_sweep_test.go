package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// blobCounts counts the files under each prefix of the blob store that
// holds what S3 clients write.
func (s *server) blobCounts(t *testing.T) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, dir := range []string{"object", "upload", "file", "nar"} {
		m[dir] = s.countFiles(t, filepath.Join("blobs", dir))
	}
	return m
}

// TestGCSweepsS3Garbage: what S3 clients overwrite and delete is freed. A
// directory mirrored into a cache with mc and removed with mc rm
// --recursive --force, twice, an object overwritten, a bucket removed with
// an upload in progress (whose parts go at once) and a cache deleted with
// larder cache delete leave blobs that no record holds; the first
// collection a grace period later finds them, the next one deletes them,
// and the blob store holds exactly what the caches still hold.
func TestGCSweepsS3Garbage(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--gc-interval", "0s", "--gc-grace", "1s")
	id, secret := srv.s3Key(t, "*", "admin")
	u := newS3User(t, srv, id, secret)
	dir := filepath.Join(t.TempDir(), "site")
	must(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	for i := range 6 {
		data := make([]byte, 20_000+i)
		_, _ = rand.Read(data)
		must(t, os.WriteFile(filepath.Join(dir, "sub", fmt.Sprintf("f%d.bin", i)), data, 0o644))
	}
	for round := range 2 {
		u.mc("mirror", "--overwrite", dir, "larder/main")
		u.mc("rm", "--recursive", "--force", "larder/main/")
		if keys := u.awsKeys("main"); len(keys) != 0 {
			t.Fatalf("round %d: main lists %v after mc rm --recursive --force", round, keys)
		}
	}
	// One object that stays, written three times.
	for i := range 3 {
		f := filepath.Join(t.TempDir(), "kept.txt")
		must(t, os.WriteFile(f, fmt.Appendf(nil, "version %d", i), 0o644))
		u.mc("cp", f, "larder/main/kept.txt")
	}
	// A bucket removed while a multipart upload is in progress in it.
	c, err := minio.NewCore(srv.Addr, &minio.Options{Creds: credentials.NewStaticV4(id, secret, ""), Region: s3Region})
	must(t, err)
	ctx := context.Background()
	u.mc("mb", "larder/scratch")
	up, err := c.NewMultipartUpload(ctx, "scratch", "big.bin", minio.PutObjectOptions{})
	must(t, err)
	part := bytes.Repeat([]byte("p"), 5<<20)
	_, err = c.PutObjectPart(ctx, "scratch", "big.bin", up, 1, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{})
	must(t, err)
	if n := srv.blobCounts(t)["upload"]; n != 1 {
		t.Fatalf("%d part blobs while an upload has one part, want 1", n)
	}
	u.mc("rb", "larder/scratch")
	if n := srv.blobCounts(t)["upload"]; n != 0 {
		t.Errorf("%d part blobs left by removing the bucket of an upload in progress, want 0", n)
	}
	// A cache deleted with objects in it.
	srv.cli(t, "cache", "create", "gone")
	u.mc("mirror", dir, "larder/gone")
	srv.cli(t, "cache", "delete", "gone")

	garbage := srv.blobCounts(t)
	if garbage["object"] < 6*3+3 {
		t.Fatalf("only %d object blobs after the uploads, want at least %d: the test no longer makes garbage", garbage["object"], 6*3+3)
	}
	time.Sleep(1100 * time.Millisecond) // every blob is older than the grace period
	if r := srv.collect(t); r.Blobs != 0 {
		t.Errorf("the first collection swept %d blobs: a blob must be seen orphaned by two collections a grace period apart", r.Blobs)
	}
	time.Sleep(1100 * time.Millisecond)
	dry := srv.collect(t, "--dry-run")
	if got := srv.blobCounts(t); got["object"] != garbage["object"] {
		t.Errorf("a dry run deleted blobs: %v, were %v", got, garbage)
	}
	r := srv.collect(t)
	if r.Blobs != dry.Blobs || r.Blobs < garbage["object"]-1 {
		t.Errorf("the collection swept %d blobs, its dry run predicted %d; want every object blob but one of %d", r.Blobs, dry.Blobs, garbage["object"])
	}
	if got := srv.blobCounts(t); got["object"] != 1 || got["upload"] != 0 {
		t.Errorf("blobs left after the sweep: %v, want the one object main holds", got)
	}
	out := u.mc("cat", "larder/main/kept.txt")
	if out != "version 2" {
		t.Errorf("the kept object reads %q after the sweep, want %q", out, "version 2")
	}
	// A sweep with nothing to do deletes nothing.
	time.Sleep(1100 * time.Millisecond)
	if r := srv.collect(t); r.Blobs != 0 {
		t.Errorf("a sweep with nothing orphaned deleted %d blobs", r.Blobs)
	}
}

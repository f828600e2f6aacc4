package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/testserver"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// stallingBody yields the first half of data, then waits for release
// before it yields the rest: an upload that is slow while a collection
// runs.
type stallingBody struct {
	data    []byte
	off     int
	release <-chan struct{}
	halfway chan<- struct{}
}

func (b *stallingBody) Read(p []byte) (int, error) {
	half := len(b.data) / 2
	if b.off == half && b.halfway != nil {
		close(b.halfway)
		b.halfway = nil
		<-b.release
	}
	if b.off >= len(b.data) {
		return 0, io.EOF
	}
	end := len(b.data)
	if b.off < half {
		end = half
	}
	n := copy(p, b.data[b.off:end])
	b.off += n
	return n, nil
}

// s3Client returns a client of the server's S3 API with a key of perm on
// cache.
func (s *server) s3Client(t *testing.T, cache, perm string) *minio.Client {
	t.Helper()
	id, secret := s.s3Key(t, cache, perm)
	c, err := minio.New(s.Addr, &minio.Options{
		Creds:        credentials.NewStaticV4(id, secret, ""),
		Region:       s3Region,
		BucketLookup: minio.BucketLookupPath,
	})
	must(t, err)
	return c
}

// TestGCRacingUpload is the data-loss race of a NAR file uploaded again
// while a collection finds it unused: the file is pushed to main, deleted
// there over S3 so that no cache links it, and, once it is older than the
// grace period, uploaded to other slowly, while larder gc runs in another
// process. The upload claims the file, so the collection keeps it; the
// upload and its narinfo are accepted and other serves both, byte for
// byte, also after another collection. Before the fix the collection
// deleted the blob under the upload, which then recorded the file again
// without it: the narinfo was accepted and its NAR answered 500.
func TestGCRacingUpload(t *testing.T) {
	t.Parallel()
	t.Run("sqlite+local", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, "--gc-interval", "0s", "--gc-grace", "1s")
		racingUpload(t, srv, srv)
	})
	t.Run("postgres+s3", func(t *testing.T) {
		t.Parallel()
		st := newSharedStores(t, testserver.MinIO(t), testserver.Postgres(t))
		rs := replicas(t, st, 2)
		// The upload goes to one replica while the collection runs in a
		// process of its own: a CLI on the same stores.
		racingUpload(t, rs[0], rs[1])
	})
}

// racingUpload runs the race against up, which receives the uploads, and
// collects with the CLI on the stores of gc.
func racingUpload(t *testing.T, up, gc *server) {
	gc.cli(t, "cache", "create", "other")
	gp := newGoPath("raced", 200_000)
	up.pushGo(t, "main", up.AdminToken, gp)
	s3 := up.s3Client(t, "main", "write")
	must(t, s3.RemoveObject(context.Background(), "main", gp.NarKey(), minio.RemoveObjectOptions{}))
	if code := up.narInfoStatus(t, "main", gp.StorePath); code != http.StatusNotFound {
		t.Fatalf("after its NAR was deleted, main answers %d for the narinfo, want 404", code)
	}
	time.Sleep(2500 * time.Millisecond) // past the grace period, kept to the second

	release, halfway := make(chan struct{}), make(chan struct{})
	body := &stallingBody{data: gp.NAR, release: release, halfway: halfway}
	req, err := http.NewRequest("PUT", up.cacheURL("other")+"/"+gp.NarKey(), body)
	must(t, err)
	req.ContentLength = int64(len(gp.NAR))
	req.Header.Set("Authorization", "Bearer "+up.AdminToken)
	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := uploadClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- result{code: resp.StatusCode, body: string(b)}
	}()
	select {
	case <-halfway:
	case r := <-done:
		t.Fatalf("the upload ended before it stalled: %d %s %v", r.code, r.body, r.err)
	}
	// The stalled upload goes on for longer than the grace period while
	// the collection runs.
	time.Sleep(1500 * time.Millisecond)
	rep := gc.collect(t, "--gc-grace", "1s")
	if rep.Nars != 0 {
		t.Errorf("the collection deleted %d NAR files while one was being uploaded again:\n%s", rep.Nars, rep.Out)
	}
	close(release)
	r := <-done
	if r.err != nil || r.code != http.StatusCreated {
		t.Fatalf("the upload that raced the collection: %d %q %v, want 201", r.code, r.body, r.err)
	}
	code, msg, err := up.put("other", gp.Hash()+".narinfo", up.AdminToken, []byte(gp.NarInfo()))
	if err != nil || code != http.StatusCreated {
		t.Fatalf("PUT narinfo after the raced upload: %d %q %v", code, msg, err)
	}
	for round := range 2 {
		// Through the replica that took the upload and the other one.
		for _, s := range []*server{up, gc} {
			s.checkNar(t, "other", gp)
			// Another replica hears of the narinfo within its sync interval.
			waitFor(t, "the narinfo of the raced path", 10*time.Second, 100*time.Millisecond, func() bool {
				return s.narInfoStatus(t, "other", gp.StorePath) == http.StatusOK
			})
		}
		if round == 0 {
			time.Sleep(1500 * time.Millisecond)
			if rep := gc.collect(t, "--gc-grace", "1s"); rep.Nars != 0 {
				t.Errorf("a later collection deleted %d NAR files, want 0 (other holds the file):\n%s", rep.Nars, rep.Out)
			}
		}
	}
}

// TestGCReuploadAfterLoss: a NAR file whose blob disappeared is withdrawn
// with its narinfo the moment a read finds it missing (404 for both, an
// error in the log), and a new upload of the same path brings it back,
// served byte for byte.
func TestGCReuploadAfterLoss(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--gc-interval", "0s")
	gp := newGoPath("lost", 5000)
	srv.pushGo(t, "main", srv.AdminToken, gp)
	srv.removeNarBlobs(t)
	from := srv.logSize()
	code, _ := httpDo(t, "GET", srv.cacheURL("main")+"/"+gp.NarKey(), "", nil)
	if code != http.StatusNotFound {
		t.Fatalf("GET of a NAR file whose blob is gone: %d, want 404", code)
	}
	srv.waitLogLine(t, from, "level=ERROR", "missing from the blob store")
	waitFor(t, "the narinfo to be withdrawn", 10*time.Second, 100*time.Millisecond, func() bool {
		return srv.narInfoStatus(t, "main", gp.StorePath) == http.StatusNotFound
	})
	if code, _ := httpDo(t, "HEAD", srv.cacheURL("main")+"/"+gp.NarKey(), "", nil); code != http.StatusNotFound {
		t.Errorf("HEAD of the lost NAR file: %d, want 404 (so that nix copy uploads it again)", code)
	}
	// What nix copy then does: upload the NAR, then the narinfo again.
	srv.pushGo(t, "main", srv.AdminToken, gp)
	srv.checkNar(t, "main", gp)
	if code := srv.narInfoStatus(t, "main", gp.StorePath); code != http.StatusOK {
		t.Errorf("after the new upload the narinfo answers %d, want 200", code)
	}
	if n := srv.narFiles(t); n != 1 {
		t.Errorf("%d NAR files in the blob store, want 1", n)
	}
}

// removeNarBlobs deletes every NAR file from the server's local blob
// directory behind larder's back, as a failing disk or a careless operator
// would.
func (s *server) removeNarBlobs(t *testing.T) {
	t.Helper()
	root := filepath.Join(s.Data, "blobs", "nar")
	n := 0
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		n++
		return os.Remove(p)
	})
	must(t, err)
	if n == 0 {
		t.Fatal("there was no NAR file to remove")
	}
}

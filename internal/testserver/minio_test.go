package testserver

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// mustRoundTrip puts an object into the bucket of s and reads it back.
func mustRoundTrip(t *testing.T, s S3Server, key, body string) {
	t.Helper()
	c := s.Client(t)
	_, err := c.PutObject(t.Context(), s.Bucket, key, strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	mustRead(t, s, key, body)
}

// mustRead fails t unless the object key of the bucket of s holds want.
func mustRead(t *testing.T, s S3Server, key, want string) {
	t.Helper()
	obj, err := s.Client(t).GetObject(t.Context(), s.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil || string(got) != want {
		t.Fatalf("read %s: %q, %v; want %q", key, got, err, want)
	}
}

func TestMinIOBucketPerCall(t *testing.T) {
	a, b := MinIO(t), MinIO(t)
	if a.Endpoint != b.Endpoint || a.Server != b.Server {
		t.Errorf("two calls started two servers: %s and %s", a.Endpoint, b.Endpoint)
	}
	if a.Bucket == b.Bucket {
		t.Errorf("two calls got the same bucket %s", a.Bucket)
	}
	if !strings.HasPrefix(a.Endpoint, "http://127.0.0.1:") {
		t.Errorf("endpoint %s is not on the loopback interface", a.Endpoint)
	}
	mustRoundTrip(t, a, "x/y", "in a")
	mustRoundTrip(t, b, "x/y", "in b")
	mustRead(t, a, "x/y", "in a")
}

func TestMinIOBucketRemovedAtCleanup(t *testing.T) {
	var s S3Server
	t.Run("user", func(t *testing.T) {
		s = MinIO(t)
		mustRoundTrip(t, s, "left/behind", "data")
	})
	ok, err := s.Client(t).BucketExists(t.Context(), s.Bucket)
	if err != nil || ok {
		t.Fatalf("bucket %s after its test: exists %v, %v", s.Bucket, ok, err)
	}
}

func TestMinIOURL(t *testing.T) {
	s := S3Server{Endpoint: "http://127.0.0.1:9", AccessKey: "ak", SecretKey: "s k", Region: "r", Bucket: "b"}
	u := s.URL("p/q")
	if u.Scheme != "s3" || u.Host != "b" || u.Path != "/p/q" {
		t.Fatalf("URL %s", u)
	}
	q := u.Query()
	for name, want := range map[string]string{"endpoint": s.Endpoint, "region": "r", "access_key": "ak", "secret_key": "s k"} {
		if got := q.Get(name); got != want {
			t.Errorf("URL %s: %s=%q, want %q", u, name, got, want)
		}
	}
}

func TestPrivateMinIOStopStart(t *testing.T) {
	s := PrivateMinIO(t)
	if shared := minioShared.srv; shared != nil && shared == s.Server {
		t.Fatal("PrivateMinIO returned the shared server")
	}
	mustRoundTrip(t, s, "kept", "across a restart")
	if err := s.Server.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.Server.Running() {
		t.Fatal("running after Stop")
	}
	if err := s.Server.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	if resp, err := client.Get(s.Endpoint + "/minio/health/live"); err == nil {
		resp.Body.Close()
		t.Fatalf("stopped server answered: %s", resp.Status)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err := s.Client(t).PutObject(ctx, s.Bucket, "k", bytes.NewReader(nil), 0, minio.PutObjectOptions{})
	if err == nil {
		t.Fatal("put to a stopped server: no error")
	}
	if err := s.Server.Start(); err != nil {
		t.Fatal(err)
	}
	mustRead(t, s, "kept", "across a restart")
}

func TestPrivateMinIORemovesItsData(t *testing.T) {
	var dir string
	t.Run("user", func(t *testing.T) {
		s := PrivateMinIO(t)
		dir = s.Server.dir
		mustRoundTrip(t, s, "k", "v")
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("server directory %s after its test: %v", dir, err)
	}
}

package s3api_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestMinio(t *testing.T) {
	t.Parallel()
	eachScheme(t, func(t *testing.T, e *env, srv *httptest.Server) {
		mc := e.minioClient(srv, e.admin)
		minioPutGet(t, e, srv, mc)
		// A Nix path pushed by minio-go, as mc mirror does.
		p := newStorePath(t, "via-minio", []byte("pushed with minio-go"), "xz")
		for key, body := range map[string][]byte{p.narinfoKey(): []byte(p.narinfo()), p.narKey(): p.file} {
			if _, err := mc.PutObject(t.Context(), "main", key, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
				t.Fatalf("PutObject %s: %v", key, err)
			}
		}
		e.served(e.awsClient(srv, e.admin), "main", p)
		minioList(t, mc, "large/blob", "small/a b+é", p.narinfoKey(), p.narKey())
		minioPresigned(t, e, srv, mc)
		minioRemoveAll(t, mc)
		e.absent(e.awsClient(srv, e.admin), "main", p)
	})
}

// minioPutGet uploads a small and a large object (as a parallel multipart
// upload) and reads them back.
func minioPutGet(t *testing.T, e *env, srv *httptest.Server, mc *minio.Client) {
	t.Helper()
	ctx := t.Context()
	small := []byte("a small object, sent in one PUT")
	info, err := mc.PutObject(ctx, "main", "small/a b+é", bytes.NewReader(small), int64(len(small)),
		minio.PutObjectOptions{ContentType: "text/x-small", UserMetadata: map[string]string{"mtime": "1700000000"}})
	if err != nil {
		t.Fatalf("PutObject small: %v", err)
	}
	if info.ETag != md5Hex(small) {
		t.Errorf("PutObject small: ETag %s", info.ETag)
	}
	puts := e.seen.find(http.MethodPut, "/main/small/a b+é")
	if len(puts) != 1 {
		t.Fatalf("saw %d PUTs of the small object", len(puts))
	}
	if mode := puts[0].header.Get("X-Amz-Content-Sha256"); srv == e.srv && mode != "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" {
		t.Errorf("over http minio-go sent x-amz-content-sha256 %q, not chunk signatures", mode)
	}

	large := randomBytes(20 << 20)
	info, err = mc.PutObject(ctx, "main", "large/blob", bytes.NewReader(large), int64(len(large)),
		minio.PutObjectOptions{PartSize: 5 << 20, NumThreads: 4, ContentType: "application/x-large"})
	if err != nil {
		t.Fatalf("PutObject large: %v", err)
	}
	parts := [][]byte{large[:5<<20], large[5<<20 : 10<<20], large[10<<20 : 15<<20], large[15<<20:]}
	if want := strings.Trim(multipartETag(parts...), `"`); info.ETag != want {
		t.Errorf("PutObject large: ETag %s, want the multipart ETag %s", info.ETag, want)
	}
	if len(e.seen.find(http.MethodPost, "/main/large/blob")) != 2 { // create and complete
		t.Errorf("the large object was not sent as a multipart upload")
	}

	for key, want := range map[string][]byte{"small/a b+é": small, "large/blob": large} {
		obj, err := mc.GetObject(ctx, "main", key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(obj)
		obj.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("GetObject %s: %d bytes, %v; want %d", key, len(got), err, len(want))
		}
	}
	st, err := mc.StatObject(ctx, "main", "small/a b+é", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(small)) || st.ContentType != "text/x-small" || st.UserMetadata["Mtime"] != "1700000000" {
		t.Errorf("StatObject: %d bytes, %s, %v", st.Size, st.ContentType, st.UserMetadata)
	}
	_, err = mc.StatObject(ctx, "main", "small/absent", minio.StatObjectOptions{})
	if minio.ToErrorResponse(err).StatusCode != http.StatusNotFound {
		t.Errorf("StatObject of an absent key: %v", err)
	}

}

// minioList lists the cache recursively and by prefix.
func minioList(t *testing.T, mc *minio.Client, want ...string) {
	t.Helper()
	ctx := t.Context()
	var listed []string
	for o := range mc.ListObjects(ctx, "main", minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		listed = append(listed, o.Key)
	}
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Errorf("ListObjects: %q, want %q", listed, want)
	}
	var top []string
	for o := range mc.ListObjects(ctx, "main", minio.ListObjectsOptions{Prefix: "small/"}) {
		top = append(top, o.Key)
	}
	if !slices.Equal(top, []string{"small/a b+é"}) {
		t.Errorf("ListObjects small/: %q", top)
	}

}

// minioPresigned uploads and downloads with presigned URLs.
func minioPresigned(t *testing.T, e *env, srv *httptest.Server, mc *minio.Client) {
	t.Helper()
	ctx := t.Context()
	u, err := mc.PresignedPutObject(ctx, "main", "pre/put", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, u.String(), bytes.NewReader([]byte("presigned by minio-go")))
	resp, b := e.send(srv, req)
	expectStatus(t, resp, b, http.StatusOK)
	u, err = mc.PresignedGetObject(ctx, "main", "pre/put", 10*time.Minute, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequest(http.MethodGet, u.String(), nil)
	resp, b = e.send(srv, req)
	if resp.StatusCode != http.StatusOK || string(b) != "presigned by minio-go" {
		t.Errorf("presigned GET: %d %q", resp.StatusCode, b)
	}

}

// minioRemoveAll removes everything, as mc rm --recursive --force.
func minioRemoveAll(t *testing.T, mc *minio.Client) {
	t.Helper()
	ctx := t.Context()
	objects := make(chan minio.ObjectInfo)
	go func() {
		defer close(objects)
		for o := range mc.ListObjects(ctx, "main", minio.ListObjectsOptions{Recursive: true}) {
			objects <- o
		}
	}()
	for rerr := range mc.RemoveObjects(ctx, "main", objects, minio.RemoveObjectsOptions{}) {
		t.Errorf("RemoveObjects: %s: %v", rerr.ObjectName, rerr.Err)
	}
	var listed []string
	for o := range mc.ListObjects(ctx, "main", minio.ListObjectsOptions{Recursive: true}) {
		listed = append(listed, o.Key)
	}
	if len(listed) != 0 {
		t.Errorf("after RemoveObjects: %q", listed)
	}
}

package s3api_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/larder-cache/larder/internal/narinfo"
)

// put uploads body under key with PutObject.
func put(t *testing.T, c *s3.Client, bucket, key string, body []byte) error {
	t.Helper()
	_, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)})
	return err
}

// mustPut uploads body under key and fails the test if that fails.
func mustPut(t *testing.T, c *s3.Client, bucket, key string, body []byte) {
	t.Helper()
	if err := put(t, c, bucket, key, body); err != nil {
		t.Fatalf("PutObject %s/%s: %v", bucket, key, err)
	}
}

// getS3 reads key with GetObject.
func getS3(t *testing.T, c *s3.Client, bucket, key string) ([]byte, error) {
	t.Helper()
	out, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// push uploads a store path over S3 in the order nix copy uses.
func push(t *testing.T, c *s3.Client, bucket string, p *storePath) {
	t.Helper()
	mustPut(t, c, bucket, p.narKey(), p.file)
	mustPut(t, c, bucket, p.narinfoKey(), []byte(p.narinfo()))
}

// served checks that the cache serves p over the Nix protocol, signed with
// its key, and over S3 the narinfo as it was written, and returns the
// narinfo the Nix protocol serves.
func (e *env) served(c *s3.Client, cache string, p *storePath) *narinfo.NarInfo {
	e.t.Helper()
	t := e.t
	resp, body := e.get("/" + cache + "/" + p.narinfoKey())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /%s/%s over the Nix protocol: %d %s", cache, p.narinfoKey(), resp.StatusCode, body)
	}
	ni, err := narinfo.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if !ni.Verify([]narinfo.PublicKey{e.publicKey(cache)}) {
		t.Fatalf("the narinfo of %s is not signed by cache %s:\n%s", p.path, cache, body)
	}
	if ni.StorePath != p.path || ni.NarHash.Nix32() != nix32sha(p.nar) || ni.NarSize != uint64(len(p.nar)) || ni.URL != p.narKey() {
		t.Fatalf("served narinfo does not describe %s:\n%s", p.path, body)
	}
	viaS3, err := getS3(t, c, cache, p.narinfoKey())
	if err != nil || string(viaS3) != p.narinfo() {
		t.Fatalf("GetObject %s: %v\n%s\nwant the narinfo as written:\n%s", p.narinfoKey(), err, viaS3, p.narinfo())
	}
	resp, nar := e.get("/" + cache + "/" + p.narKey())
	if resp.StatusCode != http.StatusOK || !bytes.Equal(nar, p.file) {
		t.Fatalf("GET /%s/%s: %d, %d bytes; want %d", cache, p.narKey(), resp.StatusCode, len(nar), len(p.file))
	}
	if nar, err := getS3(t, c, cache, p.narKey()); err != nil || !bytes.Equal(nar, p.file) {
		t.Fatalf("GetObject %s: %d bytes, %v; want %d", p.narKey(), len(nar), err, len(p.file))
	}
	return ni
}

// unserved checks that the Nix protocol does not serve the narinfo of p
// (which may be held, and so read back over S3 as written).
func (e *env) unserved(cache string, p *storePath) {
	e.t.Helper()
	if resp, body := e.get("/" + cache + "/" + p.narinfoKey()); resp.StatusCode != http.StatusNotFound {
		e.t.Fatalf("GET /%s/%s over the Nix protocol: %d, want 404\n%s", cache, p.narinfoKey(), resp.StatusCode, body)
	}
}

// absent checks that the narinfo of p is served by neither protocol.
func (e *env) absent(c *s3.Client, cache string, p *storePath) {
	e.t.Helper()
	if resp, body := e.get("/" + cache + "/" + p.narinfoKey()); resp.StatusCode != http.StatusNotFound {
		e.t.Fatalf("GET /%s/%s over the Nix protocol: %d, want 404\n%s", cache, p.narinfoKey(), resp.StatusCode, body)
	}
	_, err := getS3(e.t, c, cache, p.narinfoKey())
	expectAPIError(e.t, err, http.StatusNotFound, "NoSuchKey")
	_, err = c.HeadObject(e.t.Context(), &s3.HeadObjectInput{Bucket: aws.String(cache), Key: aws.String(p.narinfoKey())})
	expectAPIError(e.t, err, http.StatusNotFound, "NotFound")
}

// listAll lists every key of a cache.
func listAll(t *testing.T, c *s3.Client, cache string) []string {
	t.Helper()
	var keys []string
	for p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(cache)}); p.HasMorePages(); {
		out, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

func TestNixPushOverS3(t *testing.T) {
	t.Parallel()
	eachScheme(t, func(t *testing.T, e *env, srv *httptest.Server) {
		c := e.awsClient(srv, e.admin)
		for _, method := range []string{"xz", "zstd", "none"} {
			p := newStorePath(t, "hello-"+method, []byte("hello from "+method), method)
			push(t, c, "main", p)
			e.served(c, "main", p)
			head, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String("main"), Key: aws.String(p.narKey())})
			if err != nil || aws.ToString(head.ETag) != `"`+md5Hex(p.file)+`"` || aws.ToInt64(head.ContentLength) != int64(len(p.file)) {
				t.Fatalf("HeadObject %s: %v", p.narKey(), err)
			}
			keys := listAll(t, c, "main")
			if !slices.Contains(keys, p.narKey()) || !slices.Contains(keys, p.narinfoKey()) || slices.Contains(keys, "nix-cache-info") {
				t.Errorf("ListObjectsV2 after the push of %s: %q", p.path, keys)
			}
		}
		info, err := getS3(t, c, "main", "nix-cache-info")
		if err != nil || !strings.Contains(string(info), "StoreDir: /nix/store\n") {
			t.Errorf("GetObject nix-cache-info: %q, %v", info, err)
		}
	})
}

func TestNixNarinfoBeforeNar(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.awsClient(e.tls, e.admin)
	p := newStorePath(t, "early", []byte("narinfo first"), "xz")
	mustPut(t, c, "main", p.narinfoKey(), []byte(p.narinfo()))
	e.unserved("main", p)
	// Over S3 it reads back as written, so that mirroring tools see what
	// they uploaded.
	if !slices.Contains(listAll(t, c, "main"), p.narinfoKey()) {
		t.Fatal("a held narinfo is not listed over S3")
	}
	if got, err := getS3(t, c, "main", p.narinfoKey()); err != nil || string(got) != p.narinfo() {
		t.Fatalf("GetObject of a held narinfo: %v %q", err, got)
	}
	mustPut(t, c, "main", p.narKey(), p.file)
	e.served(c, "main", p)
	if !strings.Contains(e.logs.String(), "held narinfo committed") {
		t.Errorf("the log does not say the held narinfo was committed:\n%s", e.logs)
	}
}

func TestNixHeldNarinfoMismatchIsDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.awsClient(e.srv, e.admin)
	p := newStorePath(t, "mismatch", []byte("the real content"), "zstd")
	other := newStorePath(t, "other", []byte("other content"), "zstd")
	wrong := replaceField(p.narinfo(), "NarHash", "sha256:"+nix32sha(other.nar))
	mustPut(t, c, "main", p.narinfoKey(), []byte(wrong))
	e.unserved("main", p)
	mustPut(t, c, "main", p.narKey(), p.file) // the NAR itself is fine
	e.absent(c, "main", p)
	if !strings.Contains(e.logs.String(), "dropping held narinfo") || !strings.Contains(e.logs.String(), "NarHash") {
		t.Errorf("the log does not say why the held narinfo was dropped:\n%s", e.logs)
	}
	// Dropped, not waiting: the correct narinfo is accepted at once.
	mustPut(t, c, "main", p.narinfoKey(), []byte(p.narinfo()))
	e.served(c, "main", p)
}

func TestNixVerificationFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.awsClient(e.srv, e.admin)
	p := newStorePath(t, "verified", []byte("verified content"), "xz")
	other := newStorePath(t, "other", []byte("other content"), "xz")
	before := e.snapshot()

	// NAR bytes that do not hash to the name.
	resp, b := e.do(e.admin, raw{method: "PUT", target: "/main/" + p.narKey(), body: other.file})
	msg := expectError(t, resp, b, http.StatusBadRequest, "InvalidRequest")
	if !strings.Contains(msg, p.narKey()) || !strings.Contains(msg, "hash") {
		t.Errorf("the message does not name the mismatch: %q", msg)
	}
	e.unchanged(before)
	// The same over aws-chunked with a trailer (https).
	err := put(t, e.awsClient(e.tls, e.admin), "main", p.narKey(), other.file)
	expectAPIError(t, err, http.StatusBadRequest, "InvalidRequest")
	e.unchanged(before)
	// Not a NAR at all.
	fake := []byte("not a nar")
	err = put(t, c, "main", "nar/"+nix32sha(fake)+".nar", fake)
	expectAPIError(t, err, http.StatusBadRequest, "InvalidRequest")
	e.unchanged(before)

	mustPut(t, c, "main", p.narKey(), p.file)
	before = e.snapshot()
	for field, value := range map[string]string{
		"NarHash":  "sha256:" + nix32sha(other.nar),
		"NarSize":  strconv.Itoa(len(p.nar) + 1),
		"FileSize": strconv.Itoa(len(p.file) + 1),
		"FileHash": "sha256:" + nix32sha(other.file),
	} {
		resp, b := e.do(e.admin, raw{method: "PUT", target: "/main/" + p.narinfoKey(), body: []byte(replaceField(p.narinfo(), field, value))})
		msg := expectError(t, resp, b, http.StatusBadRequest, "InvalidRequest")
		if !strings.Contains(msg, field) {
			t.Errorf("a wrong %s: the message does not name it: %q", field, msg)
		}
		e.unchanged(before)
	}
	resp, b = e.do(e.admin, raw{method: "PUT", target: "/main/" + p.narinfoKey(), body: []byte("StorePath: nonsense\n")})
	expectError(t, resp, b, http.StatusBadRequest, "InvalidRequest")
	e.unchanged(before)
	e.absent(c, "main", p)
}

func TestNixMultipartNar(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.awsClient(e.tls, e.admin)
	p := newStorePath(t, "big", randomBytes(11<<20), "none")
	file := p.file
	partsOf := func(b []byte) [][]byte { return [][]byte{b[:5<<20], b[5<<20 : 10<<20], b[10<<20:]} }
	upload := func(parts [][]byte) (*string, []types.CompletedPart) {
		t.Helper()
		create, err := c.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{Bucket: aws.String("main"), Key: aws.String(p.narKey())})
		if err != nil {
			t.Fatal(err)
		}
		done := make([]types.CompletedPart, len(parts))
		errs := make([]error, len(parts))
		var wg sync.WaitGroup
		for i := range parts {
			wg.Go(func() {
				out, err := c.UploadPart(t.Context(), &s3.UploadPartInput{Bucket: aws.String("main"), Key: aws.String(p.narKey()),
					UploadId: create.UploadId, PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(parts[i])})
				errs[i] = err
				if err == nil {
					done[i] = types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: out.ETag}
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		return create.UploadId, done
	}
	complete := func(id *string, parts []types.CompletedPart) error {
		_, err := c.CompleteMultipartUpload(t.Context(), &s3.CompleteMultipartUploadInput{Bucket: aws.String("main"), Key: aws.String(p.narKey()),
			UploadId: id, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
		return err
	}

	// A corrupted part: Complete verifies the assembled NAR and refuses it.
	bad := slices.Clone(file)
	bad[7<<20] ^= 1
	id, parts := upload(partsOf(bad))
	before := e.snapshot()
	err := complete(id, parts)
	expectAPIError(t, err, http.StatusBadRequest, "InvalidRequest")
	e.unchanged(before)
	if _, err := c.AbortMultipartUpload(t.Context(), &s3.AbortMultipartUploadInput{Bucket: aws.String("main"), Key: aws.String(p.narKey()), UploadId: id}); err != nil {
		t.Fatal(err)
	}

	id, parts = upload(partsOf(file))
	if err := complete(id, parts); err != nil {
		t.Fatalf("CompleteMultipartUpload of a NAR: %v", err)
	}
	mustPut(t, c, "main", p.narinfoKey(), []byte(p.narinfo()))
	e.served(c, "main", p)
}

func TestNixCopyBetweenCaches(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createCache("other", false)
	c := e.awsClient(e.srv, e.admin)
	p := newStorePath(t, "copied", []byte("copy me across"), "xz")
	push(t, c, "main", p)
	copyKey := func(key string) {
		t.Helper()
		_, err := c.CopyObject(t.Context(), &s3.CopyObjectInput{Bucket: aws.String("other"), Key: aws.String(key), CopySource: aws.String("main/" + key)})
		if err != nil {
			t.Fatalf("CopyObject %s: %v", key, err)
		}
	}
	// The narinfo first: it waits for its NAR in the other cache.
	copyKey(p.narinfoKey())
	e.unserved("other", p)
	copyKey(p.narKey())
	ni := e.served(c, "other", p)
	if ni.Verify([]narinfo.PublicKey{e.publicKey("main")}) {
		t.Error("the copy carries the signature of the cache it came from, which S3 reads do not show")
	}
	// A NAR copied to a key it does not hash to is refused.
	before := e.snapshot()
	q := newStorePath(t, "q", []byte("q"), "xz")
	_, err := c.CopyObject(t.Context(), &s3.CopyObjectInput{Bucket: aws.String("other"), Key: aws.String(q.narKey()), CopySource: aws.String("main/" + p.narKey())})
	expectAPIError(t, err, http.StatusBadRequest, "InvalidRequest")
	e.unchanged(before)
}

func TestNixDeletes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.awsClient(e.srv, e.admin)
	del := func(key string) {
		t.Helper()
		if _, err := c.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String("main"), Key: aws.String(key)}); err != nil {
			t.Fatalf("DeleteObject %s: %v", key, err)
		}
	}
	p := newStorePath(t, "deleted", []byte("delete me"), "xz")
	push(t, c, "main", p)
	e.served(c, "main", p)
	del(p.narinfoKey())
	e.absent(c, "main", p)
	if resp, _ := e.get("/main/" + p.narKey()); resp.StatusCode != http.StatusOK {
		t.Errorf("deleting the narinfo deleted the NAR: %d", resp.StatusCode)
	}

	// Deleting the NAR withdraws every narinfo that points at it.
	mustPut(t, c, "main", p.narinfoKey(), []byte(p.narinfo()))
	q := newStorePath(t, "same-nar", []byte("delete me"), "xz")
	q.nar, q.file = p.nar, p.file
	mustPut(t, c, "main", q.narinfoKey(), []byte(q.narinfo()))
	e.served(c, "main", q)
	del(p.narKey())
	e.absent(c, "main", p)
	e.absent(c, "main", q)
	if resp, _ := e.get("/main/" + p.narKey()); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET of a deleted NAR: %d", resp.StatusCode)
	}

	// Deleting a NAR key under another compression than the stored file's
	// is deleting a key that does not exist: nothing changes.
	r := newStorePath(t, "kept", []byte("keep me"), "xz")
	push(t, c, "main", r)
	before := e.snapshot()
	del(strings.TrimSuffix(r.narKey(), ".xz"))
	del(strings.TrimSuffix(r.narKey(), ".xz") + ".zst")
	e.unchanged(before)
	e.served(c, "main", r)
	// The cache's own nix-cache-info cannot be deleted: it is still served.
	del("nix-cache-info")
	e.unchanged(before)
	if resp, body := e.get("/main/nix-cache-info"); resp.StatusCode != http.StatusOK {
		t.Fatalf("nix-cache-info after deleting it: %d %s", resp.StatusCode, body)
	}
}

func TestNixEmptyAndRefill(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.awsClient(e.srv, e.admin)
	var paths []*storePath
	for i := range 3 {
		p := newStorePath(t, "p"+strconv.Itoa(i), []byte("path "+strconv.Itoa(i)), "zstd")
		push(t, c, "main", p)
		paths = append(paths, p)
	}
	mustPut(t, c, "main", "logs/build.txt", []byte("a build artefact"))

	// As mc rm --recursive --force: list, then delete every listed key.
	keys := listAll(t, c, "main")
	if len(keys) != 7 { // 3 NARs, 3 narinfos, the artefact
		t.Fatalf("listed %d keys: %q", len(keys), keys)
	}
	var ids []types.ObjectIdentifier
	for _, k := range keys {
		ids = append(ids, types.ObjectIdentifier{Key: aws.String(k)})
	}
	out, err := c.DeleteObjects(t.Context(), &s3.DeleteObjectsInput{Bucket: aws.String("main"), Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
	if err != nil || len(out.Errors) != 0 {
		t.Fatalf("DeleteObjects: %v %+v", err, out)
	}
	if keys := listAll(t, c, "main"); len(keys) != 0 {
		t.Fatalf("after deleting everything the cache lists %q", keys)
	}
	for _, p := range paths {
		e.absent(c, "main", p)
	}
	resp, body := e.get("/main/nix-cache-info")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "StoreDir: /nix/store") {
		t.Fatalf("nix-cache-info of the emptied cache: %d %s", resp.StatusCode, body)
	}
	// The next push works, of the same paths and of new ones.
	for _, p := range append(paths, newStorePath(t, "new", []byte("new"), "zstd")) {
		push(t, c, "main", p)
		e.served(c, "main", p)
	}
}

func TestNixParallelMirror(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.awsClient(e.srv, e.admin)
	// As aws s3 sync or mc mirror: every file at once, in any order.
	var paths []*storePath
	type file struct {
		key  string
		body []byte
	}
	var files []file
	for i := range 24 {
		p := newStorePath(t, "m"+strconv.Itoa(i), []byte("mirrored "+strconv.Itoa(i)), "xz")
		paths = append(paths, p)
		files = append(files, file{p.narKey(), p.file}, file{p.narinfoKey(), []byte(p.narinfo())})
	}
	rand.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	var wg sync.WaitGroup
	errs := make([]error, len(files))
	for i, f := range files {
		wg.Go(func() { errs[i] = put(t, c, "main", f.key, f.body) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		e.served(c, "main", p)
	}
}

// TestNarInfoLookupsCounted: GETs and HEADs of narinfos over S3 count in
// the cache's history like lookups over the Nix protocol, found or not;
// other objects do not count.
func TestNarInfoLookupsCounted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan struct{})
	go func() { e.app.Service.Run(ctx, time.Hour); close(ran) }()
	c := e.awsClient(e.srv, e.admin)
	p := newStorePath(t, "counted", []byte("counted over S3"), "xz")
	push(t, c, "main", p)
	for range 2 {
		if _, err := getS3(t, c, "main", p.narinfoKey()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String("main"), Key: aws.String(p.narinfoKey())}); err != nil {
		t.Fatal(err)
	}
	if _, err := getS3(t, c, "main", strings.Repeat("0", 32)+".narinfo"); err == nil {
		t.Fatal("GetObject of a narinfo the cache lacks succeeded")
	}
	if _, err := getS3(t, c, "main", p.narKey()); err != nil { // not a lookup
		t.Fatal(err)
	}
	cancel()
	<-ran // records what it counted
	cache, err := e.app.Service.Operate(t.Context(), "main")
	if err != nil {
		t.Fatal(err)
	}
	o, err := e.app.Service.Overview(t.Context(), cache)
	if err != nil {
		t.Fatal(err)
	}
	if o.Requests != 4 || o.Hits != 3 {
		t.Fatalf("lookups counted over S3: %d, %d found; want 4, 3 found", o.Requests, o.Hits)
	}
}

package s3api_test

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Object keys S3 allows and naive path handling gets wrong.
var unusualKeys = []string{`a b/c+d&e=é"f`, "x//y", "./z", `&+-é"/ x`, "plain.txt", "日本語/キー", "trailing/"}

// expectAPIError checks that an SDK call failed with the HTTP status and
// S3 error code.
func expectAPIError(t *testing.T, err error, status int, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %d %s", status, code)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not an HTTP response error, want %d %s", err, status, code)
	}
	if re.HTTPStatusCode() != status {
		t.Fatalf("status %d, want %d (%s): %v", re.HTTPStatusCode(), status, code, err)
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		t.Fatalf("error %v, want code %s", err, code)
	}
	if re.RequestID == "" {
		t.Errorf("error %v has no request ID", err)
	}
}

func crc32Base64(b []byte) string {
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc32.ChecksumIEEE(b))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func md5Hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// multipartETag is the ETag S3 gives an object assembled from parts.
func multipartETag(parts ...[]byte) string {
	h := md5.New()
	for _, p := range parts {
		s := md5.Sum(p)
		h.Write(s[:])
	}
	return `"` + hex.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(parts)) + `"`
}

// eachScheme runs f against a fresh larder over HTTP and over HTTPS.
func eachScheme(t *testing.T, f func(t *testing.T, e *env, srv *httptest.Server)) {
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			f(t, e, e.servers()[scheme])
		})
	}
}

func TestAWSPutGetHeadUnusualKeys(t *testing.T) {
	t.Parallel()
	eachScheme(t, func(t *testing.T, e *env, srv *httptest.Server) {
		ctx := t.Context()
		c := e.awsClient(srv, e.admin)
		for i, key := range unusualKeys {
			body := []byte("object " + strconv.Itoa(i) + " under " + key)
			out, err := c.PutObject(ctx, &s3.PutObjectInput{
				Bucket: aws.String("main"), Key: aws.String(key), Body: bytes.NewReader(body),
				ContentType: aws.String("text/x-test; charset=utf-8"),
				Metadata:    map[string]string{"mtime": "1700000000", "owner-name": "ci"},
			})
			if err != nil {
				t.Fatalf("PutObject %q: %v", key, err)
			}
			if got, want := aws.ToString(out.ETag), `"`+md5Hex(body)+`"`; got != want {
				t.Errorf("PutObject %q: ETag %s, want %s", key, got, want)
			}
			if got, want := aws.ToString(out.ChecksumCRC32), crc32Base64(body); got != want {
				t.Errorf("PutObject %q: ChecksumCRC32 %q, want %q", key, got, want)
			}
			get, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("main"), Key: aws.String(key)})
			if err != nil {
				t.Fatalf("GetObject %q: %v", key, err)
			}
			got, err := io.ReadAll(get.Body)
			get.Body.Close()
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("GetObject %q: %q, %v; want %q", key, got, err, body)
			}
			if ct := aws.ToString(get.ContentType); ct != "text/x-test; charset=utf-8" {
				t.Errorf("GetObject %q: Content-Type %q", key, ct)
			}
			if get.Metadata["mtime"] != "1700000000" || get.Metadata["owner-name"] != "ci" || len(get.Metadata) != 2 {
				t.Errorf("GetObject %q: metadata %v", key, get.Metadata)
			}
			head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("main"), Key: aws.String(key)})
			if err != nil {
				t.Fatalf("HeadObject %q: %v", key, err)
			}
			if aws.ToInt64(head.ContentLength) != int64(len(body)) || aws.ToString(head.ETag) != aws.ToString(out.ETag) ||
				head.Metadata["mtime"] != "1700000000" || head.LastModified == nil {
				t.Errorf("HeadObject %q: length %d, ETag %s, metadata %v", key, aws.ToInt64(head.ContentLength), aws.ToString(head.ETag), head.Metadata)
			}
		}
		// What the SDK sent: its default flexible checksums.
		puts := e.seen.find(http.MethodPut, "/main/plain.txt")
		if len(puts) != 1 {
			t.Fatalf("saw %d PUTs of plain.txt", len(puts))
		}
		h := puts[0].header
		if srv == e.tls {
			if h.Get("X-Amz-Content-Sha256") != "STREAMING-UNSIGNED-PAYLOAD-TRAILER" || h.Get("X-Amz-Trailer") != "x-amz-checksum-crc32" {
				t.Errorf("over https the SDK sent x-amz-content-sha256 %q, x-amz-trailer %q; want a crc32 trailer",
					h.Get("X-Amz-Content-Sha256"), h.Get("X-Amz-Trailer"))
			}
		} else if h.Get("X-Amz-Checksum-Crc32") == "" {
			t.Errorf("over http the SDK sent no x-amz-checksum-crc32: %v", h)
		}

		_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("main"), Key: aws.String("a b/missing")})
		expectAPIError(t, err, http.StatusNotFound, "NoSuchKey")
		_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("main"), Key: aws.String("a b/missing")})
		expectAPIError(t, err, http.StatusNotFound, "NotFound") // HEAD has no body: the SDK names it by status
		_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("no-such-cache"), Key: aws.String("k")})
		expectAPIError(t, err, http.StatusNotFound, "NoSuchBucket")
	})
}

func TestAWSRange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	c := e.awsClient(e.srv, e.admin)
	body := randomBytes(1000)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("main"), Key: aws.String("r/x"), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rng        string
		start, end int
	}{{"bytes=0-99", 0, 100}, {"bytes=900-", 900, 1000}, {"bytes=-10", 990, 1000}, {"bytes=990-5000", 990, 1000}} {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("main"), Key: aws.String("r/x"), Range: aws.String(tc.rng)})
		if err != nil {
			t.Fatalf("%s: %v", tc.rng, err)
		}
		got, _ := io.ReadAll(out.Body)
		out.Body.Close()
		want := "bytes " + strconv.Itoa(tc.start) + "-" + strconv.Itoa(tc.end-1) + "/1000"
		if !bytes.Equal(got, body[tc.start:tc.end]) || aws.ToString(out.ContentRange) != want {
			t.Errorf("%s: %d bytes, Content-Range %q; want %s", tc.rng, len(got), aws.ToString(out.ContentRange), want)
		}
	}
	resp, b := e.do(e.admin, raw{method: "GET", target: "/main/r/x", hdr: []string{"Range", "bytes=0-0"}})
	expectStatus(t, resp, b, http.StatusPartialContent)
	_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("main"), Key: aws.String("r/x"), Range: aws.String("bytes=1000-")})
	expectAPIError(t, err, http.StatusRequestedRangeNotSatisfiable, "InvalidRange")
	resp, b = e.do(e.admin, raw{method: "GET", target: "/main/r/x", hdr: []string{"Range", "bytes=2000-3000"}})
	expectError(t, resp, b, http.StatusRequestedRangeNotSatisfiable, "InvalidRange")
	if cr := resp.Header.Get("Content-Range"); cr != "bytes */1000" {
		t.Errorf("416 with Content-Range %q, want bytes */1000", cr)
	}
}

func TestAWSConditionalGet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	c := e.awsClient(e.srv, e.admin)
	put, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("main"), Key: aws.String("cond"), Body: strings.NewReader("conditional")})
	if err != nil {
		t.Fatal(err)
	}
	etag := aws.ToString(put.ETag)
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("main"), Key: aws.String("cond")})
	if err != nil {
		t.Fatal(err)
	}
	modified := *head.LastModified
	before, after := modified.Add(-time.Hour), modified.Add(time.Hour)
	get := func(in s3.GetObjectInput) error {
		in.Bucket, in.Key = aws.String("main"), aws.String("cond")
		out, err := c.GetObject(ctx, &in)
		if err == nil {
			b, _ := io.ReadAll(out.Body)
			out.Body.Close()
			if string(b) != "conditional" {
				t.Errorf("conditional GET returned %q", b)
			}
		}
		return err
	}
	// Each condition that holds serves the object.
	for name, in := range map[string]s3.GetObjectInput{
		"If-Match":            {IfMatch: aws.String(etag)},
		"If-Match *":          {IfMatch: aws.String("*")},
		"If-None-Match":       {IfNoneMatch: aws.String(`"0123"`)},
		"If-Modified-Since":   {IfModifiedSince: aws.Time(before)},
		"If-Unmodified-Since": {IfUnmodifiedSince: aws.Time(after)},
		// If-Match holds, so If-Unmodified-Since is not evaluated (as S3).
		"If-Match and If-Unmodified-Since": {IfMatch: aws.String(etag), IfUnmodifiedSince: aws.Time(before)},
	} {
		if err := get(in); err != nil {
			t.Errorf("%s holds: %v", name, err)
		}
	}
	expectAPIError(t, get(s3.GetObjectInput{IfMatch: aws.String(`"0123"`)}), http.StatusPreconditionFailed, "PreconditionFailed")
	expectAPIError(t, get(s3.GetObjectInput{IfUnmodifiedSince: aws.Time(before)}), http.StatusPreconditionFailed, "PreconditionFailed")
	expectAPIError(t, get(s3.GetObjectInput{IfNoneMatch: aws.String(etag)}), http.StatusNotModified, "NotModified")
	expectAPIError(t, get(s3.GetObjectInput{IfModifiedSince: aws.Time(after)}), http.StatusNotModified, "NotModified")
	expectAPIError(t, get(s3.GetObjectInput{IfModifiedSince: aws.Time(modified)}), http.StatusNotModified, "NotModified")

	resp, b := e.do(e.admin, raw{method: "GET", target: "/main/cond", hdr: []string{"If-Match", `"0123"`}})
	expectError(t, resp, b, http.StatusPreconditionFailed, "PreconditionFailed")
	resp, b = e.do(e.admin, raw{method: "GET", target: "/main/cond", hdr: []string{"If-None-Match", etag}})
	if resp.StatusCode != http.StatusNotModified || len(b) != 0 || resp.Header.Get("ETag") != etag {
		t.Errorf("If-None-Match: %d, ETag %q, body %q; want 304 with the ETag and no body", resp.StatusCode, resp.Header.Get("ETag"), b)
	}
}

func TestAWSDeleteObjects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	c := e.awsClient(e.srv, e.admin)
	put := func(keys ...string) {
		for _, k := range keys {
			if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("main"), Key: aws.String(k), Body: strings.NewReader(k)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	exists := func(key string) bool {
		_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("main"), Key: aws.String(key)})
		return err == nil
	}
	put("d/1", `d/&+-é"/ x`)
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("main"), Key: aws.String("d/1")}); err != nil {
		t.Fatal(err)
	}
	if exists("d/1") || !exists(`d/&+-é"/ x`) {
		t.Fatal("DeleteObject deleted the wrong objects")
	}
	// Deleting what is not there succeeds, with 204 as S3 answers.
	resp, b := e.do(e.admin, raw{method: "DELETE", target: "/main/d/1"})
	expectStatus(t, resp, b, http.StatusNoContent)
	resp, b = e.do(e.admin, raw{method: "DELETE", target: "/main/never/was"})
	expectStatus(t, resp, b, http.StatusNoContent)

	put("m/1", "m/2", "m/3", "q/1", "q/2")
	ids := func(keys ...string) []types.ObjectIdentifier {
		var out []types.ObjectIdentifier
		for _, k := range keys {
			out = append(out, types.ObjectIdentifier{Key: aws.String(k)})
		}
		return out
	}
	out, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String("main"),
		Delete: &types.Delete{Objects: ids("m/1", "m/2", "m/absent", `d/&+-é"/ x`)}})
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, d := range out.Deleted {
		deleted = append(deleted, aws.ToString(d.Key))
	}
	slices.Sort(deleted)
	if want := []string{`d/&+-é"/ x`, "m/1", "m/2", "m/absent"}; !slices.Equal(deleted, want) || len(out.Errors) != 0 {
		t.Errorf("verbose DeleteObjects: deleted %q, errors %v; want %q", deleted, out.Errors, want)
	}
	out, err = c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String("main"),
		Delete: &types.Delete{Objects: ids("q/1", "q/2"), Quiet: aws.Bool(true)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Deleted) != 0 || len(out.Errors) != 0 {
		t.Errorf("quiet DeleteObjects: deleted %v, errors %v; want neither", out.Deleted, out.Errors)
	}
	for _, k := range []string{"m/1", "m/2", "q/1", "q/2", `d/&+-é"/ x`} {
		if exists(k) {
			t.Errorf("%s still exists", k)
		}
	}
	if !exists("m/3") {
		t.Error("m/3 was deleted")
	}
}

func TestAWSCopyObject(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.createCache("other", false)
	c := e.awsClient(e.tls, e.admin)
	body := []byte("copy me")
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("main"), Key: aws.String("src/a b+é"), Body: bytes.NewReader(body),
		ContentType: aws.String("text/plain"), Metadata: map[string]string{"colour": "blue"}})
	if err != nil {
		t.Fatal(err)
	}
	source := "main/" + url.PathEscape("src/a b+é") // the SDK wants it URL-encoded
	cp, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("other"), Key: aws.String("dst/copy"), CopySource: aws.String(source)})
	if err != nil {
		t.Fatalf("CopyObject COPY: %v", err)
	}
	if aws.ToString(cp.CopyObjectResult.ETag) != `"`+md5Hex(body)+`"` {
		t.Errorf("CopyObject ETag %s", aws.ToString(cp.CopyObjectResult.ETag))
	}
	check := func(bucket, key, ctype string, meta map[string]string) {
		t.Helper()
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if !bytes.Equal(got, body) || aws.ToString(out.ContentType) != ctype || len(out.Metadata) != len(meta) {
			t.Fatalf("%s/%s: %q, %s, %v; want %q, %s, %v", bucket, key, got, aws.ToString(out.ContentType), out.Metadata, body, ctype, meta)
		}
		for k, v := range meta {
			if out.Metadata[k] != v {
				t.Fatalf("%s/%s: metadata %v, want %v", bucket, key, out.Metadata, meta)
			}
		}
	}
	check("other", "dst/copy", "text/plain", map[string]string{"colour": "blue"})
	_, err = c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("main"), Key: aws.String("dst/replaced"), CopySource: aws.String(source),
		MetadataDirective: types.MetadataDirectiveReplace, ContentType: aws.String("application/x-new"),
		Metadata: map[string]string{"shape": "round"}})
	if err != nil {
		t.Fatalf("CopyObject REPLACE: %v", err)
	}
	check("main", "dst/replaced", "application/x-new", map[string]string{"shape": "round"})
	check("main", "src/a b+é", "text/plain", map[string]string{"colour": "blue"})

	before := e.snapshot()
	_, err = c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("other"), Key: aws.String("x"), CopySource: aws.String("main/absent")})
	expectAPIError(t, err, http.StatusNotFound, "NoSuchKey")
	_, err = c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("other"), Key: aws.String("x"), CopySource: aws.String("nope-cache/k")})
	expectAPIError(t, err, http.StatusNotFound, "NoSuchBucket")
	e.unchanged(before)
}

func TestAWSBuckets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	c := e.awsClient(e.srv, e.admin)
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("new-bucket")}); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("new-bucket")})
	expectAPIError(t, err, http.StatusConflict, "BucketAlreadyOwnedByYou")
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("new-bucket")}); err != nil {
		t.Fatalf("HeadBucket: %v", err)
	}
	_, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("no-such-bucket")})
	expectAPIError(t, err, http.StatusNotFound, "NotFound")
	list, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range list.Buckets {
		names = append(names, aws.ToString(b.Name))
		if b.CreationDate == nil || b.CreationDate.IsZero() {
			t.Errorf("bucket %s has no creation date", aws.ToString(b.Name))
		}
	}
	if !slices.Equal(names, []string{"main", "new-bucket"}) {
		t.Errorf("ListBuckets: %v", names)
	}
	loc, err := c.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String("new-bucket")})
	if err != nil || loc.LocationConstraint != region {
		t.Errorf("GetBucketLocation: %q, %v; want %s", loc.LocationConstraint, err, region)
	}
	_, err = c.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String("new-bucket")})
	expectAPIError(t, err, http.StatusNotFound, "ObjectLockConfigurationNotFoundError")

	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("new-bucket"), Key: aws.String("v/1"), Body: strings.NewReader("1")}); err != nil {
		t.Fatal(err)
	}
	versions, err := c.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String("new-bucket"), Prefix: aws.String("v/")})
	if err != nil {
		t.Fatal(err)
	}
	if len(versions.Versions) != 1 || aws.ToString(versions.Versions[0].Key) != "v/1" ||
		aws.ToString(versions.Versions[0].VersionId) != "null" || !aws.ToBool(versions.Versions[0].IsLatest) {
		t.Errorf("ListObjectVersions: %+v", versions.Versions)
	}
	acl, err := c.GetBucketAcl(ctx, &s3.GetBucketAclInput{Bucket: aws.String("new-bucket")})
	if err != nil || len(acl.Grants) != 1 || acl.Grants[0].Permission != types.PermissionFullControl {
		t.Errorf("GetBucketAcl: %+v, %v", acl, err)
	}
	if _, err := c.PutBucketAcl(ctx, &s3.PutBucketAclInput{Bucket: aws.String("new-bucket"), ACL: types.BucketCannedACLPrivate}); err != nil {
		t.Errorf("PutBucketAcl: %v", err)
	}
	oacl, err := c.GetObjectAcl(ctx, &s3.GetObjectAclInput{Bucket: aws.String("new-bucket"), Key: aws.String("v/1")})
	if err != nil || len(oacl.Grants) != 1 || oacl.Grants[0].Permission != types.PermissionFullControl {
		t.Errorf("GetObjectAcl: %+v, %v", oacl, err)
	}
	if _, err := c.PutObjectAcl(ctx, &s3.PutObjectAclInput{Bucket: aws.String("new-bucket"), Key: aws.String("v/1"), ACL: types.ObjectCannedACLPrivate}); err != nil {
		t.Errorf("PutObjectAcl: %v", err)
	}
	_, err = c.GetObjectAcl(ctx, &s3.GetObjectAclInput{Bucket: aws.String("new-bucket"), Key: aws.String("v/absent")})
	expectAPIError(t, err, http.StatusNotFound, "NoSuchKey")

	before := e.snapshot()
	_, err = c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("new-bucket")})
	expectAPIError(t, err, http.StatusConflict, "BucketNotEmpty")
	e.unchanged(before)
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("new-bucket"), Key: aws.String("v/1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("new-bucket")}); err != nil {
		t.Fatalf("DeleteBucket: %v", err)
	}
	_, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("new-bucket")})
	expectAPIError(t, err, http.StatusNotFound, "NotFound")
	_, err = c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("new-bucket")})
	expectAPIError(t, err, http.StatusNotFound, "NoSuchBucket")
}

func TestAWSPresigned(t *testing.T) {
	t.Parallel()
	eachScheme(t, func(t *testing.T, e *env, srv *httptest.Server) {
		ctx := t.Context()
		pc := s3.NewPresignClient(e.awsClient(srv, e.admin))
		body := []byte("presigned upload")
		put, err := pc.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("main"), Key: aws.String("pre/a b+c")},
			s3.WithPresignExpires(10*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(put.Method, put.URL, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range put.SignedHeader {
			if !strings.EqualFold(k, "Host") {
				req.Header[k] = v
			}
		}
		resp, b := e.send(srv, req)
		expectStatus(t, resp, b, http.StatusOK)
		if resp.Header.Get("ETag") != `"`+md5Hex(body)+`"` {
			t.Errorf("presigned PUT: ETag %q", resp.Header.Get("ETag"))
		}

		get, err := pc.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("main"), Key: aws.String("pre/a b+c")},
			s3.WithPresignExpires(10*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		resp, err = srv.Client().Get(get.URL)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
			t.Fatalf("presigned GET: %d %q", resp.StatusCode, got)
		}

		// A presigned URL whose time is up.
		req, _ = http.NewRequest(http.MethodGet, srv.URL+"/main/pre/a%20b%2Bc?X-Amz-Expires=60", nil)
		presignAt(t, e.admin, req, time.Now().Add(-2*time.Hour))
		resp, b = e.send(srv, req)
		expectError(t, resp, b, http.StatusForbidden, "AccessDenied")
		// Tampered: the signature does not cover another key.
		tampered := strings.Replace(get.URL, "/pre/", "/pre2/", 1)
		resp, err = srv.Client().Get(tampered)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		expectError(t, resp, b, http.StatusForbidden, "SignatureDoesNotMatch")
	})
}

func TestAWSMultipart(t *testing.T) {
	t.Parallel()
	eachScheme(t, func(t *testing.T, e *env, srv *httptest.Server) {
		ctx := t.Context()
		c := e.awsClient(srv, e.admin)
		const key = "big/ob ject+é"
		create, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("main"), Key: aws.String(key),
			ContentType: aws.String("application/x-big"), Metadata: map[string]string{"k": "v"}, ChecksumAlgorithm: types.ChecksumAlgorithmCrc32})
		if err != nil {
			t.Fatal(err)
		}
		id := create.UploadId
		parts := [][]byte{randomBytes(5 << 20), randomBytes(5 << 20), randomBytes(1 << 20)}
		completed := uploadParts(t, c, key, id, parts)
		checkUploadListings(t, c, key, id, parts)
		done, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("main"), Key: aws.String(key),
			UploadId: id, MultipartUpload: &types.CompletedMultipartUpload{Parts: completed}})
		if err != nil {
			t.Fatalf("CompleteMultipartUpload: %v", err)
		}
		etag := multipartETag(parts...)
		if aws.ToString(done.ETag) != etag {
			t.Errorf("CompleteMultipartUpload: ETag %s, want %s", aws.ToString(done.ETag), etag)
		}
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("main"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if !bytes.Equal(got, bytes.Join(parts, nil)) || aws.ToString(out.ETag) != etag ||
			aws.ToString(out.ContentType) != "application/x-big" || out.Metadata["k"] != "v" {
			t.Errorf("the assembled object: %d bytes, ETag %s, %s, %v", len(got), aws.ToString(out.ETag), aws.ToString(out.ContentType), out.Metadata)
		}
		lu, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("main")})
		if err != nil || len(lu.Uploads) != 0 {
			t.Errorf("uploads left after completion: %+v, %v", lu.Uploads, err)
		}
		_, err = c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("main"), Key: aws.String(key), UploadId: id,
			PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("late"))})
		expectAPIError(t, err, http.StatusNotFound, "NoSuchUpload")
	})
}

// uploadParts uploads the parts of an upload with CRC32 checksums: part 1
// first with other bytes, then every part in parallel, last first, so that
// part 1 is uploaded again. It returns the parts for Complete.
func uploadParts(t *testing.T, c *s3.Client, key string, id *string, parts [][]byte) []types.CompletedPart {
	t.Helper()
	completed := make([]types.CompletedPart, len(parts))
	upload := func(n int, body []byte) error {
		out, err := c.UploadPart(t.Context(), &s3.UploadPartInput{Bucket: aws.String("main"), Key: aws.String(key), UploadId: id,
			PartNumber: aws.Int32(int32(n)), Body: bytes.NewReader(body), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32})
		if err != nil {
			return err
		}
		if aws.ToString(out.ETag) != `"`+md5Hex(body)+`"` {
			return errors.New("part " + strconv.Itoa(n) + ": ETag " + aws.ToString(out.ETag))
		}
		if aws.ToString(out.ChecksumCRC32) != crc32Base64(body) {
			return errors.New("part " + strconv.Itoa(n) + ": ChecksumCRC32 " + aws.ToString(out.ChecksumCRC32))
		}
		completed[n-1] = types.CompletedPart{PartNumber: aws.Int32(int32(n)), ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32}
		return nil
	}
	if err := upload(1, randomBytes(5<<20)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(parts))
	for i := len(parts) - 1; i >= 0; i-- {
		wg.Go(func() { errs[i] = upload(i+1, parts[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return completed
}

// checkUploadListings checks ListParts and ListMultipartUploads of the one
// upload in progress in main.
func checkUploadListings(t *testing.T, c *s3.Client, key string, id *string, parts [][]byte) {
	t.Helper()
	lp, err := c.ListParts(t.Context(), &s3.ListPartsInput{Bucket: aws.String("main"), Key: aws.String(key), UploadId: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(lp.Parts) != len(parts) {
		t.Fatalf("ListParts: %d parts, want %d", len(lp.Parts), len(parts))
	}
	for i, p := range lp.Parts {
		if aws.ToInt32(p.PartNumber) != int32(i+1) || aws.ToString(p.ETag) != `"`+md5Hex(parts[i])+`"` || aws.ToInt64(p.Size) != int64(len(parts[i])) {
			t.Errorf("ListParts: part %d is %d, %s, %d bytes", i+1, aws.ToInt32(p.PartNumber), aws.ToString(p.ETag), aws.ToInt64(p.Size))
		}
	}
	lp, err = c.ListParts(t.Context(), &s3.ListPartsInput{Bucket: aws.String("main"), Key: aws.String(key), UploadId: id,
		MaxParts: aws.Int32(1), PartNumberMarker: aws.String("1")})
	if err != nil || len(lp.Parts) != 1 || aws.ToInt32(lp.Parts[0].PartNumber) != 2 || !aws.ToBool(lp.IsTruncated) {
		t.Errorf("ListParts after part 1, at most 1: %+v, %v", lp, err)
	}
	lu, err := c.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String("main")})
	if err != nil {
		t.Fatal(err)
	}
	if len(lu.Uploads) != 1 || aws.ToString(lu.Uploads[0].Key) != key || aws.ToString(lu.Uploads[0].UploadId) != aws.ToString(id) {
		t.Errorf("ListMultipartUploads: %+v", lu.Uploads)
	}
}

func TestAWSMultipartRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	c := e.awsClient(e.srv, e.admin)
	const key = "mp/refused"
	create, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("main"), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	id := create.UploadId
	small, big := []byte("small part"), randomBytes(5<<20)
	etags := map[int32]string{}
	for n, body := range map[int32][]byte{1: small, 2: big, 3: small} {
		out, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("main"), Key: aws.String(key), UploadId: id,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		etags[n] = aws.ToString(out.ETag)
	}
	part := func(n int32, etag string) types.CompletedPart {
		return types.CompletedPart{PartNumber: aws.Int32(n), ETag: aws.String(etag)}
	}
	complete := func(parts ...types.CompletedPart) error {
		_, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("main"), Key: aws.String(key),
			UploadId: id, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
		return err
	}
	before := e.snapshot()
	expectAPIError(t, complete(part(1, etags[1]), part(2, etags[2])), http.StatusBadRequest, "EntityTooSmall")
	expectAPIError(t, complete(part(2, etags[2]), part(1, etags[1])), http.StatusBadRequest, "InvalidPartOrder")
	expectAPIError(t, complete(part(2, `"00000000000000000000000000000000"`), part(3, etags[3])), http.StatusBadRequest, "InvalidPart")
	expectAPIError(t, complete(part(2, etags[2]), part(4, etags[3])), http.StatusBadRequest, "InvalidPart")
	e.unchanged(before)
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("main"), Key: aws.String(key),
		UploadId: aws.String("0123456789abcdef"), MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{part(1, etags[1])}}})
	expectAPIError(t, err, http.StatusNotFound, "NoSuchUpload")
	_, err = c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("main"), Key: aws.String("other/key"), UploadId: id})
	expectAPIError(t, err, http.StatusNotFound, "NoSuchUpload")
	e.unchanged(before)

	// A part under 5 MiB is fine as the last one.
	if err := complete(part(2, etags[2]), part(3, etags[3])); err != nil {
		t.Fatalf("complete with a small last part: %v", err)
	}
	out, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("main"), Key: aws.String(key)})
	if err != nil || aws.ToInt64(out.ContentLength) != int64(len(big)+len(small)) {
		t.Fatalf("HeadObject after Complete: %v", err)
	}
	// aws-sdk-cpp, inside many Nix builds, fails on a COMPOSITE checksum type.
	resp, b := e.do(e.admin, raw{method: "GET", target: "/main/" + key, hdr: []string{"X-Amz-Checksum-Mode", "ENABLED"}})
	expectStatus(t, resp, b, http.StatusOK)
	if ct := resp.Header.Get("X-Amz-Checksum-Type"); ct != "" {
		t.Errorf("GET of a multipart object with x-amz-checksum-type %q", ct)
	}

	// Abort deletes the upload and its parts.
	create, err = c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("main"), Key: aws.String("mp/aborted")})
	if err != nil {
		t.Fatal(err)
	}
	before = e.snapshot()
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("main"), Key: aws.String("mp/aborted"), UploadId: create.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(small)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String("main"), Key: aws.String("mp/aborted"), UploadId: create.UploadId}); err != nil {
		t.Fatalf("AbortMultipartUpload: %v", err)
	}
	_, err = c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("main"), Key: aws.String("mp/aborted"), UploadId: create.UploadId})
	expectAPIError(t, err, http.StatusNotFound, "NoSuchUpload")
	_, err = c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String("main"), Key: aws.String("mp/aborted"), UploadId: create.UploadId})
	expectAPIError(t, err, http.StatusNotFound, "NoSuchUpload")
	before.uploads = slices.DeleteFunc(before.uploads, func(u string) bool { return strings.HasPrefix(u, "main/mp/aborted ") })
	e.unchanged(before)
}

func TestAWSListMultipartUploadsPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	c := e.awsClient(e.srv, e.admin)
	var want []string
	for _, key := range []string{"u/b", "u/a", "u/b", "v/c"} {
		out, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("main"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, key+" "+aws.ToString(out.UploadId))
	}
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String("main"), MaxUploads: aws.Int32(1)}
	var got []string
	for range 10 {
		out, err := c.ListMultipartUploads(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Uploads) > 1 {
			t.Fatalf("max-uploads 1 gave %d uploads", len(out.Uploads))
		}
		for _, u := range out.Uploads {
			got = append(got, aws.ToString(u.Key)+" "+aws.ToString(u.UploadId))
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("paging ListMultipartUploads by one: %q, want %q", got, want)
	}
	out, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("main"), Prefix: aws.String("v/")})
	if err != nil || len(out.Uploads) != 1 || aws.ToString(out.Uploads[0].Key) != "v/c" {
		t.Errorf("ListMultipartUploads with prefix v/: %+v, %v", out, err)
	}
}

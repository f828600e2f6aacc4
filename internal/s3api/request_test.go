package s3api_test

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/xml"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/larder-cache/larder/internal/config"
)

func contentMD5(b []byte) string {
	s := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

// exists reports whether GET of an object over S3 succeeds.
func (e *env) exists(key string) bool {
	e.t.Helper()
	resp, _ := e.do(e.admin, raw{method: "GET", target: "/main/" + key})
	return resp.StatusCode == http.StatusOK
}

func TestDeleteObjectsBodyIsVerifiedFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, k := range []string{"keep", "k2"} {
		resp, b := e.do(e.admin, raw{method: "PUT", target: "/main/" + k, body: []byte(k)})
		expectStatus(t, resp, b, http.StatusOK)
	}
	before := e.snapshot()
	// The body ends with a newline after the XML, as many clients send it.
	doc := []byte("<Delete><Quiet>true</Quiet><Object><Key>keep</Key></Object></Delete>\n")
	for _, payload := range []string{"", "UNSIGNED-PAYLOAD"} {
		resp, b := e.do(e.admin, raw{method: "POST", target: "/main?delete", body: doc, payload: payload,
			hdr: []string{"Content-MD5", contentMD5([]byte("other"))}})
		expectError(t, resp, b, http.StatusBadRequest, "BadDigest")
		e.unchanged(before)
	}
	req := e.signedRequest(e.admin, raw{method: "POST", target: "/main?delete", body: doc, hdr: []string{"Content-MD5", contentMD5(doc)}})
	tampered := strings.Replace(string(doc), "keep", "k2\t\t", 1)
	req.Body = nopCloser(tampered)
	resp, b := e.send(nil, req)
	expectError(t, resp, b, http.StatusBadRequest, "XAmzContentSHA256Mismatch")
	e.unchanged(before)

	// The same under aws-chunked, whose chunk signatures are checked as the
	// chunks stream: the deletion waits for every check.
	for _, corrupt := range []int{0, 1} {
		resp, b := e.send(nil, e.chunkedRequest(e.admin, "POST", "/main?delete", doc, len(doc), corrupt))
		expectError(t, resp, b, http.StatusForbidden, "SignatureDoesNotMatch")
		e.unchanged(before)
	}

	for _, bad := range []string{"<Delete><Object><Key>keep</Key></Object>", "not xml", "<Other/>"} {
		resp, b := e.do(e.admin, raw{method: "POST", target: "/main?delete", body: []byte(bad), hdr: []string{"Content-MD5", contentMD5([]byte(bad))}})
		expectError(t, resp, b, http.StatusBadRequest, "MalformedXML")
		e.unchanged(before)
	}
	many := "<Delete>" + strings.Repeat("<Object><Key>keep</Key></Object>", 1001) + "</Delete>"
	resp, b = e.do(e.admin, raw{method: "POST", target: "/main?delete", body: []byte(many)})
	expectError(t, resp, b, http.StatusBadRequest, "MalformedXML")
	e.unchanged(before)

	resp, b = e.do(e.admin, raw{method: "POST", target: "/main?delete", body: doc, hdr: []string{"Content-MD5", contentMD5(doc)}})
	expectStatus(t, resp, b, http.StatusOK)
	if e.exists("keep") || !e.exists("k2") {
		t.Fatal("DeleteObjects deleted the wrong objects")
	}
}

func TestCompleteMultipartBodyIsVerifiedFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	resp, b := e.do(e.admin, raw{method: "POST", target: "/main/mp?uploads"})
	expectStatus(t, resp, b, http.StatusOK)
	var created struct {
		UploadID string `xml:"UploadId"`
	}
	if err := xml.Unmarshal(b, &created); err != nil || created.UploadID == "" {
		t.Fatalf("CreateMultipartUpload: %v\n%s", err, b)
	}
	part := []byte("the only part")
	resp, b = e.do(e.admin, raw{method: "PUT", target: "/main/mp?partNumber=1&uploadId=" + created.UploadID, body: part})
	expectStatus(t, resp, b, http.StatusOK)
	etag := resp.Header.Get("ETag")
	before := e.snapshot()
	target := "/main/mp?uploadId=" + created.UploadID
	// Nix's S3 store sends the document without a namespace.
	doc := []byte("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>" + etag + "</ETag></Part></CompleteMultipartUpload>\n")
	resp, b = e.do(e.admin, raw{method: "POST", target: target, body: doc, hdr: []string{"Content-MD5", contentMD5([]byte("other"))}})
	expectError(t, resp, b, http.StatusBadRequest, "BadDigest")
	e.unchanged(before)
	for _, bad := range []string{"<CompleteMultipartUpload><Part>", "", "<Part/>"} {
		resp, b = e.do(e.admin, raw{method: "POST", target: target, body: []byte(bad)})
		expectError(t, resp, b, http.StatusBadRequest, "MalformedXML")
		e.unchanged(before)
	}
	resp, b = e.do(e.admin, raw{method: "POST", target: target, body: []byte("<CompleteMultipartUpload></CompleteMultipartUpload>")})
	expectError(t, resp, b, http.StatusBadRequest, "MalformedXML")
	e.unchanged(before)

	resp, b = e.do(e.admin, raw{method: "POST", target: target, body: doc, hdr: []string{"Content-MD5", contentMD5(doc)}})
	expectStatus(t, resp, b, http.StatusOK)
	if !strings.Contains(string(b), "<ETag>"+xmlEscape(multipartETag(part))+"</ETag>") {
		t.Errorf("CompleteMultipartUpload answered %s, want the ETag %s", b, multipartETag(part))
	}
	if !e.exists("mp") {
		t.Fatal("the completed object does not exist")
	}
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func TestUnknownSubresources(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	resp, b := e.do(e.admin, raw{method: "PUT", target: "/main/obj", body: []byte("keep me")})
	expectStatus(t, resp, b, http.StatusOK)
	before := e.snapshot()
	for _, q := range []raw{
		{method: "GET", target: "/main/obj?torrent"},
		{method: "GET", target: "/main/obj?attributes"},
		{method: "GET", target: "/main/obj?retention"},
		{method: "PUT", target: "/main/obj?tagging", body: []byte("<Tagging><TagSet/></Tagging>")},
		{method: "PUT", target: "/main/obj?retention", body: []byte("<Retention/>")},
		{method: "PUT", target: "/main/obj?legal-hold", body: []byte("<LegalHold/>")},
		{method: "DELETE", target: "/main/obj?tagging"},
		{method: "POST", target: "/main/obj?restore", body: []byte("<RestoreRequest/>")},
		{method: "POST", target: "/main/obj?select&select-type=2", body: []byte("<SelectObjectContentRequest/>")},
		{method: "GET", target: "/main?logging"},
		{method: "GET", target: "/main?inventory"},
		{method: "GET", target: "/main?notification"},
		{method: "PUT", target: "/main?versioning", body: []byte("<VersioningConfiguration/>")},
		{method: "DELETE", target: "/main?cors"},
		{method: "DELETE", target: "/main?tagging"},
		{method: "PATCH", target: "/main/obj"},
	} {
		resp, b := e.do(e.admin, q)
		expectError(t, resp, b, http.StatusNotImplemented, "NotImplemented")
		e.unchanged(before)
	}
	if !e.exists("obj") {
		t.Fatal("an unsupported request changed the object")
	}
	// The SDK's x-id parameter, response overrides and versionId=null are
	// not subresources.
	resp, b = e.do(e.admin, raw{method: "GET", target: "/main/obj?x-id=GetObject&response-content-type=text%2Fplain&versionId=null"})
	expectStatus(t, resp, b, http.StatusOK)
	if string(b) != "keep me" {
		t.Errorf("GET with x-id: %q", b)
	}
	resp, b = e.do(e.admin, raw{method: "GET", target: "/main?tagging"})
	expectError(t, resp, b, http.StatusNotFound, "NoSuchTagSet")
	resp, b = e.do(e.admin, raw{method: "GET", target: "/main/obj?tagging"})
	expectStatus(t, resp, b, http.StatusOK)
}

func TestErrorDocuments(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createCache("private-cache", true)
	reader := e.key("main", "read")
	for _, tc := range []struct {
		c      cred
		q      raw
		status int
		code   string
		head   bool // also try the request as HEAD
	}{
		{e.admin, raw{method: "GET", target: "/main/no/such/key"}, 404, "NoSuchKey", true},
		{e.admin, raw{method: "GET", target: "/no-such-bucket/key"}, 404, "NoSuchBucket", true},
		{e.admin, raw{method: "GET", target: "/no-such-bucket"}, 404, "NoSuchBucket", true},
		{e.admin, raw{method: "DELETE", target: "/no-such-bucket"}, 404, "NoSuchBucket", false},
		{e.admin, raw{method: "GET", target: "/main/0123456789abcdfghijklmnpqrsvwxyz.narinfo"}, 404, "NoSuchKey", true},
		{e.admin, raw{method: "GET", target: "/main/k?uploadId=nope"}, 404, "NoSuchUpload", false},
		{e.admin, raw{method: "PUT", target: "/main"}, 409, "BucketAlreadyOwnedByYou", false},
		{e.admin, raw{method: "PUT", target: "/Bad_Name"}, 400, "InvalidBucketName", false},
		{e.admin, raw{method: "GET", target: "/main?list-type=2&max-keys=-1"}, 400, "InvalidArgument", false},
		{e.admin, raw{method: "GET", target: "/main?object-lock"}, 404, "ObjectLockConfigurationNotFoundError", false},
		{e.admin, raw{method: "PUT", target: "/main/k", hdr: []string{"X-Amz-Copy-Source", "nonsense"}}, 400, "InvalidArgument", false},
		{e.admin, raw{method: "PUT", target: "/main/k?partNumber=0&uploadId=x"}, 400, "InvalidArgument", false},
		{reader, raw{method: "GET", target: "/private-cache/k"}, 403, "AccessDenied", true},
		{reader, raw{method: "PUT", target: "/main/k"}, 403, "AccessDenied", false},
		{cred{id: reader.id, secret: "wrong"}, raw{method: "GET", target: "/main/k"}, 403, "SignatureDoesNotMatch", true},
	} {
		before := e.snapshot()
		resp, b := e.do(tc.c, tc.q)
		expectError(t, resp, b, tc.status, tc.code)
		e.unchanged(before)
		// The same as HEAD: the status and request ID, no body.
		if tc.head {
			tc.q.method = "HEAD"
			resp, b = e.do(tc.c, tc.q)
			expectError(t, resp, b, tc.status, tc.code)
		}
	}
	// Successful responses carry a request ID too.
	resp, _ := e.do(e.admin, raw{method: "GET", target: "/"})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("x-amz-request-id") == "" {
		t.Errorf("ListBuckets: %d, request ID %q", resp.StatusCode, resp.Header.Get("x-amz-request-id"))
	}
}

func nopCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }

func TestConfiguredRegionAndVirtualHosts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(cfg *config.Config) { cfg.S3Region = region; cfg.S3Domain = "s3.test" })
	c := e.awsClient(e.srv, e.admin)
	mustPut(t, c, "main", "vh/key", []byte("virtual host"))
	loc, err := c.GetBucketLocation(t.Context(), &s3.GetBucketLocationInput{Bucket: aws.String("main")})
	if err != nil || loc.LocationConstraint != region {
		t.Errorf("GetBucketLocation: %q, %v", loc.LocationConstraint, err)
	}
	// Signed for another region: refused, naming the region to use.
	other := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(e.srv.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(e.admin.id, e.admin.secret, ""), HTTPClient: e.srv.Client(), Retryer: aws.NopRetryer{}})
	_, err = getS3(t, other, "main", "vh/key")
	expectAPIError(t, err, http.StatusBadRequest, "AuthorizationHeaderMalformed")

	// BUCKET.DOMAIN addresses the bucket; the path is the key.
	req := e.signedRequest(e.admin, raw{method: "GET", target: "/vh/key", hdr: []string{"Host", "main.s3.test"}})
	resp, b := e.send(nil, req)
	if resp.StatusCode != http.StatusOK || string(b) != "virtual host" {
		t.Errorf("virtual-host GET: %d %q", resp.StatusCode, b)
	}
	req = e.signedRequest(e.admin, raw{method: "GET", target: "/?list-type=2&prefix=vh/", hdr: []string{"Host", "main.s3.test:9000"}})
	resp, b = e.send(nil, req)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "<Key>vh/key</Key>") {
		t.Errorf("virtual-host listing: %d %s", resp.StatusCode, b)
	}
}

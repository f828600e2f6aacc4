package s3api_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/larder-cache/larder/internal/app"
	"github.com/larder-cache/larder/internal/s3api"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

func hmacSHA256(key []byte, s string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(s))
	return h.Sum(nil)
}

// chunkedPut builds a PUT of data as STREAMING-AWS4-HMAC-SHA256-PAYLOAD
// (what minio-go sends over http), in chunks of size chunk, signed with c.
// If corrupt >= 0, the signature of that chunk is damaged.
func (e *env) chunkedPut(c cred, target string, data []byte, chunk, corrupt int) *http.Request {
	e.t.Helper()
	return e.chunkedRequest(c, "PUT", target, data, chunk, corrupt)
}

// chunkedRequest is chunkedPut for any method.
func (e *env) chunkedRequest(c cred, method, target string, data []byte, chunk, corrupt int) *http.Request {
	e.t.Helper()
	var chunks [][]byte
	for rest := data; len(rest) > 0; {
		n := min(chunk, len(rest))
		chunks, rest = append(chunks, rest[:n]), rest[n:]
	}
	chunks = append(chunks, nil) // the final, empty chunk
	size := 0
	for _, ch := range chunks {
		size += len(fmt.Sprintf("%x;chunk-signature=", len(ch))) + 64 + 2 + len(ch) + 2
	}
	const mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	req := e.signedRequest(c, raw{method: method, target: target, body: make([]byte, size), payload: mode,
		hdr: []string{"Content-Encoding", "aws-chunked", "X-Amz-Decoded-Content-Length", fmt.Sprint(len(data))}})
	amzDate := req.Header.Get("X-Amz-Date")
	_, seed, _ := strings.Cut(req.Header.Get("Authorization"), "Signature=")
	scope := amzDate[:8] + "/" + region + "/s3/aws4_request"
	key := hmacSHA256([]byte("AWS4"+c.secret), amzDate[:8])
	for _, part := range []string{region, "s3", "aws4_request"} {
		key = hmacSHA256(key, part)
	}
	var body bytes.Buffer
	prev := seed
	for i, ch := range chunks {
		sts := "AWS4-HMAC-SHA256-PAYLOAD\n" + amzDate + "\n" + scope + "\n" + prev + "\n" + sha256Hex(nil) + "\n" + sha256Hex(ch)
		sig := hex.EncodeToString(hmacSHA256(key, sts))
		prev = sig
		if i == corrupt {
			sig = strings.Repeat("0", 64)
		}
		fmt.Fprintf(&body, "%x;chunk-signature=%s\r\n", len(ch), sig)
		body.Write(ch)
		body.WriteString("\r\n")
	}
	if body.Len() != size {
		e.t.Fatalf("aws-chunked body is %d bytes, not %d", body.Len(), size)
	}
	req.Body = io.NopCloser(bytes.NewReader(body.Bytes()))
	return req
}

func TestAuthSignatures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := []byte("must not be stored")
	target := "/main/auth/object"
	before := e.snapshot()

	resp, b := e.do(cred{id: e.admin.id, secret: e.admin.secret + "x"}, raw{method: "PUT", target: target, body: body})
	expectError(t, resp, b, http.StatusForbidden, "SignatureDoesNotMatch")
	resp, b = e.do(cred{id: "LRDUNKNOWNKEYID00000", secret: "s"}, raw{method: "PUT", target: target, body: body})
	expectError(t, resp, b, http.StatusForbidden, "InvalidAccessKeyId")

	req := e.signedRequest(e.admin, raw{method: "PUT", target: target, body: body})
	auth := req.Header.Get("Authorization")
	last := auth[len(auth)-1:]
	req.Header.Set("Authorization", auth[:len(auth)-1]+map[bool]string{true: "1", false: "0"}[last == "0"])
	resp, b = e.send(nil, req)
	expectError(t, resp, b, http.StatusForbidden, "SignatureDoesNotMatch")

	// A signed header changed after signing.
	req = e.signedRequest(e.admin, raw{method: "PUT", target: target, body: body, hdr: []string{"X-Amz-Meta-A", "1"}})
	req.Header.Set("X-Amz-Meta-A", "2")
	resp, b = e.send(nil, req)
	expectError(t, resp, b, http.StatusForbidden, "SignatureDoesNotMatch")

	// A body other than the one whose SHA-256 was signed.
	req = e.signedRequest(e.admin, raw{method: "PUT", target: target, body: body})
	req.Body = io.NopCloser(bytes.NewReader(bytes.ToUpper(body)))
	resp, b = e.send(nil, req)
	expectError(t, resp, b, http.StatusBadRequest, "XAmzContentSHA256Mismatch")

	resp, b = e.do(e.admin, raw{method: "PUT", target: target, body: body, at: time.Now().Add(-16 * time.Minute)})
	expectError(t, resp, b, http.StatusForbidden, "RequestTimeTooSkewed")
	resp, b = e.do(e.admin, raw{method: "PUT", target: target, body: body, at: time.Now().Add(16 * time.Minute)})
	expectError(t, resp, b, http.StatusForbidden, "RequestTimeTooSkewed")

	// Signature Version 2 gets a clear error.
	req, _ = http.NewRequest(http.MethodGet, e.srv.URL+"/main/auth/object", nil)
	req.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	req.Header.Set("Authorization", "AWS "+e.admin.id+":c2lnbmF0dXJlIHYy")
	resp, b = e.send(nil, req)
	if msg := expectError(t, resp, b, http.StatusBadRequest, "InvalidRequest"); !strings.Contains(msg, "Version 4") {
		t.Errorf("SigV2: the message does not say to use Signature Version 4: %q", msg)
	}
	e.unchanged(before)
}

func TestAuthPayloadChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.awsClient(e.srv, e.admin)
	p := newStorePath(t, "digest", []byte("checked"), "xz")
	before := e.snapshot()
	md5b64 := func(b []byte) string { s := md5.Sum(b); return base64.StdEncoding.EncodeToString(s[:]) }
	wrongMD5 := md5b64([]byte("something else"))
	wrongCRC := crc32Base64([]byte("something else"))
	// Every kind of key: a plain object, a NAR, a narinfo.
	for _, up := range []struct{ key, body string }{
		{"plain/object", "plain bytes"},
		{p.narKey(), string(p.file)},
		{p.narinfoKey(), p.narinfo()},
	} {
		body := []byte(up.body)
		for _, payload := range []string{"", "UNSIGNED-PAYLOAD", "-"} {
			resp, b := e.do(e.admin, raw{method: "PUT", target: "/main/" + up.key, body: body, payload: payload, hdr: []string{"Content-MD5", wrongMD5}})
			expectError(t, resp, b, http.StatusBadRequest, "BadDigest")
			resp, b = e.do(e.admin, raw{method: "PUT", target: "/main/" + up.key, body: body, payload: payload, hdr: []string{"X-Amz-Checksum-Crc32", wrongCRC}})
			expectError(t, resp, b, http.StatusBadRequest, "BadDigest")
			e.unchanged(before)
		}
		// Over https, through the SDK's trailer.
		req := e.signedRequest(e.admin, raw{srv: e.tls, method: "PUT", target: "/main/" + up.key, body: body, hdr: []string{"Content-MD5", wrongMD5}})
		resp, b := e.send(e.tls, req)
		expectError(t, resp, b, http.StatusBadRequest, "BadDigest")
		e.unchanged(before)
	}
	// The right digests are accepted, in every payload mode (as curl
	// --aws-sigv4 sends it, without x-amz-content-sha256, too).
	for _, payload := range []string{"", "UNSIGNED-PAYLOAD", "-"} {
		body := []byte("plain bytes in mode " + payload)
		resp, b := e.do(e.admin, raw{method: "PUT", target: "/main/plain/object", body: body, payload: payload,
			hdr: []string{"Content-MD5", md5b64(body), "X-Amz-Checksum-Crc32", crc32Base64(body)}})
		expectStatus(t, resp, b, http.StatusOK)
		if resp.Header.Get("X-Amz-Checksum-Crc32") != crc32Base64(body) {
			t.Errorf("PUT with x-amz-checksum-crc32: the response has %q", resp.Header.Get("X-Amz-Checksum-Crc32"))
		}
		if got, err := getS3(t, c, "main", "plain/object"); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("GetObject: %q, %v", got, err)
		}
	}
	resp, b := e.do(e.admin, raw{method: "PUT", target: "/main/" + p.narKey(), body: p.file, payload: "-", hdr: []string{"Content-MD5", md5b64(p.file)}})
	expectStatus(t, resp, b, http.StatusOK)
	resp, b = e.do(e.admin, raw{method: "PUT", target: "/main/" + p.narinfoKey(), body: []byte(p.narinfo()), payload: "-"})
	expectStatus(t, resp, b, http.StatusOK)
	e.served(c, "main", p)
}

func TestAuthChunkSignatures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.awsClient(e.srv, e.admin)
	data := randomBytes(150 << 10)
	p := newStorePath(t, "chunked", randomBytes(100<<10), "none")
	before := e.snapshot()
	for key, body := range map[string][]byte{"chunked/object": data, p.narKey(): p.file} {
		final := (len(body) + 64<<10 - 1) / (64 << 10)
		for _, corrupt := range []int{0, 1, final} { // the first, a middle and the final chunk
			resp, b := e.send(nil, e.chunkedPut(e.admin, "/main/"+key, body, 64<<10, corrupt))
			expectError(t, resp, b, http.StatusForbidden, "SignatureDoesNotMatch")
			e.unchanged(before)
		}
	}
	// The same request with good signatures is accepted.
	resp, b := e.send(nil, e.chunkedPut(e.admin, "/main/chunked/object", data, 64<<10, -1))
	expectStatus(t, resp, b, http.StatusOK)
	if got, err := getS3(t, c, "main", "chunked/object"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetObject after a chunked PUT: %d bytes, %v", len(got), err)
	}
	resp, b = e.send(nil, e.chunkedPut(e.admin, "/main/"+p.narKey(), p.file, 8<<10, -1))
	expectStatus(t, resp, b, http.StatusOK)
	mustPut(t, c, "main", p.narinfoKey(), []byte(p.narinfo()))
	e.served(c, "main", p)
}

func TestAuthPermissions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, name := range []string{"ci-a", "other", "secret"} {
		e.createCache(name, name == "secret")
	}
	readMain := e.key("main", store.PermRead)
	writeOther := e.key("other", store.PermWrite)
	writeCI := e.key("ci-*", store.PermWrite)
	readSecret := e.key("secret", store.PermRead)
	adminCI := e.key("ci-*", store.PermAdmin)
	mustPut(t, e.awsClient(e.srv, e.admin), "secret", "s/1", []byte("private"))
	before := e.snapshot()

	body := []byte("refused")
	refused := func(c cred, method, target string, code string) {
		t.Helper()
		resp, b := e.do(c, raw{method: method, target: target, body: body})
		expectError(t, resp, b, http.StatusForbidden, code)
		e.unchanged(before)
	}
	refused(readMain, "PUT", "/main/k", "AccessDenied")
	refused(readMain, "DELETE", "/main/k", "AccessDenied")
	refused(readMain, "POST", "/main/k?uploads", "AccessDenied")
	refused(writeOther, "PUT", "/main/k", "AccessDenied")
	refused(writeCI, "PUT", "/other/k", "AccessDenied")
	refused(writeCI, "PUT", "/ci-b", "AccessDenied") // creating a bucket needs admin
	refused(writeOther, "DELETE", "/other", "AccessDenied")
	refused(adminCI, "PUT", "/prod", "AccessDenied")
	refused(readMain, "GET", "/secret/s/1", "AccessDenied")
	refused(readMain, "GET", "/secret?list-type=2", "AccessDenied")
	refused(writeCI, "GET", "/secret/s/1", "AccessDenied")
	// HEAD errors are the same, without a body.
	resp, b := e.do(readMain, raw{method: "HEAD", target: "/secret/s/1"})
	expectError(t, resp, b, http.StatusForbidden, "")
	resp, b = e.do(readMain, raw{method: "HEAD", target: "/secret"})
	expectError(t, resp, b, http.StatusForbidden, "")

	// What each may do.
	mustPut(t, e.awsClient(e.srv, writeCI), "ci-a", "k", []byte("allowed"))
	mustPut(t, e.awsClient(e.tls, writeOther), "other", "k", []byte("allowed"))
	if got, err := getS3(t, e.awsClient(e.srv, readSecret), "secret", "s/1"); err != nil || string(got) != "private" {
		t.Errorf("GetObject from a private cache with its read key: %q, %v", got, err)
	}
	if got, err := getS3(t, e.awsClient(e.srv, readMain), "ci-a", "k"); err != nil || string(got) != "allowed" {
		t.Errorf("GetObject from a public cache: %q, %v", got, err)
	}
	resp, b = e.do(adminCI, raw{method: "PUT", target: "/ci-new"})
	expectStatus(t, resp, b, http.StatusOK)
	buckets, err := e.awsClient(e.srv, writeCI).ListBuckets(t.Context(), &s3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, bk := range buckets.Buckets {
		names = append(names, aws.ToString(bk.Name))
	}
	if strings.Join(names, ",") != "ci-a,ci-new" {
		t.Errorf("ListBuckets with a ci-* key: %v", names)
	}
	// A revoked or expired key is unknown.
	text, tok, err := e.app.Service.CreateToken(t.Context(), service.TokenSpec{Cache: "main", Perm: store.PermWrite, S3: true})
	if err != nil {
		t.Fatal(err)
	}
	id, secret, _ := strings.Cut(text, " ")
	if err := e.app.Service.RevokeToken(t.Context(), tok.ID); err != nil {
		t.Fatal(err)
	}
	resp, b = e.do(cred{id: id, secret: secret}, raw{method: "GET", target: "/main/k"})
	expectError(t, resp, b, http.StatusForbidden, "InvalidAccessKeyId")
}

func TestAuthExpiredPresignedPut(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	before := e.snapshot()
	req, _ := http.NewRequest(http.MethodPut, e.srv.URL+"/main/pre/put?X-Amz-Expires=60", bytes.NewReader([]byte("late")))
	presignAt(t, e.admin, req, time.Now().Add(-time.Hour))
	resp, b := e.send(nil, req)
	expectError(t, resp, b, http.StatusForbidden, "AccessDenied")
	e.unchanged(before)
}

// countingMeta counts the access key lookups of a metadata store.
type countingMeta struct {
	store.MetaStore
	lookups atomic.Int64
}

func (m *countingMeta) LookupAccessKey(ctx context.Context, id string) (store.Token, error) {
	m.lookups.Add(1)
	return m.MetaStore.LookupAccessKey(ctx, id)
}

// TestOneKeyLookupPerRequest: a signed request looks its access key up in
// the metadata store once, for the signature and the permissions together.
func TestOneKeyLookupPerRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	meta := &countingMeta{MetaStore: e.app.Meta}
	svc, err := service.New(t.Context(), service.Options{Meta: meta, Blobs: e.app.Blobs, Limits: app.Limits(e.app.Config)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s3api.New(svc, s3api.Options{}))
	t.Cleanup(srv.Close)
	for _, q := range []raw{
		{method: "PUT", target: "/main/counted", body: []byte("counted")},
		{method: "GET", target: "/main/counted"},
		{method: "GET", target: "/main?list-type=2"},
		{method: "HEAD", target: "/main"},
	} {
		q.srv = srv
		before := meta.lookups.Load()
		resp, b := e.do(e.admin, q)
		expectStatus(t, resp, b, http.StatusOK)
		if n := meta.lookups.Load() - before; n != 1 {
			t.Errorf("%s %s looked its access key up %d times, want once", q.method, q.target, n)
		}
	}
}

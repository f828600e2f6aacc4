package sigv4

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestURIEncode(t *testing.T) {
	cases := []struct {
		in        string
		keepSlash bool
		want      string
	}{
		{"A-Za-z0-9-_.~", false, "A-Za-z0-9-_.~"},
		{"a b", false, "a%20b"},
		{"a+b", false, "a%2Bb"},
		{"a*b", false, "a%2Ab"},
		{"a/b", false, "a%2Fb"},
		{"a/b", true, "a/b"},
		{"x//y", true, "x//y"},
		{"./z", true, "./z"},
		{`&+-é"/ x`, true, "%26%2B-%C3%A9%22/%20x"},
		{"100%", true, "100%25"},
		{"$!'()*,;=:@[]", false, "%24%21%27%28%29%2A%2C%3B%3D%3A%40%5B%5D"},
	}
	for _, c := range cases {
		if got := uriEncode(c.in, c.keepSlash); got != c.want {
			t.Errorf("uriEncode(%q, %v) = %q, want %q", c.in, c.keepSlash, got, c.want)
		}
	}
}

func TestCanonicalURI(t *testing.T) {
	cases := map[string]string{
		"/":                         "/",
		"/bucket/x//y":              "/bucket/x//y",
		"/bucket/./z":               "/bucket/./z",
		"/bucket/../up":             "/bucket/../up",
		"/bucket/a%20b":             "/bucket/a%20b",
		"/bucket/a+b":               "/bucket/a%2Bb",
		"/bucket/%c3%a9":            "/bucket/%C3%A9",
		"/bucket/a%2Fb":             "/bucket/a/b",
		"/bucket/test$file.text":    "/bucket/test%24file.text",
		"/bucket/~user/file%7E.txt": "/bucket/~user/file~.txt",
	}
	for target, want := range cases {
		r := httptest.NewRequest("GET", target, nil)
		if got := canonicalURI(r); got != want {
			t.Errorf("canonicalURI(%s) = %q, want %q", target, got, want)
		}
	}
}

func TestCanonicalQuery(t *testing.T) {
	cases := []struct {
		raw       string
		presigned bool
		want      string
		sorted    string
	}{
		{"", false, "", ""},
		{"b=2&a=1", false, "a=1&b=2", "a=1&b=2"},
		{"uploads", false, "uploads=", "uploads="},
		{"lifecycle=", false, "lifecycle=", "lifecycle="},
		{"prefix=a+b", false, "prefix=a%20b", "prefix=a+b"},
		{"prefix=a%2bb", false, "prefix=a%2Bb", "prefix=a%2bb"},
		{"prefix=%7E*", false, "prefix=~%2A", "prefix=%7E*"},
		{"a=2&a=1&A=3", false, "A=3&a=1&a=2", "A=3&a=1&a=2"},
		{"a=1&&b=2", false, "a=1&b=2", "a=1&b=2"},
		{"x-id=GetObject&X-Amz-Signature=abc&X-Amz-Date=1", true, "X-Amz-Date=1&x-id=GetObject", "X-Amz-Date=1&x-id=GetObject"},
		{"X-Amz-Signature=abc", false, "X-Amz-Signature=abc", "X-Amz-Signature=abc"},
		{"prefix=%C3%A9%2F", false, "prefix=%C3%A9%2F", "prefix=%C3%A9%2F"},
	}
	for _, c := range cases {
		got, sorted, ok := canonicalQuery(c.raw, c.presigned)
		if !ok || got != c.want || sorted != c.sorted {
			t.Errorf("canonicalQuery(%q) = %q, %q, %v; want %q, %q", c.raw, got, sorted, ok, c.want, c.sorted)
		}
	}
	if _, _, ok := canonicalQuery("a=%zz", false); ok {
		t.Error("canonicalQuery accepted a bad escape")
	}
	if got := verbatimQuery("b=1&X-Amz-Signature=x&a", true); got != "b=1&a" {
		t.Errorf("verbatimQuery = %q", got)
	}
}

func TestTrimAll(t *testing.T) {
	cases := map[string]string{
		"":                 "",
		"  a  ":            "a",
		"a   b  c":         "a b c",
		"\ta b\t":          "a b",
		"bytes=0-9":        "bytes=0-9",
		`"quoted  string"`: `"quoted string"`,
	}
	for in, want := range cases {
		if got := trimAll(in); got != want {
			t.Errorf("trimAll(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsSigned(t *testing.T) {
	cases := []struct {
		target, auth string
		v4, v2       bool
	}{
		{"/b/k", "", false, false},
		{"/b/k", "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00", true, false},
		{"/b/k", "AWS AKID:c2ln", false, true},
		{"/b/k", "Bearer x", false, false},
		{"/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x", "", true, false},
		{"/b/k?X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256", "", false, false},
		{"/b/k?AWSAccessKeyId=AKID&Expires=1&Signature=abc", "", false, true},
		{"/b/k?Signature=abc", "", false, false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", c.target, nil)
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		if IsSigned(r) != c.v4 || IsSignedV2(r) != c.v2 {
			t.Errorf("%s %q: IsSigned %v, IsSignedV2 %v; want %v, %v", c.target, c.auth, IsSigned(r), IsSignedV2(r), c.v4, c.v2)
		}
	}
}

func TestWithoutAWSChunked(t *testing.T) {
	cases := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"aws-chunked"}, ""},
		{[]string{"aws-chunked,gzip"}, "gzip"},
		{[]string{"gzip, aws-chunked"}, "gzip"},
		{[]string{"AWS-Chunked", "zstd"}, "zstd"},
		{[]string{"gzip", "br"}, "gzip,br"},
	}
	for _, c := range cases {
		if got := withoutAWSChunked(c.in); got != c.want {
			t.Errorf("withoutAWSChunked(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// signAs signs r by hand over the given canonical path and query, for
// clients that sign something other than S3's canonical form.
func signAs(r *http.Request, uri, query string, signed []string, payloadHash string) {
	amzDate := signedAt.Format(amzDateFormat)
	scope := amzDate[:8] + "/us-east-1/s3/aws4_request"
	list := strings.Join(signed, ";")
	canonical := canonicalRequest(r, uri, query, signed, list, payloadHash)
	key := signingKey(testSecret, amzDate[:8], "us-east-1", "s3")
	sig := hex.EncodeToString(hmacSHA256(key, stringToSign(amzDate, scope, canonical)))
	r.Header.Set("Authorization", algorithm+" Credential="+testKeyID+"/"+scope+", SignedHeaders="+list+", Signature="+sig)
}

// Clients that sign the path and query as they send them, rather than in
// S3's canonical form, are accepted; the same signature over another
// request is not.
func TestSentFormsAccepted(t *testing.T) {
	cases := []struct{ target, uri, query string }{
		{"/bucket/%c3%a9", "/bucket/%c3%a9", ""},
		{"/bucket/a&b", "/bucket/a&b", ""},
		{"/bucket/k?b=2&a=1", "/bucket/k", "b=2&a=1"},
		{"/bucket/k?uploads", "/bucket/k", "uploads"},
		{"/bucket/k?prefix=a+b&list-type=2", "/bucket/k", "list-type=2&prefix=a+b"},
	}
	signed := []string{"host", "x-amz-date"}
	for _, c := range cases {
		r := httptest.NewRequest("GET", c.target, nil)
		r.Host = testHost
		r.Header.Set("X-Amz-Date", signedAt.Format(amzDateFormat))
		signAs(r, c.uri, c.query, signed, emptySHA256)
		if _, err := Verify(context.Background(), r, lookupTestKeys, at(signedAt)); err != nil {
			t.Errorf("%s signed as %s?%s: %v", c.target, c.uri, c.query, err)
		}
		r.URL.RawQuery += "&acl"
		_, err := Verify(context.Background(), r, lookupTestKeys, at(signedAt))
		wantCode(t, err, "SignatureDoesNotMatch")
	}
}

// A request dated only by its Date header is signed with that time in
// ISO 8601 form.
func TestDateHeaderOnly(t *testing.T) {
	r := httptest.NewRequest("GET", "/bucket/k", nil)
	r.Host = testHost
	r.Header.Set("Date", signedAt.Format(http.TimeFormat))
	signAs(r, "/bucket/k", "", []string{"date", "host"}, emptySHA256)
	req, err := Verify(context.Background(), r, lookupTestKeys, at(signedAt))
	if err != nil {
		t.Fatal(err)
	}
	if !req.Time.Equal(signedAt) || req.ContentSHA256 != "" {
		t.Errorf("Time = %v, ContentSHA256 = %q", req.Time, req.ContentSHA256)
	}
}

// Repeated headers are signed as their values joined by commas, with inner
// runs of spaces collapsed.
func TestRepeatedHeaderValues(t *testing.T) {
	r := buildPut(t, buildOpts{pre: func(r *http.Request) {
		r.Header["X-Amz-Meta-Multi"] = []string{"a", "b   c"}
		r.Header.Set("Content-Type", "  text/plain;   charset=utf-8 ")
	}})
	if got := r.Header.Values("X-Amz-Meta-Multi"); len(got) != 2 {
		t.Fatalf("the wire carries %q, want two header lines", got)
	}
	if _, _, err := verifyAndRead(t, r, at(signedAt)); err != nil {
		t.Fatal(err)
	}
}

// Without a Content-Length (Transfer-Encoding: chunked) the length is
// unknown, and the last byte is still withheld until the checks pass.
func TestUnknownLength(t *testing.T) {
	for _, tamper := range []bool{false, true} {
		r := newClientRequest(t, "PUT", objectURL("k", ""), nil)
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(negBody)), -1
		awsSign(t, r, sha256Of(negBody), signedAt)
		b := wireBytes(t, r)
		if !bytes.Contains(b, []byte("Transfer-Encoding: chunked")) {
			t.Fatalf("request not sent chunked:\n%s", b)
		}
		if tamper {
			b = bytes.Replace(b, negBody[:10], []byte("THE PAYLO"+"X"), 1)
		}
		req, err := Verify(context.Background(), serverRequest(t, b), lookupTestKeys, at(signedAt))
		if err != nil {
			t.Fatal(err)
		}
		if req.Length != -1 {
			t.Errorf("Length = %d, want -1", req.Length)
		}
		buf := make([]byte, len(negBody))
		_, err = io.ReadFull(req.Body, buf)
		if tamper {
			wantCode(t, err, "XAmzContentSHA256Mismatch")
		} else if err != nil || !bytes.Equal(buf, negBody) {
			t.Errorf("ReadFull: %v", err)
		}
	}
}

// An upload signed with the empty payload's hash because the client sent no
// x-amz-content-sha256 (curl 7.88) is accepted and its body is unchecked.
func TestMissingContentSHA256(t *testing.T) {
	r := newClientRequest(t, "PUT", objectURL("k", ""), negBody)
	awsSign(t, r, "", signedAt)
	if r.Header.Get("X-Amz-Content-Sha256") != "" {
		t.Fatal("the request has an x-amz-content-sha256")
	}
	req, body, err := verifyAndRead(t, wire(t, r), at(signedAt))
	if err != nil || !bytes.Equal(body, negBody) || req.ContentSHA256 != "" {
		t.Fatalf("Verify: %v, body %q", err, body)
	}
}

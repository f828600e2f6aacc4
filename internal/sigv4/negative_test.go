package sigv4

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/minio/minio-go/v7/pkg/signer"
)

var negBody = []byte("the payload of a signed request, long enough to tamper with")

// buildOpts describes a PUT signed by aws-sdk-go-v2's signer.
type buildOpts struct {
	creds aws.Credentials
	hash  string // x-amz-content-sha256; default the body's SHA-256
	time  time.Time
	pre   func(r *http.Request) // on the client request, before signing
	post  func(r *http.Request) // on the server request
	wire  func(b []byte) []byte // on the bytes in between
}

func buildPut(t testing.TB, o buildOpts) *http.Request {
	t.Helper()
	if o.creds.AccessKeyID == "" {
		o.creds = testCreds
	}
	if o.hash == "" {
		o.hash = sha256Of(negBody)
	}
	if o.time.IsZero() {
		o.time = signedAt
	}
	r := newClientRequest(t, "PUT", objectURL("dir/key", "x-id=PutObject"), negBody)
	r.Header.Set("X-Amz-Meta-Owner", "alice")
	if o.pre != nil {
		o.pre(r)
	}
	r.Header.Set("X-Amz-Content-Sha256", o.hash)
	s := v4.NewSigner(func(so *v4.SignerOptions) { so.DisableURIPathEscaping = true })
	if err := s.SignHTTP(context.Background(), o.creds, r, o.hash, "s3", "us-east-1", o.time); err != nil {
		t.Fatal(err)
	}
	b := wireBytes(t, r)
	if o.wire != nil {
		b = o.wire(b)
	}
	sr := serverRequest(t, b)
	if o.post != nil {
		o.post(sr)
	}
	return sr
}

func setHeader(name, value string) func(r *http.Request) {
	return func(r *http.Request) { r.Header.Set(name, value) }
}

func setAuth(value string) func(r *http.Request) { return setHeader("Authorization", value) }

// replaceAuth edits the Authorization header the signer produced.
func replaceAuth(old, new string) func(r *http.Request) {
	return func(r *http.Request) {
		r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), old, new, 1))
	}
}

// flipBodyByte changes one byte of the body on the wire, keeping its length.
func flipBodyByte(b []byte) []byte {
	i := bytes.Index(b, []byte("\r\n\r\n")) + 4 + 10
	b = bytes.Clone(b)
	b[i] ^= 0x20
	return b
}

func md5Base64(b []byte) string {
	s := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

func sha256Base64(b []byte) string {
	s := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

var statusOf = map[string]int{
	"SignatureDoesNotMatch": 403, "InvalidAccessKeyId": 403, "AccessDenied": 403, "RequestTimeTooSkewed": 403,
	"AuthorizationHeaderMalformed": 400, "AuthorizationQueryParametersError": 400, "XAmzContentSHA256Mismatch": 400,
	"BadDigest": 400, "InvalidDigest": 400, "IncompleteBody": 400, "InvalidRequest": 400, "InvalidArgument": 400,
	"MalformedTrailerError": 400, "InternalError": 500,
}

type negCase struct {
	name  string
	req   func(t testing.TB) *http.Request
	clock time.Time // default: a minute after signedAt
	opts  func(o *Options)
	code  string
}

func put(o buildOpts) func(t testing.TB) *http.Request {
	return func(t testing.TB) *http.Request { return buildPut(t, o) }
}

func headerCases() []negCase {
	good := sha256Of(negBody)
	return []negCase{
		{name: "wrong secret", code: "SignatureDoesNotMatch",
			req: put(buildOpts{creds: aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: "wrong"}})},
		{name: "unknown key id", code: "InvalidAccessKeyId",
			req: put(buildOpts{creds: aws.Credentials{AccessKeyID: "NOSUCHKEY", SecretAccessKey: testSecret}})},
		{name: "tampered signature", code: "SignatureDoesNotMatch",
			req: put(buildOpts{post: func(r *http.Request) {
				a := r.Header.Get("Authorization")
				last := a[len(a)-1]
				r.Header.Set("Authorization", a[:len(a)-1]+map[bool]string{true: "1", false: "0"}[last == '0'])
			}})},
		{name: "tampered method", code: "SignatureDoesNotMatch", req: put(buildOpts{post: func(r *http.Request) { r.Method = "POST" }})},
		{name: "tampered path", code: "SignatureDoesNotMatch",
			req: put(buildOpts{post: func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/bucket/dir/other", "" }})},
		{name: "tampered query", code: "SignatureDoesNotMatch",
			req: put(buildOpts{post: func(r *http.Request) { r.URL.RawQuery += "&acl" }})},
		{name: "query value changed", code: "SignatureDoesNotMatch",
			req: put(buildOpts{post: func(r *http.Request) { r.URL.RawQuery = "x-id=DeleteObject" }})},
		{name: "tampered signed header", code: "SignatureDoesNotMatch", req: put(buildOpts{post: setHeader("X-Amz-Meta-Owner", "mallory")})},
		{name: "missing signed header", code: "SignatureDoesNotMatch",
			req: put(buildOpts{post: func(r *http.Request) { r.Header.Del("X-Amz-Meta-Owner") }})},
		{name: "tampered host", code: "SignatureDoesNotMatch", req: put(buildOpts{post: func(r *http.Request) { r.Host = "larder.test:9001" }})},
		{name: "tampered date", code: "SignatureDoesNotMatch", req: put(buildOpts{post: setHeader("X-Amz-Date", "20260102T030406Z")})},
		{name: "unsigned x-amz header added", code: "AccessDenied", req: put(buildOpts{post: setHeader("X-Amz-Acl", "public-read")})},
		{name: "tampered body", code: "XAmzContentSHA256Mismatch", req: put(buildOpts{wire: flipBodyByte})},
		{name: "body shorter than declared", code: "IncompleteBody",
			req: put(buildOpts{wire: func(b []byte) []byte { return b[:len(b)-5] }})},
		{name: "tampered body, unsigned payload with checksum", code: "BadDigest",
			req: put(buildOpts{hash: unsignedPayload, pre: setHeader("X-Amz-Checksum-Crc32", crc32Of(negBody)), wire: flipBodyByte})},
		{name: "wrong checksum header", code: "BadDigest",
			req: put(buildOpts{pre: setHeader("X-Amz-Checksum-Sha256", sha256Base64([]byte("other")))})},
		{name: "checksum header not base64", code: "InvalidRequest", req: put(buildOpts{pre: setHeader("X-Amz-Checksum-Crc32", "!!")})},
		{name: "checksum header of wrong size", code: "InvalidRequest",
			req: put(buildOpts{pre: setHeader("X-Amz-Checksum-Crc32", sha256Base64(negBody))})},
		{name: "two checksum headers", code: "InvalidRequest", req: put(buildOpts{pre: func(r *http.Request) {
			r.Header.Set("X-Amz-Checksum-Crc32", crc32Of(negBody))
			r.Header.Set("X-Amz-Checksum-Sha256", sha256Base64(negBody))
		}})},
		{name: "algorithm differs from checksum header", code: "InvalidRequest", req: put(buildOpts{pre: func(r *http.Request) {
			r.Header.Set("X-Amz-Checksum-Crc32", crc32Of(negBody))
			r.Header.Set("X-Amz-Sdk-Checksum-Algorithm", "SHA256")
		}})},
		{name: "unknown checksum algorithm", code: "InvalidRequest", req: put(buildOpts{pre: setHeader("X-Amz-Sdk-Checksum-Algorithm", "MD4")})},
		{name: "trailer without streaming", code: "InvalidRequest", req: put(buildOpts{pre: setHeader("X-Amz-Trailer", "x-amz-checksum-crc32")})},
		{name: "wrong Content-MD5", code: "BadDigest", req: put(buildOpts{pre: setHeader("Content-MD5", md5Base64([]byte("other")))})},
		{name: "malformed Content-MD5", code: "InvalidDigest", req: put(buildOpts{pre: setHeader("Content-MD5", "bm90IG1kNQ==")})},
		{name: "x-amz-content-sha256 not a hash", code: "InvalidArgument", req: put(buildOpts{hash: "SOMETHING-ELSE"})},
		{name: "clock skew, request late", code: "RequestTimeTooSkewed", req: put(buildOpts{}), clock: signedAt.Add(16 * time.Minute)},
		{name: "clock skew, request early", code: "RequestTimeTooSkewed", req: put(buildOpts{}), clock: signedAt.Add(-16 * time.Minute)},
		{name: "region mismatch", code: "AuthorizationHeaderMalformed", req: put(buildOpts{}),
			opts: func(o *Options) { o.Region = "eu-west-1" }},
		{name: "no date", code: "AccessDenied", req: put(buildOpts{post: func(r *http.Request) { r.Header.Del("X-Amz-Date") }})},
		{name: "malformed x-amz-date", code: "AccessDenied", req: put(buildOpts{post: setHeader("X-Amz-Date", "2026-01-02T03:04:05Z")})},
		{name: "lookup fails", code: "InternalError", req: put(buildOpts{creds: aws.Credentials{AccessKeyID: "BROKEN", SecretAccessKey: "x"}})},
		{name: "good request", code: "", req: put(buildOpts{hash: good})},
	}
}

func authCases() []negCase {
	cred := testKeyID + "/20260102/us-east-1/s3/aws4_request"
	sig := strings.Repeat("ab", 32)
	auth := func(c, sh, s string) func(t testing.TB) *http.Request {
		return put(buildOpts{post: setAuth(algorithm + " Credential=" + c + ", SignedHeaders=" + sh + ", Signature=" + s)})
	}
	const sh = "host;x-amz-content-sha256;x-amz-date"
	return []negCase{
		{name: "no Signature", code: "AuthorizationHeaderMalformed", req: put(buildOpts{post: setAuth(algorithm + " Credential=" + cred + ", SignedHeaders=" + sh)})},
		{name: "no space after algorithm", code: "AuthorizationHeaderMalformed", req: put(buildOpts{post: setAuth(algorithm + "Credential=" + cred)})},
		{name: "unknown component", code: "AuthorizationHeaderMalformed", req: put(buildOpts{post: setAuth(algorithm + " Credential=" + cred + ", SignedHeaders=" + sh + ", Signature=" + sig + ", Foo=bar")})},
		{name: "repeated component", code: "AuthorizationHeaderMalformed", req: put(buildOpts{post: setAuth(algorithm + " Credential=" + cred + ", Credential=" + cred + ", SignedHeaders=" + sh + ", Signature=" + sig)})},
		{name: "short credential", code: "AuthorizationHeaderMalformed", req: auth(testKeyID+"/20260102/us-east-1/s3", sh, sig)},
		{name: "bad scope date", code: "AuthorizationHeaderMalformed", req: auth(testKeyID+"/2026-01-02/us-east-1/s3/aws4_request", sh, sig)},
		{name: "scope date is not the request's", code: "AuthorizationHeaderMalformed", req: auth(testKeyID+"/20260103/us-east-1/s3/aws4_request", sh, sig)},
		{name: "wrong service", code: "AuthorizationHeaderMalformed", req: auth(testKeyID+"/20260102/us-east-1/ec2/aws4_request", sh, sig)},
		{name: "wrong terminator", code: "AuthorizationHeaderMalformed", req: auth(testKeyID+"/20260102/us-east-1/s3/aws5_request", sh, sig)},
		{name: "short signature", code: "AuthorizationHeaderMalformed", req: auth(cred, sh, sig[1:])},
		{name: "signature not hex", code: "AuthorizationHeaderMalformed", req: auth(cred, sh, strings.Repeat("zz", 32))},
		{name: "host not signed", code: "AuthorizationHeaderMalformed", req: auth(cred, "x-amz-content-sha256;x-amz-date", sig)},
		{name: "empty signed header name", code: "AuthorizationHeaderMalformed", req: auth(cred, "host;;x-amz-date", sig)},
		{name: "signature version 2", code: "InvalidRequest", req: put(buildOpts{post: setAuth("AWS " + testKeyID + ":c2lnbmF0dXJl")})},
		{name: "sigv4a", code: "InvalidRequest", req: put(buildOpts{post: setAuth("AWS4-ECDSA-P256-SHA256 Credential=" + cred)})},
		{name: "other scheme", code: "InvalidArgument", req: put(buildOpts{post: setAuth("Bearer abc")})},
		{name: "two Authorization headers", code: "InvalidArgument", req: put(buildOpts{post: func(r *http.Request) {
			r.Header.Add("Authorization", r.Header.Get("Authorization"))
		}})},
		{name: "no authentication", code: "AccessDenied", req: put(buildOpts{post: func(r *http.Request) { r.Header.Del("Authorization") }})},
		{name: "header and query authentication", code: "InvalidArgument",
			req: put(buildOpts{post: func(r *http.Request) { r.URL.RawQuery += "&X-Amz-Algorithm=" + algorithm }})},
		{name: "spaces around components", code: "", req: put(buildOpts{post: func(r *http.Request) {
			a := strings.ReplaceAll(r.Header.Get("Authorization"), ", ", " ,  ")
			r.Header.Set("Authorization", strings.Replace(a, algorithm+" ", algorithm+"   ", 1))
		}})},
		{name: "components reordered, no spaces", code: "", req: put(buildOpts{post: func(r *http.Request) {
			parts := strings.Split(strings.TrimPrefix(r.Header.Get("Authorization"), algorithm+" "), ", ")
			r.Header.Set("Authorization", algorithm+" "+parts[2]+","+parts[0]+","+parts[1])
		}})},
	}
}

func presignCases() []negCase {
	presigned := func(expires time.Duration, post func(r *http.Request)) func(t testing.TB) *http.Request {
		return func(t testing.TB) *http.Request {
			r := newClientRequest(t, "GET", objectURL("dir/key", "x-id=GetObject"), nil)
			s := wire(t, awsPresign(t, r, expires, signedAt, nil))
			if post != nil {
				post(s)
			}
			return s
		}
	}
	return []negCase{
		{name: "presigned, good", code: "", req: presigned(time.Hour, nil), clock: signedAt.Add(59 * time.Minute)},
		{name: "presigned, expired", code: "AccessDenied", req: presigned(time.Hour, nil), clock: signedAt.Add(61 * time.Minute)},
		{name: "presigned, not yet valid", code: "AccessDenied", req: presigned(time.Hour, nil), clock: signedAt.Add(-16 * time.Minute)},
		{name: "presigned, expiry over 7 days", code: "AuthorizationQueryParametersError", req: presigned(8*24*time.Hour, nil)},
		{name: "presigned, negative expiry", code: "AuthorizationQueryParametersError",
			req: presigned(time.Hour, func(r *http.Request) {
				r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "X-Amz-Expires=3600", "X-Amz-Expires=-1", 1)
			})},
		{name: "presigned, tampered expiry", code: "SignatureDoesNotMatch", clock: signedAt.Add(2 * time.Hour),
			req: presigned(time.Hour, func(r *http.Request) {
				r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "X-Amz-Expires=3600", "X-Amz-Expires=86400", 1)
			})},
		{name: "presigned, tampered query", code: "SignatureDoesNotMatch",
			req: presigned(time.Hour, func(r *http.Request) { r.URL.RawQuery += "&response-content-type=text%2Fhtml" })},
		{name: "presigned, missing parameter", code: "AuthorizationQueryParametersError",
			req: presigned(time.Hour, func(r *http.Request) {
				q := r.URL.Query()
				q.Del("X-Amz-SignedHeaders")
				r.URL.RawQuery = q.Encode()
			})},
		{name: "presigned, region mismatch", code: "AuthorizationQueryParametersError", req: presigned(time.Hour, nil),
			opts: func(o *Options) { o.Region = "eu-west-1" }},
		{name: "presigned, unsigned x-amz header", code: "AccessDenied", req: presigned(time.Hour, setHeader("X-Amz-Meta-A", "b"))},
	}
}

func TestNegative(t *testing.T) {
	for _, group := range [][]negCase{headerCases(), authCases(), presignCases(), streamingCases()} {
		for _, tc := range group {
			t.Run(tc.name, func(t *testing.T) {
				clock := tc.clock
				if clock.IsZero() {
					clock = signedAt.Add(time.Minute)
				}
				opts := at(clock)
				if tc.opts != nil {
					tc.opts(&opts)
				}
				req, err := Verify(context.Background(), tc.req(t), lookupBroken, opts)
				if err == nil {
					_, err = readAllChecked(t, req)
				}
				wantCode(t, err, tc.code)
				if err != nil {
					var e *Error
					errors.As(err, &e)
					if e.Status != statusOf[e.Code] {
						t.Errorf("%s: status %d, want %d", e.Code, e.Status, statusOf[e.Code])
					}
				}
			})
		}
	}
}

// lookupBroken is lookupTestKeys, failing for the key id BROKEN.
func lookupBroken(ctx context.Context, id string) (string, error) {
	if id == "BROKEN" {
		return "", errors.New("the key store is down")
	}
	return lookupTestKeys(ctx, id)
}

func TestErrorDetails(t *testing.T) {
	opts := at(signedAt)
	opts.Region = "eu-west-1"
	_, err := Verify(context.Background(), buildPut(t, buildOpts{}), lookupTestKeys, opts)
	var e *Error
	if !errors.As(err, &e) || e.Details["Region"] != "eu-west-1" ||
		!strings.Contains(e.Message, "the region 'us-east-1' is wrong; expecting 'eu-west-1'") {
		t.Errorf("region mismatch: %#v", err)
	}
	_, err = Verify(context.Background(), buildPut(t, buildOpts{post: setHeader("X-Amz-Meta-Owner", "bob")}), lookupTestKeys, at(signedAt))
	if !errors.As(err, &e) || !strings.Contains(e.Details["CanonicalRequest"], "x-amz-meta-owner:bob\n") ||
		!strings.HasPrefix(e.Details["StringToSign"], algorithm+"\n20260102T030405Z\n") {
		t.Errorf("signature mismatch details: %#v", e.Details)
	}
	if !errors.Is(err, &Error{Code: "SignatureDoesNotMatch"}) || !strings.HasPrefix(err.Error(), "sigv4: SignatureDoesNotMatch: ") {
		t.Errorf("errors.Is / Error(): %v", err)
	}
	_, err = Verify(context.Background(), buildPut(t, buildOpts{post: setHeader("X-Amz-Meta-Z", "1")}), lookupTestKeys, at(signedAt))
	if !errors.As(err, &e) || e.Details["HeadersNotSigned"] != "x-amz-meta-z" {
		t.Errorf("unsigned header details: %#v", err)
	}
	_, err = Verify(context.Background(), buildPut(t, buildOpts{creds: aws.Credentials{AccessKeyID: "BROKEN", SecretAccessKey: "x"}}), lookupBroken, at(signedAt))
	if !errors.As(err, &e) || e.Err == nil || !strings.Contains(err.Error(), "the key store is down") {
		t.Errorf("lookup failure: %#v", err)
	}
}

// streamingCases are the aws-chunked failures, with minio-go's signers.
func streamingCases() []negCase {
	body := randomBytes(150_000, 7)
	stream := func(trailer http.Header, edit func(b []byte) []byte) func(t testing.TB) *http.Request {
		return func(t testing.TB) *http.Request {
			r := newClientRequest(t, "PUT", objectURL("big", ""), body)
			r.Trailer = trailer
			r = signer.StreamingSignV4(r, testKeyID, testSecret, "", "us-east-1", int64(len(body)), signedAt, sha256Hasher{sha256.New()})
			return serverRequest(t, edit(wireBytes(t, r)))
		}
	}
	replaceNth := func(old, new string, n int) func(b []byte) []byte {
		return func(b []byte) []byte {
			parts := bytes.SplitAfterN(b, []byte(old), n+1)
			last := parts[n-1]
			parts[n-1] = append(bytes.Clone(last[:len(last)-len(old)]), new...)
			return bytes.Join(parts, nil)
		}
	}
	crc := http.Header{"X-Amz-Checksum-Crc32": {crc32Of(body)}}
	wrongCRC := http.Header{"X-Amz-Checksum-Crc32": {crc32Of(body[1:])}}
	return []negCase{
		{name: "streaming, good", code: "", req: stream(nil, func(b []byte) []byte { return b })},
		{name: "streaming, bad chunk signature", code: "SignatureDoesNotMatch", req: stream(nil, replaceNth(";chunk-signature=", ";chunk-signature=0", 2))},
		{name: "streaming, bad final chunk signature", code: "SignatureDoesNotMatch", req: stream(nil, replaceNth(";chunk-signature=", ";chunk-signature=0", 4))},
		{name: "streaming, tampered chunk", code: "SignatureDoesNotMatch", req: stream(nil, flipBodyByte)},
		{name: "streaming, truncated", code: "IncompleteBody", req: stream(nil, func(b []byte) []byte { return b[:len(b)-200] })},
		{name: "streaming, bad framing", code: "InvalidRequest", req: stream(nil, replaceNth(";chunk-signature=", "x;chunk-signature=", 1))},
		{name: "streaming trailer, good", code: "", req: stream(crc, func(b []byte) []byte { return b })},
		{name: "streaming trailer, tampered trailer", code: "SignatureDoesNotMatch",
			req: stream(crc, replaceNth(crc.Get("X-Amz-Checksum-Crc32"), crc32Of(body[1:]), 1))},
		{name: "streaming trailer, wrong checksum", code: "BadDigest", req: stream(wrongCRC, func(b []byte) []byte { return b })},
		{name: "unsigned trailer, wrong checksum", code: "BadDigest", req: func(t testing.TB) *http.Request {
			r := newClientRequest(t, "PUT", objectURL("big", ""), body)
			r.Header.Set("X-Amz-Content-Sha256", streamingUnsignedTrailer)
			return wire(t, signer.SignV4Trailer(*r, testKeyID, testSecret, "", "us-east-1", http.Header{"x-amz-checksum-crc32": {crc32Of(body[1:])}}))
		}, clock: time.Now()},
	}
}

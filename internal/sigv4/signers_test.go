package sigv4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"hash/crc32"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/encoding/httpbinding"
	"github.com/minio/minio-go/v7/pkg/signer"
)

// Round trips through the signers of aws-sdk-go-v2 and minio-go: each signs
// a client request, the request goes through its HTTP/1.1 wire form, and
// Verify must accept it and yield the original body.

const testHost = "larder.test:9000"

// Object keys S3 allows and naive canonicalisation gets wrong.
var unusualKeys = []string{
	"plain.txt",
	`a b/c+d&e=é"f`,
	"x//y",
	"./z",
	`&+-é"/ x`,
	"../dots/./and/..",
	"~tilde*star!'()$,;:@[]",
	"%41 percent %2F",
	"日本語/キー",
	"trailing/",
}

// objectURL is the path-style URL of key, encoded as the S3 SDKs do.
func objectURL(key, rawQuery string) *url.URL {
	return &url.URL{
		Scheme:   "http",
		Host:     testHost,
		Path:     "/bucket/" + key,
		RawPath:  "/bucket/" + httpbinding.EscapePath(key, false),
		RawQuery: rawQuery,
	}
}

func newClientRequest(t testing.TB, method string, u *url.URL, body []byte) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, u.String(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		r.Body, r.ContentLength = http.NoBody, 0
	}
	return r
}

// wireBytes is r as it goes over HTTP/1.1.
func wireBytes(t testing.TB, r *http.Request) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := r.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// serverRequest parses wire bytes the way net/http's server does.
func serverRequest(t testing.TB, b []byte) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func wire(t testing.TB, r *http.Request) *http.Request {
	t.Helper()
	return serverRequest(t, wireBytes(t, r))
}

func sha256Of(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func crc32Of(b []byte) string {
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc32.ChecksumIEEE(b))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

var testCreds = aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret}

// awsSign signs r with aws-sdk-go-v2 as its S3 client does.
func awsSign(t testing.TB, r *http.Request, payloadHash string, now time.Time) {
	t.Helper()
	if payloadHash != "" {
		r.Header.Set("X-Amz-Content-Sha256", payloadHash)
	} else {
		payloadHash = emptySHA256
	}
	s := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err := s.SignHTTP(context.Background(), testCreds, r, payloadHash, "s3", "us-east-1", now); err != nil {
		t.Fatal(err)
	}
}

// awsPresign presigns r with aws-sdk-go-v2 and returns the request a client
// of the URL sends.
func awsPresign(t testing.TB, r *http.Request, expires time.Duration, now time.Time, body []byte) *http.Request {
	t.Helper()
	q := r.URL.Query()
	q.Set("X-Amz-Expires", strconv.FormatInt(int64(expires/time.Second), 10))
	r.URL.RawQuery = q.Encode()
	s := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	signed, headers, err := s.PresignHTTP(context.Background(), testCreds, r, unsignedPayload, "s3", "us-east-1", now)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	out := newClientRequest(t, r.Method, u, body)
	for k, v := range headers {
		if k != "Host" {
			out.Header[k] = v
		}
	}
	return out
}

// sha256Hasher adapts crypto/sha256 to the hasher minio-go's streaming
// signer takes.
type sha256Hasher struct{ hash.Hash }

func (sha256Hasher) Close() {}

type signCase struct {
	name string
	// sign returns the client request for method, u and body, signed.
	sign func(t testing.TB, method string, u *url.URL, body []byte) *http.Request
	// realClock is set for signers that read time.Now themselves.
	realClock bool
	mode      string
}

var signedAt = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func signCases() []signCase {
	return []signCase{
		{name: "aws/signed", mode: "hex", sign: func(t testing.TB, m string, u *url.URL, b []byte) *http.Request {
			r := newClientRequest(t, m, u, b)
			awsSign(t, r, sha256Of(b), signedAt)
			return r
		}},
		{name: "aws/unsigned", mode: unsignedPayload, sign: func(t testing.TB, m string, u *url.URL, b []byte) *http.Request {
			r := newClientRequest(t, m, u, b)
			r.Header.Set("X-Amz-Checksum-Crc32", crc32Of(b))
			awsSign(t, r, unsignedPayload, signedAt)
			return r
		}},
		{name: "aws/no-content-sha256", mode: "", sign: func(t testing.TB, m string, u *url.URL, b []byte) *http.Request {
			r := newClientRequest(t, m, u, b)
			awsSign(t, r, "", signedAt)
			return r
		}},
		{name: "aws/presigned", mode: unsignedPayload, sign: func(t testing.TB, m string, u *url.URL, b []byte) *http.Request {
			r := newClientRequest(t, m, u, nil)
			r.Header.Set("X-Amz-Checksum-Mode", "ENABLED") // hoisted into the query
			return awsPresign(t, r, time.Hour, signedAt, b)
		}},
		{name: "minio/signed", mode: "hex", realClock: true, sign: func(t testing.TB, m string, u *url.URL, b []byte) *http.Request {
			r := newClientRequest(t, m, u, b)
			r.Header.Set("X-Amz-Content-Sha256", sha256Of(b))
			return signer.SignV4(*r, testKeyID, testSecret, "", "us-east-1")
		}},
		{name: "minio/unsigned", mode: unsignedPayload, realClock: true, sign: func(t testing.TB, m string, u *url.URL, b []byte) *http.Request {
			r := newClientRequest(t, m, u, b)
			r.Header.Set("X-Amz-Content-Sha256", unsignedPayload)
			return signer.SignV4(*r, testKeyID, testSecret, "", "us-east-1")
		}},
		{name: "minio/presigned", mode: unsignedPayload, realClock: true, sign: func(t testing.TB, m string, u *url.URL, b []byte) *http.Request {
			r := newClientRequest(t, m, u, nil)
			p := signer.PreSignV4(*r, testKeyID, testSecret, "", "us-east-1", 3600)
			return newClientRequest(t, m, p.URL, b)
		}},
		{name: "minio/streaming", mode: streamingSigned, sign: func(t testing.TB, m string, u *url.URL, b []byte) *http.Request {
			r := newClientRequest(t, m, u, b)
			return signer.StreamingSignV4(r, testKeyID, testSecret, "", "us-east-1", int64(len(b)), signedAt, sha256Hasher{sha256.New()})
		}},
		{name: "minio/streaming-trailer", mode: streamingSignedTrailer, sign: func(t testing.TB, m string, u *url.URL, b []byte) *http.Request {
			r := newClientRequest(t, m, u, b)
			r.Trailer = http.Header{"X-Amz-Checksum-Crc32": {crc32Of(b)}}
			return signer.StreamingSignV4(r, testKeyID, testSecret, "", "us-east-1", int64(len(b)), signedAt, sha256Hasher{sha256.New()})
		}},
		{name: "minio/unsigned-trailer", mode: streamingUnsignedTrailer, realClock: true, sign: func(t testing.TB, m string, u *url.URL, b []byte) *http.Request {
			r := newClientRequest(t, m, u, b)
			r.Header.Set("X-Amz-Content-Sha256", streamingUnsignedTrailer)
			return signer.SignV4Trailer(*r, testKeyID, testSecret, "", "us-east-1",
				http.Header{"x-amz-checksum-crc32": {crc32Of(b)}})
		}},
	}
}

func (c signCase) opts() Options {
	if c.realClock {
		return Options{Region: "us-east-1"}
	}
	o := at(signedAt.Add(time.Minute))
	o.Region = "us-east-1"
	return o
}

func TestSignersRoundTrip(t *testing.T) {
	bodies := map[string][]byte{
		"empty": {},
		"small": []byte("hello, larder"),
		"200k":  randomBytes(200_000, 1),
	}
	for _, c := range signCases() {
		for name, body := range bodies {
			for _, key := range unusualKeys {
				r := wire(t, c.sign(t, "PUT", objectURL(key, "x-id=PutObject&tagging"), body))
				req, got, err := verifyAndRead(t, r, c.opts())
				if err != nil {
					t.Fatalf("%s, %s body, key %q: %v", c.name, name, key, err)
				}
				if !bytes.Equal(got, body) {
					t.Fatalf("%s, %s body, key %q: body differs (%d bytes, want %d)", c.name, name, key, len(got), len(body))
				}
				if req.Length != int64(len(body)) && !(c.name == "aws/presigned" && req.Length == -1) {
					t.Errorf("%s: Length = %d, want %d", c.name, req.Length, len(body))
				}
				checkMode(t, c, req)
			}
		}
	}
}

func checkMode(t *testing.T, c signCase, req *Request) {
	t.Helper()
	switch {
	case c.mode == "hex" && len(req.ContentSHA256) != 64, c.mode != "hex" && req.ContentSHA256 != c.mode:
		t.Errorf("%s: ContentSHA256 = %q, want %s", c.name, req.ContentSHA256, c.mode)
	case strings.HasPrefix(c.name, "minio/stream") && req.ContentEncoding != "":
		t.Errorf("%s: ContentEncoding = %q, want aws-chunked removed", c.name, req.ContentEncoding)
	}
}

// GETs with queries whose names and values need encoding.
func TestSignersQueries(t *testing.T) {
	queries := []url.Values{
		{"list-type": {"2"}, "prefix": {`a b/c+d&e=é"f`}, "delimiter": {"/"}, "encoding-type": {"url"}},
		{"prefix": {"~*'()!"}, "marker": {"x y"}, "max-keys": {"1000"}},
		{"uploads": {""}},
		{"versions": {""}, "key-marker": {"%2F"}},
	}
	for _, c := range signCases() {
		if strings.Contains(c.name, "stream") || strings.Contains(c.name, "trailer") {
			continue
		}
		for _, q := range queries {
			u := objectURL("", q.Encode())
			r := wire(t, c.sign(t, "GET", u, nil))
			if _, _, err := verifyAndRead(t, r, c.opts()); err != nil {
				t.Fatalf("%s, query %s: %v", c.name, q.Encode(), err)
			}
		}
	}
}

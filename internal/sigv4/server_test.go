package sigv4

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/minio/minio-go/v7"
	miniocreds "github.com/minio/minio-go/v7/pkg/credentials"
)

// objectServer is a minimal S3 object store whose handler authenticates
// every request with Verify and drains its Body: just enough of S3 for the
// real clients to PUT and GET objects.
type objectServer struct {
	t    testing.TB
	mu   sync.Mutex
	objs map[string][]byte
	seen []seenRequest
}

// seenRequest is what the server observed of one request.
type seenRequest struct {
	method, path, mode, contentEncoding string
	presigned                           bool
	checksums                           map[string]string
	err                                 error
}

func newObjectServer(t testing.TB, tls bool) (*objectServer, *httptest.Server) {
	s := &objectServer{t: t, objs: map[string][]byte{}}
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(s)
	} else {
		srv = httptest.NewServer(s)
	}
	t.Cleanup(srv.Close)
	return s, srv
}

// ServeHTTP implements http.Handler. It is deliberately not a ServeMux,
// which would clean paths such as "x//y".
func (s *objectServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	seen := seenRequest{method: r.Method, path: r.URL.Path}
	req, err := Verify(r.Context(), r, lookupTestKeys, Options{Region: "", MaxSkew: 15 * time.Minute})
	var data []byte
	if err == nil {
		seen.mode, seen.contentEncoding, seen.presigned = req.ContentSHA256, req.ContentEncoding, req.Presigned
		data, err = io.ReadAll(req.Body)
		seen.checksums = req.Checksums()
	}
	seen.err = err
	s.mu.Lock()
	s.seen = append(s.seen, seen)
	s.mu.Unlock()
	if err != nil {
		writeS3Error(w, err)
		return
	}
	s.serveObject(w, r, data, seen.checksums)
}

func (s *objectServer) serveObject(w http.ResponseWriter, r *http.Request, data []byte, sums map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		s.objs[r.URL.Path] = data
		for k, v := range sums {
			w.Header().Set(k, v)
		}
		w.Header().Set("ETag", etag(data))
	case http.MethodGet, http.MethodHead:
		obj, ok := s.objs[r.URL.Path]
		if !ok {
			writeS3Error(w, &Error{Code: "NoSuchKey", Message: "The specified key does not exist.", Status: http.StatusNotFound})
			return
		}
		h := w.Header()
		h.Set("ETag", etag(obj))
		h.Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.Itoa(len(obj)))
		if r.Method == http.MethodGet {
			w.Write(obj)
		}
	}
	// Anything else (POST ?uploads, DELETE) is accepted and ignored.
}

func etag(b []byte) string {
	sum := md5.Sum(b)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

func writeS3Error(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: "InternalError", Message: err.Error(), Status: http.StatusInternalServerError}
	}
	var msg bytes.Buffer
	xml.EscapeText(&msg, []byte(e.Message))
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(e.Status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n<Error><Code>%s</Code><Message>%s</Message>", e.Code, msg.String())
	if region := e.Details["Region"]; region != "" {
		fmt.Fprintf(w, "<Region>%s</Region>", region)
	}
	fmt.Fprint(w, "<RequestId>test</RequestId></Error>")
}

// requests returns and forgets what the server has seen.
func (s *objectServer) requests() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.seen
	s.seen = nil
	return out
}

// checkSeen fails t for every request the server refused, and logs the
// payload modes the clients used.
func (s *objectServer) checkSeen(t *testing.T, client string) []seenRequest {
	t.Helper()
	seen := s.requests()
	for _, r := range seen {
		if r.err != nil {
			t.Errorf("%s: server refused %s %s: %v", client, r.method, r.path, r.err)
		}
	}
	return seen
}

func logModes(t *testing.T, client string, seen []seenRequest) {
	t.Helper()
	for _, r := range seen {
		if r.method == http.MethodPut {
			t.Logf("%s: PUT %q mode=%s content-encoding=%q presigned=%v checksums=%v",
				client, r.path, r.mode, r.contentEncoding, r.presigned, r.checksums)
		}
	}
}

var serverKeys = []string{"plain.txt", `a b/c+d&e=é"f`, "x//y", "./z", `&+-é"/ x`, "nar/0123abcd.nar.xz"}

func awsClient(t *testing.T, srv *httptest.Server) *s3.Client {
	t.Setenv("AWS_CA_BUNDLE", "")
	return s3.New(s3.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(testKeyID, testSecret, ""),
		BaseEndpoint: aws.String(srv.URL),
		UsePathStyle: true,
		HTTPClient:   srv.Client(),
		// What config.LoadDefaultConfig resolves to by default, and so what
		// awscli and most applications send.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
	})
}

// sdkAlgorithms cycles through the flexible checksum algorithms; "" is the
// SDK's default (CRC32).
var sdkAlgorithms = []types.ChecksumAlgorithm{"", types.ChecksumAlgorithmCrc32c,
	types.ChecksumAlgorithmCrc64nvme, types.ChecksumAlgorithmSha1, types.ChecksumAlgorithmSha256}

func TestServerAWSSDK(t *testing.T) {
	for _, tls := range []bool{false, true} {
		name := map[bool]string{false: "http", true: "https"}[tls]
		t.Run(name, func(t *testing.T) {
			s, srv := newObjectServer(t, tls)
			client := awsClient(t, srv)
			ctx := context.Background()
			for i, key := range serverKeys {
				body := randomBytes(1000+i*70_000, uint64(i))
				_, err := client.PutObject(ctx, &s3.PutObjectInput{
					Bucket: aws.String("bucket"), Key: aws.String(key), Body: bytes.NewReader(body),
					ChecksumAlgorithm: sdkAlgorithms[i%len(sdkAlgorithms)],
				})
				if err != nil {
					t.Fatalf("PutObject %q: %v", key, err)
				}
				out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bucket"), Key: aws.String(key)})
				if err != nil {
					t.Fatalf("GetObject %q: %v", key, err)
				}
				got, err := io.ReadAll(out.Body)
				out.Body.Close()
				if err != nil || !bytes.Equal(got, body) {
					t.Fatalf("GetObject %q: %d bytes, err %v; want %d bytes", key, len(got), err, len(body))
				}
				if stored := s.objs["/bucket/"+key]; !bytes.Equal(stored, body) {
					t.Fatalf("server stored %d bytes for %q, want %d", len(stored), key, len(body))
				}
			}
			seen := s.checkSeen(t, "aws-sdk-go-v2")
			logModes(t, "aws-sdk-go-v2/"+name, seen)
			checkChecksums(t, seen)
			checkPresignAWS(t, s, srv, client)
		})
	}
}

// checkChecksums fails t unless every PUT carried a flexible checksum that
// Verify computed.
func checkChecksums(t *testing.T, seen []seenRequest) {
	t.Helper()
	for _, r := range seen {
		if r.method == http.MethodPut && len(r.checksums) != 1 {
			t.Errorf("PUT %s: checksums %v, want one", r.path, r.checksums)
		}
	}
}

func checkPresignAWS(t *testing.T, s *objectServer, srv *httptest.Server, client *s3.Client) {
	ctx := context.Background()
	pc := s3.NewPresignClient(client, s3.WithPresignExpires(10*time.Minute))
	for i, key := range serverKeys {
		body := randomBytes(500+i, uint64(100+i))
		put, err := pc.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bucket"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		doPresigned(t, srv, put.Method, put.URL, put.SignedHeader, body)
		get, err := pc.PresignGetObject(ctx, &s3.GetObjectInput{
			Bucket: aws.String("bucket"), Key: aws.String(key), ChecksumMode: "ENABLED",
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := doPresigned(t, srv, get.Method, get.URL, get.SignedHeader, nil); !bytes.Equal(got, body) {
			t.Fatalf("presigned GET %q: %d bytes, want %d", key, len(got), len(body))
		}
	}
	seen := s.checkSeen(t, "aws presign")
	for _, r := range seen {
		if !r.presigned {
			t.Errorf("presigned %s %s not seen as presigned", r.method, r.path)
		}
	}
}

func doPresigned(t *testing.T, srv *httptest.Server, method, u string, headers http.Header, body []byte) []byte {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if !strings.EqualFold(k, "Host") {
			req.Header[k] = v
		}
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("presigned %s %s: %s: %s", method, u, resp.Status, got)
	}
	return got
}

func minioClient(t *testing.T, srv *httptest.Server, trailers bool) *minio.Client {
	tls := strings.HasPrefix(srv.URL, "https://")
	c, err := minio.New(strings.TrimPrefix(strings.TrimPrefix(srv.URL, "https://"), "http://"), &minio.Options{
		Creds:           miniocreds.NewStaticV4(testKeyID, testSecret, ""),
		Secure:          tls,
		Transport:       srv.Client().Transport,
		Region:          "us-east-1",
		BucketLookup:    minio.BucketLookupPath,
		TrailingHeaders: trailers,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestServerMinio(t *testing.T) {
	for _, tc := range []struct {
		name          string
		tls, trailers bool
	}{{"http", false, false}, {"https", true, false}, {"http/trailers", false, true}, {"https/trailers", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			s, srv := newObjectServer(t, tc.tls)
			client := minioClient(t, srv, tc.trailers)
			ctx := context.Background()
			for i, key := range serverKeys {
				body := randomBytes(100+i*50_000, uint64(200+i))
				_, err := client.PutObject(ctx, "bucket", key, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{})
				if err != nil {
					t.Fatalf("PutObject %q: %v", key, err)
				}
				obj, err := client.GetObject(ctx, "bucket", key, minio.GetObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(obj)
				obj.Close()
				if err != nil || !bytes.Equal(got, body) {
					t.Fatalf("GetObject %q: %d bytes, err %v; want %d", key, len(got), err, len(body))
				}
			}
			seen := s.checkSeen(t, "minio-go")
			logModes(t, "minio-go/"+tc.name, seen[:1])
			checkPresignMinio(t, s, srv, client)
		})
	}
}

func checkPresignMinio(t *testing.T, s *objectServer, srv *httptest.Server, client *minio.Client) {
	ctx := context.Background()
	for i, key := range serverKeys {
		body := randomBytes(300+i, uint64(300+i))
		put, err := client.PresignedPutObject(ctx, "bucket", key, 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		doPresigned(t, srv, http.MethodPut, put.String(), nil, body)
		get, err := client.PresignedGetObject(ctx, "bucket", key, 5*time.Minute, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := doPresigned(t, srv, http.MethodGet, get.String(), nil, nil); !bytes.Equal(got, body) {
			t.Fatalf("presigned GET %q: %d bytes, want %d", key, len(got), len(body))
		}
	}
	s.checkSeen(t, "minio presign")
}

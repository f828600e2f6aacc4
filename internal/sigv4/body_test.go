package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/minio/minio-go/v7/pkg/signer"
)

func readAllChecked(t testing.TB, req *Request) ([]byte, error) {
	t.Helper()
	defer req.Body.Close()
	return io.ReadAll(req.Body)
}

// bodyCase is a request whose payload is (good) or is not acceptable.
type bodyCase struct {
	name string
	req  func(t testing.TB) *http.Request
	good bool
	now  bool // signed with the real clock
}

func (c bodyCase) opts() Options {
	if c.now {
		return Options{}
	}
	return at(signedAt)
}

func bodyCases() []bodyCase {
	big := randomBytes(150_000, 11)
	streaming := func(trailer http.Header, edit func([]byte) []byte) func(t testing.TB) *http.Request {
		return func(t testing.TB) *http.Request {
			r := newClientRequest(t, "PUT", objectURL("big", ""), big)
			r.Trailer = trailer
			r = signer.StreamingSignV4(r, testKeyID, testSecret, "", "us-east-1", int64(len(big)), signedAt, sha256Hasher{sha256.New()})
			return serverRequest(t, edit(wireBytes(t, r)))
		}
	}
	unsignedTrailer := func(crc string, edit func([]byte) []byte) func(t testing.TB) *http.Request {
		return func(t testing.TB) *http.Request {
			r := newClientRequest(t, "PUT", objectURL("big", ""), big)
			r.Header.Set("X-Amz-Content-Sha256", streamingUnsignedTrailer)
			r = signer.SignV4Trailer(*r, testKeyID, testSecret, "", "us-east-1", http.Header{"x-amz-checksum-crc32": {crc}})
			return serverRequest(t, edit(wireBytes(t, r)))
		}
	}
	same := func(b []byte) []byte { return b }
	lastSig := func(b []byte) []byte {
		i := bytes.LastIndex(b, []byte(";chunk-signature=")) + len(";chunk-signature=")
		b = bytes.Clone(b)
		b[i] ^= 1
		return b
	}
	crc := http.Header{"X-Amz-Checksum-Crc32": {crc32Of(big)}}
	return []bodyCase{
		{name: "signed payload", req: put(buildOpts{}), good: true},
		{name: "signed payload, tampered", req: put(buildOpts{wire: flipBodyByte})},
		{name: "checksum header, wrong", req: put(buildOpts{hash: unsignedPayload, pre: setHeader("X-Amz-Checksum-Crc32c", "AAAAAA==")})},
		{name: "Content-MD5, wrong", req: put(buildOpts{hash: unsignedPayload, pre: setHeader("Content-MD5", md5Base64(nil))})},
		{name: "Content-MD5, right", req: put(buildOpts{hash: unsignedPayload, pre: setHeader("Content-MD5", md5Base64(negBody))}), good: true},
		{name: "streaming", req: streaming(nil, same), good: true},
		{name: "streaming, final signature wrong", req: streaming(nil, lastSig)},
		{name: "streaming trailer", req: streaming(crc, same), good: true},
		{name: "streaming trailer, trailer tampered", req: streaming(crc, func(b []byte) []byte {
			return bytes.Replace(b, []byte(crc32Of(big)), []byte(crc32Of(nil)), 1)
		})},
		{name: "unsigned trailer", req: unsignedTrailer(crc32Of(big), same), good: true, now: true},
		{name: "unsigned trailer, wrong checksum", req: unsignedTrailer(crc32Of(big[1:]), same), now: true},
	}
}

// A consumer that reads exactly Length bytes and stops never sees a bad
// payload succeed: the final byte is withheld until every check has passed.
func TestLastBytesWithheld(t *testing.T) {
	readers := map[string]func(io.Reader) io.Reader{
		"plain":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
	}
	for _, tc := range bodyCases() {
		for rname, wrap := range readers {
			t.Run(tc.name+"/"+rname, func(t *testing.T) {
				req, err := Verify(context.Background(), tc.req(t), lookupTestKeys, tc.opts())
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if req.Length < 0 {
					t.Fatalf("Length = %d, want it known", req.Length)
				}
				buf := make([]byte, req.Length)
				n, err := io.ReadFull(wrap(req.Body), buf)
				if !tc.good {
					var e *Error
					if err == nil || !errors.As(err, &e) || int64(n) == req.Length {
						t.Fatalf("ReadFull of a bad payload: n=%d of %d, err %v; want a *Error before the last byte", n, req.Length, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("ReadFull: %v", err)
				}
				if sums := req.Checksums(); sums == nil {
					t.Error("Checksums() = nil after the whole payload was read")
				}
				if n, err := req.Body.Read(make([]byte, 8)); n != 0 || err != io.EOF {
					t.Errorf("Read after the payload = %d, %v; want 0, EOF", n, err)
				}
			})
		}
	}
}

// The error is sticky, and replaces io.EOF for a consumer reading to the end.
func TestBodyErrorIsSticky(t *testing.T) {
	req, err := Verify(context.Background(), put(buildOpts{wire: flipBodyByte})(t), lookupTestKeys, at(signedAt))
	if err != nil {
		t.Fatal(err)
	}
	_, err1 := io.ReadAll(req.Body)
	_, err2 := req.Body.Read(make([]byte, 10))
	wantCode(t, err1, "XAmzContentSHA256Mismatch")
	if err2 != err1 {
		t.Errorf("second Read error = %v, want %v", err2, err1)
	}
	if req.Checksums() != nil {
		t.Error("Checksums() after a failure should be nil")
	}
}

// Body honours the io.Reader contract, whatever the read sizes.
func TestBodyReaderContract(t *testing.T) {
	for _, tc := range bodyCases() {
		if !tc.good {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req(t)
			want, err := func() ([]byte, error) {
				req, err := Verify(context.Background(), tc.req(t), lookupTestKeys, tc.opts())
				if err != nil {
					return nil, err
				}
				return readAllChecked(t, req)
			}()
			if err != nil {
				t.Fatal(err)
			}
			req, err := Verify(context.Background(), r, lookupTestKeys, tc.opts())
			if err != nil {
				t.Fatal(err)
			}
			if err := iotest.TestReader(req.Body, want); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A body that keeps failing to make progress is refused rather than spun on.
func TestBodyNoProgress(t *testing.T) {
	r := buildPut(t, buildOpts{hash: unsignedPayload})
	r.Body = io.NopCloser(stuckReader{})
	req, err := Verify(context.Background(), r, lookupTestKeys, at(signedAt))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(req.Body)
	wantCode(t, err, "IncompleteBody")
}

type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

// A body error from the transport is classified, and kept as the cause.
func TestBodyTransportErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code string
	}{
		{io.ErrUnexpectedEOF, "IncompleteBody"},
		{&http.MaxBytesError{Limit: 10}, "EntityTooLarge"},
		{errors.New("connection reset"), "IncompleteBody"},
	} {
		r := buildPut(t, buildOpts{hash: unsignedPayload})
		r.Body = io.NopCloser(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(tc.err)))
		req, err := Verify(context.Background(), r, lookupTestKeys, at(signedAt))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(req.Body)
		wantCode(t, err, tc.code)
		if !errors.Is(err, tc.err) {
			t.Errorf("%v does not wrap %v", err, tc.err)
		}
	}
}

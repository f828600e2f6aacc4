package sigv4

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"testing"

	"github.com/minio/minio-go/v7/pkg/signer"
)

// BenchmarkVerify measures Verify and draining a 16 MiB body in each payload
// mode. The MB/s are of payload.
func BenchmarkVerify(b *testing.B) {
	body := randomBytes(16<<20, 42)
	crc := crc32Of(body)
	modes := []struct {
		name string
		opts Options
		wire func() []byte
	}{
		{"signed", at(signedAt), func() []byte {
			r := newClientRequest(b, "PUT", objectURL("nar/big.nar", ""), body)
			awsSign(b, r, sha256Of(body), signedAt)
			return wireBytes(b, r)
		}},
		{"unsigned", at(signedAt), func() []byte {
			r := newClientRequest(b, "PUT", objectURL("nar/big.nar", ""), body)
			awsSign(b, r, unsignedPayload, signedAt)
			return wireBytes(b, r)
		}},
		{"unsigned+crc32", at(signedAt), func() []byte {
			r := newClientRequest(b, "PUT", objectURL("nar/big.nar", ""), body)
			r.Header.Set("X-Amz-Checksum-Crc32", crc)
			awsSign(b, r, unsignedPayload, signedAt)
			return wireBytes(b, r)
		}},
		{"streaming-signed", at(signedAt), func() []byte {
			r := newClientRequest(b, "PUT", objectURL("nar/big.nar", ""), body)
			r = signer.StreamingSignV4(r, testKeyID, testSecret, "", "us-east-1", int64(len(body)), signedAt, sha256Hasher{sha256.New()})
			return wireBytes(b, r)
		}},
		{"streaming-unsigned-trailer", Options{}, func() []byte {
			r := newClientRequest(b, "PUT", objectURL("nar/big.nar", ""), body)
			r.Header.Set("X-Amz-Content-Sha256", streamingUnsignedTrailer)
			r = signer.SignV4Trailer(*r, testKeyID, testSecret, "", "us-east-1", http.Header{"x-amz-checksum-crc32": {crc}})
			return wireBytes(b, r)
		}},
	}
	for _, m := range modes {
		wire := m.wire()
		b.Run(m.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				req, err := Verify(context.Background(), serverRequest(b, wire), lookupTestKeys, m.opts)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, req.Body)
				if err != nil || n != int64(len(body)) {
					b.Fatalf("copied %d bytes: %v", n, err)
				}
			}
		})
	}
}

// BenchmarkVerifyHeaders measures Verify alone, for a request without a body.
func BenchmarkVerifyHeaders(b *testing.B) {
	r := newClientRequest(b, "GET", objectURL(`a b/c+d&e=é"f`, "x-id=GetObject&partNumber=1"), nil)
	r.Header.Set("Range", "bytes=0-99")
	awsSign(b, r, emptySHA256, signedAt)
	wire := wireBytes(b, r)
	opts := at(signedAt)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(context.Background(), serverRequest(b, wire), lookupTestKeys, opts); err != nil {
			b.Fatal(err)
		}
	}
}

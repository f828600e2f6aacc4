package sigv4

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzChunkedDecoder feeds arbitrary bytes to the aws-chunked decoder in
// each of its modes, and through the payload checks: it must never panic,
// never yield more bytes than it was given, fail only with *Error, and on
// success yield exactly the declared length.
func FuzzChunkedDecoder(f *testing.F) {
	// Small signed streams: the documented examples are too large for the
	// fuzzer to mutate quickly.
	f.Add(signedStream([]string{"abc", "de"}, false), uint8(1), int64(5))
	f.Add(signedStream([]string{"hello"}, true), uint8(2), int64(5))
	f.Add([]byte("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"), uint8(0), int64(5))
	f.Add([]byte("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\n\r\n\r\n"), uint8(0), int64(-1))
	f.Add([]byte("1\r\na\r\n1\r\nb\r\n0\r\n\r\n"), uint8(3), int64(2))
	f.Add([]byte("0\r\n\r\n"), uint8(3), int64(0))
	f.Add([]byte("ffffffffffffffff\r\n"), uint8(0), int64(-1))
	f.Add([]byte("3;chunk-signature=zz\r\nabc\r\n"), uint8(1), int64(3))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8, declared int64) {
		if declared < -1 {
			declared = -1
		}
		var s *chunkSigner
		var names []string
		switch mode % 4 {
		case 0:
			names = []string{"x-amz-checksum-crc32"}
		case 1, 2:
			s = fuzzSigner()
			if mode%4 == 2 {
				names = []string{"x-amz-checksum-crc32c"}
			}
		}
		cr := newChunkedReader(bytes.NewReader(data), s, mode%4 == 2, names, declared)
		p := &payload{src: cr, closer: io.NopCloser(nil), declared: declared, trailers: cr.trailerMap}
		plan := checksumPlan{}
		if len(names) > 0 {
			plan.alg, plan.inTrailer = checksumByHeader(names[0]), true
		}
		p.setHashes(plan, nil)
		out, err := io.ReadAll(io.LimitReader(p, int64(len(data))+1))
		if len(out) > len(data) {
			t.Fatalf("decoded %d bytes from %d", len(out), len(data))
		}
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("error %v is not a *Error", err)
		}
		if err == nil && declared >= 0 && int64(len(out)) != declared {
			t.Fatalf("decoded %d bytes, declared %d", len(out), declared)
		}
	})
}

func fuzzSigner() *chunkSigner {
	seed, _ := hex.DecodeString(awsChunkedExample.seed)
	return &chunkSigner{key: signingKey(exampleSecret, "20130524", "us-east-1", "s3"),
		amzDate: exampleDate, scope: "20130524/us-east-1/s3/aws4_request", prev: seed}
}

// signedStream frames chunks with fuzzSigner's signatures and, when
// withTrailer is set, a signed x-amz-checksum-crc32c trailer.
func signedStream(chunks []string, withTrailer bool) []byte {
	s := fuzzSigner()
	var b bytes.Buffer
	for _, c := range chunks {
		s.prev = s.chunk(sha256Hex(c))
		fmt.Fprintf(&b, "%x;chunk-signature=%x\r\n%s\r\n", len(c), s.prev, c)
	}
	s.prev = s.chunk(emptySHA256)
	fmt.Fprintf(&b, "0;chunk-signature=%x\r\n", s.prev)
	if withTrailer {
		h := checksumByName("CRC32C").new()
		h.Write([]byte(strings.Join(chunks, "")))
		trailer := "x-amz-checksum-crc32c:" + base64.StdEncoding.EncodeToString(h.Sum(nil))
		s.prev = s.trailer(sha256Hex(trailer + "\n"))
		fmt.Fprintf(&b, "%s\r\n%s:%x\r\n", trailer, trailerSignatureID, s.prev)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// The fuzzer's signed seeds are valid streams, so its mutations start from
// ones that pass every check.
func TestSignedStreamSeeds(t *testing.T) {
	for _, trailer := range []bool{false, true} {
		var names []string
		if trailer {
			names = []string{"x-amz-checksum-crc32c"}
		}
		cr := newChunkedReader(bytes.NewReader(signedStream([]string{"abc", "d", "efgh"}, trailer)), fuzzSigner(), trailer, names, 8)
		if out, err := io.ReadAll(cr); err != nil || string(out) != "abcdefgh" {
			t.Errorf("trailer %v: %q, %v", trailer, out, err)
		}
	}
}

// FuzzParseAuthorization checks that parsing never panics, that what it
// accepts survives being written out again, and that Verify answers any
// Authorization header with an *Error.
func FuzzParseAuthorization(f *testing.F) {
	f.Add(exampleAuth("host;range;x-amz-content-sha256;x-amz-date", "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"))
	f.Add("AWS4-HMAC-SHA256 Credential=a/20130524/r/s3/aws4_request , SignedHeaders=host,Signature=00")
	f.Add("AWS4-HMAC-SHA256 Signature=, Credential==,SignedHeaders=;;")
	f.Add("AWS4-HMAC-SHA256")
	f.Add("AWS AKID:sig")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		h, err := parseAuthorization(v)
		if err == nil {
			if h.credential == "" || h.signedHeaders == "" || h.signature == "" {
				t.Fatalf("parsed %q into %+v", v, h)
			}
			again := algorithm + " Credential=" + h.credential + ", SignedHeaders=" + h.signedHeaders + ", Signature=" + h.signature
			if h2, err := parseAuthorization(again); err != nil || h2 != h {
				t.Fatalf("%q parsed to %+v, written out and parsed again to %+v, %v", v, h, h2, err)
			}
		}
		r := httptest.NewRequest("GET", "/examplebucket/k", nil)
		r.Host = exampleHost
		r.Header.Set("X-Amz-Date", exampleDate)
		r.Header.Set("Authorization", v)
		_, err = Verify(context.Background(), r, lookupTestKeys, at(exampleTime(t)))
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Verify(%q) = %v, want a *Error", v, err)
		}
	})
}

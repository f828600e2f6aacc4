package sigv4

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The worked examples of AWS's "Signature Calculations for the Authorization
// Header" pages (single chunk, multiple chunks, trailing headers) and of the
// query-string authentication page, all signed with the example credentials
// at 20130524T000000Z.

const exampleHost = "examplebucket.s3.amazonaws.com"

func exampleAuth(signedHeaders, signature string) string {
	return algorithm + " Credential=" + exampleKeyID + "/20130524/us-east-1/s3/aws4_request,SignedHeaders=" +
		signedHeaders + ",Signature=" + signature
}

const welcome = "Welcome to Amazon S3."

// singleChunkExamples are the documented single-chunk requests, and two
// equivalent forms of them a client may send.
var singleChunkExamples = []struct {
	name, method, target, body, signedHeaders, signature string
	headers                                              map[string]string
}{
	{
		name: "GET object", method: "GET", target: "/test.txt",
		headers:       map[string]string{"Range": "bytes=0-9", "x-amz-content-sha256": emptySHA256},
		signedHeaders: "host;range;x-amz-content-sha256;x-amz-date",
		signature:     "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
	},
	{
		name: "PUT object", method: "PUT", target: "/test%24file.text", body: welcome,
		headers: map[string]string{
			"Date":                 "Fri, 24 May 2013 00:00:00 GMT",
			"x-amz-storage-class":  "REDUCED_REDUNDANCY",
			"x-amz-content-sha256": "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
		},
		signedHeaders: "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
		signature:     "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
	},
	{
		name: "PUT object, $ sent unescaped", method: "PUT", target: "/test$file.text", body: welcome,
		headers: map[string]string{
			"Date":                 "Fri, 24 May 2013 00:00:00 GMT",
			"x-amz-storage-class":  "REDUCED_REDUNDANCY",
			"x-amz-content-sha256": "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
		},
		signedHeaders: "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
		signature:     "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
	},
	{
		name: "GET bucket lifecycle", method: "GET", target: "/?lifecycle",
		headers:       map[string]string{"x-amz-content-sha256": emptySHA256},
		signedHeaders: "host;x-amz-content-sha256;x-amz-date",
		signature:     "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
	},
	{
		name: "list objects", method: "GET", target: "/?max-keys=2&prefix=J",
		headers:       map[string]string{"x-amz-content-sha256": emptySHA256},
		signedHeaders: "host;x-amz-content-sha256;x-amz-date",
		signature:     "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
	},
	{
		name: "list objects, parameters in another order", method: "GET", target: "/?prefix=J&max-keys=2",
		headers:       map[string]string{"x-amz-content-sha256": emptySHA256},
		signedHeaders: "host;x-amz-content-sha256;x-amz-date",
		signature:     "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
	},
}

func TestAWSSingleChunkExamples(t *testing.T) {
	for _, tc := range singleChunkExamples {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			r.Host = exampleHost
			r.Header.Set("x-amz-date", exampleDate)
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			r.Header.Set("Authorization", exampleAuth(tc.signedHeaders, tc.signature))
			opts := at(exampleTime(t))
			opts.Region = "us-east-1"
			req, body, err := verifyAndRead(t, r, opts)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if string(body) != tc.body {
				t.Errorf("body = %q, want %q", body, tc.body)
			}
			if req.AccessKeyID != exampleKeyID || req.Region != "us-east-1" || req.Presigned {
				t.Errorf("request = %+v", req)
			}
			if sums := req.Checksums(); len(sums) != 0 {
				t.Errorf("Checksums() = %v, want none", sums)
			}
		})
	}
}

// The documented canonical request and string to sign of the GET object
// example.
func TestAWSExampleCanonicalRequest(t *testing.T) {
	r := httptest.NewRequest("GET", "/test.txt", nil)
	r.Host = exampleHost
	r.Header.Set("Range", "bytes=0-9")
	r.Header.Set("x-amz-content-sha256", emptySHA256)
	r.Header.Set("x-amz-date", exampleDate)
	signed := []string{"host", "range", "x-amz-content-sha256", "x-amz-date"}
	got := canonicalRequest(r, canonicalURI(r), "", signed, strings.Join(signed, ";"), emptySHA256)
	want := "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n" +
		"x-amz-content-sha256:" + emptySHA256 + "\nx-amz-date:20130524T000000Z\n\n" +
		"host;range;x-amz-content-sha256;x-amz-date\n" + emptySHA256
	if got != want {
		t.Fatalf("canonical request:\n%s\nwant:\n%s", got, want)
	}
	sts := stringToSign(exampleDate, "20130524/us-east-1/s3/aws4_request", got)
	wantSTS := "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n" +
		"7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
	if sts != wantSTS {
		t.Fatalf("string to sign:\n%s\nwant:\n%s", sts, wantSTS)
	}
}

func TestAWSPresignedExample(t *testing.T) {
	const target = "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256" +
		"&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request" +
		"&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host" +
		"&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
	r := httptest.NewRequest("GET", target, nil)
	r.Host = exampleHost
	if !IsSigned(r) {
		t.Fatal("IsSigned = false for a presigned URL")
	}
	req, _, err := verifyAndRead(t, r, at(exampleTime(t).Add(3600e9)))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !req.Presigned || req.ContentSHA256 != unsignedPayload {
		t.Errorf("request = %+v", req)
	}
	// A day and a second later the URL has expired.
	_, err = Verify(context.Background(), r, lookupTestKeys, at(exampleTime(t).Add(86401e9)))
	wantCode(t, err, "AccessDenied")
}

// awsStreamingExample is one of the documented aws-chunked uploads: 66560
// bytes of 'a' as a 65536-byte chunk, a 1024-byte chunk and the final one.
type awsStreamingExample struct {
	mode, signedHeaders, seed string
	chunkSigs                 [3]string
	trailer, trailerSig       string
}

var (
	awsChunkedExample = awsStreamingExample{
		mode:          streamingSigned,
		signedHeaders: "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
		seed:          "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
		chunkSigs: [3]string{
			"ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
			"0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
			"b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
		},
	}
	awsTrailerExample = awsStreamingExample{
		mode:          streamingSignedTrailer,
		signedHeaders: "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
		seed:          "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
		chunkSigs: [3]string{
			"b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
			"1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
			"2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
		},
		trailer:    "x-amz-checksum-crc32c:sOO8/Q==",
		trailerSig: "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435",
	}
	exampleChunk1 = strings.Repeat("a", 65536)
	exampleChunk2 = strings.Repeat("a", 1024)
)

func (e awsStreamingExample) body() string {
	b := "10000;chunk-signature=" + e.chunkSigs[0] + "\r\n" + exampleChunk1 + "\r\n" +
		"400;chunk-signature=" + e.chunkSigs[1] + "\r\n" + exampleChunk2 + "\r\n" +
		"0;chunk-signature=" + e.chunkSigs[2] + "\r\n"
	if e.trailer != "" {
		b += e.trailer + "\r\n" + trailerSignatureID + ":" + e.trailerSig + "\r\n"
	}
	return b + "\r\n"
}

func (e awsStreamingExample) request(body string) *http.Request {
	r := httptest.NewRequest("PUT", "/examplebucket/chunkObject.txt", strings.NewReader(body))
	r.Host = "s3.amazonaws.com"
	r.Header.Set("x-amz-date", exampleDate)
	r.Header.Set("x-amz-storage-class", "REDUCED_REDUNDANCY")
	r.Header.Set("x-amz-content-sha256", e.mode)
	r.Header.Set("Content-Encoding", "aws-chunked")
	r.Header.Set("x-amz-decoded-content-length", "66560")
	r.Header.Set("Content-Length", "66824")
	if e.trailer != "" {
		r.Header.Set("x-amz-trailer", "x-amz-checksum-crc32c")
	}
	r.Header.Set("Authorization", algorithm+" Credential="+exampleKeyID+"/20130524/us-east-1/s3/aws4_request, "+
		"SignedHeaders="+e.signedHeaders+", Signature="+e.seed)
	return r
}

func TestAWSChunkedExamples(t *testing.T) {
	for _, e := range []awsStreamingExample{awsChunkedExample, awsTrailerExample} {
		t.Run(e.mode, func(t *testing.T) {
			req, body, err := verifyAndRead(t, e.request(e.body()), at(exampleTime(t)))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !bytes.Equal(body, []byte(exampleChunk1+exampleChunk2)) {
				t.Errorf("decoded %d bytes, want 66560 bytes of 'a'", len(body))
			}
			if req.Length != 66560 || req.ContentEncoding != "" {
				t.Errorf("Length = %d, ContentEncoding = %q", req.Length, req.ContentEncoding)
			}
			if e.trailer != "" {
				if got := req.Checksums()["x-amz-checksum-crc32c"]; got != "sOO8/Q==" {
					t.Errorf("crc32c = %q, want sOO8/Q==", got)
				}
			}
		})
	}
}

// Every way of altering the documented chunked bodies is refused.
func TestAWSChunkedExamplesTampered(t *testing.T) {
	e, tr := awsChunkedExample, awsTrailerExample
	good, goodTrailer := e.body(), tr.body()
	cases := []struct {
		name  string
		ex    awsStreamingExample
		body  string
		code  string
		setup func(r *http.Request)
	}{
		{"data byte", e, strings.Replace(good, "a\r\n400;", "b\r\n400;", 1), "SignatureDoesNotMatch", nil},
		{"chunk signature", e, strings.Replace(good, e.chunkSigs[1], strings.Repeat("0", 64), 1), "SignatureDoesNotMatch", nil},
		{"chunk signature missing", e, strings.Replace(good, "400;chunk-signature="+e.chunkSigs[1], "400", 1), "SignatureDoesNotMatch", nil},
		{"final signature", e, strings.Replace(good, e.chunkSigs[2], e.chunkSigs[1], 1), "SignatureDoesNotMatch", nil},
		{"chunks swapped", e, "400;chunk-signature=" + e.chunkSigs[1] + "\r\n" + exampleChunk2 + "\r\n" +
			"10000;chunk-signature=" + e.chunkSigs[0] + "\r\n" + exampleChunk1 + "\r\n" +
			"0;chunk-signature=" + e.chunkSigs[2] + "\r\n\r\n", "SignatureDoesNotMatch", nil},
		{"cut after first chunk", e, good[:len(good)-1200], "IncompleteBody", nil},
		{"final chunk missing", e, good[:strings.Index(good, "0;chunk-signature="+e.chunkSigs[2])], "IncompleteBody", nil},
		{"unsigned trailer appended", e, strings.TrimSuffix(good, "\r\n") + "x-amz-checksum-crc32:AAAAAA==\r\n\r\n", "MalformedTrailerError", nil},
		{"seed signature", e, good, "SignatureDoesNotMatch", func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), e.seed, e.chunkSigs[0], 1))
		}},
		{"trailer value", tr, strings.Replace(goodTrailer, "sOO8/Q==", "AAAAAA==", 1), "SignatureDoesNotMatch", nil},
		{"trailer signature", tr, strings.Replace(goodTrailer, tr.trailerSig, tr.seed, 1), "SignatureDoesNotMatch", nil},
		{"trailer signature missing", tr, strings.Replace(goodTrailer, trailerSignatureID+":"+tr.trailerSig+"\r\n", "", 1), "SignatureDoesNotMatch", nil},
		{"trailer dropped", tr, strings.Replace(goodTrailer, tr.trailer+"\r\n", "", 1), "MalformedTrailerError", nil},
		{"undeclared trailer added", tr, strings.Replace(goodTrailer, tr.trailer+"\r\n", tr.trailer+"\r\nx-amz-meta-a:1\r\n", 1), "MalformedTrailerError", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.ex.request(tc.body)
			if tc.setup != nil {
				tc.setup(r)
			}
			_, _, err := verifyAndRead(t, r, at(exampleTime(t)))
			wantCode(t, err, tc.code)
		})
	}
}

// The documented chunked body decodes the same however the transport slices
// it, down to a byte per Read.
func TestAWSChunkedExampleOneByteReads(t *testing.T) {
	e := awsTrailerExample
	r := e.request("")
	r.Body = io.NopCloser(&oneByteReader{data: []byte(e.body())})
	req, err := Verify(context.Background(), r, lookupTestKeys, at(exampleTime(t)))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	buf := make([]byte, 1)
	for {
		n, err := req.Body.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	if got.String() != exampleChunk1+exampleChunk2 {
		t.Fatalf("decoded %d bytes, want 66560", got.Len())
	}
}

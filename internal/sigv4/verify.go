package sigv4

import (
	"context"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Lookup returns the secret access key of an access key id, or ErrUnknownKey
// when there is no such key.
type Lookup func(ctx context.Context, accessKeyID string) (secret string, err error)

// Options tunes Verify. The zero value is usable.
type Options struct {
	// Region, if set, is the only region accepted in the credential scope;
	// "" accepts any region.
	Region string
	// Service is the service in the credential scope; "" means "s3".
	Service string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxSkew is how far the time of a header-signed request may be from
	// Now, and how far in the future a presigned URL may start; 0 means 15
	// minutes, as AWS.
	MaxSkew time.Duration
	// MaxPresignExpiry is the longest X-Amz-Expires accepted; 0 means 7
	// days, as AWS.
	MaxPresignExpiry time.Duration
}

func (o Options) withDefaults() Options {
	if o.Service == "" {
		o.Service = "s3"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxSkew <= 0 {
		o.MaxSkew = 15 * time.Minute
	}
	if o.MaxPresignExpiry <= 0 {
		o.MaxPresignExpiry = 7 * 24 * time.Hour
	}
	return o
}

// Request is an authenticated request, as Verify returns it.
type Request struct {
	// AccessKeyID is the key the request was signed with.
	AccessKeyID string
	// Region is the region of the credential scope.
	Region string
	// Presigned is set for query-string (presigned URL) authentication.
	Presigned bool
	// Time is the signing time (x-amz-date, Date or X-Amz-Date).
	Time time.Time
	// ContentSHA256 is the payload hash the signature covers: a hex SHA-256,
	// UNSIGNED-PAYLOAD or one of the STREAMING-* modes; "" when the client
	// sent no x-amz-content-sha256 (the body is then unsigned).
	ContentSHA256 string
	// ContentEncoding is the request's Content-Encoding as it should be
	// stored with the object: for an aws-chunked payload (a STREAMING-*
	// mode) without the aws-chunked coding, otherwise as sent; "" when
	// nothing is left.
	ContentEncoding string
	// Body yields the payload, aws-chunked framing removed, verified as it
	// is read. Before it returns io.EOF it has checked the payload SHA-256
	// (signed payload), every chunk signature and the trailer signature
	// (signed aws-chunked), the x-amz-checksum-* value from a header or the
	// trailer, Content-MD5, and that the payload length equals
	// x-amz-decoded-content-length or Content-Length. A failure replaces
	// io.EOF and is also returned, instead of the data, by the Read that
	// would deliver the final byte, so a consumer that stops after Length
	// bytes sees it too. Errors are *Error. Close closes the request body.
	Body io.ReadCloser
	// Length is the number of payload bytes (the decoded length for
	// aws-chunked), or -1 if unknown.
	Length int64
	// Checksums returns, once Body has returned io.EOF, the checksum of the
	// payload for the algorithm the client asked for (by header, trailer or
	// x-amz-sdk-checksum-algorithm), keyed by its response header name, e.g.
	// "x-amz-checksum-crc32" → base64 value. It returns an empty map when no
	// checksum was asked for, and nil before io.EOF.
	Checksums func() map[string]string
}

// Payload modes: the values of x-amz-content-sha256 other than a hash.
const (
	unsignedPayload          = "UNSIGNED-PAYLOAD"
	streamingSigned          = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	streamingSignedTrailer   = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	streamingUnsignedTrailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
)

// Verify authenticates r, signed with AWS Signature Version 4 in the
// Authorization header or in presigned query parameters, and returns the
// verified identity with a Body that decodes and checks the payload. It does
// not read the body. Every error is an *Error with the S3 code and status to
// answer with.
func Verify(ctx context.Context, r *http.Request, lookup Lookup, opts Options) (*Request, error) {
	opts = opts.withDefaults()
	a, e := parseAuth(r, &opts)
	if e == nil {
		e = a.checkScope(&opts)
	}
	if e == nil {
		e = a.checkTime(opts.Now(), &opts)
	}
	var mode string
	if e == nil {
		mode, e = payloadMode(r, a)
	}
	if e != nil {
		return nil, e
	}
	secret, err := lookup(ctx, a.accessKeyID)
	switch {
	case errors.Is(err, ErrUnknownKey):
		return nil, newError("InvalidAccessKeyId", http.StatusForbidden,
			"The AWS Access Key Id you provided does not exist in our records.").with("AWSAccessKeyId", a.accessKeyID)
	case err != nil:
		e := newError("InternalError", http.StatusInternalServerError, "We encountered an internal error. Please try again.")
		e.Err = err
		return nil, e
	}
	key := signingKey(secret, a.scopeDate, a.region, a.service)
	hashForSignature := mode
	if mode == "" {
		hashForSignature = emptySHA256
	}
	if e := a.verifySignature(r, key, hashForSignature); e != nil {
		return nil, e
	}
	if e := checkUnsignedHeaders(r, a); e != nil {
		return nil, e
	}
	req, e := newRequest(r, a, key, mode)
	if e != nil {
		return nil, e
	}
	return req, nil
}

// parseAuth finds and parses the request's SigV4 authentication.
func parseAuth(r *http.Request, opts *Options) (*authorization, *Error) {
	header := r.Header.Get("Authorization")
	query := r.URL.Query()
	inQuery := query.Has("X-Amz-Algorithm") || query.Has("X-Amz-Credential") || query.Has("X-Amz-Signature")
	switch {
	case IsSignedV2(r), strings.HasPrefix(header, "AWS4-ECDSA-P256-SHA256"):
		return nil, errInvalidRequest("The authorization mechanism you have provided is not supported. Please use " + algorithm + ".")
	case len(r.Header.Values("Authorization")) > 1:
		return nil, errInvalidArgument("Only one Authorization header is allowed")
	case header != "" && inQuery:
		return nil, errInvalidArgument("Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified")
	case inQuery:
		return fromQuery(query, opts.MaxPresignExpiry)
	case header == "":
		return nil, errAccessDenied("Access Denied")
	case !strings.HasPrefix(header, algorithm):
		return nil, errInvalidArgument("Unsupported Authorization Type")
	}
	return fromHeader(r)
}

// payloadMode returns the x-amz-content-sha256 value the signature covers,
// "" when a header-signed request has none.
func payloadMode(r *http.Request, a *authorization) (string, *Error) {
	v := r.Header.Get("X-Amz-Content-Sha256")
	if a.presigned {
		if q := r.URL.Query().Get("X-Amz-Content-Sha256"); q != "" {
			v = q
		}
		if v == "" {
			v = unsignedPayload
		}
	}
	switch v {
	case "", unsignedPayload, streamingSigned, streamingSignedTrailer, streamingUnsignedTrailer:
		return v, nil
	case "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER":
		return "", newError("NotImplemented", http.StatusNotImplemented, "SigV4a streaming payloads are not supported.")
	}
	if _, err := hex.DecodeString(v); err != nil || len(v) != 64 {
		return "", errInvalidArgument("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, " + streamingUnsignedTrailer + ", " +
			streamingSigned + ", " + streamingSignedTrailer + " or a valid sha256 value.")
	}
	return v, nil
}

// verifySignature compares the request's signature with the one computed
// over the canonical request. That is first S3's canonical form; when the
// client sent the path or query in another form, it is then the form it
// sent, with the query sorted, and then exactly as sent (curl 7.88 signs the
// query unsorted and unnormalised). Each form describes the same decoded
// path and parameters, so accepting it lets no request through that means
// something else than what was signed.
func (a *authorization) verifySignature(r *http.Request, key []byte, payloadHash string) *Error {
	query, sortedQuery, ok := canonicalQuery(r.URL.RawQuery, a.presigned)
	uri, sent := canonicalURI(r), sentURI(r)
	scope := a.scope()
	var forms [][2]string
	if ok {
		forms = append(forms, [2]string{uri, query})
	}
	for _, f := range [][2]string{{sent, sortedQuery}, {sent, verbatimQuery(r.URL.RawQuery, a.presigned)}} {
		if !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	var first, firstSTS string
	for _, f := range forms {
		canonical := canonicalRequest(r, f[0], f[1], a.signed, a.signedList, payloadHash)
		sts := stringToSign(a.amzDate, scope, canonical)
		if hmac.Equal(hmacSHA256(key, sts), a.signature) {
			return nil
		}
		if first == "" {
			first, firstSTS = canonical, sts
		}
	}
	return errSignature().
		with("AWSAccessKeyId", a.accessKeyID).
		with("StringToSign", firstSTS).
		with("SignatureProvided", hex.EncodeToString(a.signature)).
		with("CanonicalRequest", first)
}

// checkUnsignedHeaders refuses x-amz-* headers left out of the signature, as
// S3 does: they would otherwise change the request's meaning unchecked.
// x-amz-content-sha256 is covered as the payload hash.
func checkUnsignedHeaders(r *http.Request, a *authorization) *Error {
	var unsigned []string
	for name := range r.Header {
		l := strings.ToLower(name)
		if !strings.HasPrefix(l, "x-amz-") || l == "x-amz-content-sha256" {
			continue
		}
		found := false
		for _, s := range a.signed {
			found = found || s == l
		}
		if !found {
			unsigned = append(unsigned, l)
		}
	}
	if len(unsigned) == 0 {
		return nil
	}
	sort.Strings(unsigned)
	return errAccessDenied("There were headers present in the request which were not signed").
		with("HeadersNotSigned", strings.Join(unsigned, ", "))
}

// newRequest builds the verified Request and its payload reader.
func newRequest(r *http.Request, a *authorization, key []byte, mode string) (*Request, *Error) {
	body := r.Body
	if body == nil {
		body = http.NoBody
	}
	req := &Request{
		AccessKeyID:     a.accessKeyID,
		Region:          a.region,
		Presigned:       a.presigned,
		Time:            a.time,
		ContentSHA256:   mode,
		ContentEncoding: strings.Join(r.Header.Values("Content-Encoding"), ","),
	}
	p := &payload{src: body, closer: body, declared: r.ContentLength, trailers: func() map[string]string { return nil }}
	var trailerNames []string
	streaming := strings.HasPrefix(mode, "STREAMING-")
	if streaming {
		if mode != streamingSigned {
			trailerNames = declaredTrailers(r)
		}
		declared, e := decodedLength(r)
		if e != nil {
			return nil, e
		}
		var signer *chunkSigner
		if mode != streamingUnsignedTrailer {
			signer = &chunkSigner{key: key, amzDate: a.amzDate, scope: a.scope(), prev: a.signature}
		}
		cr := newChunkedReader(body, signer, mode == streamingSignedTrailer, trailerNames, declared)
		p.src, p.declared, p.trailers = cr, declared, cr.trailerMap
		req.ContentEncoding = withoutAWSChunked(r.Header.Values("Content-Encoding"))
	} else if r.Header.Get("X-Amz-Trailer") != "" {
		return nil, errInvalidRequest("x-amz-trailer needs an x-amz-content-sha256 of " +
			streamingUnsignedTrailer + " or " + streamingSignedTrailer + ".")
	}
	plan, e := planChecksums(r, trailerNames)
	if e != nil {
		return nil, e
	}
	var wantSHA []byte
	if mode != "" && !streaming && mode != unsignedPayload {
		wantSHA, _ = hex.DecodeString(mode)
	}
	p.setHashes(plan, wantSHA)
	req.Body, req.Length, req.Checksums = p, p.declared, p.checksums
	return req, nil
}

// declaredTrailers returns the lower-cased names x-amz-trailer lists.
func declaredTrailers(r *http.Request) []string {
	var names []string
	for _, v := range r.Header.Values("X-Amz-Trailer") {
		for _, n := range strings.Split(v, ",") {
			if n = strings.ToLower(strings.TrimSpace(n)); n != "" {
				names = append(names, n)
			}
		}
	}
	return names
}

// decodedLength parses x-amz-decoded-content-length; -1 when absent.
func decodedLength(r *http.Request) (int64, *Error) {
	v := r.Header.Get("X-Amz-Decoded-Content-Length")
	if v == "" {
		return -1, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errInvalidArgument("x-amz-decoded-content-length must be a non-negative integer.")
	}
	return n, nil
}

// withoutAWSChunked joins Content-Encoding values without the aws-chunked
// coding, e.g. "aws-chunked,gzip" → "gzip".
func withoutAWSChunked(values []string) string {
	var kept []string
	for _, v := range values {
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "aws-chunked") {
				kept = append(kept, c)
			}
		}
	}
	return strings.Join(kept, ",")
}

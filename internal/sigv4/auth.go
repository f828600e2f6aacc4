package sigv4

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// IsSigned reports whether r carries SigV4 authentication: an Authorization
// header of the AWS4-HMAC-SHA256 scheme, or presigned query parameters with
// X-Amz-Algorithm=AWS4-HMAC-SHA256.
func IsSigned(r *http.Request) bool {
	if isV4(r.Header.Get("Authorization")) {
		return true
	}
	if !strings.Contains(r.URL.RawQuery, "X-Amz-Algorithm") {
		return false
	}
	return r.URL.Query().Get("X-Amz-Algorithm") == algorithm
}

// IsSignedV2 reports whether r carries AWS Signature Version 2
// authentication: an "AWS AKID:signature" Authorization header, or the
// AWSAccessKeyId and Signature query parameters of a V2 presigned URL.
// Verify answers such requests with InvalidRequest ("Please use
// AWS4-HMAC-SHA256"), the way S3 regions without V2 do.
func IsSignedV2(r *http.Request) bool {
	if isV2(r.Header.Get("Authorization")) {
		return true
	}
	if !strings.Contains(r.URL.RawQuery, "Signature") {
		return false
	}
	q := r.URL.Query()
	return q.Has("AWSAccessKeyId") && q.Has("Signature")
}

// SignedAuthorization reports whether auth, an Authorization header's
// value, is an S3 signature of either version, which IsSigned or
// IsSignedV2 reports of its request.
func SignedAuthorization(auth string) bool { return isV4(auth) || isV2(auth) }

func isV4(auth string) bool { return strings.HasPrefix(auth, algorithm+" ") }

func isV2(auth string) bool { return strings.HasPrefix(auth, "AWS ") }

// authorization is the signature a request carries, parsed but not checked.
type authorization struct {
	presigned   bool
	accessKeyID string
	scopeDate   string // YYYYMMDD
	region      string
	service     string
	terminator  string
	signedList  string   // SignedHeaders as sent
	signed      []string // SignedHeaders, lower-cased, in the order sent
	signature   []byte
	amzDate     string // the request time, YYYYMMDDTHHMMSSZ
	time        time.Time
	expires     time.Duration // presigned only
}

func (a *authorization) scope() string {
	return a.scopeDate + "/" + a.region + "/" + a.service + "/" + a.terminator
}

// authHeader holds the three components of an Authorization header.
type authHeader struct {
	credential, signedHeaders, signature string
}

// parseAuthorization splits an "AWS4-HMAC-SHA256 Credential=…,
// SignedHeaders=…, Signature=…" header value, accepting any spacing around
// the commas and the components in any order. The error is the detail for an
// AuthorizationHeaderMalformed message.
func parseAuthorization(v string) (authHeader, error) {
	var h authHeader
	rest, ok := strings.CutPrefix(v, algorithm)
	if !ok || (rest != "" && rest[0] != ' ') {
		return h, fmt.Errorf("the authorization mechanism is not %s", algorithm)
	}
	for _, part := range strings.Split(rest, ",") {
		part = strings.Trim(part, " ")
		if part == "" {
			continue
		}
		name, value, found := strings.Cut(part, "=")
		var dst *string
		switch name {
		case "Credential":
			dst = &h.credential
		case "SignedHeaders":
			dst = &h.signedHeaders
		case "Signature":
			dst = &h.signature
		}
		if !found || dst == nil || *dst != "" || value == "" {
			return h, fmt.Errorf("unexpected component %q", truncate(part, 40))
		}
		*dst = value
	}
	if h.credential == "" || h.signedHeaders == "" || h.signature == "" {
		return h, fmt.Errorf("the authorization header requires three components: Credential, SignedHeaders, and Signature")
	}
	return h, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// setCredential parses "AKID/YYYYMMDD/REGION/SERVICE/aws4_request" into a.
func (a *authorization) setCredential(c string) error {
	parts := strings.Split(c, "/")
	if len(parts) < 5 {
		return fmt.Errorf("the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\"")
	}
	n := len(parts)
	a.accessKeyID = strings.Join(parts[:n-4], "/")
	a.scopeDate, a.region, a.service, a.terminator = parts[n-4], parts[n-3], parts[n-2], parts[n-1]
	if a.accessKeyID == "" || a.region == "" {
		return fmt.Errorf("the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\"")
	}
	if _, err := time.Parse(scopeDateFormat, a.scopeDate); err != nil {
		return fmt.Errorf("incorrect date format %q. This date in the credential must be in the format \"yyyyMMdd\"", a.scopeDate)
	}
	return nil
}

// setSignedHeaders parses the semicolon-separated SignedHeaders list.
func (a *authorization) setSignedHeaders(list string) error {
	a.signedList = list
	a.signed = strings.Split(list, ";")
	host := false
	for i, name := range a.signed {
		if name == "" {
			return fmt.Errorf("the SignedHeaders list %q has an empty name", truncate(list, 60))
		}
		a.signed[i] = strings.ToLower(name)
		host = host || a.signed[i] == "host"
	}
	if !host {
		return fmt.Errorf("the host header must be signed")
	}
	return nil
}

func (a *authorization) setSignature(sig string) error {
	if len(sig) != 64 {
		return fmt.Errorf("the Signature is not 64 hexadecimal digits")
	}
	b, err := hex.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("the Signature is not 64 hexadecimal digits")
	}
	a.signature = b
	return nil
}

// fromHeader parses header authentication.
func fromHeader(r *http.Request) (*authorization, *Error) {
	h, err := parseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return nil, errMalformedAuth(err.Error())
	}
	a := &authorization{}
	for _, step := range []error{a.setCredential(h.credential), a.setSignedHeaders(h.signedHeaders), a.setSignature(h.signature)} {
		if step != nil {
			return nil, errMalformedAuth(step.Error())
		}
	}
	t, ok := requestTime(r)
	if !ok {
		return nil, errAccessDenied("AWS authentication requires a valid Date or x-amz-date header")
	}
	a.time, a.amzDate = t, t.Format(amzDateFormat)
	return a, nil
}

// requestTime is the time of a header-authenticated request: x-amz-date if
// present, else Date.
func requestTime(r *http.Request) (time.Time, bool) {
	if v := r.Header.Get("X-Amz-Date"); v != "" {
		t, err := time.Parse(amzDateFormat, v)
		return t.UTC(), err == nil
	}
	if v := r.Header.Get("Date"); v != "" {
		t, err := http.ParseTime(v)
		return t.UTC(), err == nil
	}
	return time.Time{}, false
}

// fromQuery parses presigned query authentication.
func fromQuery(q url.Values, maxExpiry time.Duration) (*authorization, *Error) {
	if alg := q.Get("X-Amz-Algorithm"); alg != algorithm {
		if alg == "" {
			return nil, errQueryParams(msgQueryParams)
		}
		return nil, errQueryParams("X-Amz-Algorithm only supports \"" + algorithm + "\"")
	}
	for _, name := range []string{"X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Expires"} {
		if q.Get(name) == "" {
			return nil, errQueryParams(msgQueryParams)
		}
	}
	a := &authorization{presigned: true}
	if err := a.setCredential(q.Get("X-Amz-Credential")); err != nil {
		return nil, errQueryParams("Error parsing the X-Amz-Credential parameter; " + err.Error())
	}
	if err := a.setSignedHeaders(q.Get("X-Amz-SignedHeaders")); err != nil {
		return nil, errQueryParams("Error parsing the X-Amz-SignedHeaders parameter; " + err.Error())
	}
	if err := a.setSignature(q.Get("X-Amz-Signature")); err != nil {
		return nil, errQueryParams("Error parsing the X-Amz-Signature parameter; " + err.Error())
	}
	t, err := time.Parse(amzDateFormat, q.Get("X-Amz-Date"))
	if err != nil {
		return nil, errQueryParams("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
	}
	a.time, a.amzDate = t.UTC(), q.Get("X-Amz-Date")
	secs, err := strconv.ParseInt(q.Get("X-Amz-Expires"), 10, 64)
	switch {
	case err != nil && strings.HasPrefix(q.Get("X-Amz-Expires"), "-"):
		return nil, errQueryParams("X-Amz-Expires must be non-negative")
	case err != nil:
		return nil, errQueryParams("X-Amz-Expires should be a number")
	case secs < 0:
		return nil, errQueryParams("X-Amz-Expires must be non-negative")
	case secs > int64(maxExpiry/time.Second):
		return nil, errQueryParams(fmt.Sprintf("X-Amz-Expires must be less than a week (in seconds) that is %d", int64(maxExpiry/time.Second)))
	}
	a.expires = time.Duration(secs) * time.Second
	return a, nil
}

// checkScope checks the credential scope against the request and opts.
func (a *authorization) checkScope(opts *Options) *Error {
	fail := errMalformedAuth
	if a.presigned {
		fail = func(d string) *Error { return errQueryParams("Error parsing the X-Amz-Credential parameter; " + d) }
	}
	switch {
	case a.scopeDate != a.amzDate[:8]:
		return fail("Invalid credential date. Date is not the same as X-Amz-Date.")
	case a.service != opts.Service:
		return fail(fmt.Sprintf("incorrect service %q. This endpoint belongs to %q.", a.service, opts.Service))
	case a.terminator != scopeTerminator:
		return fail(fmt.Sprintf("incorrect terminal %q. This endpoint uses %q.", a.terminator, scopeTerminator))
	case opts.Region != "" && a.region != opts.Region:
		return fail(fmt.Sprintf("the region '%s' is wrong; expecting '%s'", a.region, opts.Region)).with("Region", opts.Region)
	}
	return nil
}

// checkTime checks the request time against the clock: the allowed skew for
// header authentication, the validity window for a presigned URL.
func (a *authorization) checkTime(now time.Time, opts *Options) *Error {
	if a.presigned {
		switch {
		case a.time.After(now.Add(opts.MaxSkew)):
			return errAccessDenied("Request is not yet valid")
		case now.After(a.time.Add(a.expires)):
			return errAccessDenied("Request has expired").
				with("X-Amz-Expires", strconv.FormatInt(int64(a.expires/time.Second), 10)).
				with("Expires", a.time.Add(a.expires).Format(time.RFC3339)).
				with("ServerTime", now.UTC().Format(time.RFC3339))
		}
		return nil
	}
	skew := now.Sub(a.time)
	if skew < 0 {
		skew = -skew
	}
	if skew > opts.MaxSkew {
		return newError("RequestTimeTooSkewed", http.StatusForbidden,
			"The difference between the request time and the current time is too large.").
			with("RequestTime", a.amzDate).
			with("ServerTime", now.UTC().Format(time.RFC3339)).
			with("MaxAllowedSkewMilliseconds", strconv.FormatInt(opts.MaxSkew.Milliseconds(), 10))
	}
	return nil
}

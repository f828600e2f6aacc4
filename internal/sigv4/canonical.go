package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
)

const (
	algorithm       = "AWS4-HMAC-SHA256"
	amzDateFormat   = "20060102T150405Z"
	scopeDateFormat = "20060102"
	scopeTerminator = "aws4_request"
	emptySHA256     = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// shouldEscape reports whether b is outside RFC 3986's unreserved set, which
// is all SigV4 leaves unescaped.
func shouldEscape(b byte) bool {
	switch {
	case 'A' <= b && b <= 'Z', 'a' <= b && b <= 'z', '0' <= b && b <= '9':
		return false
	case b == '-', b == '_', b == '.', b == '~':
		return false
	}
	return true
}

// uriEncode percent-encodes s the way SigV4 wants: everything but the
// unreserved characters, with upper-case hex digits, and '/' kept when
// keepSlash is set.
func uriEncode(s string, keepSlash bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if shouldEscape(s[i]) && !(keepSlash && s[i] == '/') {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hexDigits = "0123456789ABCDEF"
	buf := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if shouldEscape(c) && !(keepSlash && c == '/') {
			buf = append(buf, '%', hexDigits[c>>4], hexDigits[c&15])
		} else {
			buf = append(buf, c)
		}
	}
	return string(buf)
}

// canonicalURI is the request path as S3 signs it: the decoded path with each
// segment encoded once, never normalised ("//" and "." segments stay).
func canonicalURI(r *http.Request) string {
	if r.URL.Path == "" {
		return "/"
	}
	return uriEncode(r.URL.Path, true)
}

// sentURI is the path as the client wrote it on the request line.
func sentURI(r *http.Request) string {
	p := r.URL.EscapedPath()
	if p == "" {
		return "/"
	}
	return p
}

type queryPair struct{ name, value string }

func sortPairs(pairs []queryPair) {
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].name != pairs[j].name {
			return pairs[i].name < pairs[j].name
		}
		return pairs[i].value < pairs[j].value
	})
}

func joinPairs(pairs []queryPair) string {
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.name)
		b.WriteByte('=')
		b.WriteString(p.value)
	}
	return b.String()
}

// canonicalQuery returns the canonical query string of raw, the form the
// client sent with its own encoding but sorted, and whether raw could be
// decoded. X-Amz-Signature is left out of both when presigned is set.
func canonicalQuery(raw string, presigned bool) (canonical, sent string, ok bool) {
	if raw == "" {
		return "", "", true
	}
	var enc, as []queryPair
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		dn, err1 := url.QueryUnescape(name)
		dv, err2 := url.QueryUnescape(value)
		if err1 != nil || err2 != nil {
			return "", "", false
		}
		if presigned && dn == "X-Amz-Signature" {
			continue
		}
		enc = append(enc, queryPair{uriEncode(dn, false), uriEncode(dv, false)})
		as = append(as, queryPair{name, value})
	}
	sortPairs(enc)
	sortPairs(as)
	return joinPairs(enc), joinPairs(as), true
}

// verbatimQuery is raw as the client sent it, without X-Amz-Signature when
// presigned is set.
func verbatimQuery(raw string, presigned bool) string {
	if !presigned || !strings.Contains(raw, "X-Amz-Signature") {
		return raw
	}
	parts := strings.Split(raw, "&")
	kept := parts[:0]
	for _, p := range parts {
		if !strings.HasPrefix(p, "X-Amz-Signature=") {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, "&")
}

// trimAll trims v and collapses inner runs of spaces, as SigV4's Trimall.
func trimAll(v string) string {
	v = strings.Trim(v, " \t")
	if !strings.Contains(v, "  ") {
		return v
	}
	var b strings.Builder
	b.Grow(len(v))
	space := false
	for i := 0; i < len(v); i++ {
		if v[i] == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// headerValues returns the values of the lower-case header name as the
// client sent them, including the ones net/http moves out of r.Header.
func headerValues(r *http.Request, name string) []string {
	switch name {
	case "host":
		if r.Host != "" {
			return []string{r.Host}
		}
		return []string{r.URL.Host}
	case "content-length":
		if v := r.Header.Values("Content-Length"); len(v) > 0 {
			return v
		}
		if r.ContentLength >= 0 && len(r.TransferEncoding) == 0 {
			return []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	case "transfer-encoding":
		if v := r.Header.Values("Transfer-Encoding"); len(v) > 0 {
			return v
		}
		if len(r.TransferEncoding) > 0 {
			return []string{strings.Join(r.TransferEncoding, ",")}
		}
	}
	if v, ok := r.Header[http.CanonicalHeaderKey(name)]; ok {
		return v
	}
	return r.Header[name] // set directly, not in canonical form
}

// canonicalRequest builds the canonical request of r for the given path,
// query and payload hash, with the headers in signed (lower-case names, in
// the client's order) and signedList being the SignedHeaders text as sent.
func canonicalRequest(r *http.Request, uri, query string, signed []string, signedList, payloadHash string) string {
	var b strings.Builder
	b.Grow(256 + len(uri) + len(query))
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(uri)
	b.WriteByte('\n')
	b.WriteString(query)
	b.WriteByte('\n')
	for _, name := range signed {
		b.WriteString(name)
		b.WriteByte(':')
		for i, v := range headerValues(r, name) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(trimAll(v))
		}
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(signedList)
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String()
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// stringToSign is the SigV4 string to sign for a canonical request.
func stringToSign(amzDate, scope, canonical string) string {
	return algorithm + "\n" + amzDate + "\n" + scope + "\n" + sha256Hex(canonical)
}

// keyCache remembers derived signing keys: one per key, day and region is
// all a busy server needs, and deriving one costs four HMACs.
var keyCache struct {
	sync.Mutex
	m map[string][]byte
}

const keyCacheSize = 256

// signingKey derives (or recalls) the SigV4 signing key.
func signingKey(secret, date, region, service string) []byte {
	id := secret + "\x00" + date + "\x00" + region + "\x00" + service
	keyCache.Lock()
	k, ok := keyCache.m[id]
	keyCache.Unlock()
	if ok {
		return k
	}
	k = hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	k = hmacSHA256(k, scopeTerminator)
	keyCache.Lock()
	if len(keyCache.m) >= keyCacheSize || keyCache.m == nil {
		keyCache.m = make(map[string][]byte, keyCacheSize)
	}
	keyCache.m[id] = k
	keyCache.Unlock()
	return k
}

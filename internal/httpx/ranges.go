// Package httpx holds the pieces of HTTP that both of larder's front ends
// need the same way: byte ranges, entity-tag conditions, the key encoding
// of listings, and the access log with its request IDs.
package httpx

import (
	"strconv"
	"strings"
)

// ParseRange interprets a Range header for a file of size bytes. ok is false
// when the header is not one well-formed byte range (it is then ignored, as
// RFC 9110 allows, and the whole file is sent); satisfiable is false when
// the range lies outside the file.
func ParseRange(header string, size int64) (off, length int64, ok, satisfiable bool) {
	spec, found := strings.CutPrefix(header, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	if first == "" { // suffix range: the last n bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false, false
		}
		if n == 0 || size == 0 {
			return 0, 0, true, false
		}
		n = min(n, size)
		return size - n, n, true, true
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false, false
	}
	end := size - 1
	if last != "" {
		e, err := strconv.ParseInt(last, 10, 64)
		if err != nil || e < start {
			return 0, 0, false, false
		}
		end = min(e, size-1)
	}
	if start >= size {
		return 0, 0, true, false
	}
	return start, end - start + 1, true, true
}

// ContentRange formats a Content-Range header value.
func ContentRange(off, length, size int64) string {
	return "bytes " + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(off+length-1, 10) + "/" + strconv.FormatInt(size, 10)
}

// ETagMatches reports whether an If-None-Match header matches etag.
func ETagMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// IfRangeAllows reports whether a Range may be honoured given the If-Range
// header: only when it is absent or names the current (strong) ETag.
func IfRangeAllows(header, etag string) bool {
	return header == "" || header == etag
}

// EscapeKey percent-encodes an object key for a listing with
// encoding-type=url: every byte but the unreserved characters and '/', so
// that clients decoding with or without '+' as space get the key back.
func EscapeKey(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || c == '/' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

package metrics

import (
	"net/http"
	"strconv"
)

// other is the value of a label for anything outside its fixed set.
const other = "other"

// kinds are the values of the kind label, by protocol: for the Nix
// protocol the kinds of file (nixkey.Kind's names) and larder's own
// endpoints, for S3 the operations. A front end that adds one adds it here,
// or it is counted as "other".
var kinds = map[string]map[string]bool{
	"nix": set("cache-info", "narinfo", "listing", "nar", "log", "realisation", "debuginfo",
		"internal", "api"),
	"s3": set("AbortMultipartUpload", "BucketACL", "CompleteMultipartUpload", "CopyObject",
		"CreateBucket", "CreateMultipartUpload", "DeleteBucket", "DeleteObject", "DeleteObjects",
		"GetBucketConfiguration", "GetBucketLocation", "GetBucketVersioning", "GetObject",
		"GetObjectTagging", "HeadBucket", "HeadObject", "ListBuckets", "ListMultipartUploads",
		"ListObjectVersions", "ListObjects", "ListObjectsV2", "ListParts", "ObjectACL", "PutObject",
		"UploadPart", "UploadPartCopy"),
	"web": set("page", "asset", "data", "session"),
}

func set(values ...string) map[string]bool {
	m := make(map[string]bool, len(values))
	for _, v := range values {
		m[v] = true
	}
	return m
}

// protocolLabel bounds the protocol label: nix, s3, web or other.
func protocolLabel(protocol string) string {
	if kinds[protocol] == nil {
		return other
	}
	return protocol
}

// kindLabel bounds the kind label to the kinds of the protocol.
func kindLabel(protocol, kind string) string {
	if !kinds[protocol][kind] {
		return other
	}
	return kind
}

// methodLabel bounds the method label to the methods of RFC 9110 and
// PATCH, as sent (methods are case-sensitive).
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete,
		http.MethodOptions, http.MethodPatch, http.MethodConnect, http.MethodTrace:
		return method
	}
	return other
}

// codeLabel bounds the code label to the statuses HTTP defines, 100-599.
func codeLabel(status int) string {
	if status < 100 || status > 599 {
		return other
	}
	return strconv.Itoa(status)
}

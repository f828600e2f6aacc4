package s3api

import (
	"testing"

	"github.com/larder-cache/larder/internal/service"
)

// TestReasonCodes: each reason the service gives is answered with the S3
// error code S3 clients know for it, at the status of the error's class.
func TestReasonCodes(t *testing.T) {
	for _, c := range []struct {
		code   service.Code
		reason service.Reason
		status int
		s3     string
	}{
		{service.CodeNotFound, service.ReasonUploadNotFound, 404, "NoSuchUpload"},
		{service.CodeInvalid, service.ReasonPartNotFound, 400, "InvalidPart"},
		{service.CodeInvalid, service.ReasonPartOrder, 400, "InvalidPartOrder"},
		{service.CodeInvalid, service.ReasonPartTooSmall, 400, "EntityTooSmall"},
		{service.CodeInvalid, service.ReasonNoParts, 400, "MalformedXML"},
		{service.CodeConflict, service.ReasonCacheNotEmpty, 409, "BucketNotEmpty"},
		{service.CodeNotFound, service.ReasonCacheNotFound, 404, "NoSuchBucket"},
		{service.CodeNotFound, service.ReasonKeyNotFound, 404, "NoSuchKey"},
		{service.CodeConflict, service.ReasonCacheExists, 409, "BucketAlreadyOwnedByYou"},
		{service.CodeInvalid, service.ReasonBadCacheName, 400, "InvalidBucketName"},
		{service.CodeInvalid, "", 400, "InvalidRequest"},
		{service.CodeNotFound, "", 404, "NoSuchKey"},
	} {
		status, code, msg := s3Status(&service.Error{Code: c.code, Reason: c.reason, Msg: "why"})
		if status != c.status || code != c.s3 || msg != "why" {
			t.Errorf("%v %q: %d %s %q, want %d %s", c.code, c.reason, status, code, msg, c.status, c.s3)
		}
	}
	if len(reasonCodes) != 10 {
		t.Errorf("%d reasons have S3 codes; a new reason needs a row here", len(reasonCodes))
	}
}

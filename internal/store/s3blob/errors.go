package s3blob

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"

	"github.com/minio/minio-go/v7"

	"github.com/larder-cache/larder/internal/store"
)

// S3 error codes that say a key or an upload is not there.
var notFoundCodes = map[string]bool{
	"NoSuchKey":    true,
	"NotFound":     true,
	"NoSuchUpload": true,
}

// S3 error codes that say trying again later may succeed, whatever the
// status code they came with.
var transientCodes = map[string]bool{
	"SlowDown":                   true,
	"SlowDownRead":               true,
	"SlowDownWrite":              true,
	"ServiceUnavailable":         true,
	"InternalError":              true,
	"RequestTimeout":             true,
	"Throttling":                 true,
	"ThrottlingException":        true,
	"RequestLimitExceeded":       true,
	"RequestThrottled":           true,
	"XMinioServerNotInitialized": true,
	"OperationAborted":           true,
}

// translate turns an error of minio-go into one of larder's: a missing
// key or upload wraps store.ErrNotFound, a transient failure wraps
// store.ErrUnavailable, and the end of the caller's context is returned as
// the context's error. Other errors are returned as they are.
func translate(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || isNetwork(err)):
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && (resp.Code != "" || resp.StatusCode != 0) {
		switch {
		case notFoundCodes[resp.Code]:
			return fmt.Errorf("%w: %w", store.ErrNotFound, err)
		case transientCodes[resp.Code], resp.StatusCode >= 500,
			resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
			return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		return err
	}
	if isNetwork(err) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// isNetwork reports whether err says the server could not be reached or
// the connection to it broke: a failed dial, a reset or closed connection,
// a timeout. A certificate that does not verify is not such a failure: it
// will not go away by waiting.
func isNetwork(err error) bool {
	var unknownAuthority x509.UnknownAuthorityError
	var invalidCert x509.CertificateInvalidError
	var hostname x509.HostnameError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &unknownAuthority) || errors.As(err, &invalidCert) ||
		errors.As(err, &hostname) || errors.As(err, &verify) {
		return false
	}
	var netErr net.Error
	var urlErr *url.Error
	switch {
	case errors.As(err, &netErr), errors.As(err, &urlErr):
		return true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}

// notFound reports whether err, as minio-go returned it, says the key or
// upload does not exist.
func notFound(err error) bool {
	var resp minio.ErrorResponse
	return errors.As(err, &resp) && notFoundCodes[resp.Code]
}

// invalidRange reports whether err, as minio-go returned it, is S3's
// answer to a range that starts at or past the end of an object.
func invalidRange(err error) bool {
	var resp minio.ErrorResponse
	return errors.As(err, &resp) &&
		(resp.Code == "InvalidRange" || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable)
}

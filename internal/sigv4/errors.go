package sigv4

import (
	"errors"
	"net/http"
	"os"
)

// ErrUnknownKey is what a Lookup returns for an access key id it does not
// know. Verify turns it into InvalidAccessKeyId; any other Lookup error
// becomes InternalError.
var ErrUnknownKey = errors.New("sigv4: unknown access key id")

// Error is an authentication or payload failure, in the terms S3 reports it.
type Error struct {
	// Code is the S3 error code, e.g. "SignatureDoesNotMatch".
	Code string
	// Message is the human-readable text S3 puts in <Message>.
	Message string
	// Status is the HTTP status S3 answers with.
	Status int
	// Details holds further elements S3 adds to the error document, keyed by
	// element name: Region (the expected region, which clients such as
	// minio-go read to retry), StringToSign and CanonicalRequest (what the
	// server signed, for debugging a client), HeadersNotSigned,
	// RequestTime, ServerTime and MaxAllowedSkewMilliseconds.
	Details map[string]string
	// Err is the underlying cause, if any: a Lookup failure or the error the
	// request body returned.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	s := "sigv4: " + e.Code + ": " + e.Message
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error with the same Code, so that
// errors.Is(err, &Error{Code: "BadDigest"}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

func newError(code string, status int, msg string) *Error {
	return &Error{Code: code, Message: msg, Status: status}
}

func (e *Error) with(name, value string) *Error {
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	e.Details[name] = value
	return e
}

// Messages are the ones S3 itself sends where S3 has one.
const (
	msgSignature     = "The request signature we calculated does not match the signature you provided. Check your key and signing method."
	msgChunkSig      = "The chunk signature we calculated does not match the signature you provided."
	msgTrailerSig    = "The trailer signature we calculated does not match the signature you provided."
	msgIncomplete    = "You did not provide the number of bytes specified by the Content-Length HTTP header."
	msgMalformedAuth = "The authorization header is malformed; "
	msgQueryParams   = "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
	msgTrailer       = "The request contained trailing data that was not well-formed or did not conform to our published schema."
	msgChunked       = "The aws-chunked payload is malformed: "
)

func errSignature() *Error {
	return newError("SignatureDoesNotMatch", http.StatusForbidden, msgSignature)
}

func errMalformedAuth(detail string) *Error {
	return newError("AuthorizationHeaderMalformed", http.StatusBadRequest, msgMalformedAuth+detail)
}

func errQueryParams(msg string) *Error {
	return newError("AuthorizationQueryParametersError", http.StatusBadRequest, msg)
}

func errAccessDenied(msg string) *Error {
	return newError("AccessDenied", http.StatusForbidden, msg)
}

func errInvalidRequest(msg string) *Error {
	return newError("InvalidRequest", http.StatusBadRequest, msg)
}

func errInvalidArgument(msg string) *Error {
	return newError("InvalidArgument", http.StatusBadRequest, msg)
}

func errIncomplete(detail string) *Error {
	e := newError("IncompleteBody", http.StatusBadRequest, msgIncomplete)
	if detail != "" {
		e.Message += " (" + detail + ")"
	}
	return e
}

func errChunked(detail string) *Error {
	return errInvalidRequest(msgChunked + detail)
}

func errTrailer(detail string) *Error {
	return newError("MalformedTrailerError", http.StatusBadRequest, msgTrailer+" ("+detail+")")
}

// errBodyRead classifies an error the request body returned.
func errBodyRead(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		e = newError("EntityTooLarge", http.StatusBadRequest, "Your proposed upload exceeds the maximum allowed size.")
	case errors.Is(err, os.ErrDeadlineExceeded):
		e = newError("RequestTimeout", http.StatusBadRequest,
			"Your socket connection to the server was not read from or written to within the timeout period.")
	default:
		e = errIncomplete("")
	}
	e.Err = err
	return e
}

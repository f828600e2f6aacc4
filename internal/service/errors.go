package service

import (
	"context"
	"errors"
	"fmt"

	"github.com/larder-cache/larder/internal/store"
)

// Code classifies a service error. Each front end maps codes to its own
// protocol's status in one place.
type Code int

// The error codes.
const (
	CodeInternal        Code = iota // a fault of larder or its stores; detail is logged, not shown
	CodeInvalid                     // the request or its body is malformed or inconsistent
	CodeNotFound                    // no such cache or key
	CodeUnauthenticated             // credentials missing or unknown
	CodeForbidden                   // credentials valid but not sufficient
	CodeConflict                    // the request contradicts what is stored
	CodeTooLarge                    // a configured limit was exceeded
	CodeLengthRequired              // an upload without a Content-Length
	CodeUnsupported                 // a valid request larder does not serve
	CodeClientGone                  // the client stopped sending or went away
	CodeUnavailable                 // a store is unreachable for now; the client should retry
)

// Error is an error with a code and a one-line message meant for the client.
// Err, if set, carries detail for the log. Reason, if set, refines the code
// for protocols that tell such cases apart (the S3 API's error codes).
type Error struct {
	Code   Code
	Reason Reason
	Msg    string
	Err    error
}

// Reason refines an error code. Reasons name what happened, not how a
// protocol says it: each front end translates them in its error mapping.
type Reason string

// The reasons the service gives.
const (
	ReasonUploadNotFound Reason = "upload-not-found" // no multipart upload with that ID in progress
	ReasonPartNotFound   Reason = "part-not-found"   // a part of a completion was not uploaded, or has another ETag
	ReasonPartOrder      Reason = "part-order"       // the parts of a completion are not in ascending order
	ReasonPartTooSmall   Reason = "part-too-small"   // a part but the last is under MinPartSize
	ReasonNoParts        Reason = "no-parts"         // a completion that names no parts
	ReasonCacheNotEmpty  Reason = "cache-not-empty"  // deleting a cache that holds objects
	ReasonCacheNotFound  Reason = "cache-not-found"  // no cache of that name
	ReasonKeyNotFound    Reason = "key-not-found"    // the cache has no such key
	ReasonCacheExists    Reason = "cache-exists"     // creating a cache whose name is taken
	ReasonBadCacheName   Reason = "bad-cache-name"   // a name no cache may have
)

// ReasonOf returns the reason of the first *Error in err's chain, or "".
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// internal wraps an unexpected error. Its message is never shown to clients.
func internal(err error, format string, args ...any) *Error {
	return &Error{Code: CodeInternal, Msg: fmt.Sprintf(format, args...), Err: err}
}

// CodeOf returns the code of err: CodeUnavailable if a store said it is
// unavailable, else the code of the first *Error in its chain,
// CodeClientGone for a cancelled context, and CodeInternal otherwise.
func CodeOf(err error) Code {
	if err == nil {
		return CodeInternal // as for any error that is not an *Error
	}
	if e, ok := err.(*Error); ok && e.Err == nil {
		return e.Code // the common case, without a walk of the chain
	}
	var e *Error
	switch {
	case errors.Is(err, store.ErrUnavailable):
		return CodeUnavailable
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, context.Canceled):
		return CodeClientGone
	}
	return CodeInternal
}

// Message returns the client-facing message of err, or "" for internal
// errors, whose detail must not be shown.
func Message(err error) string {
	if e, ok := err.(*Error); ok && e.Err == nil && e.Code != CodeInternal {
		return e.Msg
	}
	var e *Error
	switch {
	case errors.Is(err, store.ErrUnavailable):
		return "storage is unavailable for the moment; try again"
	case errors.As(err, &e) && e.Code != CodeInternal:
		return e.Msg
	}
	return ""
}

func noSuchCache(name string) *Error {
	return &Error{Code: CodeNotFound, Reason: ReasonCacheNotFound, Msg: fmt.Sprintf("there is no cache named %q", name)}
}

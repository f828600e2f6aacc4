// Package narverify owns the streaming verification of an uploaded NAR
// file: while the upload's bytes pass through to whoever stores them, it
// hashes and counts them, decompresses them as the URL's extension says,
// checks that the result is exactly one well-formed NAR, hashes and counts
// that, and enforces size and decompression-ratio limits. The last bytes of
// an upload are only handed on once all of that has succeeded, so a
// consumer never sees a complete stream of bad data.
package narverify

import (
	"context"
	"errors"
	"fmt"

	"github.com/larder-cache/larder/internal/compression"
)

// Limits bound an upload. A zero field means no limit.
type Limits struct {
	// MaxFileSize is the most bytes the upload, as sent, may have.
	MaxFileSize int64
	// MaxNarSize is the most bytes the decompressed NAR may have.
	MaxNarSize int64
	// MaxRatio is the highest NarSize/FileSize allowed once more than
	// RatioFloor bytes have been decompressed. FileSize is the declared
	// Options.Size when known, so the limit is exact and holds from the
	// first byte; otherwise it is the number of bytes received so far,
	// which is stricter while the upload is under way.
	MaxRatio float64
	// RatioFloor is how many decompressed bytes are allowed before MaxRatio
	// applies, so that small, very compressible NARs are accepted.
	RatioFloor int64
}

// Options describe an upload to verify.
type Options struct {
	// Ext is the compression extension of the upload's URL, the part after
	// ".nar": "" (an uncompressed NAR, or a gzip one: Nix gives gzip no
	// extension), ".xz", ".zst", ".bz2", ".lz4" or ".br". The content must
	// be of that method; for "" its magic bytes tell which of the two. Use
	// compression.Ext to turn a method name into its extension.
	Ext string
	// ExpectFileHash, if not nil, is the SHA-256 the upload must have, as
	// Nix names NAR files nar/<nix32 of the file's sha256>.nar<ext>.
	ExpectFileHash []byte
	// Size is the number of bytes the upload must have (a request's
	// Content-Length), or -1 if unknown.
	Size int64
	// Limits bound the upload.
	Limits Limits
	// Decoder bounds the memory of the decompressor: the largest window
	// or dictionary it accepts, and the budget it reserves that memory
	// from before allocating it (see compression.Open).
	Decoder compression.Options
	// Context, if not nil, ends a wait for room in Decoder.Budget early.
	Context context.Context
	// MD5 asks for the MD5 of the upload as sent too (Result.FileMD5).
	MD5 bool
}

// Result describes a verified upload.
type Result struct {
	// Compression is the method the upload was decompressed with, as named
	// in a narinfo's Compression field.
	Compression string
	// FileHash and FileSize are the SHA-256 and size of the upload as sent.
	FileHash [32]byte
	FileSize int64
	// FileMD5 is the MD5 of the upload as sent, if Options.MD5 asked.
	FileMD5 [16]byte
	// NarHash and NarSize are the SHA-256 and size of the decompressed NAR,
	// the NarHash and NarSize of its narinfo.
	NarHash [32]byte
	NarSize int64
}

// Kind classifies an *Error by what the caller should do about it.
type Kind int

const (
	// KindInvalid means the upload is not a valid NAR file of the named
	// compression: corrupt or mismatched compression, not a NAR, trailing
	// data, or a file hash other than the expected one.
	KindInvalid Kind = iota + 1
	// KindTooLarge means the upload exceeded one of the Limits.
	KindTooLarge
	// KindTruncated means the body ended before, or went on after, its
	// declared Size.
	KindTruncated
	// KindReadFailed means reading the upload failed, typically because
	// the client went away; Err is the read error.
	KindReadFailed
	// KindBusy means the decompressor found no room for its memory in
	// Options.Decoder.Budget within the budget's wait; Err is the
	// *compression.BusyError. The same upload may succeed later.
	KindBusy
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindTooLarge:
		return "too large"
	case KindTruncated:
		return "truncated"
	case KindReadFailed:
		return "read failed"
	case KindBusy:
		return "busy"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is the error of a failed verification.
type Error struct {
	// Kind classifies the failure.
	Kind Kind
	// Msg says in one line what was wrong.
	Msg string
	// Err is the underlying cause, if any.
	Err error
}

// Error returns Msg, followed by the cause if there is one.
func (e *Error) Error() string {
	if e.Err == nil {
		return e.Msg
	}
	return e.Msg + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func newError(kind Kind, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// ErrClosed is returned by Read after Close stopped an unfinished
// verification, and by Result for such a Reader.
var ErrClosed = errors.New("nar verification was closed before the upload was read to its end")

// ErrNotFinished is returned by Result while the upload has not been read
// to its end.
var ErrNotFinished = errors.New("nar verification has not finished: the upload was not read to its end")

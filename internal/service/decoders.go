package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/larder-cache/larder/internal/compression"
	"github.com/larder-cache/larder/internal/narverify"
	"github.com/larder-cache/larder/internal/nixkey"
)

// DefaultDecoderMemory is the decoder memory of all uploads at once when
// Limits.DecoderMemory is not set: room for three uploads with the largest
// window allowed by default, or about thirty of Nix's default xz.
const DefaultDecoderMemory = 256 << 20

// DefaultDecoderMemoryWait is how long an upload waits for decoder memory
// when Limits.DecoderMemoryWait is not set: less than the minute after
// which common S3 clients give up on a request that does not move, and far
// less than the five minutes of Nix.
const DefaultDecoderMemoryWait = 30 * time.Second

// newDecoderOptions returns what bounds the decompressors of uploads: the
// largest window, and one budget that all uploads reserve from.
func newDecoderOptions(l Limits) compression.Options {
	mem, wait := l.DecoderMemory, l.DecoderMemoryWait
	if mem <= 0 {
		mem = DefaultDecoderMemory
	}
	if wait <= 0 {
		wait = DefaultDecoderMemoryWait
	}
	return compression.Options{MaxWindow: l.MaxDecoderWindow, Budget: compression.NewBudget(mem, wait)}
}

// decoderError turns a verification that failed on the decompressor's
// memory into a service error that names the setting to change, or
// returns nil for other failures.
func decoderError(key nixkey.Key, ve *narverify.Error) error {
	var le *compression.LimitError
	var be *compression.BusyError
	switch {
	case errors.As(ve, &le) && le.Budget:
		return errorf(CodeTooLarge, "%s: it needs %s of decoder memory to decompress, more than decoder_memory (%s); raise decoder_memory",
			key, size(le.Need), size(le.Max))
	case errors.As(ve, &le):
		return errorf(CodeTooLarge, "%s: the %s data needs a %s of %s, more than max_decoder_window (%s); compress with a lower level or raise max_decoder_window",
			key, le.Method, le.What, size(le.Need), size(le.Max))
	case errors.As(ve, &be):
		return &Error{Code: CodeUnavailable, Err: be, Msg: fmt.Sprintf(
			"%s: uploads being decompressed held all of decoder_memory (%s) for decoder_memory_wait (%v); try again",
			key, size(be.Total), be.Wait)}
	}
	return nil
}

// size formats a number of bytes in MiB, or KiB below one MiB.
func size(n int64) string {
	switch {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n < 1<<20:
		return fmt.Sprintf("%d KiB", (n+1023)>>10)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// DecodeBody returns the content of an upload body sent compressed with
// the named method (an HTTP Content-Encoding), decompressed within the
// same bounds as verified NARs: the largest window and the decoder memory
// of all uploads. Close it once read, to give back its memory.
func (s *Service) DecodeBody(ctx context.Context, method string, body io.Reader) (io.ReadCloser, error) {
	rc, err := compression.Open(ctx, method, body, s.decoder)
	var le *compression.LimitError
	var be *compression.BusyError
	switch {
	case err == nil:
		return rc, nil
	case errors.As(err, &le):
		return nil, &Error{Code: CodeTooLarge, Err: err, Msg: fmt.Sprintf(
			"the body's %s encoding needs more memory to decode than max_decoder_window or decoder_memory allow: %v", method, le)}
	case errors.As(err, &be):
		return nil, &Error{Code: CodeUnavailable, Err: err, Msg: fmt.Sprintf(
			"uploads being decompressed held all of decoder_memory (%s) for decoder_memory_wait (%v); try again",
			size(be.Total), be.Wait)}
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return nil, &Error{Code: CodeClientGone, Msg: "gave up waiting for decoder memory", Err: err}
	}
	return nil, &Error{Code: CodeInvalid, Msg: err.Error(), Err: err}
}

package service

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/larder-cache/larder/internal/compression"
	"github.com/larder-cache/larder/internal/narverify"
	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/store"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// narExt returns the extension after ".nar" of a NAR file compressed with
// method, which is a method larder verified when the file arrived.
func narExt(method string) string {
	ext, _ := compression.Ext(method)
	return ext
}

// narBlobKey is where the NAR file with the given nix32 file hash is kept.
// Keys are content addressed, so identical uploads land on one blob.
func narBlobKey(fileHash string) string {
	return "nar/" + fileHash[:2] + "/" + fileHash
}

// PutNar stores an uploaded NAR file under key (nar/<filehash>.nar<ext>).
// body must yield exactly size bytes. The bytes are hashed, decompressed and
// checked to be one well-formed NAR while they stream to the blob store; they
// must hash to the file hash the key names. Nothing is stored unless every
// check passes. A file already stored (in any cache) is not stored again;
// it is only linked to this cache. PutNar reports whether the cache did not
// hold the file before.
func (s *Service) PutNar(ctx context.Context, c Cache, key nixkey.Key, body io.Reader, size int64) (bool, error) {
	if key.Kind != nixkey.Nar {
		return false, errorf(CodeInvalid, "%s is not a NAR key", key)
	}
	if _, err := compression.ForExt(key.Ext); err != nil {
		return false, errorf(CodeUnsupported, "%s: larder does not support that compression; use one of %s",
			key, strings.Join(compression.Names(), ", "))
	}
	if size < 0 {
		return false, errorf(CodeLengthRequired, "a NAR upload needs a Content-Length")
	}
	if size > s.limits.MaxUploadSize {
		return false, errorf(CodeTooLarge, "%s is %d bytes, more than the limit of %d", key, size, s.limits.MaxUploadSize)
	}
	if known, err := s.meta.CacheNar(ctx, c.entry.ID, key.Hash); err == nil {
		if err := s.consumeKnown(key, known, body, size); err != nil {
			return false, err
		}
		s.releaseHeld(ctx, c, key.Hash)
		return false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return false, internal(err, "look up %s", key)
	}
	nar, err := s.storeNar(ctx, key, body, size)
	if err != nil {
		return false, err
	}
	if _, err := s.meta.AddNar(ctx, c.entry.ID, nar, key.String()); err != nil {
		return false, s.writeFailed(ctx, c, err, "record %s in cache %s", key, c.entry.Name)
	}
	s.releaseHeld(ctx, c, key.Hash)
	return true, nil
}

// storeNar makes sure the NAR file named by key is in the blob store and has
// a record, verifying the body on the way.
func (s *Service) storeNar(ctx context.Context, key nixkey.Key, body io.Reader, size int64) (store.Nar, error) {
	if known, err := s.meta.GetNar(ctx, key.Hash); err == nil {
		if _, err := s.blobs.Stat(ctx, known.BlobKey); err == nil {
			return known, s.consumeKnown(key, known, body, size)
		} else if !errors.Is(err, store.ErrNotFound) {
			return store.Nar{}, internal(err, "stat blob of %s", key)
		}
		// The record outlived its blob: store the bytes again.
	} else if !errors.Is(err, store.ErrNotFound) {
		return store.Nar{}, internal(err, "look up %s", key)
	}
	want, err := nixbase32.DecodeString(key.Hash)
	if err != nil {
		return store.Nar{}, errorf(CodeInvalid, "%s: %v", key, err)
	}
	md := md5.New()
	v := narverify.NewReader(io.TeeReader(body, md), narverify.Options{
		Ext:            key.Ext,
		ExpectFileHash: want,
		Size:           size,
		Limits: narverify.Limits{
			MaxFileSize: s.limits.MaxUploadSize,
			MaxNarSize:  s.limits.MaxNarSize,
			MaxRatio:    s.limits.MaxRatio,
			RatioFloor:  s.limits.RatioFloor,
		},
		Decoder: s.decoder,
		Context: ctx,
	})
	defer v.Close()
	blobKey := narBlobKey(key.Hash)
	putErr := s.blobs.Put(ctx, blobKey, v, size)
	res, verr := v.Result()
	var ve *narverify.Error
	switch {
	case errors.As(verr, &ve):
		return store.Nar{}, verifyError(key, ve)
	case putErr != nil:
		return store.Nar{}, internal(putErr, "store %s", key)
	case verr != nil:
		return store.Nar{}, internal(verr, "verify %s", key)
	}
	return store.Nar{
		FileHash:    key.Hash,
		FileSize:    res.FileSize,
		Compression: res.Compression,
		NarHash:     nixbase32.EncodeToString(res.NarHash[:]),
		NarSize:     res.NarSize,
		MD5:         hex.EncodeToString(md.Sum(nil)),
		BlobKey:     blobKey,
	}, nil
}

// verifyError turns a failed verification into a service error.
func verifyError(key nixkey.Key, ve *narverify.Error) error {
	if err := decoderError(key, ve); err != nil {
		return err
	}
	msg := key.String() + ": " + ve.Msg
	switch ve.Kind {
	case narverify.KindTooLarge:
		return &Error{Code: CodeTooLarge, Msg: msg}
	case narverify.KindReadFailed:
		return &Error{Code: CodeClientGone, Msg: msg, Err: ve.Err}
	default: // invalid data, or a body shorter or longer than declared
		return &Error{Code: CodeInvalid, Msg: msg, Err: ve.Err}
	}
}

// consumeKnown reads the body of an upload whose file is already stored and
// checks that it is that file: same hash, same length, named with the
// extension of its compression. The stored file was fully verified when it
// arrived, so matching bytes need no decompression.
func (s *Service) consumeKnown(key nixkey.Key, known store.Nar, body io.Reader, size int64) error {
	if ext := narExt(known.Compression); ext != key.Ext {
		return errorf(CodeInvalid, "%s: that file is compressed with %s, so its name ends in .nar%s",
			key, known.Compression, ext)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(body, size+1))
	switch {
	case err != nil:
		return &Error{Code: CodeClientGone, Msg: fmt.Sprintf("%s: upload interrupted after %d of %d bytes", key, n, size), Err: err}
	case n < size:
		return errorf(CodeInvalid, "%s: body ended after %d of %d bytes", key, n, size)
	case n > size:
		return errorf(CodeInvalid, "%s: body is longer than its Content-Length (%d bytes)", key, size)
	}
	if got := nixbase32.EncodeToString(h.Sum(nil)); got != key.Hash {
		return errorf(CodeInvalid, "%s: the body's sha256 is %s, not the hash its name gives", key, got)
	}
	return nil
}

// Nar returns the record of the NAR file under key if the cache holds it.
// The key's extension must match the file's compression.
func (s *Service) Nar(ctx context.Context, c Cache, key nixkey.Key) (store.Nar, error) {
	n, err := s.meta.CacheNar(ctx, c.entry.ID, key.Hash)
	if errors.Is(err, store.ErrNotFound) {
		return store.Nar{}, errorf(CodeNotFound, "cache %s has no %s", c.entry.Name, key)
	}
	if err != nil {
		return store.Nar{}, internal(err, "look up %s", key)
	}
	if narExt(n.Compression) != key.Ext {
		return store.Nar{}, errorf(CodeNotFound, "cache %s has no %s (it holds that file as nar/%s.nar%s)",
			c.entry.Name, key, n.FileHash, narExt(n.Compression))
	}
	return n, nil
}

// ReadNar opens the bytes of a NAR file returned by Nar, from offset for at
// most length bytes (length < 0: to the end). It counts as a use of the
// paths the file serves in the cache, for garbage collection.
func (s *Service) ReadNar(ctx context.Context, c Cache, n store.Nar, offset, length int64) (io.ReadCloser, error) {
	r, err := s.blobs.Get(ctx, n.BlobKey, offset, length)
	if err != nil {
		return nil, internal(err, "open blob of nar %s", n.FileHash)
	}
	s.access.noteNar(c.entry.ID, n.FileHash)
	return r, nil
}

package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

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

// newNarBlobKey returns a key for a new copy of the NAR file with the
// given nix32 file hash. Every copy gets a key of its own, never used
// before, so that no deletion of an earlier copy (by a collection, or by a
// sweep of orphaned blobs) can reach the bytes of a later one.
func newNarBlobKey(fileHash string) string {
	return "nar/" + fileHash[:2] + "/" + fileHash + "-" + hex.EncodeToString(random(8))
}

// PutNar stores an uploaded NAR file under key (nar/<filehash>.nar<ext>).
// body must yield exactly size bytes. The bytes are hashed, decompressed and
// checked to be one well-formed NAR while they stream to the blob store; they
// must hash to the file hash the key names. Nothing is stored unless every
// check passes. A file already stored (in any cache) is not stored again;
// it is only linked to this cache. PutNar reports whether the cache did not
// hold the file before.
//
// While the body of a file already stored is read, the upload claims the
// file, so that no collection deletes it in the meantime; the link is made
// only if the file is still there. So a NAR upload that succeeds has its
// bytes in the blob store, safe from collection for as long as the cache
// links it.
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
	defer s.uploads.start()()
	known, err := s.meta.CacheNar(ctx, c.entry.ID, key.Hash)
	if err == nil && !known.Missing {
		// The cache holds the file: the body need only be the same bytes.
		if held, err := s.claimed(ctx, key, func() error { return s.consumeKnown(key, known, body, size) }); held {
			if err == nil {
				err = s.linkClaimed(ctx, c, key)
			}
			if err != nil {
				return false, err
			}
			s.releaseHeld(ctx, c, key.Hash)
			return false, nil
		} else if err != nil {
			return false, err
		}
		// Gone since it was looked up: store it again.
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, internal(err, "look up %s", key)
	}
	if err := s.storeNar(ctx, c, key, body, size, nil); err != nil {
		return false, err
	}
	s.releaseHeld(ctx, c, key.Hash)
	return true, nil
}

// storeNar verifies the body of a NAR file new to the cache and links the
// file to the cache, storing its bytes unless another cache holds them.
// The body is checked in full either way, so that the answer does not tell
// whether some other cache holds the file. check, if set, is given the
// verified file's record before anything is linked, and its error stops
// the link (a NAR file pulled from an upstream must be the one its signed
// narinfo describes).
func (s *Service) storeNar(ctx context.Context, c Cache, key nixkey.Key, body io.Reader, size int64, check func(store.Nar) error) error {
	if check == nil {
		check = func(store.Nar) error { return nil }
	}
	held, err := s.claimed(ctx, key, func() error {
		nar, err := s.verifyNar(ctx, key, body, size, func(r io.Reader) error {
			_, err := io.Copy(io.Discard, r)
			return err
		})
		if err == nil {
			err = check(nar)
		}
		return err
	})
	if held {
		if err != nil {
			return err
		}
		return s.linkClaimed(ctx, c, key)
	}
	if err != nil {
		return err
	}
	blobKey := newNarBlobKey(key.Hash)
	nar, err := s.verifyNar(ctx, key, body, size, func(r io.Reader) error {
		return s.blobs.Put(ctx, blobKey, r, size)
	})
	if err != nil {
		return err
	}
	if err := check(nar); err != nil {
		s.deleteBlob(context.WithoutCancel(ctx), blobKey)
		return err
	}
	nar.BlobKey = blobKey
	stored, err := s.meta.AddNar(ctx, c.entry.ID, nar, key.String())
	if err != nil || stored.BlobKey != blobKey {
		// Not recorded, or another upload's copy was first: this one is
		// not needed.
		s.deleteBlob(context.WithoutCancel(ctx), blobKey)
	}
	if err != nil {
		return s.writeFailed(ctx, c, err, "record %s in cache %s", key, c.entry.Name)
	}
	if stored.BlobKey == blobKey {
		s.queuePack(key.Hash)
	}
	return nil
}

// verifyNar streams body through the NAR verifier into sink, which must
// read it to the end, and returns the record of the verified file (without
// a BlobKey). Nothing it returns an error for may be kept.
func (s *Service) verifyNar(ctx context.Context, key nixkey.Key, body io.Reader, size int64, sink func(io.Reader) error) (store.Nar, error) {
	want, err := nixbase32.DecodeString(key.Hash)
	if err != nil {
		return store.Nar{}, errorf(CodeInvalid, "%s: %v", key, err)
	}
	v := narverify.NewReader(body, narverify.Options{
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
		MD5:     true,
	})
	defer v.Close()
	putErr := sink(v)
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
		MD5:         hex.EncodeToString(res.FileMD5[:]),
	}, nil
}

// claimTTL is how long one claim of an upload keeps the file it names from
// collection (see store.NarStore.ClaimNar); an upload renews it four times
// as often, so that a few failed renewals in a row do no harm.
const claimTTL = time.Minute

// claimed claims the file named by key for an upload (see
// store.NarStore.ClaimNar) and, if it is stored, runs fn, which reads the
// upload's body, while it renews the claim, so that no collection, whatever
// its grace period, takes the file for unused however long the body takes.
// It reports whether the file is stored, with fn's error, or the error of
// the claim.
func (s *Service) claimed(ctx context.Context, key nixkey.Key, fn func() error) (bool, error) {
	if _, err := s.meta.ClaimNar(ctx, key.Hash, claimTTL); errors.Is(err, store.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, internal(err, "claim %s", key)
	}
	stop := renewEvery(ctx, claimTTL/4, func(ctx context.Context) {
		if _, err := s.meta.ClaimNar(ctx, key.Hash, claimTTL); err != nil {
			s.log.Warn("renew the claim of an uploaded NAR", "nar", key.String(), "err", err)
		}
	})
	err := fn()
	stop()
	return true, err
}

// linkClaimed links a file whose upload has claimed it to the cache. If
// the file is gone all the same (its claim could not be renewed in time),
// nothing is linked and the client is asked to upload it again.
func (s *Service) linkClaimed(ctx context.Context, c Cache, key nixkey.Key) error {
	_, err := s.meta.LinkNar(ctx, c.entry.ID, key.Hash, key.String())
	if errors.Is(err, store.ErrNotFound) {
		if _, cerr := s.meta.GetCache(ctx, c.entry.Name); errors.Is(cerr, store.ErrNotFound) {
			return s.writeFailed(ctx, c, err, "link %s", key)
		}
		s.log.Error("a NAR file was collected while it was uploaded again; asking for it once more", "cache", c.entry.Name, "nar", key.String())
		return &Error{Code: CodeUnavailable, Msg: fmt.Sprintf("%s was removed from storage while it was uploaded; upload it again", key)}
	}
	if err != nil {
		return s.writeFailed(ctx, c, err, "link %s to cache %s", key, c.entry.Name)
	}
	return nil
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

// Nar returns the NAR file under key if the cache holds it. The key's
// extension must match the file's compression. A NAR stored as chunks is
// served under two keys: the key larder publishes for it, that of the
// zstd file its chunks' frames make, and the key it was uploaded under,
// for clients that still know that one (see NarFile).
func (s *Service) Nar(ctx context.Context, c Cache, key nixkey.Key) (NarFile, error) {
	n, err := s.meta.CacheNar(ctx, c.entry.ID, key.Hash)
	if errors.Is(err, store.ErrNotFound) && key.Ext == packedExt {
		if n, err = s.meta.CachePackedNar(ctx, c.entry.ID, key.Hash); err == nil {
			return NarFile{Nar: n, Key: key, Size: n.PackedSize, ETag: n.PackedHash, form: formFrames}, nil
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return NarFile{}, errorf(CodeNotFound, "cache %s has no %s", c.entry.Name, key)
	}
	if err != nil {
		return NarFile{}, internal(err, "look up %s", key)
	}
	if narExt(n.Compression) != key.Ext {
		return NarFile{}, errorf(CodeNotFound, "cache %s has no %s (it holds that file as nar/%s.nar%s)",
			c.entry.Name, key, n.FileHash, narExt(n.Compression))
	}
	if n.Missing {
		return NarFile{}, errorf(CodeNotFound, "cache %s has no %s (its bytes were lost; upload it again)", c.entry.Name, key)
	}
	return uploadedFile(n, key), nil
}

// ReadNar opens the bytes of a NAR file returned by Nar, from offset for at
// most length bytes (length < 0: to the end). It counts as a use of the
// paths the file serves in the cache, for garbage collection.
func (s *Service) ReadNar(ctx context.Context, c Cache, f NarFile, offset, length int64) (io.ReadCloser, error) {
	if f.form != formWhole {
		r, err := s.readPacked(ctx, f, offset, length)
		if err == nil {
			s.access.noteNar(c.entry.ID, f.FileHash)
		}
		return r, err
	}
	r, err := s.blobs.Get(ctx, f.BlobKey, offset, length)
	if errors.Is(err, store.ErrNotFound) {
		// Chunked since it was looked up, perhaps: then read it so, if it
		// is still the bytes promised.
		if g, gerr := s.Nar(ctx, c, f.Key); gerr == nil && g.form != formWhole {
			if g.Size == f.Size && g.ETag == f.ETag {
				return s.ReadNar(ctx, c, g, offset, length)
			}
			return nil, errorf(CodeUnavailable, "%s was stored anew while it was read; try again", f.Key)
		}
		return nil, s.narLost(ctx, c, f.Nar)
	}
	if err != nil {
		return nil, internal(err, "open blob of nar %s", f.FileHash)
	}
	s.access.noteNar(c.entry.ID, f.FileHash)
	return r, nil
}

// narLost withdraws a NAR file whose blob is missing: it is marked Missing,
// so that neither it nor the narinfos that point at it are served, in any
// cache, until it is uploaded again (which replaces it) or larder verify
// finds it back. It returns the error to answer the read with.
func (s *Service) narLost(ctx context.Context, c Cache, n store.Nar) error {
	s.log.Error("a NAR file is missing from the blob store: withdrawn with its narinfos until it is uploaded again; run larder verify",
		"cache", c.entry.Name, "file_hash", n.FileHash, "blob_key", n.BlobKey)
	if err := s.meta.SetNarMissing(context.WithoutCancel(ctx), n.FileHash, n.BlobKey, true); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("mark a lost NAR file missing", "file_hash", n.FileHash, "err", err)
	}
	s.rendered.dropAll() // narinfos of other caches may point at it too
	return errorf(CodeNotFound, "cache %s has no nar/%s.nar%s (its bytes were lost; upload it again)",
		c.entry.Name, n.FileHash, narExt(n.Compression))
}

package service

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/store"
)

// The S3 API sees a cache as a bucket of objects. Keys in the Nix layout
// (nix-cache-info, narinfos, NAR files, listings, logs, realisations,
// debuginfo) go through the same ingest as the Nix protocol; any other key
// is a plain object, kept with its content type and user metadata.
//
// Over S3 a key reads back as it was written: mirroring tools compare the
// size and ETag of what they uploaded with what a HEAD returns, and delete
// or re-upload what differs. So a narinfo or nix-cache-info written over S3
// is also kept as written, and that is what S3 reads, listings and ETags
// show, while the Nix protocol serves the verified narinfo signed by the
// cache, and the cache's own nix-cache-info. Keys written only through the
// Nix protocol read back over S3 as the Nix protocol serves them.

// ObjectInfo describes an object of a cache.
type ObjectInfo struct {
	Key         string
	Size        int64
	ETag        string // unquoted
	Modified    time.Time
	ContentType string
	Metadata    map[string]string

	inline  []byte                                                                 // the body, for objects rendered in memory
	blobKey string                                                                 // where the body is, otherwise
	open    func(ctx context.Context, offset, length int64) (io.ReadCloser, error) // or how to read it
	cacheID int64
}

// ObjectMeta is what an uploader says about an object.
type ObjectMeta struct {
	ContentType string
	Metadata    map[string]string
}

// MaxKeyLen is the longest object key, as in S3.
const MaxKeyLen = 1024

func checkObjectKey(key string) error {
	switch {
	case key == "" || len(key) > MaxKeyLen:
		return errorf(CodeInvalid, "object keys are 1 to %d bytes long", MaxKeyLen)
	case !utf8.ValidString(key):
		return errorf(CodeInvalid, "object keys must be UTF-8")
	}
	return nil
}

// StatObject describes the object under key.
func (s *Service) StatObject(ctx context.Context, c Cache, key string) (_ ObjectInfo, err error) {
	if err := checkObjectKey(key); err != nil {
		return ObjectInfo{}, err
	}
	k, perr := nixkey.Parse(key)
	if perr != nil {
		return s.plainObject(ctx, c, key)
	}
	if k.Kind == nixkey.NarInfo {
		defer func() {
			if err == nil {
				s.access.note(c.entry.ID, k.Hash) // a read, for garbage collection
			}
		}()
	}
	if k.Kind == nixkey.CacheInfo || k.Kind == nixkey.NarInfo {
		if o, err := s.meta.GetObject(ctx, c.entry.ID, key); err == nil {
			return objectInfo(o), nil // as written over S3
		} else if !errors.Is(err, store.ErrNotFound) {
			return ObjectInfo{}, internal(err, "look up %s", key)
		}
	}
	switch k.Kind {
	case nixkey.CacheInfo:
		return inlineObject(key, c.CacheInfo(), "text/x-nix-cache-info", c.entry.CreatedAt), nil
	case nixkey.NarInfo:
		if !s.index.Has(c.entry.ID, k.Hash) {
			return ObjectInfo{}, &Error{Code: CodeNotFound, Reason: ReasonKeyNotFound,
				Msg: fmt.Sprintf("cache %s has no %s", c.entry.Name, key)}
		}
		body, rec, _, err := s.narInfo(ctx, c, k.Hash)
		if err != nil {
			return ObjectInfo{}, noSuchKey(err, key)
		}
		return inlineObject(key, body, "text/x-nix-narinfo", rec.CreatedAt), nil
	case nixkey.Nar:
		n, err := s.Nar(ctx, c, k)
		if err != nil {
			return ObjectInfo{}, noSuchKey(err, key)
		}
		etag := n.MD5
		if etag == "" || n.form != formWhole { // recorded before larder kept MD5s, or not as uploaded
			etag = n.ETag
		}
		o := ObjectInfo{Key: key, Size: n.Size, ETag: etag, Modified: n.CreatedAt, ContentType: "application/x-nix-nar"}
		o.open = func(ctx context.Context, offset, length int64) (io.ReadCloser, error) {
			return s.ReadNar(ctx, c, n, offset, length)
		}
		return o, nil
	default:
		f, err := s.File(ctx, c, k)
		if err != nil {
			return ObjectInfo{}, noSuchKey(err, key)
		}
		return objectInfo(f), nil
	}
}

func (s *Service) plainObject(ctx context.Context, c Cache, key string) (ObjectInfo, error) {
	o, err := s.meta.GetObject(ctx, c.entry.ID, key)
	if errors.Is(err, store.ErrNotFound) {
		return ObjectInfo{}, &Error{Code: CodeNotFound, Reason: ReasonKeyNotFound, Msg: fmt.Sprintf("cache %s has no object %q", c.entry.Name, key)}
	}
	if err != nil {
		return ObjectInfo{}, internal(err, "look up object %q", key)
	}
	return objectInfo(o), nil
}

func objectInfo(o store.Object) ObjectInfo {
	return ObjectInfo{Key: o.Key, Size: o.Size, ETag: o.ETag, Modified: o.CreatedAt,
		ContentType: o.ContentType, Metadata: o.Metadata, blobKey: o.BlobKey, cacheID: o.CacheID}
}

func inlineObject(key string, body []byte, ctype string, modified time.Time) ObjectInfo {
	sum := md5.Sum(body)
	return ObjectInfo{Key: key, Size: int64(len(body)), ETag: hex.EncodeToString(sum[:]),
		Modified: modified, ContentType: ctype, inline: body}
}

// noSuchKey marks a not-found error as a missing key.
func noSuchKey(err error, key string) error {
	if CodeOf(err) == CodeNotFound {
		return &Error{Code: CodeNotFound, Reason: ReasonKeyNotFound, Msg: Message(err)}
	}
	return err
}

// ReadObject opens the body of an object described by StatObject, from
// offset for at most length bytes (length < 0: to the end).
func (s *Service) ReadObject(ctx context.Context, o ObjectInfo, offset, length int64) (io.ReadCloser, error) {
	if o.inline != nil {
		end := int64(len(o.inline))
		if length >= 0 {
			end = min(end, offset+length)
		}
		offset = min(offset, end)
		return io.NopCloser(bytes.NewReader(o.inline[offset:end])), nil
	}
	if o.open != nil {
		return o.open(ctx, offset, length)
	}
	r, err := s.blobs.Get(ctx, o.blobKey, offset, length)
	if err != nil {
		return nil, s.blobFailed(err, o.cacheID, o.Key)
	}
	return r, nil
}

// PutObject stores an object of size bytes (-1: unknown) under key. A key in
// the Nix layout is verified as the Nix protocol verifies it; a narinfo
// whose NAR has not arrived yet is held until it does. The returned ETag is
// the MD5 of the bytes received.
func (s *Service) PutObject(ctx context.Context, c Cache, key string, body io.Reader, size int64, meta ObjectMeta) (ObjectInfo, error) {
	if err := checkObjectKey(key); err != nil {
		return ObjectInfo{}, err
	}
	k, err := nixkey.Parse(key)
	if err != nil {
		return s.putPlain(ctx, c, key, body, size, meta)
	}
	if k.Kind == nixkey.Nar {
		if _, err := s.PutNar(ctx, c, k, body, size); err != nil {
			return ObjectInfo{}, err
		}
		return s.StatObject(ctx, c, key)
	}
	limit := s.limits.MaxFileSize
	if k.Kind == nixkey.NarInfo {
		limit = s.limits.MaxNarInfoSize
	}
	data, err := readAll(body, size, limit)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("%s: %w", key, err)
	}
	switch k.Kind {
	case nixkey.CacheInfo:
		if err := s.PutCacheInfo(c, data); err != nil {
			return ObjectInfo{}, err
		}
		return s.keepAsWritten(ctx, c, key, data, meta)
	case nixkey.NarInfo:
		heldFor, err := s.putNarInfoOrHold(ctx, c, k, data)
		if err != nil {
			return ObjectInfo{}, err
		}
		o, err := s.keepAsWritten(ctx, c, key, data, meta)
		if err != nil {
			return ObjectInfo{}, err
		}
		// A held narinfo may have been dropped, by its NAR arriving and not
		// matching, before the copy above was kept: then drop that too.
		if heldFor != "" {
			if err := s.stillThere(ctx, c, k.Hash, heldFor); err != nil {
				s.dropKept(ctx, c.entry.ID, k.Hash)
				return ObjectInfo{}, err
			}
		}
		return o, nil
	default:
		if err := s.PutFile(ctx, c, k, data); err != nil {
			return ObjectInfo{}, err
		}
		return s.StatObject(ctx, c, key)
	}
}

// stillThere checks that a narinfo held for the NAR with file hash
// fileHash is still held or has been committed.
func (s *Service) stillThere(ctx context.Context, c Cache, hash, fileHash string) error {
	held, err := s.meta.HeldFor(ctx, c.entry.ID, fileHash)
	if err != nil {
		return internal(err, "look up held narinfos")
	}
	for _, h := range held {
		if h.Hash == hash {
			return nil
		}
	}
	if _, _, err := s.meta.GetNarInfo(ctx, c.entry.ID, hash); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return internal(err, "look up %s.narinfo", hash)
	}
	return errorf(CodeInvalid, "%s.narinfo does not match its NAR, which arrived meanwhile (see the server log)", hash)
}

// keepAsWritten records a narinfo or nix-cache-info as an S3 client wrote
// it, for S3 reads.
func (s *Service) keepAsWritten(ctx context.Context, c Cache, key string, data []byte, meta ObjectMeta) (ObjectInfo, error) {
	o, err := s.storeSmall(ctx, key, data)
	if err != nil {
		return ObjectInfo{}, err
	}
	o.CacheID, o.ContentType, o.Metadata = c.entry.ID, meta.ContentType, meta.Metadata
	if err := s.recordObject(ctx, c, o); err != nil {
		return ObjectInfo{}, err
	}
	return objectInfo(o), nil
}

// readAll reads a body of the declared size (or, if unknown, up to limit).
func readAll(r io.Reader, size, limit int64) ([]byte, error) {
	if size > limit {
		return nil, errorf(CodeTooLarge, "the body is %d bytes, more than the limit of %d", size, limit)
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	switch {
	case err != nil:
		return nil, &Error{Code: CodeClientGone, Msg: "the upload was interrupted", Err: err}
	case int64(len(data)) > limit:
		return nil, errorf(CodeTooLarge, "the body is more than the limit of %d bytes", limit)
	case size >= 0 && int64(len(data)) != size:
		return nil, errorf(CodeInvalid, "the body has %d bytes, not the %d declared", len(data), size)
	}
	return data, nil
}

// putPlain stores an object outside the Nix layout.
func (s *Service) putPlain(ctx context.Context, c Cache, key string, body io.Reader, size int64, meta ObjectMeta) (ObjectInfo, error) {
	if size > s.limits.MaxUploadSize {
		return ObjectInfo{}, errorf(CodeTooLarge, "%q is %d bytes, more than the limit of %d", key, size, s.limits.MaxUploadSize)
	}
	blobKey := "object/" + hex.EncodeToString(random(2)) + "/" + hex.EncodeToString(random(16))
	sh, md := sha256.New(), md5.New()
	cr := &countReader{r: io.TeeReader(io.TeeReader(body, sh), md), max: s.limits.MaxUploadSize}
	if err := s.blobs.Put(ctx, blobKey, cr, size); err != nil {
		return ObjectInfo{}, cr.putFailed(err, size, fmt.Sprintf("%q", key))
	}
	o := store.Object{
		CacheID: c.entry.ID, Key: key, ContentType: meta.ContentType, Size: cr.n,
		SHA256: hex.EncodeToString(sh.Sum(nil)), MD5: hex.EncodeToString(md.Sum(nil)),
		Metadata: meta.Metadata, BlobKey: blobKey,
	}
	o.ETag = o.MD5
	if err := s.recordObject(ctx, c, o); err != nil {
		return ObjectInfo{}, err
	}
	return objectInfo(o), nil
}

// countReader counts the bytes read and stops past max.
type countReader struct {
	r       io.Reader
	n       int64
	max     int64
	err     error // set when the body passed max
	readErr error // set when reading the body failed
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		c.err = errorf(CodeTooLarge, "the body is more than the limit of %d bytes", c.max)
		return n, c.err
	}
	if err != nil && err != io.EOF {
		c.readErr = err
	}
	return n, err
}

// putFailed explains why storing the body of an upload (what) of the
// declared size failed with err: it passed the limit; reading it failed,
// which keeps the reader's error (a front end's verification of the
// payload, or the client going away) in the chain; it had another length;
// or the blob store failed.
func (c *countReader) putFailed(err error, size int64, what string) error {
	switch {
	case c.err != nil:
		return c.err
	case c.readErr != nil:
		return &Error{Code: CodeClientGone, Msg: what + ": the upload could not be read", Err: c.readErr}
	case size >= 0 && c.n != size:
		return errorf(CodeInvalid, "%s: the body has %d bytes, not the %d declared", what, c.n, size)
	}
	return internal(err, "store %s", what)
}

// DeleteObject deletes the object under key. Deleting a narinfo removes the
// path; deleting a NAR file also withdraws every narinfo of the cache that
// points at it, so the cache never serves a narinfo whose NAR is gone.
// nix-cache-info cannot be deleted (the cache keeps serving its own).
// Deleting a key that does not exist is not an error.
func (s *Service) DeleteObject(ctx context.Context, c Cache, key string) error {
	if err := checkObjectKey(key); err != nil {
		return err
	}
	id := c.entry.ID
	var err error
	k, perr := nixkey.Parse(key)
	switch {
	case perr != nil:
		err = s.meta.DeleteObject(ctx, id, key)
	case k.Kind == nixkey.CacheInfo:
		err = s.meta.DeleteObject(ctx, id, key) // the cache keeps serving its own
	case k.Kind == nixkey.NarInfo:
		err = s.forgetNarInfo(ctx, c, k.Hash)
	case k.Kind == nixkey.Nar:
		// Only the key the file is held under names it: nar/H.nar is not
		// nar/H.nar.xz.
		if _, nerr := s.Nar(ctx, c, k); CodeOf(nerr) == CodeNotFound {
			return nil
		} else if nerr != nil {
			return nerr
		}
		var gone []string
		gone, err = s.meta.UnlinkNar(ctx, id, k.Hash)
		for _, h := range gone {
			if ferr := s.forgetNarInfo(ctx, c, h); ferr != nil {
				err = ferr
			}
		}
		if len(gone) > 0 {
			s.log.Info("NAR deleted: withdrew its narinfos", "cache", c.entry.Name, "nar", key, "narinfos", len(gone))
		}
	default:
		err = s.meta.DeleteObject(ctx, id, key)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return internal(err, "delete %q", key)
	}
	return nil
}

// forgetNarInfo removes every trace of the narinfo of hash in the cache:
// the narinfo, a held upload of it, and the copy kept as written.
func (s *Service) forgetNarInfo(ctx context.Context, c Cache, hash string) error {
	id := c.entry.ID
	defer s.rendered.forget(id, hash)
	err := errors.Join(
		s.meta.ReleaseHeld(ctx, id, hash),
		ignoreNotFound(s.meta.DeleteNarInfo(ctx, id, hash)),
		ignoreNotFound(s.meta.DeleteObject(ctx, id, hash+".narinfo")),
	)
	if err != nil {
		return internal(err, "delete %s.narinfo", hash)
	}
	return nil
}

func ignoreNotFound(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// ListObjects returns up to limit objects of the cache, ordered by key,
// whose keys start with prefix and sort after after. The cache's own
// nix-cache-info is not listed (it is served to whoever asks for it): a
// new cache lists as an empty bucket, so that mirroring tools upload
// theirs rather than refuse to overwrite it.
func (s *Service) ListObjects(ctx context.Context, c Cache, prefix, after string, limit int) ([]ObjectInfo, error) {
	entries, err := s.meta.ListKeys(ctx, c.entry.ID, prefix, after, limit)
	if err != nil {
		return nil, internal(err, "list cache %s", c.entry.Name)
	}
	out := make([]ObjectInfo, 0, len(entries))
	for i, e := range entries {
		if i+1 < len(entries) && entries[i+1].Key == e.Key {
			continue // a narinfo also kept as written: list that, which comes next
		}
		o, err := s.listed(ctx, c, e)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// listed describes a listed entry; a narinfo is rendered to know its size.
func (s *Service) listed(ctx context.Context, c Cache, e store.Entry) (ObjectInfo, error) {
	if e.Kind == store.EntryNarInfo {
		body, _, _, err := s.narInfo(ctx, c, e.Hash)
		if err == nil {
			o := inlineObject(e.Key, body, "text/x-nix-narinfo", e.Modified)
			o.inline = nil
			return o, nil
		}
		if CodeOf(err) != CodeNotFound {
			return ObjectInfo{}, err
		}
	}
	return ObjectInfo{Key: e.Key, Size: e.Size, ETag: e.ETag, Modified: e.Modified}, nil
}

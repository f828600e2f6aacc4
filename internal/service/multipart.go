package service

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/store"
)

// Multipart uploads keep each part as its own blob until the upload is
// completed; completing streams the parts, in order, through the same
// ingest as a single upload, so a NAR file sent in parts is verified the
// same way and stored once.

// MinPartSize is the smallest part but the last, as in S3.
const MinPartSize = 5 << 20

// MaxParts is the highest part number, as in S3.
const MaxParts = 10000

// CompletedPart names a part in a request to complete an upload.
type CompletedPart struct {
	Number int
	ETag   string // unquoted
}

func noSuchUpload(id string) *Error {
	return &Error{Code: CodeNotFound, Reason: ReasonUploadNotFound, Msg: fmt.Sprintf("there is no upload %q in progress", id)}
}

// CreateUpload starts a multipart upload of key and returns its ID.
func (s *Service) CreateUpload(ctx context.Context, c Cache, key string, meta ObjectMeta) (string, error) {
	if err := checkObjectKey(key); err != nil {
		return "", err
	}
	id := hex.EncodeToString(random(16))
	err := s.meta.CreateUpload(ctx, store.Upload{ID: id, CacheID: c.entry.ID, Key: key,
		ContentType: meta.ContentType, Metadata: meta.Metadata})
	if err != nil {
		return "", s.writeFailed(ctx, c, err, "create upload of %q", key)
	}
	return id, nil
}

// upload returns the upload with the given ID if it is one of key in c.
func (s *Service) upload(ctx context.Context, c Cache, key, id string) (store.Upload, error) {
	u, err := s.meta.GetUpload(ctx, id)
	if errors.Is(err, store.ErrNotFound) || err == nil && (u.CacheID != c.entry.ID || u.Key != key) {
		return store.Upload{}, noSuchUpload(id)
	}
	if err != nil {
		return store.Upload{}, internal(err, "look up upload %s", id)
	}
	return u, nil
}

// UploadPart stores part number n (1 to MaxParts) of an upload and returns
// its ETag, the MD5 of its bytes. Uploading a number again replaces it.
func (s *Service) UploadPart(ctx context.Context, c Cache, key, id string, n int, body io.Reader, size int64) (string, error) {
	if n < 1 || n > MaxParts {
		return "", errorf(CodeInvalid, "part number %d is not between 1 and %d", n, MaxParts)
	}
	if _, err := s.upload(ctx, c, key, id); err != nil {
		return "", err
	}
	blobKey := "upload/" + id + "-" + strconv.Itoa(n) + "-" + hex.EncodeToString(random(8))
	md := md5.New()
	cr := &countReader{r: io.TeeReader(body, md), max: s.limits.MaxUploadSize}
	if err := s.blobs.Put(ctx, blobKey, cr, size); err != nil {
		return "", cr.putFailed(err, size, fmt.Sprintf("part %d of upload %s", n, id))
	}
	etag := hex.EncodeToString(md.Sum(nil))
	old, err := s.meta.PutPart(ctx, store.Part{UploadID: id, Number: n, Size: cr.n, MD5: etag, BlobKey: blobKey})
	if err != nil {
		_ = s.blobs.Delete(ctx, blobKey)
		if errors.Is(err, store.ErrNotFound) {
			return "", noSuchUpload(id)
		}
		return "", internal(err, "record part %d of upload %s", n, id)
	}
	if old != nil {
		s.deleteBlob(ctx, old.BlobKey)
	}
	return etag, nil
}

// CompleteUpload assembles an upload from the listed parts, which must be
// in ascending order, name uploaded parts with their ETags, and be at least
// MinPartSize each but the last. The assembled object is stored as
// PutObject stores it; its ETag is the MD5 of the parts' MD5s, "-" and the
// number of parts.
func (s *Service) CompleteUpload(ctx context.Context, c Cache, key, id string, parts []CompletedPart) (ObjectInfo, error) {
	u, err := s.upload(ctx, c, key, id)
	if err != nil {
		return ObjectInfo{}, err
	}
	stored, err := s.meta.ListParts(ctx, id)
	if err != nil {
		return ObjectInfo{}, internal(err, "list parts of upload %s", id)
	}
	chosen, err := chooseParts(stored, parts)
	if err != nil {
		return ObjectInfo{}, err
	}
	var total int64
	sums := md5.New()
	for _, p := range chosen {
		total += p.Size
		raw, _ := hex.DecodeString(p.MD5)
		sums.Write(raw)
	}
	etag := hex.EncodeToString(sums.Sum(nil)) + "-" + strconv.Itoa(len(chosen))
	if !isNixKey(key) {
		info, err := s.composePlain(ctx, c, key, u, chosen, total, etag)
		if !errors.Is(err, errors.ErrUnsupported) {
			if err == nil {
				s.dropUpload(ctx, id)
			}
			return info, err
		}
	}
	// Files in the Nix layout are verified as they are read back; so is a
	// plain object on a blob store that cannot compose.
	body := &partsReader{ctx: ctx, s: s, parts: chosen}
	defer body.Close()
	info, err := s.PutObject(ctx, c, key, body, total, ObjectMeta{ContentType: u.ContentType, Metadata: u.Metadata})
	if err != nil {
		return ObjectInfo{}, err
	}
	if !isNixKey(key) {
		if err := s.setETag(ctx, c, key, etag); err != nil {
			return ObjectInfo{}, err
		}
	}
	info.ETag = etag
	s.dropUpload(ctx, id)
	return info, nil
}

// chooseParts checks the parts named by a completion request against the
// stored ones and returns them in order.
func chooseParts(stored []store.Part, parts []CompletedPart) ([]store.Part, error) {
	if len(parts) == 0 {
		return nil, &Error{Code: CodeInvalid, Reason: ReasonNoParts, Msg: "the request names no parts"}
	}
	byNumber := make(map[int]store.Part, len(stored))
	for _, p := range stored {
		byNumber[p.Number] = p
	}
	chosen := make([]store.Part, 0, len(parts))
	for i, want := range parts {
		if i > 0 && want.Number <= parts[i-1].Number {
			return nil, &Error{Code: CodeInvalid, Reason: ReasonPartOrder,
				Msg: "the list of parts was not in ascending order; parts must be ordered by part number"}
		}
		p, ok := byNumber[want.Number]
		if !ok || !strings.EqualFold(strings.Trim(want.ETag, `"`), p.MD5) {
			return nil, &Error{Code: CodeInvalid, Reason: ReasonPartNotFound,
				Msg: fmt.Sprintf("part %d was not uploaded, or its ETag is not %s", want.Number, want.ETag)}
		}
		if i < len(parts)-1 && p.Size < MinPartSize {
			return nil, &Error{Code: CodeInvalid, Reason: ReasonPartTooSmall,
				Msg: fmt.Sprintf("part %d is %d bytes; every part but the last must be at least %d", p.Number, p.Size, MinPartSize)}
		}
		chosen = append(chosen, p)
	}
	return chosen, nil
}

// isNixKey reports whether key is in the Nix layout.
func isNixKey(key string) bool {
	_, err := nixkey.Parse(key)
	return err == nil
}

// setETag records the multipart ETag of a plain object.
func (s *Service) setETag(ctx context.Context, c Cache, key, etag string) error {
	o, err := s.meta.GetObject(ctx, c.entry.ID, key)
	if err != nil {
		return internal(err, "read back object %q", key)
	}
	o.ETag = etag
	if err := s.meta.PutObject(ctx, o); err != nil {
		return internal(err, "record ETag of %q", key)
	}
	return nil
}

// AbortUpload abandons an upload and deletes its parts.
func (s *Service) AbortUpload(ctx context.Context, c Cache, key, id string) error {
	if _, err := s.upload(ctx, c, key, id); err != nil {
		return err
	}
	s.dropUpload(ctx, id)
	return nil
}

func (s *Service) dropUpload(ctx context.Context, id string) {
	parts, err := s.meta.DeleteUpload(ctx, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("delete upload", "upload", id, "err", err)
	}
	for _, p := range parts {
		s.deleteBlob(ctx, p.BlobKey)
	}
}

func (s *Service) deleteBlob(ctx context.Context, key string) {
	if err := s.blobs.Delete(ctx, key); err != nil {
		s.log.Error("delete blob", "key", key, "err", err)
	}
}

// ListParts returns the upload's parts, ordered by number.
func (s *Service) ListParts(ctx context.Context, c Cache, key, id string) (store.Upload, []store.Part, error) {
	u, err := s.upload(ctx, c, key, id)
	if err != nil {
		return store.Upload{}, nil, err
	}
	parts, err := s.meta.ListParts(ctx, id)
	if err != nil {
		return store.Upload{}, nil, internal(err, "list parts of upload %s", id)
	}
	return u, parts, nil
}

// ListUploads returns the uploads in progress in the cache whose keys start
// with prefix.
func (s *Service) ListUploads(ctx context.Context, c Cache, prefix string) ([]store.Upload, error) {
	list, err := s.meta.ListUploads(ctx, c.entry.ID, prefix)
	if err != nil {
		return nil, internal(err, "list uploads of cache %s", c.entry.Name)
	}
	return list, nil
}

// partsReader reads the blobs of parts one after the other.
type partsReader struct {
	ctx   context.Context
	s     *Service
	parts []store.Part
	cur   io.ReadCloser
}

func (r *partsReader) Read(p []byte) (int, error) {
	for {
		if r.cur == nil {
			if len(r.parts) == 0 {
				return 0, io.EOF
			}
			rc, err := r.s.blobs.Get(r.ctx, r.parts[0].BlobKey, 0, -1)
			if err != nil {
				return 0, internal(err, "open part %d", r.parts[0].Number)
			}
			r.cur, r.parts = rc, r.parts[1:]
		}
		n, err := r.cur.Read(p)
		if err == io.EOF {
			r.cur.Close()
			r.cur = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (r *partsReader) Close() error {
	if r.cur != nil {
		return r.cur.Close()
	}
	return nil
}

// composePlain makes the parts of a multipart upload a plain object by
// composing their blobs in the blob store, without reading them back: the
// object's ETag is the multipart one, and its whole MD5 and SHA-256 are
// not known. It returns errors.ErrUnsupported if the blob store cannot
// compose.
func (s *Service) composePlain(ctx context.Context, c Cache, key string, u store.Upload, parts []store.Part,
	total int64, etag string) (ObjectInfo, error) {
	comp, ok := s.blobs.(store.Composer)
	if !ok {
		return ObjectInfo{}, errors.ErrUnsupported
	}
	if total > s.limits.MaxUploadSize {
		return ObjectInfo{}, errorf(CodeTooLarge, "%q is %d bytes, more than the limit of %d", key, total, s.limits.MaxUploadSize)
	}
	keys := make([]string, len(parts))
	for i, p := range parts {
		keys[i] = p.BlobKey
	}
	blobKey := "object/" + hex.EncodeToString(random(2)) + "/" + hex.EncodeToString(random(16))
	if err := comp.Compose(ctx, blobKey, keys, total); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			return ObjectInfo{}, err
		}
		return ObjectInfo{}, internal(err, "compose the parts of %q", key)
	}
	o := store.Object{
		CacheID: c.entry.ID, Key: key, ContentType: u.ContentType, Size: total,
		ETag: etag, Metadata: u.Metadata, BlobKey: blobKey,
	}
	if err := s.recordObject(ctx, c, o); err != nil {
		return ObjectInfo{}, err
	}
	return objectInfo(o), nil
}

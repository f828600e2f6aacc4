package service

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/store"
	"github.com/nix-community/go-nix/pkg/storepath"
)

// contentTypes are the types larder serves the other files of a cache with,
// whatever the uploader said.
var contentTypes = map[nixkey.Kind]string{
	nixkey.Listing:     "application/json",
	nixkey.Log:         "text/plain; charset=utf-8",
	nixkey.Realisation: "application/json",
	nixkey.DebugInfo:   "application/json",
}

// PutFile stores a listing, build log, realisation or debuginfo file after
// checking that its content fits its kind. Re-uploading replaces the file.
func (s *Service) PutFile(ctx context.Context, c Cache, key nixkey.Key, body []byte) error {
	ctype, ok := contentTypes[key.Kind]
	if !ok {
		return errorf(CodeInvalid, "%s is not a listing, log, realisation or debuginfo key", key)
	}
	if int64(len(body)) > s.limits.MaxFileSize {
		return errorf(CodeTooLarge, "%s is %d bytes, more than the limit of %d", key, len(body), s.limits.MaxFileSize)
	}
	if err := checkFile(key, body); err != nil {
		return &Error{Code: CodeInvalid, Msg: key.String() + ": " + err.Error()}
	}
	o, err := s.storeSmall(ctx, key.String(), body)
	if err != nil {
		return err
	}
	o.CacheID, o.ContentType = c.entry.ID, ctype
	return s.recordObject(ctx, c, o)
}

// recordObject records an object whose bytes were just stored, deleting
// them if that fails. The blob of an object it replaces stays for the next
// sweeps to find orphaned, since a reader may still be reading it.
func (s *Service) recordObject(ctx context.Context, c Cache, o store.Object) error {
	if err := s.meta.PutObject(ctx, o); err != nil {
		s.deleteBlob(context.WithoutCancel(ctx), o.BlobKey)
		return s.writeFailed(ctx, c, err, "record %q", o.Key)
	}
	return nil
}

// storeSmall stores bytes held in memory under a new blob key and returns
// their record, to be completed with the cache and content type and
// recorded with recordSmall. Like every blob key, it is never used again:
// an earlier copy of the same bytes may be an orphan about to be swept.
func (s *Service) storeSmall(ctx context.Context, key string, body []byte) (store.Object, error) {
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	blobKey := "file/" + hash[:2] + "/" + hash + "-" + hex.EncodeToString(random(8))
	if err := s.blobs.Put(ctx, blobKey, bytes.NewReader(body), int64(len(body))); err != nil {
		return store.Object{}, internal(err, "store %s", key)
	}
	m := md5.Sum(body)
	md := hex.EncodeToString(m[:])
	return store.Object{Key: key, Size: int64(len(body)), SHA256: hash, MD5: md, ETag: md, BlobKey: blobKey}, nil
}

// checkFile checks that body is a plausible file of the key's kind.
func checkFile(key nixkey.Key, body []byte) error {
	switch key.Kind {
	case nixkey.Listing:
		var ls struct {
			Version int             `json:"version"`
			Root    json.RawMessage `json:"root"`
		}
		if err := strictJSON(body, &ls); err != nil {
			return err
		}
		if ls.Version != 1 || len(ls.Root) == 0 {
			return errors.New("a NAR listing needs \"version\": 1 and a \"root\"")
		}
	case nixkey.Realisation:
		var r struct {
			ID      string `json:"id"`
			OutPath string `json:"outPath"`
		}
		if err := strictJSON(body, &r); err != nil {
			return err
		}
		if r.ID != key.Name {
			return errors.New("its \"id\" does not match the key")
		}
		if _, err := storepath.FromString(r.OutPath); err != nil {
			return errors.New("its \"outPath\" is not a store path name")
		}
	case nixkey.DebugInfo:
		var d struct {
			Archive string `json:"archive"`
			Member  string `json:"member"`
		}
		if err := strictJSON(body, &d); err != nil {
			return err
		}
		if !strings.HasPrefix(d.Archive, "../nar/") || d.Member == "" {
			return errors.New("a debuginfo file needs \"archive\": \"../nar/…\" and a \"member\"")
		}
	}
	return nil
}

// strictJSON decodes one JSON object into v and rejects anything after it.
func strictJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return errors.New("not valid JSON: " + err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("not valid JSON: data after the object")
	}
	return nil
}

// File returns the record of a listing, log, realisation or debuginfo file.
func (s *Service) File(ctx context.Context, c Cache, key nixkey.Key) (store.Object, error) {
	f, err := s.meta.GetObject(ctx, c.entry.ID, key.String())
	if errors.Is(err, store.ErrNotFound) {
		return store.Object{}, errorf(CodeNotFound, "cache %s has no %s", c.entry.Name, key)
	}
	if err != nil {
		return store.Object{}, internal(err, "look up %s", key)
	}
	return f, nil
}

// ReadFile opens the bytes of a file returned by File.
func (s *Service) ReadFile(ctx context.Context, f store.Object) (io.ReadCloser, error) {
	r, err := s.blobs.Get(ctx, f.BlobKey, 0, -1)
	if err != nil {
		return nil, s.blobFailed(err, f.CacheID, f.Key)
	}
	return r, nil
}

// blobFailed explains why the blob of an object (key, in the cache with the
// given ID) could not be opened. A blob missing under its record is a
// fault of the store, said loudly in the log; the client learns only that
// the object is not there.
func (s *Service) blobFailed(err error, cacheID int64, key string) error {
	if errors.Is(err, store.ErrNotFound) {
		s.log.Error("the blob of an object is missing from the blob store", "cache_id", cacheID, "key", key, "err", err)
		return errorf(CodeNotFound, "%s is not available", key)
	}
	return internal(err, "open blob of %q", key)
}

package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/compression"
	"github.com/larder-cache/larder/internal/narinfo"
	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/store"
)

// PutNarInfo accepts an uploaded narinfo for key (<hash>.narinfo). It is
// accepted only if its StorePath has the key's hash, its URL names a NAR file
// uploaded to this cache, and its Compression, FileHash, FileSize, NarHash and
// NarSize agree with that file. It then becomes visible in one transaction.
//
// If the cache already has a narinfo for the path, the first upload wins: an
// upload with the same NarHash, NarSize and References only adds the
// signatures it carries; one that differs is refused with CodeConflict.
// A narinfo keeps at most Limits.MaxSignatures signatures besides the
// cache's own, and its rendering at most Limits.MaxNarInfoSize bytes: an
// upload that would pass either is refused with CodeTooLarge and changes
// nothing.
//
// In a cache that skips what its upstreams hold, a narinfo of a path an
// upstream holds with the same contents is recorded as upstream-only
// instead, whether or not its NAR file was uploaded: the cache keeps none
// of its bytes (a NAR file uploaded for it is left to garbage collection).
// An upload of a path that is upstream-only in the cache but that no
// upstream holds any more makes it stored. PutNarInfo reports whether the
// narinfo is new.
func (s *Service) PutNarInfo(ctx context.Context, c Cache, key nixkey.Key, body []byte) (bool, error) {
	if key.Kind != nixkey.NarInfo {
		return false, errorf(CodeInvalid, "%s is not a narinfo key", key)
	}
	if int64(len(body)) > s.limits.MaxNarInfoSize {
		return false, errorf(CodeTooLarge, "narinfo is %d bytes, more than the limit of %d", len(body), s.limits.MaxNarInfoSize)
	}
	ni, err := narinfo.Parse(body)
	if err != nil {
		return false, &Error{Code: CodeInvalid, Msg: fmt.Sprintf("%s: %v", key, err)}
	}
	if handled, created, err := s.putUpstreamOnly(ctx, c, key, ni); handled {
		return created, err
	}
	rec, nar, err := s.checkNarInfo(ctx, c, key, ni)
	if err != nil {
		return false, err
	}
	created := false
	_, err = s.meta.PutNarInfo(ctx, rec, func(old *store.NarInfo) (store.NarInfo, error) {
		created = old == nil
		m := rec
		if old != nil {
			var err error
			if m, err = mergeNarInfo(*old, rec); err != nil {
				return m, err
			}
			if old.Upstream != "" {
				// Upstream-only until now: stored from now on.
				m.FileHash, m.Upstream, m.CheckedAt = rec.FileHash, "", time.Time{}
			}
		}
		return m, s.checkBounds(c, key, m, nar)
	})
	if errors.Is(err, store.ErrNotFound) {
		return false, narMissing(key, ni.URL, c)
	}
	if err != nil {
		if CodeOf(err) != CodeInternal {
			return false, err
		}
		return false, internal(err, "store %s", key)
	}
	s.rendered.forget(c.entry.ID, key.Hash)
	if created {
		s.index.Add(c.entry.ID, key.Hash)
	} else {
		s.access.note(c.entry.ID, key.Hash) // pushed again: still in use
	}
	return created, nil
}

// errNarMissing marks the refusal of a narinfo whose NAR file the cache
// does not hold (yet).
var errNarMissing = errors.New("nar missing")

func narMissing(key nixkey.Key, url string, c Cache) *Error {
	return &Error{Code: CodeConflict, Err: errNarMissing,
		Msg: fmt.Sprintf("%s: %s is not in cache %s; upload the NAR first", key, url, c.entry.Name)}
}

// checkBounds checks that a narinfo about to be stored keeps within the
// limits on signatures and size. It is pure and quick: it runs within the
// transaction that stores the narinfo.
func (s *Service) checkBounds(c Cache, key nixkey.Key, m store.NarInfo, nar store.Nar) error {
	if len(m.Sigs) > s.limits.MaxSignatures {
		return errorf(CodeTooLarge, "%s would carry %d signatures, more than the limit of %d (max_signatures)",
			key, len(m.Sigs), s.limits.MaxSignatures)
	}
	body, err := render(c, m, nar)
	if err != nil {
		return err
	}
	if int64(len(body)) > s.limits.MaxNarInfoSize {
		return errorf(CodeTooLarge, "%s would be %d bytes as served, more than the limit of %d (max_narinfo_size)",
			key, len(body), s.limits.MaxNarInfoSize)
	}
	return nil
}

// checkNarInfo checks an uploaded narinfo against its key and the NAR file it
// names, and returns the record to store and that NAR file.
func (s *Service) checkNarInfo(ctx context.Context, c Cache, key nixkey.Key, ni *narinfo.NarInfo) (store.NarInfo, store.Nar, error) {
	bad := func(format string, args ...any) (store.NarInfo, store.Nar, error) {
		return store.NarInfo{}, store.Nar{}, errorf(CodeInvalid, "%s: "+format, append([]any{key}, args...)...)
	}
	if h := ni.HashPart(); h != key.Hash {
		return bad("StorePath %s does not have the hash %s the key names", ni.StorePath, key.Hash)
	}
	urlKey, err := nixkey.Parse(ni.URL)
	if err != nil || urlKey.Kind != nixkey.Nar {
		return bad("URL %q is not of the form nar/<file hash>.nar[.ext]", ni.URL)
	}
	if !compression.Supported(ni.Compression) {
		return store.NarInfo{}, store.Nar{}, errorf(CodeUnsupported, "%s: larder does not support Compression %s", key, ni.Compression)
	}
	if want := narExt(ni.Compression); want != urlKey.Ext {
		return bad("URL %s does not end in .nar%s as Compression %s needs", ni.URL, want, ni.Compression)
	}
	nar, err := s.meta.CacheNar(ctx, c.entry.ID, urlKey.Hash)
	if errors.Is(err, store.ErrNotFound) || err == nil && nar.Missing {
		return store.NarInfo{}, store.Nar{}, narMissing(key, ni.URL, c)
	}
	if err != nil {
		return store.NarInfo{}, store.Nar{}, internal(err, "look up %s", ni.URL)
	}
	switch {
	case ni.Compression != nar.Compression:
		return bad("Compression is %s but %s is compressed with %s", ni.Compression, ni.URL, nar.Compression)
	case !ni.FileHash.IsZero() && ni.FileHash.Nix32() != nar.FileHash:
		return bad("FileHash is %s but %s has sha256:%s", ni.FileHash, ni.URL, nar.FileHash)
	case ni.FileSize != 0 && ni.FileSize != uint64(nar.FileSize):
		return bad("FileSize is %d but %s has %d bytes", ni.FileSize, ni.URL, nar.FileSize)
	case ni.NarHash.Nix32() != nar.NarHash:
		return bad("NarHash is %s but the NAR in %s has sha256:%s", ni.NarHash, ni.URL, nar.NarHash)
	case ni.NarSize != uint64(nar.NarSize):
		return bad("NarSize is %d but the NAR in %s has %d bytes", ni.NarSize, ni.URL, nar.NarSize)
	}
	return store.NarInfo{
		CacheID:    c.entry.ID,
		Hash:       key.Hash,
		Key:        key.String(),
		StorePath:  ni.StorePath,
		FileHash:   nar.FileHash,
		NarHash:    nar.NarHash,
		NarSize:    nar.NarSize,
		References: ni.References,
		Deriver:    ni.Deriver,
		System:     ni.System,
		CA:         ni.CA,
		Sigs:       withoutKey(ni.Sigs, c.entry.key.Name()),
	}, nar, nil
}

// mergeNarInfo applies a re-upload to the stored narinfo of the same path.
func mergeNarInfo(old, upd store.NarInfo) (store.NarInfo, error) {
	switch {
	case old.StorePath != upd.StorePath:
		return old, errorf(CodeConflict, "the cache holds %s under this hash, not %s", old.StorePath, upd.StorePath)
	case old.NarHash != upd.NarHash:
		return old, errorf(CodeConflict, "%s is already in the cache with NarHash sha256:%s, not sha256:%s (the first upload wins)",
			old.StorePath, old.NarHash, upd.NarHash)
	case old.NarSize != upd.NarSize || !slices.Equal(old.References, upd.References):
		return old, errorf(CodeConflict, "%s is already in the cache with other NarSize or References (the first upload wins)", old.StorePath)
	}
	for _, sig := range upd.Sigs {
		if !slices.Contains(old.Sigs, sig) {
			old.Sigs = append(old.Sigs, sig)
		}
	}
	return old, nil
}

// withoutKey drops the signatures made with the key called name: the cache
// adds its own when it serves a narinfo.
func withoutKey(sigs []string, name string) []string {
	var out []string
	for _, s := range sigs {
		if keyName, _, _ := strings.Cut(s, ":"); keyName != name {
			out = append(out, s)
		}
	}
	return out
}

// NarInfo returns the narinfo of the store path hash in the cache, signed
// with the cache's key, as NarInfoFor does for a request without a
// credential.
func (s *Service) NarInfo(ctx context.Context, c Cache, hash string) ([]byte, error) {
	t, err := s.NarInfoFor(ctx, c, hash, "")
	return t.Body, err
}

// NarInfoText is a narinfo as the service serves it: rendered, signed, and
// named by an entity tag that changes whenever the text does.
type NarInfoText struct {
	Body []byte
	ETag string // quoted, as HTTP and S3 send it
}

// newNarInfoText tags body with the first half of its SHA-256.
func newNarInfoText(body []byte) NarInfoText {
	sum := sha256.Sum256(body)
	return NarInfoText{Body: body, ETag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

// textOf tags what an upstream answered.
func textOf(body []byte, err error) (NarInfoText, error) {
	if err != nil {
		return NarInfoText{}, err
	}
	return newNarInfoText(body), nil
}

// NarInfoFor returns the narinfo of the store path hash in the cache,
// signed with the cache's key, to the holder of token ("" for none). A
// hash the presence index does not know is answered without touching the
// database, unless the cache has upstreams: it is then asked of them (see
// upstreamMiss), and the token is looked up if the answer depends on
// whether its holder may write. A narinfo asked for again within a moment
// is neither read nor signed again (see renderCache).
func (s *Service) NarInfoFor(ctx context.Context, c Cache, hash, token string) (NarInfoText, error) {
	if !s.index.Has(c.entry.ID, hash) {
		return textOf(s.upstreamMiss(ctx, c, hash, token))
	}
	now := time.Now()
	if t, ok := s.renderedNarInfo(c, hash, now); ok {
		return t, nil
	}
	body, rec, nar, err := s.narInfo(ctx, c, hash)
	switch {
	case err != nil && rec.Upstream != "":
		return textOf(s.upstreamOnly(ctx, c, rec))
	case err != nil && rec.Hash == "" && CodeOf(err) == CodeNotFound:
		return textOf(s.upstreamMiss(ctx, c, hash, token)) // removed by another process
	case err != nil:
		return NarInfoText{}, err
	}
	// What Nix fetches next is the NAR file: a narinfo is served only if
	// its blob is there. A lost one is withdrawn, which every later
	// lookup sees without a look at the blob store.
	if _, err := s.blobs.Stat(ctx, nar.BlobKey); errors.Is(err, store.ErrNotFound) {
		return NarInfoText{}, s.narLost(ctx, c, nar)
	} else if err != nil {
		// The NAR read will tell the client; the narinfo is known good.
		s.log.Debug("stat the NAR file of a narinfo", "cache", c.entry.Name, "hash", hash, "err", err)
	}
	t := s.rendered.put(c.entry.ID, hash, c.entry.SecretKey, body, now)
	s.access.note(c.entry.ID, hash)
	return t, nil
}

// QuickNarInfo answers a lookup of the narinfo of hash in a public cache
// from memory alone, for a front end's quick path: answered is false when
// it cannot (the cache is private or not loaded yet, an upstream may hold
// what the cache does not, or the narinfo is not rendered at the moment),
// and the lookup must then take Access and NarInfoFor. When answered, it
// is as NarInfoFor would answer anyone: the narinfo, or (err) the cache
// has no such path.
func (s *Service) QuickNarInfo(cacheName, hash string) (t NarInfoText, answered bool, err error) {
	s.mu.RLock()
	e := s.caches[cacheName]
	s.mu.RUnlock()
	if e == nil || e.Private {
		return NarInfoText{}, false, nil
	}
	c := Cache{e}
	if !s.index.Has(e.ID, hash) {
		if e.up.missesAsked() {
			return NarInfoText{}, false, nil
		}
		return NarInfoText{}, true, notHere(c, hash)
	}
	t, ok := s.renderedNarInfo(c, hash, time.Now())
	return t, ok, nil
}

// renderedNarInfo returns the narinfo of hash in the cache from the render
// cache, if it is there, and counts the lookup as a use of the path.
func (s *Service) renderedNarInfo(c Cache, hash string, now time.Time) (NarInfoText, bool) {
	t, ok := s.rendered.get(c.entry.ID, hash, c.entry.SecretKey, now)
	if ok {
		s.access.note(c.entry.ID, hash)
	}
	return t, ok
}

// narInfo renders the narinfo of hash in the cache, signed, and returns it
// with its record and NAR file.
func (s *Service) narInfo(ctx context.Context, c Cache, hash string) ([]byte, store.NarInfo, store.Nar, error) {
	rec, nar, err := s.meta.GetNarInfo(ctx, c.entry.ID, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, rec, nar, errorf(CodeNotFound, "cache %s has no %s.narinfo", c.entry.Name, hash)
	}
	if err != nil {
		return nil, rec, nar, internal(err, "get %s.narinfo", hash)
	}
	if rec.Upstream != "" {
		// Served from its upstream (upstreamOnly), not as a file of the
		// cache.
		return nil, rec, nar, errorf(CodeNotFound, "cache %s does not store %s.narinfo (an upstream does)", c.entry.Name, hash)
	}
	if nar.Missing {
		s.log.Warn("not serving a narinfo whose NAR file is missing", "cache", c.entry.Name,
			"store_path", rec.StorePath, "file_hash", nar.FileHash)
		return nil, rec, nar, errorf(CodeNotFound, "cache %s has no %s.narinfo (its NAR file was lost; upload it again)",
			c.entry.Name, hash)
	}
	body, err := render(c, rec, nar)
	return body, rec, nar, err
}

// render renders the narinfo rec, which serves nar, signed with the
// cache's key.
func render(c Cache, rec store.NarInfo, nar store.Nar) ([]byte, error) {
	file, size, method := nar.FileHash, nar.FileSize, nar.Compression
	if nar.PackedHash != "" { // stored as chunks: published as their frames
		file, size, method = nar.PackedHash, nar.PackedSize, compression.Zstd
	}
	fileHash, err1 := narinfo.ParseHash("sha256:" + file)
	narHash, err2 := narinfo.ParseHash("sha256:" + rec.NarHash)
	if err := errors.Join(err1, err2); err != nil {
		return nil, internal(err, "stored hashes of %s.narinfo", rec.Hash)
	}
	ni := &narinfo.NarInfo{
		StorePath:   rec.StorePath,
		URL:         "nar/" + file + ".nar" + narExt(method),
		Compression: method,
		FileHash:    fileHash,
		FileSize:    uint64(size),
		NarHash:     narHash,
		NarSize:     uint64(rec.NarSize),
		References:  rec.References,
		Deriver:     rec.Deriver,
		System:      rec.System,
		Sigs:        slices.Clip(rec.Sigs),
		CA:          rec.CA,
	}
	ni.Sign(c.entry.key)
	return ni.Bytes(), nil
}

package service

import (
	"context"
	"errors"
	"time"

	"github.com/larder-cache/larder/internal/narinfo"
	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/store"
)

// Mirroring tools (aws s3 sync, mc mirror, rclone copy, s3cmd sync) upload
// a cache's files in parallel and in any order, so a narinfo can arrive
// before its NAR. Such a narinfo is held, invisible, until its NAR arrives;
// then it is checked against the NAR like any other upload and either
// becomes visible or is dropped. Held narinfos that wait too long are
// dropped too. Nothing is ever served before it is verified.

// putNarInfoOrHold accepts a narinfo like PutNarInfo, except that one whose
// NAR file the cache does not hold yet is held instead of refused. It
// returns the file hash of that NAR if the narinfo is held.
func (s *Service) putNarInfoOrHold(ctx context.Context, c Cache, key nixkey.Key, body []byte) (string, error) {
	_, err := s.PutNarInfo(ctx, c, key, body)
	if !errors.Is(err, errNarMissing) {
		return "", err
	}
	ni, perr := narinfo.Parse(body)
	if perr != nil {
		return "", internal(perr, "parse %s again", key)
	}
	urlKey, perr := nixkey.Parse(ni.URL)
	if perr != nil {
		return "", internal(perr, "parse URL of %s again", key)
	}
	err = s.meta.HoldNarInfo(ctx, store.HeldNarInfo{
		CacheID: c.entry.ID, Hash: key.Hash, FileHash: urlKey.Hash, Body: body,
	})
	if err != nil {
		return "", s.writeFailed(ctx, c, err, "hold %s", key)
	}
	s.log.Info("holding narinfo until its NAR arrives", "cache", c.entry.Name, "narinfo", key.String(), "nar", ni.URL)
	// The NAR may have arrived, and looked for held narinfos, between the
	// check above and the hold: then nobody else releases this one, and
	// the client can be told at once whether it matches.
	if _, err := s.meta.CacheNar(ctx, c.entry.ID, urlKey.Hash); errors.Is(err, store.ErrNotFound) {
		return urlKey.Hash, nil
	} else if err != nil {
		s.log.Error("look up the NAR of a held narinfo", "cache", c.entry.Name, "nar", ni.URL, "err", err)
		return urlKey.Hash, nil
	}
	_, err = s.PutNarInfo(ctx, c, key, body)
	if rerr := s.meta.ReleaseHeld(ctx, c.entry.ID, key.Hash); rerr != nil {
		s.log.Error("release held narinfo", "cache", c.entry.Name, "narinfo", key.String(), "err", rerr)
	}
	return "", err
}

// releaseHeld commits or drops the narinfos of the cache that waited for
// the NAR file with the given file hash, which has just arrived.
func (s *Service) releaseHeld(ctx context.Context, c Cache, fileHash string) {
	held, err := s.meta.HeldFor(ctx, c.entry.ID, fileHash)
	if err != nil {
		s.log.Error("look up held narinfos", "cache", c.entry.Name, "nar", fileHash, "err", err)
		return
	}
	for _, h := range held {
		key, err := nixkey.Parse(h.Hash + ".narinfo")
		if err == nil {
			_, err = s.PutNarInfo(ctx, c, key, h.Body)
		}
		if err != nil {
			s.log.Warn("dropping held narinfo: it does not match its NAR", "cache", c.entry.Name,
				"narinfo", h.Hash+".narinfo", "reason", errText(err))
			s.dropKept(ctx, c.entry.ID, h.Hash)
		} else {
			s.log.Info("held narinfo committed", "cache", c.entry.Name, "narinfo", h.Hash+".narinfo")
		}
		if err := s.meta.ReleaseHeld(ctx, c.entry.ID, h.Hash); err != nil {
			s.log.Error("release held narinfo", "cache", c.entry.Name, "narinfo", h.Hash, "err", err)
		}
	}
}

// expireHeld drops the narinfos held for longer than ttl.
func (s *Service) expireHeld(ctx context.Context, ttl time.Duration) {
	gone, err := s.meta.ExpireHeld(ctx, time.Now().Add(-ttl))
	if err != nil {
		s.log.Error("expire held narinfos", "err", err)
		return
	}
	for _, h := range gone {
		s.log.Warn("dropping held narinfo: its NAR never arrived", "cache_id", h.CacheID,
			"narinfo", h.Hash+".narinfo", "nar", h.FileHash, "held_since", h.CreatedAt)
		s.dropKept(ctx, h.CacheID, h.Hash)
	}
}

// dropKept removes the copy of a dropped narinfo kept as written over S3, so
// that S3 clients no longer see it and upload it again.
func (s *Service) dropKept(ctx context.Context, cacheID int64, hash string) {
	if err := ignoreNotFound(s.meta.DeleteObject(ctx, cacheID, hash+".narinfo")); err != nil {
		s.log.Error("delete dropped narinfo", "cache_id", cacheID, "narinfo", hash+".narinfo", "err", err)
	}
}

// errText is the client-facing message of err, or its full text for an
// internal error.
func errText(err error) string {
	if m := Message(err); m != "" {
		return m
	}
	return err.Error()
}

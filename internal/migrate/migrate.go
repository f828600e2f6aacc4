// Package migrate copies an installation's data from one pair of stores to
// another, for moving an embedded installation (SQLite and a directory) to
// PostgreSQL and S3 without re-pushing anything. It works through the store
// interfaces only, so any pair of backends can be the source or the target.
//
// A copy can be run again to catch up: what the target already holds is
// kept, and only what is missing is copied. At the end every record is
// counted on both sides, and every NAR file of the target is read back and
// hashed against its name, or, for one stored as chunks, the frames of its
// chunks against its packed hash.
package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/larder-cache/larder/internal/store"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// Stores are one side of a copy.
type Stores struct {
	Meta  store.MetaStore
	Blobs store.BlobStore
}

// Report says what a copy did.
type Report struct {
	Caches, Tokens       int // created in the target
	Blobs                int // copied
	BlobBytes            int64
	Nars, NarInfos, Objs int // created or already there, per cache summed
	Packed               int // packed NARs whose chunk index was recorded
	Verified             int // NAR files read back and hashed
}

// Copy copies everything from src to dst that dst does not hold yet, then
// verifies dst. Multipart uploads in progress and held narinfos are not
// copied: they belong to uploads that will be retried.
func Copy(ctx context.Context, src, dst Stores, log *slog.Logger) (Report, error) {
	var r Report
	ids, err := copyCaches(ctx, src, dst, &r)
	if err != nil {
		return r, err
	}
	if err := copyTokens(ctx, src, dst, &r); err != nil {
		return r, err
	}
	if err := copyBlobs(ctx, src, dst, &r, log); err != nil {
		return r, err
	}
	for srcID, dstID := range ids {
		if err := copyCache(ctx, src, dst, srcID, dstID, &r); err != nil {
			return r, err
		}
	}
	return r, verify(ctx, src, dst, ids, &r)
}

// copyCaches creates the caches dst lacks, with their signing keys, and
// maps source cache IDs to target ones.
func copyCaches(ctx context.Context, src, dst Stores, r *Report) (map[int64]int64, error) {
	caches, err := src.Meta.ListCaches(ctx)
	if err != nil {
		return nil, fmt.Errorf("list source caches: %w", err)
	}
	ids := map[int64]int64{}
	for _, c := range caches {
		got, err := dst.Meta.GetCache(ctx, c.Name)
		if errors.Is(err, store.ErrNotFound) {
			srcID := c.ID
			c.ID = 0
			if got, err = dst.Meta.CreateCache(ctx, c); err != nil {
				return nil, fmt.Errorf("create cache %s: %w", c.Name, err)
			}
			r.Caches++
			c.ID = srcID
		} else if err != nil {
			return nil, fmt.Errorf("look up cache %s in the target: %w", c.Name, err)
		}
		if got.PublicKey != c.PublicKey {
			return nil, fmt.Errorf("the target already has a cache %s with another signing key (%s, not %s)", c.Name, got.PublicKey, c.PublicKey)
		}
		ids[c.ID] = got.ID
	}
	return ids, nil
}

// copyTokens creates the credentials dst lacks; tokens are scoped by cache
// name, so they need no mapping.
func copyTokens(ctx context.Context, src, dst Stores, r *Report) error {
	tokens, err := src.Meta.ListTokens(ctx)
	if err != nil {
		return fmt.Errorf("list source tokens: %w", err)
	}
	for _, t := range tokens {
		t.ID = 0
		_, err := dst.Meta.CreateToken(ctx, t)
		switch {
		case err == nil:
			r.Tokens++
		case !errors.Is(err, store.ErrExists):
			return fmt.Errorf("create token: %w", err)
		}
	}
	return nil
}

// copyBlobs copies the blobs dst lacks (or holds with another size),
// checking content-addressed ones against their names as they stream.
func copyBlobs(ctx context.Context, src, dst Stores, r *Report, log *slog.Logger) error {
	var keys []store.BlobInfo
	err := src.Blobs.List(ctx, "", func(b store.BlobInfo) error {
		if !strings.HasPrefix(b.Key, "upload/") {
			keys = append(keys, b)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list source blobs: %w", err)
	}
	for _, b := range keys {
		if got, err := dst.Blobs.Stat(ctx, b.Key); err == nil && got.Size == b.Size {
			continue
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("stat target blob %s: %w", b.Key, err)
		}
		if err := copyBlob(ctx, src, dst, b); err != nil {
			return err
		}
		r.Blobs++
		r.BlobBytes += b.Size
		if r.Blobs%1000 == 0 {
			log.Info("copying blobs", "copied", r.Blobs, "bytes", r.BlobBytes)
		}
	}
	return nil
}

func copyBlob(ctx context.Context, src, dst Stores, b store.BlobInfo) error {
	rc, err := src.Blobs.Get(ctx, b.Key, 0, -1)
	if err != nil {
		return fmt.Errorf("read source blob %s: %w", b.Key, err)
	}
	defer rc.Close()
	h := sha256.New()
	if err := dst.Blobs.Put(ctx, b.Key, io.TeeReader(rc, h), b.Size); err != nil {
		return fmt.Errorf("write target blob %s: %w", b.Key, err)
	}
	if want, ok := contentHash(b.Key); ok && want != hex.EncodeToString(h.Sum(nil)) {
		return fmt.Errorf("blob %s does not hash to its name: the source is corrupt", b.Key)
	}
	return nil
}

// contentHash returns the hex sha256 a content-addressed blob key names:
// nar/xx/<nix32> and file/xx/<hex>.
func contentHash(key string) (string, bool) {
	name := key[strings.LastIndexByte(key, '/')+1:]
	switch {
	case strings.HasPrefix(key, "nar/"):
		raw, err := nixbase32.DecodeString(name)
		if err != nil || len(raw) != sha256.Size {
			return "", false
		}
		return hex.EncodeToString(raw), true
	case strings.HasPrefix(key, "file/") && len(name) == 2*sha256.Size:
		return name, true
	}
	return "", false
}

package migrate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/larder-cache/larder/internal/store"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// eachEntry calls fn for every listed entry of a cache, page by page.
func eachEntry(ctx context.Context, m store.MetaStore, cacheID int64, fn func(store.Entry) error) error {
	after := ""
	for {
		page, err := m.ListKeys(ctx, cacheID, "", after, 1000)
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < 1000 {
			return nil
		}
		after = page[len(page)-1].Key
	}
}

// copyCache copies a cache's NAR links and objects, then its narinfos
// (which need their NAR linked first).
func copyCache(ctx context.Context, src, dst Stores, srcID, dstID int64, r *Report) error {
	var narinfos []string
	err := eachEntry(ctx, src.Meta, srcID, func(e store.Entry) error {
		switch e.Kind {
		case store.EntryNar:
			n, err := src.Meta.CacheNar(ctx, srcID, nixHashOfKey(e.Key))
			if err != nil {
				return fmt.Errorf("read NAR %s: %w", e.Key, err)
			}
			n.CreatedAt = e.Modified
			if _, err := dst.Meta.AddNar(ctx, dstID, n, e.Key); err != nil {
				return fmt.Errorf("record NAR %s: %w", e.Key, err)
			}
			r.Nars++
		case store.EntryObject:
			o, err := src.Meta.GetObject(ctx, srcID, e.Key)
			if err != nil {
				return fmt.Errorf("read object %q: %w", e.Key, err)
			}
			o.CacheID = dstID
			if err := dst.Meta.PutObject(ctx, o); err != nil {
				return fmt.Errorf("record object %q: %w", e.Key, err)
			}
			r.Objs++
		case store.EntryNarInfo:
			narinfos = append(narinfos, e.Hash)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, hash := range narinfos {
		ni, _, err := src.Meta.GetNarInfo(ctx, srcID, hash)
		if err != nil {
			return fmt.Errorf("read narinfo %s: %w", hash, err)
		}
		ni.CacheID, ni.Seq = dstID, 0
		_, err = dst.Meta.PutNarInfo(ctx, ni, func(old *store.NarInfo) (store.NarInfo, error) {
			if old != nil {
				return *old, nil // already copied: the target's record stands
			}
			return ni, nil
		})
		if err != nil {
			return fmt.Errorf("record narinfo %s: %w", hash, err)
		}
		r.NarInfos++
	}
	return nil
}

// nixHashOfKey returns the file hash a NAR key (nar/<hash>.nar[.ext]) names.
func nixHashOfKey(key string) string {
	const prefix, hashLen = "nar/", 52
	if len(key) < len(prefix)+hashLen {
		return ""
	}
	return key[len(prefix) : len(prefix)+hashLen]
}

// verify counts every cache's entries on both sides and hashes every NAR
// file of the target against its file hash.
func verify(ctx context.Context, src, dst Stores, ids map[int64]int64, r *Report) error {
	for srcID, dstID := range ids {
		want, err := count(ctx, src.Meta, srcID)
		if err != nil {
			return fmt.Errorf("count source cache: %w", err)
		}
		got, err := count(ctx, dst.Meta, dstID)
		if err != nil {
			return fmt.Errorf("count target cache: %w", err)
		}
		if got != want {
			return fmt.Errorf("verification failed: the source cache holds %v, the target %v", want, got)
		}
		err = eachEntry(ctx, dst.Meta, dstID, func(e store.Entry) error {
			if e.Kind != store.EntryNar {
				return nil
			}
			return verifyNar(ctx, dst, dstID, e.Key, r)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

type counts struct{ NarInfos, Nars, Objects int }

func count(ctx context.Context, m store.MetaStore, cacheID int64) (counts, error) {
	var c counts
	err := eachEntry(ctx, m, cacheID, func(e store.Entry) error {
		switch e.Kind {
		case store.EntryNarInfo:
			c.NarInfos++
		case store.EntryNar:
			c.Nars++
		case store.EntryObject:
			c.Objects++
		}
		return nil
	})
	return c, err
}

// verifyNar reads a NAR file of the target back and checks its hash and size.
func verifyNar(ctx context.Context, dst Stores, cacheID int64, key string, r *Report) error {
	n, err := dst.Meta.CacheNar(ctx, cacheID, nixHashOfKey(key))
	if err != nil {
		return fmt.Errorf("verify %s: %w", key, err)
	}
	rc, err := dst.Blobs.Get(ctx, n.BlobKey, 0, -1)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("verification failed: %s has no bytes in the target (blob %s)", key, n.BlobKey)
	}
	if err != nil {
		return fmt.Errorf("verify %s: %w", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	size, err := io.Copy(h, rc)
	if err != nil {
		return fmt.Errorf("verify %s: %w", key, err)
	}
	if got := nixbase32.EncodeToString(h.Sum(nil)); got != n.FileHash || size != n.FileSize {
		return fmt.Errorf("verification failed: %s in the target hashes to %s (%d bytes), not %s (%d bytes)", key, got, size, n.FileHash, n.FileSize)
	}
	r.Verified++
	return nil
}

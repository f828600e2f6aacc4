package migrate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/larder-cache/larder/internal/chunk"
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
// (which need their NAR linked first). A packed NAR is copied with its
// chunk index, whose packs copyBlobs has copied.
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
			to, err := dst.Meta.AddNar(ctx, dstID, n, e.Key)
			if err != nil {
				return fmt.Errorf("record NAR %s: %w", e.Key, err)
			}
			if err := copyPacked(ctx, src, dst, n, to, r); err != nil {
				return err
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

// verifyNar reads a NAR file of the target back and checks its hash and
// size: for one stored whole, those of its blob against its file hash and
// size; for one stored as chunks, those of the file the frames of its
// chunks make in order (which the target serves) against its packed hash
// and size.
func verifyNar(ctx context.Context, dst Stores, cacheID int64, key string, r *Report) error {
	n, err := dst.Meta.CacheNar(ctx, cacheID, nixHashOfKey(key))
	if err != nil {
		return fmt.Errorf("verify %s: %w", key, err)
	}
	rc, where, err := openNar(ctx, dst, n)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("verification failed: %s has no bytes in the target (%s)", key, where)
	}
	if err != nil {
		return fmt.Errorf("verify %s: %w", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	size, err := io.Copy(h, rc)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("verification failed: %s has bytes missing in the target (%s): %w", key, where, err)
	}
	if err != nil {
		return fmt.Errorf("verify %s: %w", key, err)
	}
	wantHash, wantSize := n.FileHash, n.FileSize
	if n.PackedHash != "" {
		wantHash, wantSize = n.PackedHash, n.PackedSize
	}
	if got := nixbase32.EncodeToString(h.Sum(nil)); got != wantHash || size != wantSize {
		return fmt.Errorf("verification failed: %s in the target (%s) hashes to %s (%d bytes), not %s (%d bytes)", key, where, got, size, wantHash, wantSize)
	}
	r.Verified++
	return nil
}

// openNar opens the bytes the target serves of n, and says where they are:
// its blob, or the packs of its chunks.
func openNar(ctx context.Context, dst Stores, n store.Nar) (io.ReadCloser, string, error) {
	if n.PackedHash == "" {
		rc, err := dst.Blobs.Get(ctx, n.BlobKey, 0, -1)
		return rc, "blob " + n.BlobKey, err
	}
	chunks, err := dst.Meta.NarChunks(ctx, n.FileHash)
	if err != nil {
		return nil, "its chunk list", err
	}
	return chunk.Frames(ctx, dst.Blobs, chunks, 0, -1), fmt.Sprintf("%d chunks", len(chunks)), nil
}

package migrate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// copyPacked records in dst the chunk index of the packed Nar n of src,
// once its packs are copied, so that the target serves it as the source
// does. to is the Nar as the target holds it (AddNar's answer): one packed
// already, or stored whole there, is left as it is.
//
// The Nar has no whole blob in the target, so it was recorded with an
// empty BlobKey, and PackNar is given that key. A pack is recorded once,
// with every chunk the source has in it, since PackNar only records packs
// new to the store: the first Nar copied that needs a pack brings all its
// chunks, and a later one finds them there.
func copyPacked(ctx context.Context, src, dst Stores, n, to store.Nar, r *Report) error {
	if n.PackedHash == "" || to.PackedHash != "" || to.BlobKey != "" {
		return nil
	}
	chunks, err := src.Meta.NarChunks(ctx, n.FileHash)
	if err != nil {
		return fmt.Errorf("read the chunks of NAR %s: %w", n.FileHash, err)
	}
	for attempt := 0; ; attempt++ {
		p, err := packedRecord(ctx, src, dst, n, chunks)
		if err == nil {
			err = dst.Meta.PackNar(ctx, p)
		}
		if errors.Is(err, store.ErrChunkGone) && attempt < 2 {
			continue // the target collected a chunk it was to reuse
		}
		if err != nil {
			return fmt.Errorf("record the chunks of NAR %s: %w", n.FileHash, err)
		}
		r.Packed++
		return nil
	}
}

// packedRecord returns the PackedNar that records chunks, the chunks of n
// in the source, in dst: the chunks dst lacks come with every chunk of
// their packs, and the packs with their sizes in dst's blob store.
func packedRecord(ctx context.Context, src, dst Stores, n store.Nar, chunks []store.Chunk) (store.PackedNar, error) {
	p := store.PackedNar{FileHash: n.FileHash, PackedHash: n.PackedHash, PackedSize: n.PackedSize}
	var hashes []string
	seen := map[string]bool{}
	for _, c := range chunks {
		p.Chunks = append(p.Chunks, c.Hash)
		if !seen[c.Hash] {
			seen[c.Hash] = true
			hashes = append(hashes, c.Hash)
		}
	}
	found, err := dst.Meta.FindChunks(ctx, hashes)
	if err != nil {
		return p, err
	}
	packs := map[string]bool{}
	for _, c := range chunks {
		if _, ok := found[c.Hash]; ok || packs[c.Pack] {
			continue
		}
		packs[c.Pack] = true
		info, err := dst.Blobs.Stat(ctx, c.Pack)
		if err != nil {
			return p, fmt.Errorf("stat pack %s in the target (run the copy again if the source packed it since): %w", c.Pack, err)
		}
		in, err := src.Meta.PackChunks(ctx, c.Pack)
		if err != nil {
			return p, fmt.Errorf("list the chunks of pack %s: %w", c.Pack, err)
		}
		p.Packs = append(p.Packs, store.Pack{Key: c.Pack, Size: info.Size, CreatedAt: time.Now()})
		p.New = append(p.New, in...)
	}
	return p, nil
}

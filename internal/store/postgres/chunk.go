package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

// chunkColumns are the columns of a chunk c in its pack p.
const chunkColumns = `c.hash, c.size, p.key, c.pack_offset, c.length`

// scanChunk reads a row of chunkColumns.
func scanChunk(row pgx.CollectableRow) (store.Chunk, error) {
	var c store.Chunk
	err := row.Scan(&c.Hash, &c.Size, &c.Pack, &c.Offset, &c.Length)
	return c, err
}

// FindChunks returns the stored chunks among hashes, by hash.
func (s *Store) FindChunks(ctx context.Context, hashes []string) (map[string]store.Chunk, error) {
	found := make(map[string]store.Chunk, len(hashes))
	if len(hashes) == 0 {
		return found, nil
	}
	l, err := collect(ctx, s, scanChunk, `SELECT `+chunkColumns+` FROM chunks c JOIN packs p ON p.id = c.pack_id
		WHERE c.hash = ANY($1)`, hashes)
	if err != nil {
		return nil, fmt.Errorf("find chunks: %w", translate(err))
	}
	for _, c := range l {
		found[c.Hash] = c
	}
	return found, nil
}

// PackNar records the chunked form of a Nar in one transaction. The Nar
// is locked, so that UnusedNars and another PackNar of it wait; the chunks
// it lists are read with a key share lock, so that UnusedChunks cannot
// remove them until it commits (and a chunk UnusedChunks has locked first
// is not found once it is removed: ErrChunkGone). The stored chunks among
// the new ones are locked so before the new ones are inserted: one that
// an insert skips as stored cannot then go before it is read, which would
// be ErrChunkGone for a chunk of p.New.
func (s *Store) PackNar(ctx context.Context, p store.PackedNar) error {
	if err := checkPacked(p); err != nil {
		return err
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var narID int64
		err := tx.QueryRow(ctx, `SELECT id FROM nars WHERE file_hash = $1 AND blob_key = $2
			AND NOT missing AND packed_hash = '' FOR UPDATE`, p.FileHash, p.BlobKey).Scan(&narID)
		if err != nil {
			return err
		}
		packIDs := make(map[string]int64, len(p.Packs))
		for _, pk := range p.Packs {
			var id int64
			err := tx.QueryRow(ctx, `INSERT INTO packs (key, size, created_at) VALUES ($1, $2, $3) RETURNING id`,
				pk.Key, pk.Size, orNow(pk.CreatedAt)).Scan(&id)
			if err != nil {
				return err
			}
			packIDs[pk.Key] = id
		}
		if err := insertChunks(ctx, tx, p.New, packIDs); err != nil {
			return err
		}
		ids, err := chunkIDs(ctx, tx, p.Chunks)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO nar_chunks (nar_id, idx, chunk_id)
			SELECT $1, t.ord - 1, t.id FROM unnest($2::bigint[]) WITH ORDINALITY AS t (id, ord)`, narID, ids); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE nars SET packed_hash = $1, packed_size = $2, blob_key = '' WHERE id = $3`,
			p.PackedHash, p.PackedSize, narID)
		return err
	})
	if err != nil {
		return fmt.Errorf("pack nar %s: %w", p.FileHash, translate(err))
	}
	return nil
}

// checkPacked returns an error if p lacks its chunk list or its packed
// hash: recorded, it would leave the Nar with nothing to serve.
func checkPacked(p store.PackedNar) error {
	switch {
	case len(p.Chunks) == 0:
		return fmt.Errorf("pack nar %s: no chunks", p.FileHash)
	case p.PackedHash == "":
		return fmt.Errorf("pack nar %s: no packed hash", p.FileHash)
	}
	return nil
}

// insertChunks records the chunks new to the store, keeping a chunk stored
// already under the same hash as it is.
func insertChunks(ctx context.Context, tx pgx.Tx, chunks []store.Chunk, packIDs map[string]int64) error {
	if len(chunks) == 0 {
		return nil
	}
	hashes := make([]string, len(chunks))
	sizes, packs, offsets, lengths := make([]int64, len(chunks)), make([]int64, len(chunks)),
		make([]int64, len(chunks)), make([]int64, len(chunks))
	for i, c := range chunks {
		id, ok := packIDs[c.Pack]
		if !ok {
			return fmt.Errorf("chunk %s is in pack %s, which is not among the new packs", c.Hash, c.Pack)
		}
		hashes[i], sizes[i], packs[i], offsets[i], lengths[i] = c.Hash, c.Size, id, c.Offset, c.Length
	}
	if _, err := tx.Exec(ctx, `SELECT FROM chunks WHERE hash = ANY($1) FOR KEY SHARE`, hashes); err != nil {
		return err
	}
	// In the order of the unique index, so that two of them inserting the
	// same chunks wait for each other instead of deadlocking.
	_, err := tx.Exec(ctx, `INSERT INTO chunks (hash, size, pack_id, pack_offset, length)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
			AS u (hash, size, pack_id, pack_offset, length)
		ORDER BY u.hash ON CONFLICT (hash) DO NOTHING`, hashes, sizes, packs, offsets, lengths)
	return err
}

// chunkIDs returns the IDs of the chunks with the given hashes, in the
// same order, locking them against removal, or an error wrapping
// store.ErrChunkGone if one is not stored.
func chunkIDs(ctx context.Context, tx pgx.Tx, hashes []string) ([]int64, error) {
	rows, err := tx.Query(ctx, `SELECT hash, id FROM chunks WHERE hash = ANY($1) FOR KEY SHARE`, hashes)
	if err != nil {
		return nil, err
	}
	byHash := make(map[string]int64)
	var h string
	var id int64
	_, err = pgx.ForEachRow(rows, []any{&h, &id}, func() error {
		byHash[h] = id
		return nil
	})
	if err != nil {
		return nil, err
	}
	ids := make([]int64, len(hashes))
	for i, h := range hashes {
		id, ok := byHash[h]
		if !ok {
			return nil, fmt.Errorf("chunk %s: %w", h, store.ErrChunkGone)
		}
		ids[i] = id
	}
	return ids, nil
}

// NarChunks returns the chunks of a packed Nar in order.
func (s *Store) NarChunks(ctx context.Context, fileHash string) ([]store.Chunk, error) {
	l, err := collect(ctx, s, scanChunk, `SELECT `+chunkColumns+` FROM nars n
		JOIN nar_chunks nc ON nc.nar_id = n.id
		JOIN chunks c ON c.id = nc.chunk_id
		JOIN packs p ON p.id = c.pack_id
		WHERE n.file_hash = $1 AND n.packed_hash <> '' ORDER BY nc.idx`, fileHash)
	if err != nil {
		return nil, fmt.Errorf("chunks of nar %s: %w", fileHash, translate(err))
	}
	if len(l) == 0 {
		return nil, fmt.Errorf("chunks of nar %s: %w", fileHash, store.ErrNotFound)
	}
	return l, nil
}

// CachePackedNar returns the packed Nar linked to the cache whose packed
// hash is packedHash, or store.ErrNotFound. Of several (one NAR uploaded
// with two compressions), one not Missing comes first, then by file hash.
func (s *Store) CachePackedNar(ctx context.Context, cacheID int64, packedHash string) (store.Nar, error) {
	n, err := one(ctx, s, scanNar, `SELECT n.file_hash, n.file_size, n.compression, n.nar_hash, n.nar_size, n.md5,
		n.blob_key, cn.created_at, n.missing, n.packed_hash, n.packed_size FROM nars n
		JOIN cache_nars cn ON cn.nar_id = n.id AND cn.cache_id = $1
		WHERE n.packed_hash = $2 AND n.packed_hash <> '' ORDER BY n.missing, n.file_hash LIMIT 1`, cacheID, packedHash)
	if err != nil {
		return store.Nar{}, fmt.Errorf("get packed nar %s of cache %d: %w", packedHash, cacheID, translate(err))
	}
	return n, nil
}

// WholeNars returns up to limit whole Nars of at least minSize NAR bytes
// with file hashes after after, in file hash order.
func (s *Store) WholeNars(ctx context.Context, after string, minSize int64, limit int) ([]store.Nar, error) {
	if limit <= 0 {
		return nil, nil
	}
	l, err := collect(ctx, s, scanNar, `SELECT `+narColumns+` FROM nars n
		WHERE n.packed_hash = '' AND NOT n.missing AND n.file_hash > $1 AND n.nar_size >= $2
		ORDER BY n.file_hash LIMIT $3`, after, minSize, limit)
	if err != nil {
		return nil, fmt.Errorf("whole nars: %w", translate(err))
	}
	return l, nil
}

// UnusedChunks removes up to limit chunks no Nar lists and then up to
// limit pack records no chunk lies in, and returns the count and the keys.
// Each kind is locked, skipping rows a transaction holds, and checked
// again in a statement of its own before it is removed, as UnusedNars
// does.
func (s *Store) UnusedChunks(ctx context.Context, limit int) (int, []string, error) {
	if limit <= 0 {
		return 0, nil, nil
	}
	var n int64
	var packs []string
	err := s.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT c.id FROM chunks c
			WHERE NOT EXISTS (SELECT 1 FROM nar_chunks nc WHERE nc.chunk_id = c.id) LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM chunks c WHERE c.id = ANY($1)
			AND NOT EXISTS (SELECT 1 FROM nar_chunks nc WHERE nc.chunk_id = c.id)`, ids)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		rows, err = tx.Query(ctx, `SELECT p.id FROM packs p
			WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.pack_id = p.id) LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
		if err != nil {
			return err
		}
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `DELETE FROM packs p WHERE p.id = ANY($1)
			AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.pack_id = p.id) RETURNING p.key`, ids)
		if err != nil {
			return err
		}
		packs, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("unused chunks: %w", translate(err))
	}
	return int(n), packs, nil
}

// SparsePacks returns up to limit packs created before before whose
// chunks take less than frac of them, emptiest first.
func (s *Store) SparsePacks(ctx context.Context, before time.Time, frac float64, limit int) ([]store.PackUsage, error) {
	if limit <= 0 {
		return nil, nil
	}
	l, err := collect(ctx, s, func(row pgx.CollectableRow) (store.PackUsage, error) {
		var u store.PackUsage
		err := row.Scan(&u.Key, &u.Size, &u.CreatedAt, &u.Live, &u.Chunks)
		u.CreatedAt = u.CreatedAt.UTC()
		return u, err
	}, `SELECT p.key, p.size, p.created_at, coalesce(sum(c.length), 0)::bigint AS live, count(c.id)::int
		FROM packs p LEFT JOIN chunks c ON c.pack_id = p.id
		WHERE p.created_at < $1 GROUP BY p.id
		HAVING coalesce(sum(c.length), 0) < p.size * $2::float8
		ORDER BY coalesce(sum(c.length), 0)::float8 / greatest(p.size, 1), p.key LIMIT $3`,
		secondsBefore(before), frac, limit)
	if err != nil {
		return nil, fmt.Errorf("sparse packs: %w", translate(err))
	}
	return l, nil
}

// PackChunks returns the chunks whose frames lie in the pack, by offset.
func (s *Store) PackChunks(ctx context.Context, pack string) ([]store.Chunk, error) {
	l, err := collect(ctx, s, scanChunk, `SELECT `+chunkColumns+` FROM chunks c JOIN packs p ON p.id = c.pack_id
		WHERE p.key = $1 ORDER BY c.pack_offset`, pack)
	if err != nil {
		return nil, fmt.Errorf("chunks of pack %s: %w", pack, translate(err))
	}
	return l, nil
}

// MoveChunks records p and moves to it the chunks of moved still in from,
// then removes the record of from if it holds no chunk.
func (s *Store) MoveChunks(ctx context.Context, from string, p store.Pack, moved []store.Chunk) (bool, error) {
	removed := false
	err := s.tx(ctx, func(tx pgx.Tx) error {
		removed = false
		var fromID, toID int64
		if err := tx.QueryRow(ctx, `SELECT id FROM packs WHERE key = $1 FOR UPDATE`, from).Scan(&fromID); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `INSERT INTO packs (key, size, created_at) VALUES ($1, $2, $3) RETURNING id`,
			p.Key, p.Size, orNow(p.CreatedAt)).Scan(&toID)
		if err != nil {
			return err
		}
		hashes := make([]string, len(moved))
		offsets, lengths := make([]int64, len(moved)), make([]int64, len(moved))
		for i, c := range moved {
			hashes[i], offsets[i], lengths[i] = c.Hash, c.Offset, c.Length
		}
		if _, err := tx.Exec(ctx, `UPDATE chunks c SET pack_id = $1, pack_offset = m.off, length = m.len
			FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS m (hash, off, len)
			WHERE c.hash = m.hash AND c.pack_id = $5`, toID, hashes, offsets, lengths, fromID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM packs WHERE id = $1
			AND NOT EXISTS (SELECT 1 FROM chunks WHERE pack_id = $1)`, fromID)
		removed = err == nil && tag.RowsAffected() > 0
		return err
	})
	if err != nil {
		return false, fmt.Errorf("move chunks of pack %s to %s: %w", from, p.Key, translate(err))
	}
	return removed, nil
}

// ChunkStats counts what the chunk index holds.
func (s *Store) ChunkStats(ctx context.Context) (store.ChunkStats, error) {
	st, err := one(ctx, s, func(row pgx.CollectableRow) (store.ChunkStats, error) {
		var st store.ChunkStats
		err := row.Scan(&st.Chunks, &st.Packs, &st.PackBytes, &st.LiveBytes, &st.NarChunks)
		return st, err
	}, `SELECT (SELECT count(*) FROM chunks), (SELECT count(*) FROM packs),
		(SELECT coalesce(sum(size), 0)::bigint FROM packs), (SELECT coalesce(sum(length), 0)::bigint FROM chunks),
		(SELECT count(*) FROM nar_chunks)`)
	if err != nil {
		return store.ChunkStats{}, fmt.Errorf("chunk stats: %w", translate(err))
	}
	return st, nil
}

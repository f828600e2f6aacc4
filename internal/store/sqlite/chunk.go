package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// chunkColumns are the columns of a chunk c in its pack p.
const chunkColumns = `c.hash, c.size, p.key, c.pack_offset, c.length`

// scanChunks reads and closes rows of chunkColumns.
func scanChunks(rows *sql.Rows) ([]store.Chunk, error) {
	defer rows.Close()
	var l []store.Chunk
	for rows.Next() {
		var c store.Chunk
		if err := rows.Scan(&c.Hash, &c.Size, &c.Pack, &c.Offset, &c.Length); err != nil {
			return nil, err
		}
		l = append(l, c)
	}
	return l, rows.Err()
}

// FindChunks returns the stored chunks among hashes, by hash.
func (s *Store) FindChunks(ctx context.Context, hashes []string) (map[string]store.Chunk, error) {
	found := make(map[string]store.Chunk, len(hashes))
	if len(hashes) == 0 {
		return found, nil
	}
	list, err := encodeList(hashes)
	if err != nil {
		return nil, fmt.Errorf("find chunks: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+chunkColumns+` FROM chunks c JOIN packs p ON p.id = c.pack_id
		WHERE c.hash IN (SELECT value FROM json_each(?1))`, list)
	if err != nil {
		return nil, fmt.Errorf("find chunks: %w", err)
	}
	l, err := scanChunks(rows)
	if err != nil {
		return nil, fmt.Errorf("find chunks: %w", err)
	}
	for _, c := range l {
		found[c.Hash] = c
	}
	return found, nil
}

// PackNar records the chunked form of a Nar in one transaction.
func (s *Store) PackNar(ctx context.Context, p store.PackedNar) error {
	if err := checkPacked(p); err != nil {
		return err
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		var narID int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM nars WHERE file_hash = ? AND blob_key = ?
			AND missing = 0 AND packed_hash = ''`, p.FileHash, p.BlobKey).Scan(&narID)
		if err != nil {
			return err
		}
		packIDs := make(map[string]int64, len(p.Packs))
		for _, pk := range p.Packs {
			var id int64
			err := tx.QueryRowContext(ctx, `INSERT INTO packs (key, size, created_at) VALUES (?, ?, ?) RETURNING id`,
				pk.Key, pk.Size, orNow(pk.CreatedAt).Unix()).Scan(&id)
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
		idList, err := json.Marshal(ids)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO nar_chunks (nar_id, idx, chunk_id)
			SELECT ?1, key, value FROM json_each(?2)`, narID, string(idList)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE nars SET packed_hash = ?, packed_size = ?, blob_key = '' WHERE id = ?`,
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
func insertChunks(ctx context.Context, tx *sql.Tx, chunks []store.Chunk, packIDs map[string]int64) error {
	if len(chunks) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO chunks (hash, size, pack_id, pack_offset, length)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, c := range chunks {
		id, ok := packIDs[c.Pack]
		if !ok {
			return fmt.Errorf("chunk %s is in pack %s, which is not among the new packs", c.Hash, c.Pack)
		}
		if _, err := stmt.ExecContext(ctx, c.Hash, c.Size, id, c.Offset, c.Length); err != nil {
			return err
		}
	}
	return nil
}

// chunkIDs returns the IDs of the chunks with the given hashes, in the
// same order, or an error wrapping store.ErrChunkGone if one is not stored.
func chunkIDs(ctx context.Context, tx *sql.Tx, hashes []string) ([]int64, error) {
	list, err := encodeList(hashes)
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT hash, id FROM chunks WHERE hash IN (SELECT value FROM json_each(?1))`, list)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	byHash := make(map[string]int64)
	for rows.Next() {
		var h string
		var id int64
		if err := rows.Scan(&h, &id); err != nil {
			return nil, err
		}
		byHash[h] = id
	}
	if err := rows.Err(); err != nil {
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

// The queries of a NAR download of a file stored as chunks, prepared.
const (
	narChunksSQL = `SELECT ` + chunkColumns + ` FROM nars n
		JOIN nar_chunks nc ON nc.nar_id = n.id
		JOIN chunks c ON c.id = nc.chunk_id
		JOIN packs p ON p.id = c.pack_id
		WHERE n.file_hash = ? AND n.packed_hash <> '' ORDER BY nc.idx`
	// CROSS JOIN makes SQLite search the packed hash first: without
	// statistics, it would rather walk every NAR of the cache.
	cachePackedNarSQL = `SELECT n.file_hash, n.file_size, n.compression, n.nar_hash,
		n.nar_size, n.md5, n.blob_key, cn.created_at, n.missing, n.packed_hash, n.packed_size FROM nars n
		CROSS JOIN cache_nars cn ON cn.nar_id = n.id AND cn.cache_id = ?1
		WHERE n.packed_hash = ?2 AND n.packed_hash <> '' ORDER BY n.missing, n.file_hash LIMIT 1`
)

// NarChunks returns the chunks of a packed Nar in order.
func (s *Store) NarChunks(ctx context.Context, fileHash string) ([]store.Chunk, error) {
	rows, err := s.narChunks.QueryContext(ctx, fileHash)
	if err != nil {
		return nil, fmt.Errorf("chunks of nar %s: %w", fileHash, err)
	}
	l, err := scanChunks(rows)
	if err != nil {
		return nil, fmt.Errorf("chunks of nar %s: %w", fileHash, err)
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
	n, err := scanNar(s.cachePackedNar.QueryRowContext(ctx, cacheID, packedHash))
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
	rows, err := s.r.QueryContext(ctx, `SELECT `+narColumns+` FROM nars n
		WHERE n.packed_hash = '' AND n.missing = 0 AND n.file_hash > ?1 AND n.nar_size >= ?2
		ORDER BY n.file_hash LIMIT ?3`, after, minSize, limit)
	if err != nil {
		return nil, fmt.Errorf("whole nars: %w", err)
	}
	l, err := scanNars(rows)
	if err != nil {
		return nil, fmt.Errorf("whole nars: %w", err)
	}
	return l, nil
}

// UnusedChunks removes up to limit chunks no Nar lists and then up to
// limit pack records no chunk lies in, and returns the count and the keys.
func (s *Store) UnusedChunks(ctx context.Context, limit int) (int, []string, error) {
	if limit <= 0 {
		return 0, nil, nil
	}
	var n int64
	var packs []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM chunks WHERE id IN (SELECT c.id FROM chunks c
			WHERE NOT EXISTS (SELECT 1 FROM nar_chunks nc WHERE nc.chunk_id = c.id) LIMIT ?)`, limit)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `DELETE FROM packs WHERE id IN (SELECT p.id FROM packs p
			WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.pack_id = p.id) LIMIT ?) RETURNING key`, limit)
		if err != nil {
			return err
		}
		packs, err = scanStrings(rows)
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("unused chunks: %w", err)
	}
	return int(n), packs, nil
}

// SparsePacks returns up to limit packs created before before whose
// chunks take less than frac of them, emptiest first.
func (s *Store) SparsePacks(ctx context.Context, before time.Time, frac float64, limit int) ([]store.PackUsage, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT p.key, p.size, p.created_at, coalesce(sum(c.length), 0), count(c.id)
		FROM packs p LEFT JOIN chunks c ON c.pack_id = p.id
		WHERE p.created_at < ?1 GROUP BY p.id
		HAVING coalesce(sum(c.length), 0) < p.size * ?2
		ORDER BY coalesce(sum(c.length), 0) * 1.0 / max(p.size, 1), p.key LIMIT ?3`,
		secondsBefore(before), frac, limit)
	if err != nil {
		return nil, fmt.Errorf("sparse packs: %w", err)
	}
	defer rows.Close()
	var l []store.PackUsage
	for rows.Next() {
		var u store.PackUsage
		var created int64
		if err := rows.Scan(&u.Key, &u.Size, &created, &u.Live, &u.Chunks); err != nil {
			return nil, fmt.Errorf("sparse packs: %w", err)
		}
		u.CreatedAt = fromUnix(created)
		l = append(l, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sparse packs: %w", err)
	}
	return l, nil
}

// PackChunks returns the chunks whose frames lie in the pack, by offset.
func (s *Store) PackChunks(ctx context.Context, pack string) ([]store.Chunk, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+chunkColumns+` FROM chunks c JOIN packs p ON p.id = c.pack_id
		WHERE p.key = ? ORDER BY c.pack_offset`, pack)
	if err != nil {
		return nil, fmt.Errorf("chunks of pack %s: %w", pack, err)
	}
	l, err := scanChunks(rows)
	if err != nil {
		return nil, fmt.Errorf("chunks of pack %s: %w", pack, err)
	}
	return l, nil
}

// MoveChunks records p and moves to it the chunks of moved still in from,
// then removes the record of from if it holds no chunk.
func (s *Store) MoveChunks(ctx context.Context, from string, p store.Pack, moved []store.Chunk) (bool, error) {
	removed := false
	err := s.write(ctx, func(tx *sql.Tx) error {
		removed = false
		var fromID, toID int64
		if err := tx.QueryRowContext(ctx, `SELECT id FROM packs WHERE key = ?`, from).Scan(&fromID); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO packs (key, size, created_at) VALUES (?, ?, ?) RETURNING id`,
			p.Key, p.Size, orNow(p.CreatedAt).Unix()).Scan(&toID)
		if err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `UPDATE chunks SET pack_id = ?, pack_offset = ?, length = ?
			WHERE hash = ? AND pack_id = ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, c := range moved {
			if _, err := stmt.ExecContext(ctx, toID, c.Offset, c.Length, c.Hash, fromID); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM packs WHERE id = ?1
			AND NOT EXISTS (SELECT 1 FROM chunks WHERE pack_id = ?1)`, fromID)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		removed = n > 0
		return err
	})
	if err != nil {
		return false, fmt.Errorf("move chunks of pack %s to %s: %w", from, p.Key, translate(err))
	}
	return removed, nil
}

// ChunkStats counts what the chunk index holds.
func (s *Store) ChunkStats(ctx context.Context) (store.ChunkStats, error) {
	var st store.ChunkStats
	err := s.r.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM chunks), (SELECT count(*) FROM packs),
		(SELECT coalesce(sum(size), 0) FROM packs), (SELECT coalesce(sum(length), 0) FROM chunks),
		(SELECT count(*) FROM nar_chunks)`).Scan(&st.Chunks, &st.Packs, &st.PackBytes, &st.LiveBytes, &st.NarChunks)
	if err != nil {
		return store.ChunkStats{}, fmt.Errorf("chunk stats: %w", err)
	}
	return st, nil
}

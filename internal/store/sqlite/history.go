package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// AddSample adds s into the sample of its cache at s.At, or records it.
func (s *Store) AddSample(ctx context.Context, sm store.Sample) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO cache_samples (cache_id, at, span, bytes, paths, requests, hits)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (cache_id, at) DO UPDATE SET span = excluded.span, bytes = excluded.bytes,
				paths = excluded.paths, requests = requests + excluded.requests, hits = hits + excluded.hits`,
			sm.CacheID, sm.At.Unix(), int64(sm.Span/time.Second), sm.Bytes, sm.Paths, sm.Requests, sm.Hits)
		return err
	})
	if err != nil {
		return fmt.Errorf("add sample of cache %d: %w", sm.CacheID, translate(err))
	}
	return nil
}

// Samples returns the latest limit samples of the cache since since,
// oldest first.
func (s *Store) Samples(ctx context.Context, cacheID int64, since time.Time, limit int) ([]store.Sample, error) {
	if limit < 1 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT at, span, bytes, paths, requests, hits FROM cache_samples
		WHERE cache_id = ? AND at >= ? ORDER BY at DESC LIMIT ?`, cacheID, since.Unix(), limit)
	if err != nil {
		return nil, fmt.Errorf("samples of cache %d: %w", cacheID, err)
	}
	defer rows.Close()
	var out []store.Sample
	for rows.Next() {
		sm := store.Sample{CacheID: cacheID}
		var at, span int64
		if err := rows.Scan(&at, &span, &sm.Bytes, &sm.Paths, &sm.Requests, &sm.Hits); err != nil {
			return nil, fmt.Errorf("samples of cache %d: %w", cacheID, err)
		}
		sm.At, sm.Span = fromUnix(at), time.Duration(span)*time.Second
		out = append(out, sm)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("samples of cache %d: %w", cacheID, err)
	}
	slices.Reverse(out)
	return out, nil
}

// MergeSamples merges the samples before before into one per multiple of
// step, in one transaction: the samples off a multiple are added, group by
// group, into the one at their multiple, or become it, and are removed.
// The sizes of a group are those of its latest sample: SQLite takes the bare
// columns of a query with one max() from the row that has the maximum.
func (s *Store) MergeSamples(ctx context.Context, before time.Time, step time.Duration) error {
	st := int64(step / time.Second)
	if st < 1 {
		return fmt.Errorf("merge samples: step %v is under a second", step)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		// WHERE true keeps ON CONFLICT from being read as a join's ON.
		_, err := tx.ExecContext(ctx, `INSERT INTO cache_samples (cache_id, at, span, bytes, paths, requests, hits)
			SELECT cache_id, bucket, min(?1, span), bytes, paths, requests, hits FROM (
				SELECT cache_id, at - at % ?1 AS bucket, max(at), bytes, paths,
					sum(span) AS span, sum(requests) AS requests, sum(hits) AS hits
				FROM cache_samples WHERE at < ?2 AND at % ?1 <> 0 GROUP BY cache_id, bucket) WHERE true
			ON CONFLICT (cache_id, at) DO UPDATE SET span = min(?1, span + excluded.span),
				bytes = excluded.bytes, paths = excluded.paths,
				requests = requests + excluded.requests, hits = hits + excluded.hits`, st, before.Unix())
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM cache_samples WHERE at < ? AND at % ? <> 0`, before.Unix(), st)
		return err
	})
	if err != nil {
		return fmt.Errorf("merge samples before %v: %w", before, err)
	}
	return nil
}

// DeleteSamples removes the samples before before, on the index of at.
func (s *Store) DeleteSamples(ctx context.Context, before time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM cache_samples WHERE at < ?`, before.Unix())
		return err
	})
	if err != nil {
		return fmt.Errorf("delete samples before %v: %w", before, err)
	}
	return nil
}

package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

// AddSample adds s into the sample of its cache at s.At, or records it.
func (s *Store) AddSample(ctx context.Context, sm store.Sample) error {
	_, err := s.exec(ctx, `INSERT INTO cache_samples AS c (cache_id, at, span, bytes, paths, requests, hits)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (cache_id, at) DO UPDATE SET span = excluded.span, bytes = excluded.bytes,
			paths = excluded.paths, requests = c.requests + excluded.requests, hits = c.hits + excluded.hits`,
		sm.CacheID, time.Unix(sm.At.Unix(), 0).UTC(), int64(sm.Span/time.Second), sm.Bytes, sm.Paths, sm.Requests, sm.Hits)
	if err != nil {
		return fmt.Errorf("add sample of cache %d: %w", sm.CacheID, translate(err))
	}
	return nil
}

// scanSample reads a row of cache_id, at, span, bytes, paths, requests,
// hits.
func scanSample(row pgx.CollectableRow) (store.Sample, error) {
	var sm store.Sample
	var span int64
	err := row.Scan(&sm.CacheID, &sm.At, &span, &sm.Bytes, &sm.Paths, &sm.Requests, &sm.Hits)
	sm.At, sm.Span = sm.At.UTC(), time.Duration(span)*time.Second
	return sm, err
}

// Samples returns the latest limit samples of the cache since since,
// oldest first.
func (s *Store) Samples(ctx context.Context, cacheID int64, since time.Time, limit int) ([]store.Sample, error) {
	if limit < 1 {
		return nil, nil
	}
	l, err := collect(ctx, s, scanSample, `SELECT cache_id, at, span, bytes, paths, requests, hits FROM cache_samples
		WHERE cache_id = $1 AND at >= $2 ORDER BY at DESC LIMIT $3`, cacheID, since, limit)
	if err != nil {
		return nil, fmt.Errorf("samples of cache %d: %w", cacheID, translate(err))
	}
	slices.Reverse(l)
	return l, nil
}

// mergeSamplesSQL removes the samples before $2 that are off a multiple of
// $1 seconds and adds them, group by group, into the sample at their
// multiple, or makes it. The INSERT sees the table as it was before the
// DELETE, and the samples it conflicts with are at a multiple, which the
// DELETE leaves. A merge running at once on another connection waits for
// the rows this one deletes, and then finds them gone.
const mergeSamplesSQL = `WITH moved AS (
		DELETE FROM cache_samples WHERE at < $2 AND extract(epoch FROM at)::bigint % $1::bigint <> 0
		RETURNING cache_id, extract(epoch FROM at)::bigint / $1::bigint * $1::bigint AS bucket,
			at, span, bytes, paths, requests, hits
	)
	INSERT INTO cache_samples AS c (cache_id, at, span, bytes, paths, requests, hits)
	SELECT cache_id, to_timestamp(bucket), least($1::bigint, sum(span))::bigint,
		(array_agg(bytes ORDER BY at DESC))[1], (array_agg(paths ORDER BY at DESC))[1],
		sum(requests)::bigint, sum(hits)::bigint
	FROM moved GROUP BY cache_id, bucket
	ON CONFLICT (cache_id, at) DO UPDATE SET span = least($1::bigint, c.span + excluded.span),
		bytes = excluded.bytes, paths = excluded.paths,
		requests = c.requests + excluded.requests, hits = c.hits + excluded.hits`

// MergeSamples merges the samples before before into one per multiple of
// step, in one statement.
func (s *Store) MergeSamples(ctx context.Context, before time.Time, step time.Duration) error {
	st := int64(step / time.Second)
	if st < 1 {
		return fmt.Errorf("merge samples: step %v is under a second", step)
	}
	if _, err := s.exec(ctx, mergeSamplesSQL, st, before); err != nil {
		return fmt.Errorf("merge samples before %v: %w", before, translate(err))
	}
	return nil
}

// DeleteSamples removes the samples before before, on the index of at.
func (s *Store) DeleteSamples(ctx context.Context, before time.Time) error {
	if _, err := s.exec(ctx, `DELETE FROM cache_samples WHERE at < $1`, before); err != nil {
		return fmt.Errorf("delete samples before %v: %w", before, translate(err))
	}
	return nil
}

package storetest

import (
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// historyTests check the HistoryStore contract.
var historyTests = []metaTest{
	{"SampleAdd", testSampleAdd},
	{"SampleUnknownCache", testSampleUnknownCache},
	{"SamplesLatest", testSamplesLatest},
	{"SamplesMerge", testSamplesMerge},
	{"SamplesDelete", testSamplesDelete},
}

// day is the day the history tests record samples on.
var day = time.Date(2024, 9, 10, 0, 0, 0, 0, time.UTC)

// addSample adds sm and fails t on error.
func addSample(t *testing.T, s store.MetaStore, sm store.Sample) {
	t.Helper()
	mustOK(t, "add sample", s.AddSample(t.Context(), sm))
}

// mustSamples fails t unless the samples of the cache since since, at most
// limit, are want.
func mustSamples(t *testing.T, s store.MetaStore, cacheID int64, since time.Time, limit int, want ...store.Sample) {
	t.Helper()
	got, err := s.Samples(t.Context(), cacheID, since, limit)
	mustOK(t, "samples", err)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		mustUTC(t, "sample", got[i].At)
		g, w := got[i], want[i]
		ok = g.At.Equal(w.At)
		g.At, w.At = time.Time{}, time.Time{}
		ok = ok && g == w
	}
	if !ok {
		t.Fatalf("samples of cache %d since %v: got\n%+v\nwant\n%+v", cacheID, since, got, want)
	}
}

func testSampleAdd(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	at := day.Add(5 * time.Minute)
	addSample(t, s, store.Sample{CacheID: c.ID, At: at, Span: 5 * time.Minute, Bytes: 100, Paths: 2, Requests: 10, Hits: 4})
	// Another process adds its counts to the same interval and measures
	// the sizes again.
	addSample(t, s, store.Sample{CacheID: c.ID, At: at, Span: 5 * time.Minute, Bytes: 150, Paths: 3, Requests: 5, Hits: 5})
	addSample(t, s, store.Sample{CacheID: other.ID, At: at, Span: 5 * time.Minute, Bytes: 7, Paths: 1})
	mustSamples(t, s, c.ID, day, 10,
		store.Sample{CacheID: c.ID, At: at, Span: 5 * time.Minute, Bytes: 150, Paths: 3, Requests: 15, Hits: 9})
	mustSamples(t, s, other.ID, day, 10, store.Sample{CacheID: other.ID, At: at, Span: 5 * time.Minute, Bytes: 7, Paths: 1})
	mustSamples(t, s, c.ID, at.Add(time.Second), 10)
	mustSamples(t, s, c.ID, day, 0)
	mustSamples(t, s, 424242, day, 10)

	mustOK(t, "delete cache", s.DeleteCache(t.Context(), "main"))
	mustSamples(t, s, c.ID, day, 10)
	mustSamples(t, s, other.ID, day, 10, store.Sample{CacheID: other.ID, At: at, Span: 5 * time.Minute, Bytes: 7, Paths: 1})
}

func testSampleUnknownCache(t *testing.T, s store.MetaStore) {
	mustNotFound(t, "add a sample to an unknown cache",
		s.AddSample(t.Context(), store.Sample{CacheID: 424242, At: day, Span: time.Minute}))
}

func testSamplesLatest(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	var all []store.Sample
	for i := range 6 {
		sm := store.Sample{CacheID: c.ID, At: day.Add(time.Duration(i) * time.Minute), Span: time.Minute, Bytes: int64(i), Paths: 1}
		addSample(t, s, sm)
		all = append(all, sm)
	}
	mustSamples(t, s, c.ID, day, 10, all...)
	mustSamples(t, s, c.ID, day, 2, all[4:]...)
	mustSamples(t, s, c.ID, day.Add(2*time.Minute), 10, all[2:]...)
	mustSamples(t, s, c.ID, day.Add(2*time.Minute), 3, all[3:]...)
}

func testSamplesMerge(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	five := 5 * time.Minute
	// 01:00 to 02:55 in five-minute samples, the sizes growing; 01:30 is
	// missing. Then 03:00 and 03:05, which stay.
	var want []store.Sample
	for i := range 24 {
		if i == 6 {
			continue
		}
		at := day.Add(time.Hour + time.Duration(i)*five)
		addSample(t, s, store.Sample{CacheID: c.ID, At: at, Span: five, Bytes: int64(100 + i), Paths: int64(i), Requests: 2, Hits: 1})
	}
	for i := range 2 {
		sm := store.Sample{CacheID: c.ID, At: day.Add(3*time.Hour + time.Duration(i)*five), Span: five, Bytes: 500, Paths: 50, Requests: 1}
		addSample(t, s, sm)
		want = append(want, sm)
	}
	// other: one sample off the hour, alone in its hour.
	addSample(t, s, store.Sample{CacheID: other.ID, At: day.Add(time.Hour + 20*time.Minute), Span: five, Bytes: 9, Paths: 9, Requests: 3, Hits: 3})

	before := day.Add(3 * time.Hour)
	mustOK(t, "merge samples", s.MergeSamples(t.Context(), before, time.Hour))
	hour1 := store.Sample{CacheID: c.ID, At: day.Add(time.Hour), Span: 55 * time.Minute, Bytes: 111, Paths: 11, Requests: 22, Hits: 11}
	hour2 := store.Sample{CacheID: c.ID, At: day.Add(2 * time.Hour), Span: time.Hour, Bytes: 123, Paths: 23, Requests: 24, Hits: 12}
	mustSamples(t, s, c.ID, day, 100, append([]store.Sample{hour1, hour2}, want...)...)
	mustSamples(t, s, other.ID, day, 100,
		store.Sample{CacheID: other.ID, At: day.Add(time.Hour), Span: five, Bytes: 9, Paths: 9, Requests: 3, Hits: 3})

	// Merging again changes nothing; merging by day puts the hours into
	// the day's sample, capped at a day.
	mustOK(t, "merge samples again", s.MergeSamples(t.Context(), before, time.Hour))
	mustSamples(t, s, c.ID, day, 100, append([]store.Sample{hour1, hour2}, want...)...)
	mustOK(t, "merge samples by day", s.MergeSamples(t.Context(), day.Add(24*time.Hour), 24*time.Hour))
	mustSamples(t, s, c.ID, day.Add(-time.Hour), 100,
		store.Sample{CacheID: c.ID, At: day, Span: time.Hour + 55*time.Minute + 10*time.Minute, Bytes: 500, Paths: 50, Requests: 48, Hits: 23})
	if err := s.MergeSamples(t.Context(), before, 0); err == nil {
		t.Fatal("merge samples with step 0: no error")
	}
}

func testSamplesDelete(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	a := store.Sample{CacheID: c.ID, At: day, Span: time.Hour, Bytes: 1}
	b := store.Sample{CacheID: c.ID, At: day.Add(time.Hour), Span: time.Hour, Bytes: 2}
	addSample(t, s, a)
	addSample(t, s, b)
	mustOK(t, "delete samples", s.DeleteSamples(t.Context(), day.Add(time.Hour)))
	mustSamples(t, s, c.ID, day.Add(-time.Hour), 10, b)
	mustOK(t, "delete samples", s.DeleteSamples(t.Context(), day.Add(2*time.Hour)))
	mustSamples(t, s, c.ID, day.Add(-time.Hour), 10)
}

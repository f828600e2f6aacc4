// Package metrics owns larder's Prometheus metrics: the registry, the
// collectors the front ends and the service update, and the handler that
// serves them. Every method is safe on a nil *Metrics, which records
// nothing, so that tests and commands without a server need none.
//
// Every label takes its values from a fixed set, whatever the caller
// passes: each distinct value is a series kept for the life of the process,
// and requests come from anyone. Request maps what it does not know to
// "other" (see labels.go); the cache names of the collection metrics come
// from the metadata store, where only an administrator creates them.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the collectors of one server.
type Metrics struct {
	reg *prometheus.Registry

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// series holds the counter and histogram of each label set Request
	// has seen (requestLabels to *requestSeries), so that a request costs
	// no label hashing; the label sets are bounded, and so is it.
	series sync.Map

	gcRuns       *prometheus.CounterVec
	gcDuration   prometheus.Histogram
	gcLast       prometheus.Gauge
	removedPaths *prometheus.CounterVec
	removedBytes *prometheus.CounterVec
	keptPaths    *prometheus.GaugeVec
	keptBytes    *prometheus.GaugeVec
	overQuota    *prometheus.GaugeVec
	narsDeleted  prometheus.Counter
	narBytes     prometheus.Counter

	upLookups  *prometheus.CounterVec
	upDuration prometheus.Histogram
	upNars     *prometheus.CounterVec
	upNarBytes *prometheus.CounterVec
	upSkipped  prometheus.Counter

	connRefused prometheus.Counter
}

// New returns the metrics of a server, with the Go runtime's and the
// process's.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_http_requests_total",
			Help: "Requests answered, by protocol (nix or s3), kind of object, method and status code.",
		}, []string{"protocol", "kind", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "larder_http_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its answer, by protocol and kind of object.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 30, 120},
		}, []string{"protocol", "kind"}),
		gcRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_gc_runs_total",
			Help: "Garbage collections run by this process, by result (ok or error); dry runs are not counted.",
		}, []string{"result"}),
		gcDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "larder_gc_duration_seconds",
			Help:    "How long garbage collections took.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}),
		gcLast: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "larder_gc_last_success_timestamp_seconds",
			Help: "When this process last finished a garbage collection.",
		}),
		removedPaths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_gc_removed_paths_total",
			Help: "Narinfos removed by garbage collection, by cache.",
		}, []string{"cache"}),
		removedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_gc_removed_bytes_total",
			Help: "NAR bytes the cache no longer holds after garbage collection removed narinfos, by cache.",
		}, []string{"cache"}),
		keptPaths: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "larder_cache_kept_paths",
			Help: "Narinfos garbage collection kept at its last run, by cache.",
		}, []string{"cache"}),
		keptBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "larder_cache_kept_bytes",
			Help: "NAR bytes garbage collection kept at its last run, by cache.",
		}, []string{"cache"}),
		overQuota: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "larder_cache_pins_over_quota",
			Help: "1 if the pins of a cache alone exceeded its max-size at the last collection, else 0.",
		}, []string{"cache"}),
		narsDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "larder_gc_nar_files_deleted_total",
			Help: "NAR files deleted from the blob store because no cache held them any more.",
		}),
		narBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "larder_gc_nar_bytes_deleted_total",
			Help: "Bytes of the NAR files deleted from the blob store.",
		}),
		upLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_upstream_lookups_total",
			Help: "Narinfos asked of upstream caches, by result: hit (signed by the upstream's key), miss, error (failed, timed out or skipped while the upstream is down) or refused (a forged, unsigned or unusable answer).",
		}, []string{"result"}),
		upDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "larder_upstream_lookup_duration_seconds",
			Help:    "How long upstream caches took to answer a narinfo request.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		upNars: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_upstream_nar_fetches_total",
			Help: "NAR files fetched from upstream caches, by result: stored (pulled through), served (passed on, not stored) or failed (including those that failed verification).",
		}, []string{"result"}),
		upNarBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_upstream_nar_bytes_total",
			Help: "Bytes of NAR files fetched from upstream caches, by result, as larder_upstream_nar_fetches_total.",
		}, []string{"result"}),
		upSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "larder_upstream_skipped_paths_total",
			Help: "Paths recorded as upstream-only: an upstream holds them, so they were neither uploaded nor stored.",
		}),
		connRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "larder_http_connections_refused_total",
			Help: "Connections refused because max_connections were open.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.gcRuns, m.gcDuration, m.gcLast,
		m.removedPaths, m.removedBytes, m.keptPaths, m.keptBytes, m.overQuota, m.narsDeleted, m.narBytes,
		m.upLookups, m.upDuration, m.upNars, m.upNarBytes, m.upSkipped, m.connRefused} {
		f(c)
	}
	return m
}

// Connections exports open, the number of connections the server holds
// open, as larder_http_connections_open. Call it once.
func (m *Metrics) Connections(open func() int64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "larder_http_connections_open",
		Help: "Connections the server holds open (at most max_connections).",
	}, func() float64 { return float64(open()) }))
}

// ConnectionRefused counts a connection refused at max_connections.
func (m *Metrics) ConnectionRefused() { m.connRefused.Inc() }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Request records an answered request. Its labels are bounded here, not by
// the caller: a protocol, kind or method this package does not know is
// counted as "other", as is a status outside 100-599.
func (m *Metrics) Request(protocol, kind, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	key := requestLabels{protocol, kind, method, status}
	v, ok := m.series.Load(key)
	if !ok {
		p, k := protocolLabel(protocol), kindLabel(protocol, kind)
		rs := &requestSeries{
			count:    m.requests.WithLabelValues(p, k, methodLabel(method), codeLabel(status)),
			duration: m.duration.WithLabelValues(p, k),
		}
		if bounded(key, p, k) {
			v, _ = m.series.LoadOrStore(key, rs)
		} else {
			v = rs
		}
	}
	rs := v.(*requestSeries)
	rs.count.Inc()
	rs.duration.Observe(d.Seconds())
}

// requestLabels are the labels of a request as its caller gave them.
type requestLabels struct {
	protocol, kind, method string
	status                 int
}

// requestSeries are the series a request with some labels counts in.
type requestSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// bounded reports whether the labels the caller gave are the ones counted
// (p and k for the protocol and kind), so that only those are remembered:
// what is counted as "other" would otherwise fill the map with the
// clients' text.
func bounded(key requestLabels, p, k string) bool {
	return p == key.protocol && k == key.kind && methodLabel(key.method) == key.method &&
		key.status >= 100 && key.status <= 599
}

// CacheCollected records what a collection did to one cache. The cache
// label is the cache's name as the metadata store holds it: a valid cache
// name (3-63 characters) that an administrator created, so the caches, not
// the requests, bound its values.
func (m *Metrics) CacheCollected(cache string, keptPaths, keptBytes, removedPaths, removedBytes int64, overQuota bool) {
	if m == nil {
		return
	}
	m.keptPaths.WithLabelValues(cache).Set(float64(keptPaths))
	m.keptBytes.WithLabelValues(cache).Set(float64(keptBytes))
	m.removedPaths.WithLabelValues(cache).Add(float64(removedPaths))
	m.removedBytes.WithLabelValues(cache).Add(float64(removedBytes))
	over := 0.0
	if overQuota {
		over = 1
	}
	m.overQuota.WithLabelValues(cache).Set(over)
}

// Collected records the end of a collection, with the NAR files it
// deleted.
func (m *Metrics) Collected(err error, took time.Duration, narFiles int, narBytes int64) {
	if m == nil {
		return
	}
	if err != nil {
		m.gcRuns.WithLabelValues("error").Inc()
		return
	}
	m.gcRuns.WithLabelValues("ok").Inc()
	m.gcDuration.Observe(took.Seconds())
	m.gcLast.SetToCurrentTime()
	m.narsDeleted.Add(float64(narFiles))
	m.narBytes.Add(float64(narBytes))
}

// The results of upstream lookups and NAR fetches.
const (
	LookupHit     = "hit"
	LookupMiss    = "miss"
	LookupError   = "error"
	LookupRefused = "refused"

	NarStored = "stored"
	NarServed = "served"
	NarFailed = "failed"
)

// UpstreamLookup records one narinfo lookup at an upstream cache and, if
// a request was made (took > 0), how long it took. A result other than
// the Lookup ones counts as "other".
func (m *Metrics) UpstreamLookup(result string, took time.Duration) {
	if m == nil {
		return
	}
	switch result {
	case LookupHit, LookupMiss, LookupError, LookupRefused:
	default:
		result = other
	}
	m.upLookups.WithLabelValues(result).Inc()
	if took > 0 {
		m.upDuration.Observe(took.Seconds())
	}
}

// UpstreamNar records a NAR file fetched from an upstream cache, with the
// bytes read from it. A result other than the Nar ones counts as "other".
func (m *Metrics) UpstreamNar(result string, bytes int64) {
	if m == nil {
		return
	}
	switch result {
	case NarStored, NarServed, NarFailed:
	default:
		result = other
	}
	m.upNars.WithLabelValues(result).Inc()
	m.upNarBytes.WithLabelValues(result).Add(float64(bytes))
}

// UpstreamSkipped records n paths recorded as upstream-only.
func (m *Metrics) UpstreamSkipped(n int) {
	if m == nil {
		return
	}
	m.upSkipped.Add(float64(n))
}

// Package telemetry builds Cairn's Prometheus metrics and OpenTelemetry
// tracer provider (trace.go says what is traced and what it costs). Constructors take their registerer; nothing uses the global default
// registry. Label children used on the hot path are resolved once here, so a
// claim never formats a label or looks one up.
package telemetry

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairnhq/cairn/internal/hunt"
)

// Service is the value of the `service` label (the seed's p99_write_latency{service=...}).
const Service = "cairn"

// Operations: values of the `operation` label.
const (
	OpClaim = "claim"
	OpSpend = "spend"
)

// Metrics holds every Cairn metric. A nil *Metrics is not allowed; use New(nil-safe registerer) or Discard().
type Metrics struct {
	// RequestLatency: seconds from an API request's arrival to its answer, by service and operation.
	RequestLatency *prometheus.HistogramVec
	// Outcomes: decided claims and spends by outcome.
	Outcomes *prometheus.CounterVec
	// Replays: answers served from an idempotency record (client retries).
	Replays prometheus.Counter
	// Shed: requests refused for overload or unavailability, by reason.
	Shed *prometheus.CounterVec
	// BatchSize: events per committed partition batch.
	BatchSize prometheus.Histogram
	// CommitLatency: seconds to make one batch durable (the synced write / the Function call).
	CommitLatency prometheus.Histogram
	// GroupSize: events per synced group commit (embedded engine: the batches of
	// every partition that were ready, made durable by one synced write).
	GroupSize prometheus.Histogram
	// GroupBatches: partition batches per synced group commit (embedded engine).
	GroupBatches prometheus.Histogram
	// InboxDepth: requests waiting in a partition's inbox.
	InboxDepth *prometheus.GaugeVec
	// ConsumerLag: entries not yet processed per partition (Redis engine).
	ConsumerLag *prometheus.GaugeVec
	// DeadLetters: poison entries moved to the dead-letter stream (Redis engine).
	DeadLetters prometheus.Counter
	// ProjectionStaleness: seconds between an event's commit and its application to a projection.
	ProjectionStaleness *prometheus.HistogramVec
	// Retries: internal retries (reclaimed stream entries, reconnects), by kind.
	Retries *prometheus.CounterVec
	// HTTPErrors: problem answers from the error table (not decided
	// refusals such as sold_out, which Outcomes counts), by HTTP status.
	HTTPErrors *prometheus.CounterVec
	// DiskGuard: 1 while the embedded engine refuses writes because its
	// disk is nearly full. A vector without labels, so that only the engine
	// that has a disk guard exports it (Engine resolves it with WithLabelValues()).
	DiskGuard *prometheus.GaugeVec
	// RedisUp: 1 while the Redis engine's health probe reaches Redis (Redis
	// engine only; a vector without labels, like DiskGuard).
	RedisUp *prometheus.GaugeVec
	// RedisPing: seconds of each health probe's PING round trip (Redis engine only).
	RedisPing *prometheus.HistogramVec
	// FeedGaps: gap events sent on live-feed streams (frames a client missed).
	FeedGaps prometheus.Counter
	// RepeatedRefusals: too_far and implausible_movement refusals of a player
	// who had several of them shortly before (a spoofer or a bot), by outcome.
	// No player label: the log and the audit have the players.
	RepeatedRefusals *prometheus.CounterVec

	claimLatency prometheus.Observer
	spendLatency prometheus.Observer
	outcome      [16]prometheus.Counter
}

// New creates the metrics and registers them (and the Go and process
// collectors) with reg. reg may be nil: the metrics then work but are not exported.
func New(reg prometheus.Registerer) *Metrics {
	latencyBuckets := []float64{.0002, .0005, .001, .002, .003, .005, .0075, .01, .015, .02, .03, .05, .075, .1, .2, .5, 1, 2, 5}
	m := &Metrics{
		RequestLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cairn_request_duration_seconds", Help: "API request latency from arrival to answer.",
			Buckets: latencyBuckets,
		}, []string{"service", "operation"}),
		Outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_decisions_total", Help: "Decided claims and spends by outcome.",
		}, []string{"outcome"}),
		Replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_idempotent_replays_total", Help: "Answers replayed from an idempotency record.",
		}),
		Shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_shed_total", Help: "Requests refused with 429 or 503, by reason.",
		}, []string{"reason"}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cairn_batch_size", Help: "Events per committed partition batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		CommitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cairn_commit_duration_seconds", Help: "Time to make one batch durable.",
			Buckets: latencyBuckets,
		}),
		GroupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cairn_commit_group_size", Help: "Events per synced group commit (all partitions' ready batches).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		GroupBatches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cairn_commit_group_batches", Help: "Partition batches per synced group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 8),
		}),
		InboxDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_inbox_depth", Help: "Requests waiting in a partition inbox.",
		}, []string{"partition"}),
		ConsumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_consumer_lag", Help: "Stream entries not yet processed, per partition.",
		}, []string{"partition"}),
		DeadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_dead_letters_total", Help: "Poison entries moved to the dead-letter stream.",
		}),
		ProjectionStaleness: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cairn_projection_staleness_seconds", Help: "Commit-to-apply delay of projections.",
			Buckets: latencyBuckets,
		}, []string{"projection"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_retries_total", Help: "Internal retries by kind.",
		}, []string{"kind"}),
		HTTPErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_http_errors_total", Help: "Error answers (problem+json from the error table, not decided refusals) by HTTP status.",
		}, []string{"status"}),
		DiskGuard: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_disk_guard_active", Help: "1 while writes are refused because the store's disk is nearly full (embedded engine).",
		}, nil),
		RedisUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_redis_up", Help: "1 while the health probe reaches Redis (Redis engine).",
		}, nil),
		RedisPing: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cairn_redis_ping_duration_seconds", Help: "Round trip of the Redis health probe's PING (Redis engine).",
			Buckets: latencyBuckets,
		}, nil),
		FeedGaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_feed_gaps_total", Help: "Gap events sent on live-feed streams (frames a client missed).",
		}),
		RepeatedRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_repeated_refusals_total",
			Help: "too_far and implausible_movement refusals of a player who had several shortly before, by outcome.",
		}, []string{"outcome"}),
	}
	m.claimLatency = m.RequestLatency.WithLabelValues(Service, OpClaim)
	m.spendLatency = m.RequestLatency.WithLabelValues(Service, OpSpend)
	for o := hunt.Outcome(1); o.Valid(); o++ {
		m.outcome[o] = m.Outcomes.WithLabelValues(o.String())
	}
	if reg != nil {
		reg.MustRegister(m.RequestLatency, m.Outcomes, m.Replays, m.Shed, m.BatchSize, m.CommitLatency,
			m.GroupSize, m.GroupBatches,
			m.InboxDepth, m.ConsumerLag, m.DeadLetters, m.ProjectionStaleness, m.Retries,
			m.HTTPErrors, m.DiskGuard, m.RedisUp, m.RedisPing,
			m.FeedGaps, m.RepeatedRefusals,
			collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Discard returns metrics registered nowhere (tests, tools).
func Discard() *Metrics { return New(nil) }

// ClaimLatency is the pre-resolved observer for claim latency (seconds).
func (m *Metrics) ClaimLatency() prometheus.Observer { return m.claimLatency }

// SpendLatency is the pre-resolved observer for spend latency (seconds).
func (m *Metrics) SpendLatency() prometheus.Observer { return m.spendLatency }

// Outcome is the pre-resolved counter of one outcome.
func (m *Metrics) Outcome(o hunt.Outcome) prometheus.Counter {
	if !o.Valid() {
		return m.Outcomes.WithLabelValues("unknown")
	}
	return m.outcome[o]
}

// PartitionGauges resolves one gauge per partition (call once at start).
func PartitionGauges(v *prometheus.GaugeVec, partitions int) []prometheus.Gauge {
	out := make([]prometheus.Gauge, partitions)
	for i := range out {
		out[i] = v.WithLabelValues(strconv.Itoa(i))
	}
	return out
}

// Tracer returns the tracer of Cairn's HTTP layer, or nil when tp is nil
// (tracing off: the HTTP layer then starts no span at all).
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(TracerName)
}

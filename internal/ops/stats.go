package ops

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// claimOutcomes are the outcomes a claim can have, in the order the stats list them.
var claimOutcomes = []hunt.Outcome{hunt.Granted, hunt.AlreadyClaimed, hunt.SoldOut, hunt.TooFar, hunt.NotOpen, hunt.ImplausibleMovement}

// sample is one second of claims: decisions by outcome (same order as
// claimOutcomes) and the latency quantiles of the claims answered in it.
type sample struct {
	At       time.Time `json:"at"`
	Outcomes []float64 `json:"outcomes"`
	Answered float64   `json:"answered"`         // claims answered (any status), from the latency histogram
	P50Ms    *float64  `json:"p50_ms,omitempty"` // nil: no claim answered in that second
	P99Ms    *float64  `json:"p99_ms,omitempty"`
}

// sampler turns the node's cumulative Prometheus metrics into per-second
// samples: the difference of the counters and of the claim latency
// histogram's buckets between two ticks. It reads the metrics only, so the
// claim path pays nothing for it. Quantiles are interpolated linearly
// inside the histogram's buckets (the buckets of cairn_request_duration_seconds).
type sampler struct {
	outcomes []prometheus.Counter
	latency  prometheus.Observer

	mu struct {
		sync.Mutex
		ring    []sample // ring of samples; len = capacity
		n       int      // samples ever taken
		prevOut []float64
		prevBkt []uint64 // cumulative bucket counts of the previous tick
		prevCnt uint64
		bounds  []float64
		primed  bool
	}
}

func newSampler(m *telemetry.Metrics, seconds int) *sampler {
	s := &sampler{latency: m.ClaimLatency()}
	for _, o := range claimOutcomes {
		s.outcomes = append(s.outcomes, m.Outcome(o))
	}
	s.mu.ring = make([]sample, seconds)
	return s
}

// sample takes one sample at now (Run calls it once a second).
func (s *sampler) sample(now time.Time) {
	out := make([]float64, len(s.outcomes))
	var m dto.Metric
	for i, c := range s.outcomes {
		m.Reset()
		if err := c.Write(&m); err == nil {
			out[i] = m.GetCounter().GetValue()
		}
	}
	var bounds []float64
	var cum []uint64
	var count uint64
	m.Reset()
	if mw, ok := s.latency.(prometheus.Metric); ok && mw.Write(&m) == nil && m.GetHistogram() != nil {
		h := m.GetHistogram()
		count = h.GetSampleCount()
		for _, b := range h.GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
			cum = append(cum, b.GetCumulativeCount())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.primed {
		smp := sample{At: now.Truncate(time.Second), Outcomes: make([]float64, len(out))}
		for i := range out {
			smp.Outcomes[i] = max(0, out[i]-s.mu.prevOut[i])
		}
		if count >= s.mu.prevCnt && len(cum) == len(s.mu.prevBkt) {
			smp.Answered = float64(count - s.mu.prevCnt)
			delta := make([]uint64, len(cum))
			for i := range cum {
				delta[i] = cum[i] - s.mu.prevBkt[i]
			}
			if q, ok := quantile(bounds, delta, count-s.mu.prevCnt, 0.50); ok {
				smp.P50Ms = &q
			}
			if q, ok := quantile(bounds, delta, count-s.mu.prevCnt, 0.99); ok {
				smp.P99Ms = &q
			}
		}
		s.mu.ring[s.mu.n%len(s.mu.ring)] = smp
		s.mu.n++
	}
	s.mu.prevOut, s.mu.prevBkt, s.mu.prevCnt, s.mu.bounds, s.mu.primed = out, cum, count, bounds, true
}

// quantile estimates the q-quantile in milliseconds from cumulative bucket
// counts (upper bounds in seconds) of total observations, interpolating
// linearly inside the bucket; observations past the last bound count as
// the last bound. false when total is 0.
func quantile(bounds []float64, cum []uint64, total uint64, q float64) (float64, bool) {
	if total == 0 {
		return 0, false
	}
	rank := q * float64(total)
	lower, below := 0.0, uint64(0)
	for i, b := range bounds {
		if float64(cum[i]) >= rank {
			in := cum[i] - below
			frac := 1.0
			if in > 0 {
				frac = (rank - float64(below)) / float64(in)
			}
			return 1000 * (lower + (b-lower)*frac), true
		}
		lower, below = b, cum[i]
	}
	if len(bounds) == 0 {
		return 0, false
	}
	return 1000 * bounds[len(bounds)-1], true
}

// last returns up to n of the latest samples, oldest first.
func (s *sampler) last(n int) []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	n = min(n, s.mu.n, len(s.mu.ring))
	out := make([]sample, 0, n)
	for i := s.mu.n - n; i < s.mu.n; i++ {
		out = append(out, s.mu.ring[i%len(s.mu.ring)])
	}
	return out
}

// serveStats answers GET /ops/api/stats?seconds=N: the latest N (default
// and at most StatsSeconds) per-second samples of claims by outcome and
// claim latency.
func (o *Ops) serveStats(w http.ResponseWriter, r *http.Request) error {
	n := o.cfg.StatsSeconds
	if v := r.URL.Query().Get("seconds"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 || k > o.cfg.StatsSeconds {
			return invalid("seconds must be 1.." + strconv.Itoa(o.cfg.StatsSeconds))
		}
		n = k
	}
	names := make([]string, len(claimOutcomes))
	for i, oc := range claimOutcomes {
		names[i] = oc.String()
	}
	return writeJSON(w, struct {
		Outcomes []string `json:"outcomes"`
		Samples  []sample `json:"samples"`
	}{names, o.stats.last(n)})
}

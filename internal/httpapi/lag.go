package httpapi

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnhq/cairn/internal/engine"
)

// projectionLag is how far a projection's watermark st trails its
// partition's last commit e: in events, and in commit time (ms) from the
// partition's newest event to the newest one applied, 0 when caught up; when
// nothing was applied yet, the age of the partition's newest event at now.
func projectionLag(e, st engine.Status, now time.Time) (events uint64, ms int64) {
	if e.Epoch.Seq <= st.Epoch.Seq {
		return 0, 0
	}
	events = uint64(e.Epoch.Seq - st.Epoch.Seq)
	if st.At.IsZero() {
		ms = now.Sub(e.At).Milliseconds()
	} else {
		ms = e.At.Sub(st.At).Milliseconds()
	}
	return events, max(ms, 0)
}

// lagCollector exports /v1/consistency's projection lag per partition as
// gauges computed at scrape time, so the claim path pays nothing for them.
type lagCollector struct {
	s            *Server
	events, secs *prometheus.Desc
}

// LagCollector returns a Prometheus collector of the projection's lag behind
// each partition writer: cairn_partition_lag_events{partition} and
// cairn_partition_lag_seconds{partition}, the numbers /v1/consistency shows.
// The caller registers it (node does, on its registry).
func (s *Server) LagCollector() prometheus.Collector {
	return &lagCollector{
		s: s,
		events: prometheus.NewDesc("cairn_partition_lag_events",
			"Events committed on a partition that the leaderboard projection has not applied yet.", []string{"partition"}, nil),
		secs: prometheus.NewDesc("cairn_partition_lag_seconds",
			"Commit-time distance from a partition's newest event to the newest one the leaderboard projection applied.", []string{"partition"}, nil),
	}
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.events
	ch <- c.secs
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.s.cfg.Clock()
	byPart := map[uint32]engine.Status{}
	for _, st := range c.s.eng.Status() {
		byPart[partitionOf(st)] = st
	}
	for _, st := range c.s.board.Status() {
		p := partitionOf(st)
		e, ok := byPart[p]
		if !ok {
			continue
		}
		events, ms := projectionLag(e, st, now)
		label := strconv.FormatUint(uint64(p), 10)
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.GaugeValue, float64(events), label)
		ch <- prometheus.MustNewConstMetric(c.secs, prometheus.GaugeValue, float64(ms)/1000, label)
	}
}

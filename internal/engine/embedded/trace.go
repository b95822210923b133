package embedded

import (
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// Tracing a claim through the writer and the committer.
//
// A sampled claim carries its engine span on its request (request.span,
// started by submit as a child of the HTTP span). The writer and the
// committer work on whole batches and groups, so each sampled request gets
// a child span per hop timed by its batch: "partition.decide" (the batch's
// decide and apply), "commit" (the group's write and sync) and
// "projection.apply" (recorded by the leaderboard, an engine.TracedSink).
// Spans per request rather than one span per batch with links: a trace
// viewer then shows one claim's whole path as one tree, and the cost stays
// with the sampled claims (at 1 % sampling, a few spans per full batch).
// Unsampled requests have a nil span; a batch without sampled requests pays
// one pointer check per request and nothing else.

// collectSpans gathers the spans of pd's sampled requests and returns when
// its decisions started (zero when there are none: no clock read).
func (pd *pending) collectSpans() time.Time {
	for _, r := range pd.reqs {
		if r.span != nil {
			pd.traced = append(pd.traced, r.span)
		}
	}
	if len(pd.traced) == 0 {
		return time.Time{}
	}
	return time.Now()
}

// traceDecided records "partition.decide" for each sampled request of pd.
func (p *partition) traceDecided(pd *pending, start time.Time) {
	if len(pd.traced) == 0 {
		return
	}
	end := time.Now()
	for _, r := range pd.reqs {
		if r.span == nil || r.kind == reqImport {
			continue
		}
		telemetry.ChildAt(r.span, "partition.decide", start, end,
			attribute.Int("cairn.partition", int(p.id)),
			attribute.Int("cairn.batch.size", len(pd.reqs)),
			attribute.String("cairn.outcome", r.entry.event.Outcome.String()),
			attribute.Int64("cairn.seq", int64(r.entry.event.Epoch.Seq)))
	}
}

// traceCommitted records "commit" for each sampled request of pd (the
// group's write and sync, now done), then delivers pd to the sinks, the
// tracing ones with the spans.
func (c *committer) traceCommitted(g *group, pd *pending) {
	end := time.Now()
	for _, sp := range pd.traced {
		telemetry.ChildAt(sp, "commit", g.start, end,
			attribute.Int("cairn.group.events", g.events),
			attribute.Int("cairn.group.batches", g.batches))
	}
	for _, s := range c.sinks {
		if ts, ok := s.(engine.TracedSink); ok {
			ts.CommittedTraced(pd.p.id, pd.events, pd.traced)
		} else {
			s.Committed(pd.p.id, pd.events)
		}
	}
}

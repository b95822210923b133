package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/jsonwire"
)

// component is one row of /v1/consistency. Engine partitions report their
// inbox depth; projections report how far they trail their partition.
type component struct {
	Component string     `json:"component"`
	Epoch     hunt.Epoch `json:"epoch"`
	At        time.Time  `json:"at,omitzero"`
	// InboxDepth: requests waiting (engine partitions only).
	InboxDepth *int `json:"inbox_depth,omitempty"`
	// LagEvents: events of the partition committed but not yet applied (projections only).
	LagEvents *uint64 `json:"lag_events,omitempty"`
	// LagMs: commit-time distance from the partition's newest event to the
	// newest one applied, 0 when caught up; when nothing was applied yet, the
	// age of the partition's newest event (projections only).
	LagMs *int64 `json:"lag_ms,omitempty"`
}

// consistency answers GET /v1/consistency: every partition writer's last
// committed epoch, and every projection's watermark with its lag.
func (s *Server) consistency(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Clock()
	es := s.eng.Status()
	bs := s.board.Status()
	byPart := make(map[uint32]engine.Status, len(es))
	out := make([]component, 0, len(es)+len(bs))
	for _, st := range es {
		depth := st.Depth
		byPart[partitionOf(st)] = st
		out = append(out, component{Component: st.Component, Epoch: st.Epoch, At: st.At, InboxDepth: &depth})
	}
	for _, st := range bs {
		c := component{Component: st.Component, Epoch: st.Epoch, At: st.At}
		var lagEvents uint64
		var lagMs int64
		if e, ok := byPart[partitionOf(st)]; ok {
			lagEvents, lagMs = projectionLag(e, st, now)
		}
		c.LagEvents, c.LagMs = &lagEvents, &lagMs
		out = append(out, c)
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		Components []component `json:"components"`
	}{out})
}

// partitionOf reads the partition of a status from its component name
// ("partition/17", "leaderboard/17"), which is set even before any event.
func partitionOf(st engine.Status) uint32 {
	if i := strings.LastIndexByte(st.Component, '/'); i >= 0 {
		if p, err := strconv.ParseUint(st.Component[i+1:], 10, 32); err == nil {
			return uint32(p)
		}
	}
	return uint32(st.Epoch.Partition)
}

// metrics serves the configured registry, or 404 without one.
func (s *Server) metrics() http.HandlerFunc {
	if s.cfg.Registry == nil {
		return func(w http.ResponseWriter, r *http.Request) {
			s.writeError(w, r, fmt.Errorf("%w: no metrics registry is configured", errNotFound), nil)
		}
	}
	h := promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{})
	return h.ServeHTTP
}

// healthz answers 200 while the process serves (liveness).
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, struct {
		Status string `json:"status"`
	}{"ok"})
}

// readyz answers 200 when the engine accepts claims, else 503 (readiness).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.eng.Ready(); err != nil {
		s.writeError(w, r, fmt.Errorf("%w: %v", errNotReady, err), nil)
		return
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		Status string `json:"status"`
	}{"ready"})
}

// audit answers GET /v1/admin/audit with cfg.Audit's report: 200 when every
// invariant holds, 409 invariant_violated (the report in `report`) when not.
// It may read the whole log, so it runs under its own, longer deadline.
func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	if err := s.auth.admin(r); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	if s.cfg.Audit == nil {
		s.writeError(w, r, fmt.Errorf("%w: no audit is configured", errNotFound), nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), auditTimeout)
	defer cancel()
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(auditTimeout))
	report, ok, err := s.cfg.Audit(ctx)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	if ok {
		s.writeJSON(w, r, http.StatusOK, report)
		return
	}
	b, err := json.Marshal(report)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("encoding the audit report: %w", err), nil)
		return
	}
	s.writeError(w, r, errViolated, func(dst []byte) []byte { return append(jsonwire.AppendKey(dst, "report"), b...) })
}

// snapshotTimeout bounds POST /v1/admin/snapshot (a store of millions of
// hotspots takes seconds).
const snapshotTimeout = 5 * time.Minute

// snapshot answers POST /v1/admin/snapshot: the store writes a snapshot of
// its state now (the embedded store also writes them periodically), or 501
// not_supported where it has none (Redis).
func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	if err := s.auth.admin(r); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	if _, err := readBody(w, r, s.cfg.BodyLenMax, nil); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	sn, ok := s.eng.(engine.Snapshotter)
	if !ok {
		s.writeError(w, r, fmt.Errorf("%w: snapshots are the embedded store's", engine.ErrNotSupported), nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), snapshotTimeout)
	defer cancel()
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(snapshotTimeout + 5*time.Second))
	info, err := sn.Snapshot(ctx)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	s.writeJSON(w, r, http.StatusOK, info)
}

package embedded

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/enginetest"
	"github.com/cairnhq/cairn/internal/hunt"
)

// TestDiskLow: while free space is below the minimum, claims are refused
// with ErrUnavailable before anything is decided, Ready fails, the engine
// does not enter its failed state, and writes resume once space "returns".
func TestDiskLow(t *testing.T) {
	h := newHarness(t)
	r := enginetest.Start(t, h)
	setup(t, r, 5)
	e := r.Engine.(*Engine)
	c, cancel := bg()
	defer cancel()
	before := countEvents(t, r)

	e.diskMin.Store(1 << 62) // no disk has this much free
	e.diskCheckedNs.Store(0) // measure now
	if err := e.Ready(); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("Ready with the disk full = %v; want %v", err, engine.ErrUnavailable)
	}
	if res, err := e.Claim(c, claimAt("p0", "k", "gold")); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("Claim with the disk full = %+v, %v; want %v", res.Event, err, engine.ErrUnavailable)
	}
	if n := countEvents(t, r); n != before {
		t.Fatalf("Events with the disk full = %d; want %d (nothing recorded)", n, before)
	}
	if e.failure() != nil {
		t.Fatalf("a full disk failed the engine: %v", e.failure())
	}
	if g := gaugeValue(t, e.diskGuard); g != 1 {
		t.Fatalf("cairn_disk_guard_active with the disk full = %v; want 1", g)
	}

	e.diskMin.Store(1) // space is back
	e.diskCheckedNs.Store(0)
	if err := e.Ready(); err != nil {
		t.Fatalf("Ready after space returned = %v; want nil", err)
	}
	if g := gaugeValue(t, e.diskGuard); g != 0 {
		t.Fatalf("cairn_disk_guard_active after space returned = %v; want 0", g)
	}
	res, err := e.Claim(c, claimAt("p0", "k", "gold"))
	if err != nil || res.Replayed || res.Event.Outcome != hunt.Granted {
		t.Fatalf("retry after space returned = %+v (replayed %v), %v; want a fresh grant", res.Event, res.Replayed, err)
	}
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

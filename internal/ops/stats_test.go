package ops

import (
	"testing"

	"github.com/cairnhq/cairn/internal/hunt"
)

func TestQuantile(t *testing.T) {
	bounds := []float64{0.001, 0.002, 0.005}
	for _, tc := range []struct {
		cum   []uint64
		total uint64
		q     float64
		want  float64
		ok    bool
	}{
		{[]uint64{0, 0, 0}, 0, 0.5, 0, false},
		{[]uint64{10, 10, 10}, 10, 0.5, 0.5, true}, // halfway into the first bucket
		{[]uint64{0, 10, 10}, 10, 0.5, 1.5, true},  // halfway into the second
		{[]uint64{50, 100, 100}, 100, 0.99, 1.98, true},
		{[]uint64{0, 0, 0}, 4, 0.99, 5, true}, // all past the last bound
	} {
		got, ok := quantile(bounds, tc.cum, tc.total, tc.q)
		if ok != tc.ok || (ok && (got < tc.want-1e-9 || got > tc.want+1e-9)) {
			t.Errorf("quantile(%v, %d, %v) = %v, %v; want %v, %v", tc.cum, tc.total, tc.q, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRing(t *testing.T) {
	r := newRing(4)
	batch := make([]hunt.Event, 6)
	for i := range batch {
		batch[i] = hunt.Event{Kind: hunt.KindClaimCompleted, Hunt: "h", Hotspot: hunt.HotspotID(rune('a' + i))}
	}
	batch = append(batch, hunt.Event{Kind: hunt.KindSpendCompleted})
	// While it grows (two claims in a ring of four), the ring holds them all.
	r.add(batch[:2])
	var first []string
	if next, lost := r.since(0, func(c *claim) { first = append(first, string(c.hotspot)) }); next != 2 || lost ||
		len(first) != 2 || first[0] != "a" || first[1] != "b" {
		t.Errorf("growing: since(0) = %d, %v, %v; want 2, not lost, [a b]", next, lost, first)
	}
	r.add(batch[2:])
	if got := r.newest(); got != 6 {
		t.Fatalf("newest() = %d; want 6", got)
	}
	var seen []string
	next, lost := r.since(1, func(c *claim) { seen = append(seen, string(c.hotspot)) })
	if next != 6 || !lost || len(seen) != 4 || seen[0] != "c" || seen[3] != "f" {
		t.Errorf("since(1) = %d, %v, %v; want 6, lost, [c d e f]", next, lost, seen)
	}
	seen = seen[:0]
	if next, lost = r.since(5, func(c *claim) { seen = append(seen, string(c.hotspot)) }); next != 6 || lost || len(seen) != 1 {
		t.Errorf("since(5) = %d, %v, %v; want 6, not lost, [f]", next, lost, seen)
	}
	if _, lost = r.since(0, func(*claim) {}); lost {
		t.Error("since(0) reports lost claims; a first read loses nothing")
	}
}

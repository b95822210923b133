package enginetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// recorder is a Sink that keeps copies of everything it is given.
type recorder struct {
	mu     sync.Mutex
	events map[hunt.Epoch]hunt.Event
	last   map[uint32]hunt.Seq
	err    error
}

func (r *recorder) Committed(p geo.Partition, batch []hunt.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range batch {
		if uint32(ev.Epoch.Partition) != uint32(p) {
			r.err = cmpErr(r.err, fmt.Errorf("batch of partition %d holds %v", p, ev.Epoch))
		}
		if ev.Epoch.Seq <= r.last[uint32(p)] {
			r.err = cmpErr(r.err, fmt.Errorf("partition %d: seq %d delivered after %d", p, ev.Epoch.Seq, r.last[uint32(p)]))
		}
		r.last[uint32(p)] = ev.Epoch.Seq
		r.events[ev.Epoch] = ev
	}
}

func (r *recorder) has(ep hunt.Epoch) (hunt.Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev, ok := r.events[ep]
	return ev, ok
}

// testSinks: every committed event reaches a subscribed sink, in seq order per partition.
func testSinks(t *testing.T, h Harness) {
	rec := &recorder{events: map[hunt.Epoch]hunt.Event{}, last: map[uint32]hunt.Seq{}}
	e := Start(t, h, rec)
	mustPutHunt(t, e, hunt.Hunt{ID: "h"})
	var spots []hunt.Hotspot
	for i, city := range cities[:4] {
		spots = append(spots, spot(fmt.Sprintf("s%d", i), city, 1, 2, 1))
	}
	mustImport(t, e, "h", spots...)
	var evs []hunt.Event
	for i, s := range spots {
		for _, p := range []string{"a", "b"} {
			evs = append(evs, mustClaim(t, e, claimReq(p, "k"+string(s.ID), "h", string(s.ID), place{s.Lat, s.Lon})).Event)
		}
		evs = append(evs, mustSpend(t, e, spendReq("a", fmt.Sprintf("s%d", i), 1, "sink")).Event)
	}
	for _, want := range evs {
		waitFor(t, 10*time.Second, "sink to receive "+want.Epoch.String(), func() bool { _, ok := rec.has(want.Epoch); return ok })
		if got, _ := rec.has(want.Epoch); !sameEvent(got, want) {
			t.Fatalf("sink got %+v; want %+v", got, want)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.err != nil {
		t.Fatal(rec.err)
	}
}

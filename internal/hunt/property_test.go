package hunt

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// world is a minimal sequential state built only from events: the fold of
// invariant I7 (docs/ARCHITECTURE.md). The property test below decides commands with DecideClaim /
// DecideSpend against it, records events, and checks I1–I5 and that a second
// fold of the recorded log reproduces the state.
type world struct {
	granted map[HotspotID]int64
	claimed map[[2]string]bool // player, hotspot
	balance map[PlayerID]int64
	score   map[PlayerID]int64
	last    map[PlayerID]Position
	keys    map[[2]string]int // player, key -> index of the event
	log     []Event
}

func newWorld() *world {
	return &world{granted: map[HotspotID]int64{}, claimed: map[[2]string]bool{}, balance: map[PlayerID]int64{},
		score: map[PlayerID]int64{}, last: map[PlayerID]Position{}, keys: map[[2]string]int{}}
}

func (w *world) apply(e *Event) {
	w.keys[[2]string{string(e.Player), e.Key}] = len(w.log)
	w.log = append(w.log, *e)
	w.balance[e.Player] += e.Credit()
	if e.Kind == KindClaimCompleted && e.Outcome == Granted {
		w.granted[e.Hotspot]++
		w.claimed[[2]string{string(e.Player), string(e.Hotspot)}] = true
		w.score[e.Player] += e.Points
		w.last[e.Player] = Position{Lat: e.Lat, Lon: e.Lon, At: e.At}
	}
}

func TestDomainProperties(t *testing.T) {
	h := &Hunt{ID: "h", ClaimRadiusM: 60, MaxSpeedMps: 30}
	spots := []*Hotspot{
		{ID: "a", Lat: 48.8566, Lon: 2.3522, Tickets: 1, Reward: 7, Points: 3},
		{ID: "b", Lat: 48.8570, Lon: 2.3530, Tickets: 3, Reward: 5, Points: 2},
		{ID: "c", Lat: 48.8700, Lon: 2.3600, Tickets: 2, Reward: 11, Points: 9},
	}
	for _, s := range spots {
		if err := s.Normalize(); err != nil {
			t.Fatal(err)
		}
	}
	rapid.Check(t, func(rt *rapid.T) {
		w := newWorld()
		now := t0
		players := []PlayerID{"p1", "p2", "p3", "p4"}
		seq := Seq(0)
		n := rapid.IntRange(1, 120).Draw(rt, "steps")
		for i := 0; i < n; i++ {
			now = now.Add(time.Duration(rapid.IntRange(0, 120).Draw(rt, "dt")) * time.Second)
			p := rapid.SampledFrom(players).Draw(rt, "player")
			key := fmt.Sprintf("k%d", rapid.IntRange(0, 15).Draw(rt, "key")) // small space: duplicates and reuse
			if rapid.Bool().Draw(rt, "isClaim") {
				s := rapid.SampledFrom(spots).Draw(rt, "spot")
				req := ClaimRequest{Player: p, Key: key, Hunt: h.ID, Hotspot: s.ID,
					Lat: s.Lat + rapid.Float64Range(-0.001, 0.001).Draw(rt, "dlat"), Lon: s.Lon}
				if j, ok := w.keys[[2]string{string(p), key}]; ok {
					if prev := w.log[j]; prev.Fingerprint != req.Fingerprint() {
						continue // ErrKeyReused: no effect
					}
					continue // replay: no effect
				}
				st := ClaimState{Hunt: h, Hotspot: s, Granted: w.granted[s.ID],
					AlreadyClaimed: w.claimed[[2]string{string(p), string(s.ID)}], Last: w.last[p]}
				o := DecideClaim(&st, &req, now)
				seq++
				e := Event{Kind: KindClaimCompleted, Epoch: Epoch{Seq: seq}, At: now, Player: p, Key: key,
					Fingerprint: req.Fingerprint(), Outcome: o, Hunt: h.ID, Hotspot: s.ID, Lat: req.Lat, Lon: req.Lon,
					Geohash: s.Geohash}
				if o == Granted {
					e.Reward, e.Points = s.Reward, s.Points
					e.TicketsLeft = s.Tickets - st.Granted - 1
				}
				w.apply(&e)
			} else {
				req := SpendRequest{Player: p, Key: key, Amount: int64(rapid.IntRange(1, 15).Draw(rt, "amount"))}
				if _, ok := w.keys[[2]string{string(p), key}]; ok {
					continue
				}
				o := DecideSpend(w.balance[p], &req)
				seq++
				e := Event{Kind: KindSpendCompleted, Epoch: Epoch{Seq: seq}, At: now, Player: p, Key: key,
					Fingerprint: req.Fingerprint(), Outcome: o, Amount: req.Amount}
				if o == Spent {
					e.Balance = w.balance[p] - req.Amount
				} else {
					e.Balance = w.balance[p]
				}
				w.apply(&e)
			}
			checkInvariants(rt, w, spots)
		}
		// I7: folding the recorded log (through its binary form) gives the same state.
		again := newWorld()
		for _, e := range w.log {
			var d Event
			if err := DecodeEvent(AppendEvent(nil, &e), &d); err != nil {
				rt.Fatalf("DecodeEvent: %v", err)
			}
			again.apply(&d)
		}
		for p, b := range w.balance {
			if again.balance[p] != b || again.score[p] != w.score[p] {
				rt.Fatalf("replay: player %s balance %d score %d; want %d %d", p, again.balance[p], again.score[p], b, w.score[p])
			}
		}
		for s, g := range w.granted {
			if again.granted[s] != g {
				rt.Fatalf("replay: hotspot %s granted %d; want %d", s, again.granted[s], g)
			}
		}
	})
}

func checkInvariants(t *rapid.T, w *world, spots []*Hotspot) {
	grants := map[[2]string]int{}
	reward := map[PlayerID]int64{}
	points := map[PlayerID]int64{}
	spent := map[PlayerID]int64{}
	perSpot := map[HotspotID]int64{}
	keys := map[[2]string]bool{}
	for _, e := range w.log {
		k := [2]string{string(e.Player), e.Key}
		if keys[k] {
			t.Fatalf("I3: key %v has two events", k)
		}
		keys[k] = true
		switch {
		case e.Kind == KindClaimCompleted && e.Outcome == Granted:
			grants[[2]string{string(e.Player), string(e.Hotspot)}]++
			reward[e.Player] += e.Reward
			points[e.Player] += e.Points
			perSpot[e.Hotspot]++
		case e.Kind == KindSpendCompleted && e.Outcome == Spent:
			spent[e.Player] += e.Amount
			if e.Balance < 0 {
				t.Fatalf("I4: spend left balance %d", e.Balance)
			}
		}
	}
	for _, s := range spots {
		if perSpot[s.ID] > s.Tickets {
			t.Fatalf("I1: hotspot %s granted %d > tickets %d", s.ID, perSpot[s.ID], s.Tickets)
		}
	}
	for k, n := range grants {
		if n > 1 {
			t.Fatalf("I2: %v granted %d times", k, n)
		}
	}
	for p, b := range w.balance {
		if b != reward[p]-spent[p] || b < 0 {
			t.Fatalf("I4: %s balance %d; want %d - %d", p, b, reward[p], spent[p])
		}
		if w.score[p] != points[p] {
			t.Fatalf("I5: %s score %d; want %d", p, w.score[p], points[p])
		}
	}
}

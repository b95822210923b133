package enginetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
)

// testRestart: everything survives a stop and a reopen: grants, replays,
// wallets, ledger, tickets, hunts, and seqs continue.
func testRestart(t *testing.T, h Harness) {
	e := Start(t, h)
	mustPutHunt(t, e, hunt.Hunt{ID: "h", Name: "restart", MaxSpeedMps: 0, FeedShowsPlayerIDs: true})
	var spots []hunt.Hotspot
	for i, city := range cities[:6] {
		spots = append(spots, spot(fmt.Sprintf("s%d", i), city, 2, int64(5+i), 1))
	}
	mustImport(t, e, "h", spots...)
	type done struct {
		claim *hunt.ClaimRequest
		spend *hunt.SpendRequest
		ev    hunt.Event
	}
	var log []done
	for i, s := range spots {
		for _, p := range []string{"a", "b", "c"} {
			req := claimReq(p, "c"+string(s.ID), "h", string(s.ID), place{s.Lat, s.Lon})
			log = append(log, done{claim: req, ev: mustClaim(t, e, req).Event})
		}
		req := spendReq("a", fmt.Sprintf("s%d", i), 3, "restart")
		log = append(log, done{spend: req, ev: mustSpend(t, e, req).Event})
	}
	wallets := map[string]hunt.Wallet{}
	for _, p := range []string{"a", "b", "c"} {
		wallets[p] = mustWallet(t, e, p)
	}
	c, cancel := ctx()
	defer cancel()
	ledger, err := e.Ledger(c, "a", 100)
	if err != nil {
		t.Fatalf("Ledger(a) = %v", err)
	}
	before := views(t, e, "h")
	maxSeq := map[uint32]hunt.Seq{}
	for _, d := range log {
		maxSeq[uint32(d.ev.Epoch.Partition)] = max(maxSeq[uint32(d.ev.Epoch.Partition)], d.ev.Epoch.Seq)
	}
	if err := e.Stop(); err != nil {
		t.Fatalf("Run() = %v; want nil after cancel", err)
	}

	for round := range 2 {
		e = Start(t, h)
		for _, d := range log {
			var ev hunt.Event
			var replayed bool
			if d.claim != nil {
				res := mustClaim(t, e, d.claim)
				ev, replayed = res.Event, res.Replayed
			} else {
				res := mustSpend(t, e, d.spend)
				ev, replayed = res.Event, res.Replayed
			}
			if !replayed || !sameEvent(ev, d.ev) {
				t.Fatalf("round %d: replay after restart = %+v (replayed %v); want %+v", round, ev, replayed, d.ev)
			}
		}
		for p, w := range wallets {
			if got := mustWallet(t, e, p); got != w {
				t.Fatalf("round %d: Wallet(%s) after restart = %+v; want %+v", round, p, got, w)
			}
		}
		got, err := e.Ledger(c, "a", 100)
		if err != nil || len(got) != len(ledger) {
			t.Fatalf("round %d: Ledger(a) after restart = %d entries, %v; want %d", round, len(got), err, len(ledger))
		}
		for i := range got {
			if got[i].Epoch != ledger[i].Epoch || got[i].Amount != ledger[i].Amount || !got[i].At.Equal(ledger[i].At) {
				t.Fatalf("round %d: Ledger(a)[%d] = %+v; want %+v", round, i, got[i], ledger[i])
			}
		}
		for id, v := range views(t, e, "h") {
			if b := before[id]; v.Tickets != b.Tickets || v.TicketsLeft != b.TicketsLeft || v.Reward != b.Reward {
				t.Fatalf("round %d: Hotspots[%s] after restart = %+v; want %+v", round, id, v, b)
			}
		}
		if hs, err := e.Hunts(c); err != nil || len(hs) != 1 || hs[0].Name != "restart" || !hs[0].FeedShowsPlayerIDs || hs[0].MaxSpeedMps != 0 {
			t.Fatalf("round %d: Hunts() after restart = %+v, %v; want the hunt as put (feed with ids, no speed check)", round, hs, err)
		}
		wantClaim(t, e, claimReq("a", fmt.Sprintf("again-%d", round), "h", "s0", cities[0]), hunt.AlreadyClaimed)
		ev := wantClaim(t, e, claimReq(fmt.Sprintf("new-%d", round), "k", "h", "s1", cities[1]), hunt.SoldOut)
		p := uint32(ev.Epoch.Partition)
		if ev.Epoch.Seq <= maxSeq[p] {
			t.Fatalf("round %d: first seq after restart in partition %d = %d; want > %d", round, p, ev.Epoch.Seq, maxSeq[p])
		}
		maxSeq[p] = ev.Epoch.Seq
		if err := e.Stop(); err != nil {
			t.Fatalf("round %d: Run() = %v; want nil after cancel", round, err)
		}
	}
}

// fold is the state a log folds into (I7), computed without engine code.
type fold struct {
	wallets  map[hunt.PlayerID]int64
	granted  map[hunt.HotspotID]int64
	claimers map[hunt.HotspotID]map[hunt.PlayerID]bool
	lastSeq  map[uint32]hunt.Seq
}

// foldEvents folds the events of the log that keep selects (all when keep
// is nil), checking per-partition seq order of the whole log and I2 on the way.
func foldEvents(t tb, e engine.Engine, keep func(*hunt.Event) bool) fold {
	t.Helper()
	f := fold{wallets: map[hunt.PlayerID]int64{}, granted: map[hunt.HotspotID]int64{},
		claimers: map[hunt.HotspotID]map[hunt.PlayerID]bool{}, lastSeq: map[uint32]hunt.Seq{}}
	for _, ev := range allEvents(t, e) {
		p := uint32(ev.Epoch.Partition)
		if int(p) >= e.Partitions() || ev.Epoch.Seq <= f.lastSeq[p] {
			t.Fatalf("Events: %v after seq %d of partition %d; want seqs strictly increasing per partition", ev.Epoch, f.lastSeq[p], p)
		}
		f.lastSeq[p] = ev.Epoch.Seq
		if keep != nil && !keep(&ev) {
			continue
		}
		f.wallets[ev.Player] += ev.Credit()
		if ev.Kind == hunt.KindSpendCompleted && ev.Balance < 0 {
			t.Fatalf("Events: spend %v left balance %d", ev.Epoch, ev.Balance)
		}
		if ev.Kind == hunt.KindClaimCompleted && ev.Outcome == hunt.Granted {
			if f.claimers[ev.Hotspot] == nil {
				f.claimers[ev.Hotspot] = map[hunt.PlayerID]bool{}
			}
			if f.claimers[ev.Hotspot][ev.Player] {
				t.Fatalf("I2: player %s granted twice at %s", ev.Player, ev.Hotspot)
			}
			f.claimers[ev.Hotspot][ev.Player] = true
			f.granted[ev.Hotspot]++
		}
	}
	return f
}

// checkFold compares a fold with the engine's state: wallets (I4, I7),
// tickets (I1, I7) and claimer sets (I2, I7).
func checkFold(t tb, e engine.Engine, f fold, id hunt.HuntID, players []string) {
	t.Helper()
	for _, p := range players {
		want := f.wallets[hunt.PlayerID(p)]
		if want < 0 {
			t.Fatalf("I4: fold of the log gives %s a balance of %d", p, want)
		}
		wantBalance(t, e, p, want)
	}
	for sid, v := range views(t, e, id) {
		if g := f.granted[sid]; v.Tickets-v.TicketsLeft != g || g > v.Tickets {
			t.Fatalf("hotspot %s: tickets %d, left %d; the log folds to %d granted", sid, v.Tickets, v.TicketsLeft, g)
		}
		for p := range f.claimers[sid] {
			res := mustClaim(t, e, &hunt.ClaimRequest{Player: p, Key: "fold-check-" + string(sid), Hunt: id, Hotspot: sid, Lat: v.Lat, Lon: v.Lon})
			if res.Event.Outcome != hunt.AlreadyClaimed {
				t.Fatalf("claimer %s of %s (from the log) claims again: %v; want already_claimed", p, sid, res.Event.Outcome)
			}
		}
	}
}

// testFoldEvents (I7): folding Events from the start reproduces wallets,
// granted counts and claimer sets, before and after a restart; Events
// honours its after argument.
func testFoldEvents(t *testing.T, h Harness) {
	e := Start(t, h)
	mustPutHunt(t, e, hunt.Hunt{ID: "h"})
	var spots []hunt.Hotspot
	for i, city := range cities[:10] {
		spots = append(spots, spot(fmt.Sprintf("s%d", i), city, 3, int64(1+i), 1))
	}
	mustImport(t, e, "h", spots...)
	var players []string
	for i := range 12 {
		players = append(players, fmt.Sprintf("p%d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(players))
	for pi, p := range players {
		wg.Go(func() {
			c, cancel := ctx()
			defer cancel()
			for i, s := range spots {
				if (pi+i)%3 == 0 {
					continue
				}
				if _, err := Claim(c, e, claimReq(p, "c"+string(s.ID), "h", string(s.ID), place{s.Lat, s.Lon})); err != nil {
					errs <- err
					return
				}
				if i%4 == 0 {
					if _, err := Spend(c, e, spendReq(p, fmt.Sprintf("s%d", i), int64(1+pi%5), "fold")); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("workload: %v", err)
	}
	f := foldEvents(t, e, nil)

	// after: nothing past each partition's last seq; only the tail past last-1.
	after := make([]hunt.Seq, e.Partitions())
	tail := 0
	for p, s := range f.lastSeq {
		after[p] = s
	}
	c, cancel := ctx()
	defer cancel()
	if err := e.Events(c, after, func(*hunt.Event) error { tail++; return nil }); err != nil || tail != 0 {
		t.Fatalf("Events(after last) = %d events, %v; want 0", tail, err)
	}
	for p, s := range f.lastSeq {
		after[p] = s - 1
	}
	var seen []hunt.Epoch
	if err := e.Events(c, after, func(ev *hunt.Event) error { seen = append(seen, ev.Epoch); return nil }); err != nil || len(seen) != len(f.lastSeq) {
		t.Fatalf("Events(after last-1) = %v, %v; want one event per partition (%d)", seen, err, len(f.lastSeq))
	}
	for _, ep := range seen {
		if ep.Seq != f.lastSeq[uint32(ep.Partition)] {
			t.Fatalf("Events(after last-1) gave %v; want the last of partition %d (%d)", ep, ep.Partition, f.lastSeq[uint32(ep.Partition)])
		}
	}
	checkFold(t, e, f, "h", players)
	e.Stop()
	e = Start(t, h)
	f2 := foldEvents(t, e, nil)
	checkFold(t, e, f2, "h", players)
}

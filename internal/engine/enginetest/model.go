package enginetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/cairnhq/cairn/internal/hunt"
)

// The model test drives an engine with random claims (several players,
// hotspots in several cities, so several partitions; near and far), spends,
// retries, key reuse, re-imports and restarts, one at a time, and compares
// every answer with a model written here without engine code. After every
// step I1–I4 hold against the model; at the end the folded log (I7) equals it.
//
// Iterations share one store (opening a fresh one per iteration is most of
// the cost), and stay independent: each has its own hunt and its own players,
// and folds only its players' events.

type modelOp struct {
	claim *hunt.ClaimRequest
	spend *hunt.SpendRequest
	ev    hunt.Event
}

type model struct {
	t        *testing.T
	h        Harness
	e        *Running
	hunt     hunt.HuntID
	players  []string
	spots    []hunt.Hotspot // current definitions, tickets already clamped
	granted  map[hunt.HotspotID]int64
	claimers map[hunt.HotspotID]map[hunt.PlayerID]bool
	balance  map[hunt.PlayerID]int64
	done     []modelOp
	keys     int
}

func testModel(t *testing.T, newHarness func(t *testing.T) Harness) {
	h := newHarness(t)
	e := Start(t, h)
	iter := 0
	rapid.Check(t, func(rt *rapid.T) {
		iter++
		prefix := fmt.Sprintf("i%d-", iter)
		m := &model{t: t, h: h, e: e, hunt: hunt.HuntID(prefix + "hunt"), granted: map[hunt.HotspotID]int64{},
			claimers: map[hunt.HotspotID]map[hunt.PlayerID]bool{}, balance: map[hunt.PlayerID]int64{}}
		defer func() { e = m.e }() // restarts replace the engine
		for i := range 4 {
			m.players = append(m.players, fmt.Sprintf("%sp%d", prefix, i))
		}
		mustPutHunt(rt, m.e, hunt.Hunt{ID: m.hunt})
		n := rapid.IntRange(2, 6).Draw(rt, "spots")
		for i := range n {
			s := spot(fmt.Sprintf("s%d", i), cities[i],
				rapid.Int64Range(1, 3).Draw(rt, "tickets"),
				rapid.Int64Range(0, 20).Draw(rt, "reward"),
				rapid.Int64Range(0, 5).Draw(rt, "points"))
			m.spots = append(m.spots, s)
		}
		mustImport(rt, m.e, m.hunt, m.spots...)
		// rapid picks actions uniformly; listing the cheap ones several
		// times makes restarts (the slow ones) about one step in twelve.
		rt.Repeat(map[string]func(*rapid.T){
			"claim":   m.claim,
			"claim2":  m.claim,
			"claim3":  m.claim,
			"claim4":  m.claim,
			"spend":   m.spend,
			"spend2":  m.spend,
			"spend3":  m.spend,
			"replay":  m.replay,
			"replay2": m.replay,
			"reuse":   m.reuse,
			"import":  m.reimport,
			"restart": m.restart,
			"":        m.check,
		})
		f := foldEvents(rt, m.e, func(ev *hunt.Event) bool { return strings.HasPrefix(string(ev.Player), prefix) })
		for _, p := range m.players {
			if got, want := f.wallets[hunt.PlayerID(p)], m.balance[hunt.PlayerID(p)]; got != want {
				rt.Fatalf("I7: log folds to balance %d for %s; want %d", got, p, want)
			}
		}
		for _, s := range m.spots {
			if got, want := f.granted[s.ID], m.granted[s.ID]; got != want {
				rt.Fatalf("I7: log folds to %d grants at %s; want %d", got, s.ID, want)
			}
			if len(f.claimers[s.ID]) != len(m.claimers[s.ID]) {
				rt.Fatalf("I7: log folds to claimers %v at %s; want %v", f.claimers[s.ID], s.ID, m.claimers[s.ID])
			}
			for p := range m.claimers[s.ID] {
				if !f.claimers[s.ID][p] {
					rt.Fatalf("I7: log folds to claimers %v at %s; want %v", f.claimers[s.ID], s.ID, m.claimers[s.ID])
				}
			}
		}
	})
	e.Stop()
}

func (m *model) key() string {
	m.keys++
	return fmt.Sprintf("key-%d", m.keys)
}

func (m *model) claim(rt *rapid.T) {
	player := hunt.PlayerID(rapid.SampledFrom(m.players).Draw(rt, "player"))
	i := rapid.IntRange(0, len(m.spots)-1).Draw(rt, "spot")
	far := rapid.Bool().Draw(rt, "far")
	s := &m.spots[i]
	at := place{s.Lat, s.Lon}.north(20)
	if far {
		at = place{s.Lat, s.Lon}.north(2000)
	}
	req := claimReq(string(player), m.key(), m.hunt, string(s.ID), at)
	want := hunt.Granted
	switch {
	case m.claimers[s.ID][player]:
		want = hunt.AlreadyClaimed
	case m.granted[s.ID] >= s.Tickets:
		want = hunt.SoldOut
	case far:
		want = hunt.TooFar
	}
	ev := wantClaim(rt, m.e, req, want)
	var reward int64
	if want == hunt.Granted {
		m.granted[s.ID]++
		if m.claimers[s.ID] == nil {
			m.claimers[s.ID] = map[hunt.PlayerID]bool{}
		}
		m.claimers[s.ID][player] = true
		m.balance[player] += s.Reward
		reward = s.Reward
	}
	if ev.Reward != reward || ev.TicketsLeft != s.Tickets-m.granted[s.ID] {
		rt.Fatalf("Claim(%s by %s) = reward %d, tickets_left %d; want %d, %d", s.ID, player, ev.Reward, ev.TicketsLeft, reward, s.Tickets-m.granted[s.ID])
	}
	m.done = append(m.done, modelOp{claim: req, ev: ev})
}

func (m *model) spend(rt *rapid.T) {
	player := hunt.PlayerID(rapid.SampledFrom(m.players).Draw(rt, "player"))
	amount := rapid.Int64Range(1, 40).Draw(rt, "amount")
	req := spendReq(string(player), m.key(), amount, "model")
	res := mustSpend(rt, m.e, req)
	want, balance := hunt.InsufficientFunds, m.balance[player]
	if amount <= balance {
		want, balance = hunt.Spent, balance-amount
	}
	if res.Replayed || res.Event.Outcome != want || res.Event.Balance != balance {
		rt.Fatalf("Spend(%d by %s with %d) = %v, balance %d (replayed %v); want %v, balance %d",
			amount, player, m.balance[player], res.Event.Outcome, res.Event.Balance, res.Replayed, want, balance)
	}
	m.balance[player] = balance
	m.done = append(m.done, modelOp{spend: req, ev: res.Event})
}

func (m *model) replay(rt *rapid.T) {
	if len(m.done) == 0 {
		rt.Skip("nothing to replay yet")
	}
	op := m.done[rapid.IntRange(0, len(m.done)-1).Draw(rt, "op")]
	var ev hunt.Event
	var replayed bool
	if op.claim != nil {
		res := mustClaim(rt, m.e, op.claim)
		ev, replayed = res.Event, res.Replayed
	} else {
		res := mustSpend(rt, m.e, op.spend)
		ev, replayed = res.Event, res.Replayed
	}
	if !replayed || !sameEvent(ev, op.ev) {
		rt.Fatalf("retry of %+v = %+v (replayed %v); want the first decision, replayed", op.ev, ev, replayed)
	}
}

func (m *model) reuse(rt *rapid.T) {
	if len(m.done) == 0 {
		rt.Skip("no key to reuse yet")
	}
	op := m.done[rapid.IntRange(0, len(m.done)-1).Draw(rt, "op")]
	c, cancel := ctx()
	defer cancel()
	var err error
	switch {
	case rapid.Bool().Draw(rt, "cross-kind") && op.claim != nil:
		_, err = Spend(c, m.e, spendReq(string(op.claim.Player), op.claim.Key, 1, ""))
	case op.claim != nil:
		other := *op.claim
		other.Lat += 0.0001
		_, err = Claim(c, m.e, &other)
	default:
		other := *op.spend
		other.Amount++
		_, err = Spend(c, m.e, &other)
	}
	if !errors.Is(err, hunt.ErrKeyReused) {
		rt.Fatalf("reusing key %s of %s for another request = %v; want %v", op.ev.Key, op.ev.Player, err, hunt.ErrKeyReused)
	}
}

func (m *model) reimport(rt *rapid.T) {
	s := &m.spots[rapid.IntRange(0, len(m.spots)-1).Draw(rt, "spot")]
	up := *s
	up.Tickets = rapid.Int64Range(0, 4).Draw(rt, "tickets")
	up.Reward = rapid.Int64Range(0, 20).Draw(rt, "reward")
	mustImport(rt, m.e, m.hunt, up)
	up.Tickets = max(up.Tickets, m.granted[s.ID])
	*s = up
}

func (m *model) restart(rt *rapid.T) {
	if err := m.e.Stop(); err != nil {
		rt.Fatalf("Run() = %v; want nil after cancel", err)
	}
	m.e = Start(m.t, m.h)
}

// check asserts I1 (tickets), I4 (wallets) and the model's view after every step.
func (m *model) check(rt *rapid.T) {
	for _, p := range m.players {
		w := mustWallet(rt, m.e, p)
		if w.Balance < 0 || w.Balance != m.balance[hunt.PlayerID(p)] {
			rt.Fatalf("I4: Wallet(%s) = %d; want %d", p, w.Balance, m.balance[hunt.PlayerID(p)])
		}
	}
	vs := views(rt, m.e, m.hunt)
	for _, s := range m.spots {
		v := vs[s.ID]
		if v.Tickets != s.Tickets || v.TicketsLeft != s.Tickets-m.granted[s.ID] || v.TicketsLeft < 0 || v.Reward != s.Reward {
			rt.Fatalf("I1: Hotspots[%s] = tickets %d, left %d, reward %d; want %d, %d, %d",
				s.ID, v.Tickets, v.TicketsLeft, v.Reward, s.Tickets, s.Tickets-m.granted[s.ID], s.Reward)
		}
	}
}

package audit

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairnhq/cairn/internal/hunt"
)

// checkTimeout bounds every check in these tests; all finish in milliseconds.
const checkTimeout = 30 * time.Second

// at is a hand-made instant: n ticks after the epoch.
func at(n int64) time.Time { return time.Unix(0, n) }

// never marks an unknown operation's return (ignored by the checker).
const never = -1

func claimOp(client int, player, spot, key string, call, ret int64, out hunt.Outcome, left int64) Op {
	op := Op{Client: client, Kind: OpClaim, Player: hunt.PlayerID(player), Hotspot: hunt.HotspotID(spot), Key: key,
		Call: at(call), Return: at(ret), Outcome: out, TicketsLeft: left, Detailed: true}
	if ret == never {
		op.Unknown, op.Return, op.Detailed = true, time.Time{}, false
	}
	return op
}

// claimOut is a claim whose tickets left were not observed.
func claimOut(client int, player, spot, key string, call, ret int64, out hunt.Outcome) Op {
	op := claimOp(client, player, spot, key, call, ret, out, 0)
	op.Detailed = false
	return op
}

func spendOp(client int, player, key string, amount, call, ret int64, out hunt.Outcome, balance int64) Op {
	op := Op{Client: client, Kind: OpSpend, Player: hunt.PlayerID(player), Key: key, Amount: amount,
		Call: at(call), Return: at(ret), Outcome: out, Balance: balance, Detailed: true}
	if ret == never {
		op.Unknown, op.Return, op.Detailed = true, time.Time{}, false
	}
	return op
}

// spendOut is a spend whose balance was not observed.
func spendOut(client int, player, key string, amount, call, ret int64, out hunt.Outcome) Op {
	op := spendOp(client, player, key, amount, call, ret, out, 0)
	op.Detailed = false
	return op
}

func readOp(client int, player string, call, ret, balance int64) Op {
	op := Op{Client: client, Kind: OpWallet, Player: hunt.PlayerID(player), Call: at(call), Return: at(ret), Balance: balance}
	if ret == never {
		op.Unknown, op.Return = true, time.Time{}
	}
	return op
}

func history(ops ...Op) *History {
	h := &History{}
	for _, op := range ops {
		h.Record(op)
	}
	return h
}

// Fixtures: "one" has 1 ticket worth 5, "two" 2 tickets worth 3, "free" 1 ticket worth nothing.
var (
	testTickets = map[hunt.HotspotID]int64{"one": 1, "two": 2, "free": 1}
	testRewards = map[hunt.HotspotID]int64{"one": 5, "two": 3}
)

func describe(ops []Op) string {
	var b strings.Builder
	for _, op := range ops {
		ret := fmt.Sprint(op.Return.UnixNano())
		if op.Unknown {
			ret = "∞"
		}
		fmt.Fprintf(&b, "\n  c%d [%d,%s] %s %s %s %q amount %d → unknown %v %v left %d balance %d",
			op.Client, op.Call.UnixNano(), ret, op.Kind, op.Player, op.Hotspot, op.Key, op.Amount,
			op.Unknown, op.Outcome, op.TicketsLeft, op.Balance)
	}
	return b.String()
}

func TestCheckLinearizableHandMade(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
		ops  []Op
	}{
		{"race for the last ticket", true, []Op{
			claimOp(0, "a", "one", "k1", 0, 10, hunt.Granted, 0),
			claimOp(1, "b", "one", "k1", 1, 5, hunt.SoldOut, 0),
			readOp(0, "a", 11, 12, 5),
			readOp(1, "b", 11, 12, 0),
		}},
		{"two grants of a one-ticket hotspot", false, []Op{
			claimOut(0, "a", "one", "k1", 0, 10, hunt.Granted),
			claimOut(1, "b", "one", "k1", 0, 10, hunt.Granted),
		}},
		{"three grants of a two-ticket hotspot", false, []Op{
			claimOut(0, "a", "two", "k1", 0, 10, hunt.Granted),
			claimOut(1, "b", "two", "k1", 0, 10, hunt.Granted),
			claimOut(2, "c", "two", "k1", 0, 10, hunt.Granted),
		}},
		{"grant after a sold_out that precedes it", false, []Op{
			claimOut(0, "a", "one", "k1", 0, 1, hunt.SoldOut),
			claimOut(1, "b", "one", "k1", 2, 3, hunt.Granted),
		}},
		{"sold_out overlapping the grant that explains it", true, []Op{
			claimOut(0, "a", "one", "k1", 0, 3, hunt.SoldOut),
			claimOut(1, "b", "one", "k1", 2, 4, hunt.Granted),
		}},
		{"sold_out with a grant only later", false, []Op{
			claimOut(0, "a", "two", "k1", 0, 1, hunt.Granted),
			claimOut(1, "b", "two", "k1", 2, 3, hunt.SoldOut),
			claimOut(2, "c", "two", "k1", 4, 5, hunt.Granted),
		}},
		{"wrong tickets left", false, []Op{
			claimOp(0, "a", "two", "k1", 0, 1, hunt.Granted, 0),
		}},
		{"already_claimed before holding", false, []Op{
			claimOut(0, "a", "two", "k1", 0, 1, hunt.AlreadyClaimed),
			claimOut(0, "a", "two", "k2", 2, 3, hunt.Granted),
		}},
		{"already_claimed after holding", true, []Op{
			claimOp(0, "a", "two", "k1", 0, 1, hunt.Granted, 1),
			claimOp(0, "a", "two", "k2", 2, 3, hunt.AlreadyClaimed, 1),
			claimOp(1, "b", "two", "k1", 4, 5, hunt.Granted, 0),
			claimOp(1, "b", "two", "k2", 6, 7, hunt.AlreadyClaimed, 0),
		}},
		{"balance no order explains", false, []Op{
			claimOut(0, "a", "one", "k1", 0, 1, hunt.Granted),
			readOp(1, "a", 2, 3, 3),
		}},
		{"balance going back", false, []Op{
			claimOut(0, "a", "one", "k1", 0, 10, hunt.Granted),
			readOp(1, "a", 1, 2, 0),
			readOp(1, "a", 3, 4, 5),
			readOp(1, "a", 5, 6, 0),
		}},
		{"reads during a grant", true, []Op{
			claimOut(0, "a", "one", "k1", 0, 10, hunt.Granted),
			readOp(1, "a", 1, 2, 0),
			readOp(1, "a", 3, 4, 5),
			readOp(1, "a", 5, 6, 5),
		}},
		{"a grant without reward leaves the wallet alone", true, []Op{
			claimOp(0, "a", "free", "k1", 0, 1, hunt.Granted, 0),
			readOp(0, "a", 2, 3, 0),
		}},
		{"concurrent spends, one wins", true, []Op{
			claimOut(0, "a", "one", "k1", 0, 1, hunt.Granted),
			spendOp(0, "a", "s1", 4, 2, 5, hunt.Spent, 1),
			spendOp(1, "a", "s2", 4, 2, 5, hunt.InsufficientFunds, 1),
			readOp(0, "a", 6, 7, 1),
		}},
		{"concurrent spends, both win", false, []Op{
			claimOut(0, "a", "one", "k1", 0, 1, hunt.Granted),
			spendOp(0, "a", "s1", 4, 2, 5, hunt.Spent, 1),
			spendOp(1, "a", "s2", 4, 2, 5, hunt.Spent, 1),
		}},
		{"spend refused with enough funds", false, []Op{
			claimOut(0, "a", "one", "k1", 0, 1, hunt.Granted),
			spendOp(0, "a", "s1", 4, 2, 3, hunt.InsufficientFunds, 5),
		}},
		{"spend decided before a concurrent credit", true, []Op{
			claimOut(0, "a", "one", "k1", 0, 10, hunt.Granted),
			spendOp(1, "a", "s1", 4, 1, 2, hunt.InsufficientFunds, 0),
			spendOp(1, "a", "s2", 4, 3, 4, hunt.Spent, 1),
		}},
		{"spend answering the wrong balance", false, []Op{
			claimOut(0, "a", "one", "k1", 0, 1, hunt.Granted),
			spendOp(0, "a", "s1", 4, 2, 3, hunt.Spent, 5),
		}},
		// Each projection is fine (one: b's grant, then a's sold_out; b's
		// wallet: the read, then the grant), but no single order is: the
		// grant precedes the sold_out, which returned before the read began.
		{"read missing a grant that sold the hotspot out", false, []Op{
			claimOut(0, "b", "one", "k1", 0, 10, hunt.Granted),
			claimOut(1, "a", "one", "k1", 1, 2, hunt.SoldOut),
			readOp(2, "b", 3, 4, 0),
		}},
		{"read seeing a grant that sold the hotspot out", true, []Op{
			claimOut(0, "b", "one", "k1", 0, 10, hunt.Granted),
			claimOut(1, "a", "one", "k1", 1, 2, hunt.SoldOut),
			readOp(2, "b", 3, 4, 5),
		}},

		// Unknown outcomes.
		{"unknown claim explains a sold_out", true, []Op{
			claimOp(0, "a", "one", "k1", 0, never, 0, 0),
			claimOut(1, "b", "one", "k1", 1, 2, hunt.SoldOut),
		}},
		{"unknown claim forced, then contradicted", false, []Op{
			claimOp(0, "a", "one", "k1", 0, never, 0, 0),
			claimOut(1, "b", "one", "k1", 1, 2, hunt.SoldOut),
			readOp(0, "a", 3, 4, 0),
		}},
		{"unknown claim taking effect after its caller gave up", true, []Op{
			claimOp(0, "a", "one", "k1", 0, never, 0, 0),
			readOp(0, "a", 1, 2, 0),
			readOp(0, "a", 3, 4, 0),
			readOp(0, "a", 5, 6, 5),
			claimOut(1, "b", "one", "k1", 7, 8, hunt.SoldOut),
		}},
		{"unknown claim that never took effect", true, []Op{
			claimOp(0, "a", "one", "k1", 0, never, 0, 0),
			claimOut(1, "b", "one", "k1", 5, 6, hunt.Granted),
			readOp(0, "a", 7, 8, 0),
		}},
		{"unknown claim cannot take effect before it was called", false, []Op{
			claimOut(1, "b", "one", "k1", 0, 1, hunt.SoldOut),
			claimOp(0, "a", "one", "k1", 2, never, 0, 0),
		}},
		{"unknown spend, applied", true, []Op{
			claimOut(0, "a", "one", "k1", 0, 1, hunt.Granted),
			spendOp(0, "a", "s1", 3, 2, never, 0, 0),
			readOp(1, "a", 3, 4, 2),
		}},
		{"unknown spend, not applied", true, []Op{
			claimOut(0, "a", "one", "k1", 0, 1, hunt.Granted),
			spendOp(0, "a", "s1", 3, 2, never, 0, 0),
			readOp(1, "a", 3, 4, 5),
		}},
		{"unknown spend explains no balance", false, []Op{
			claimOut(0, "a", "one", "k1", 0, 1, hunt.Granted),
			spendOp(0, "a", "s1", 3, 2, never, 0, 0),
			readOp(1, "a", 3, 4, 4),
		}},
		{"unknown read constrains nothing", true, []Op{
			claimOut(0, "a", "one", "k1", 0, 1, hunt.Granted),
			readOp(1, "a", 2, never, 1234),
		}},

		// Retries (I3).
		{"retry after an unknown gets the first decision", true, []Op{
			claimOp(0, "a", "one", "k1", 0, never, 0, 0),
			claimOut(1, "b", "one", "k1", 1, 2, hunt.SoldOut),
			claimOp(0, "a", "one", "k1", 3, 4, hunt.Granted, 0),
			readOp(0, "a", 5, 6, 5),
		}},
		{"retry deciding freshly after an unknown that never landed", true, []Op{
			claimOp(0, "a", "one", "k1", 0, never, 0, 0),
			readOp(1, "a", 1, 2, 0),
			claimOp(0, "a", "one", "k1", 3, 4, hunt.Granted, 0),
			readOp(1, "a", 5, 6, 5),
		}},
		{"retry answered differently", false, []Op{
			claimOut(0, "a", "two", "k1", 0, 1, hunt.Granted),
			claimOut(0, "a", "two", "k1", 2, 3, hunt.SoldOut),
		}},
		{"retry replays the first tickets left", true, []Op{
			claimOp(0, "a", "two", "k1", 0, 1, hunt.Granted, 1),
			claimOp(1, "b", "two", "k1", 2, 3, hunt.Granted, 0),
			claimOp(0, "a", "two", "k1", 4, 5, hunt.Granted, 1),
		}},
		{"retry answering the current tickets left", false, []Op{
			claimOp(0, "a", "two", "k1", 0, 1, hunt.Granted, 1),
			claimOp(1, "b", "two", "k1", 2, 3, hunt.Granted, 0),
			claimOp(0, "a", "two", "k1", 4, 5, hunt.Granted, 0),
		}},
		{"retry of an unknown spend spending twice", false, []Op{
			claimOut(0, "a", "one", "k1", 0, 1, hunt.Granted),
			spendOp(0, "a", "s1", 2, 2, never, 0, 0),
			spendOp(0, "a", "s1", 2, 3, 4, hunt.Spent, 3),
			readOp(0, "a", 5, 6, 1),
		}},
		{"retry of an unknown spend spending once", true, []Op{
			claimOut(0, "a", "one", "k1", 0, 1, hunt.Granted),
			spendOp(0, "a", "s1", 2, 2, never, 0, 0),
			spendOp(0, "a", "s1", 2, 3, 4, hunt.Spent, 3),
			readOp(0, "a", 5, 6, 3),
		}},
		{"replayed refusal after funds arrived", true, []Op{
			spendOp(0, "a", "s1", 2, 0, 1, hunt.InsufficientFunds, 0),
			claimOut(0, "a", "one", "k1", 2, 3, hunt.Granted),
			spendOp(0, "a", "s1", 2, 4, 5, hunt.InsufficientFunds, 0),
			readOp(0, "a", 6, 7, 5),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, _, err := CheckLinearizable(history(tc.ops...), testTickets, testRewards, checkTimeout)
			if err != nil || ok != tc.want {
				t.Fatalf("CheckLinearizable(%s) = %v, %v; want %v, nil", describe(tc.ops), ok, err, tc.want)
			}
		})
	}
}

func TestCheckLinearizableEmpty(t *testing.T) {
	ok, _, err := CheckLinearizable(&History{}, nil, nil, checkTimeout)
	if !ok || err != nil {
		t.Fatalf("CheckLinearizable(empty) = %v, %v; want true, nil", ok, err)
	}
}

func TestCheckLinearizableRefuses(t *testing.T) {
	good := claimOut(0, "a", "one", "k1", 0, 1, hunt.Granted)
	for _, tc := range []struct {
		name string
		op   func(*Op)
	}{
		{"unmodeled claim outcome", func(o *Op) { o.Outcome = hunt.TooFar }},
		{"spend outcome on a claim", func(o *Op) { o.Outcome = hunt.Spent }},
		{"hotspot without tickets", func(o *Op) { o.Hotspot = "nowhere" }},
		{"return before call", func(o *Op) { o.Return = at(-5) }},
		{"no player", func(o *Op) { o.Player = "" }},
		{"negative client", func(o *Op) { o.Client = -1 }},
		{"unknown kind", func(o *Op) { o.Kind = 0 }},
		{"spend of nothing", func(o *Op) { *o = spendOp(0, "a", "s", 0, 0, 1, hunt.Spent, 0) }},
		{"claim outcome on a spend", func(o *Op) { *o = spendOp(0, "a", "s", 1, 0, 1, hunt.Granted, 0) }},
		{"key reused for another hotspot", func(o *Op) { o.Hotspot = "two"; o.Call, o.Return = at(2), at(3) }},
		{"key reused for a spend", func(o *Op) { *o = spendOp(0, "a", "k1", 1, 2, 3, hunt.Spent, 4) }},
		{"claim without a key", func(o *Op) { o.Key = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := good
			tc.op(&bad)
			ops := []Op{bad}
			if strings.HasPrefix(tc.name, "key reused") {
				ops = []Op{good, bad}
			}
			ok, _, err := CheckLinearizable(history(ops...), testTickets, testRewards, checkTimeout)
			if ok || !errors.Is(err, ErrBadHistory) {
				t.Fatalf("CheckLinearizable(%s) = %v, %v; want false, %v", describe(ops), ok, err, ErrBadHistory)
			}
		})
	}
	// An unknown operation's outcome is not looked at.
	unknown := claimOp(0, "a", "one", "k1", 0, never, hunt.TooFar, 0)
	if ok, _, err := CheckLinearizable(history(unknown), testTickets, testRewards, checkTimeout); !ok || err != nil {
		t.Fatalf("CheckLinearizable(unknown with outcome too_far) = %v, %v; want true, nil", ok, err)
	}
}

// TestCheckLinearizablePartitions: the history splits into the connected
// components of players and hotspots, and no further.
func TestCheckLinearizablePartitions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ops   []Op
		parts int
	}{
		{"independent players and hotspots", []Op{
			claimOut(0, "a", "one", "k", 0, 1, hunt.Granted),
			claimOut(1, "b", "two", "k", 0, 1, hunt.Granted),
			readOp(2, "c", 0, 1, 0),
		}, 3},
		{"players joined by a hotspot", []Op{
			claimOut(0, "a", "one", "k", 0, 1, hunt.Granted),
			claimOut(1, "b", "one", "k", 0, 1, hunt.SoldOut),
			readOp(1, "b", 2, 3, 0),
		}, 1},
		{"hotspots joined by a player", []Op{
			claimOut(0, "a", "one", "k1", 0, 1, hunt.Granted),
			claimOut(0, "a", "two", "k2", 2, 3, hunt.Granted),
			claimOut(1, "b", "two", "k1", 2, 3, hunt.Granted),
			spendOp(2, "d", "s", 1, 0, 1, hunt.InsufficientFunds, 0),
		}, 2},
		{"a player and a hotspot of the same name stay apart", []Op{
			claimOut(0, "one", "two", "k", 0, 1, hunt.Granted),
			claimOut(1, "b", "one", "k", 0, 1, hunt.Granted),
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, info, err := CheckLinearizable(history(tc.ops...), testTickets, testRewards, checkTimeout)
			if !ok || err != nil {
				t.Fatalf("CheckLinearizable(%s) = %v, %v; want true, nil", describe(tc.ops), ok, err)
			}
			if got := len(info.PartialLinearizations()); got != tc.parts {
				t.Fatalf("CheckLinearizable(%s) checked %d partitions; want %d", describe(tc.ops), got, tc.parts)
			}
		})
	}
}

// TestCheckLinearizableVisualization: a failed check's info renders to HTML
// naming the operations.
func TestCheckLinearizableVisualization(t *testing.T) {
	ops := []Op{
		claimOp(0, "a", "one", "k1", 0, 10, hunt.Granted, 0),
		claimOp(1, "b", "one", "k1", 0, 10, hunt.Granted, 0),
		spendOp(2, "a", "s1", 2, 11, 12, hunt.Spent, 3),
		readOp(2, "b", 13, never, 7),
	}
	ok, info, err := CheckLinearizable(history(ops...), testTickets, testRewards, checkTimeout)
	if ok || err != nil {
		t.Fatalf("CheckLinearizable(two grants of one ticket) = %v, %v; want false, nil", ok, err)
	}
	path := filepath.Join(t.TempDir(), "history.html")
	if err := VisualizePath(info, path); err != nil {
		t.Fatalf("VisualizePath = %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`claim(a, one, \"k1\") → granted, 0 left`, `spend(a, 2, \"s1\")`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("visualization lacks %q", want)
		}
	}
}

func TestHistoryConcurrentRecord(t *testing.T) {
	var h History
	var wg sync.WaitGroup
	const clients, each = 8, 500
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				h.Record(readOp(c, "p", int64(i), int64(i), 0))
			}
		})
	}
	wg.Wait()
	if got := h.Len(); got != clients*each {
		t.Fatalf("Len() after %d concurrent Records = %d; want %d", clients*each, got, clients*each)
	}
	ops := h.Ops()
	ops[0].Player = "changed"
	if h.Ops()[0].Player != "p" {
		t.Fatalf("Ops() returned the history's own slice; want a copy")
	}
}

// ---- simulated histories ----

// simulation runs a sequential reference implementation, written here
// independently of the model, and turns its run into a concurrent history:
// every operation takes effect at an instant inside its interval (or, for an
// unknown operation, at any instant after its call, or never), so every
// history it builds is linearizable by construction.
type simulation struct {
	tickets, rewards map[hunt.HotspotID]int64
	players          []hunt.PlayerID
	spots            []hunt.HotspotID
}

type simOp struct {
	op      Op
	at      int64 // when it takes effect; -1: never
	ordinal int
}

func newSimulation() *simulation {
	s := &simulation{tickets: map[hunt.HotspotID]int64{}, rewards: map[hunt.HotspotID]int64{}}
	for i := range 6 {
		s.players = append(s.players, hunt.PlayerID(fmt.Sprintf("p%d", i)))
	}
	for i := range 5 {
		id := hunt.HotspotID(fmt.Sprintf("s%d", i))
		s.spots = append(s.spots, id)
		s.tickets[id] = int64(1 + i%3)
		s.rewards[id] = int64(1 + 2*i)
	}
	return s
}

// run builds a history of n operations from clients; unknownPct of the
// claims and spends end without an answer.
func (s *simulation) run(rng *rand.Rand, clients, n, unknownPct int) []Op {
	var ops []simOp
	clock := make([]int64, clients)
	type used struct {
		kind   OpKind
		spot   hunt.HotspotID
		amount int64
	}
	keys := map[reqKey]used{}
	var keyList []reqKey
	retry := make([]*Op, clients) // a client's unknown request it will retry next
	for i := range n {
		c := rng.IntN(clients)
		call := clock[c] + rng.Int64N(5)
		ret := call + 1 + rng.Int64N(30)
		clock[c] = ret
		op := Op{Client: c, Player: s.players[rng.IntN(len(s.players))], Call: at(call), Return: at(ret), Key: fmt.Sprintf("k%d", i)}
		switch r := rng.IntN(10); {
		case r < 5:
			op.Kind, op.Hotspot = OpClaim, s.spots[rng.IntN(len(s.spots))]
		case r < 7:
			op.Kind, op.Amount = OpSpend, 1+rng.Int64N(6)
		default:
			op.Kind = OpWallet
		}
		if op.Kind != OpWallet && len(keyList) > 0 && rng.IntN(6) == 0 {
			// A retry of an earlier request, same key, same content.
			k := keyList[rng.IntN(len(keyList))]
			u := keys[k]
			op.Player, op.Key, op.Kind, op.Hotspot, op.Amount = k.player, k.key, u.kind, u.spot, u.amount
		}
		if r := retry[c]; r != nil {
			// Clients mostly retry what ended without an answer, as the
			// engine suite's clients do.
			op.Player, op.Key, op.Kind, op.Hotspot, op.Amount = r.Player, r.Key, r.Kind, r.Hotspot, r.Amount
			retry[c] = nil
		}
		if op.Kind != OpWallet {
			k := reqKey{op.Player, op.Key}
			if _, ok := keys[k]; !ok {
				keys[k] = used{op.Kind, op.Hotspot, op.Amount}
				keyList = append(keyList, k)
			}
		}
		eff := call + rng.Int64N(ret-call+1)
		if op.Kind != OpWallet && rng.IntN(100) < unknownPct {
			op.Unknown = true
			switch rng.IntN(3) {
			case 0:
				eff = -1 // never landed
			case 1:
				eff = call + rng.Int64N(200) // landed late, maybe long after the caller gave up
			}
			if rng.IntN(4) != 0 {
				retry[c] = &op
			}
		}
		ops = append(ops, simOp{op: op, at: eff, ordinal: i})
	}

	// Apply in effect order, as one sequential engine would.
	order := slices.Clone(ops)
	slices.SortStableFunc(order, func(a, b simOp) int {
		if a.at != b.at {
			return int(a.at - b.at)
		}
		return a.ordinal - b.ordinal
	})
	granted := map[hunt.HotspotID]int64{}
	holds := map[[2]string]bool{}
	balance := map[hunt.PlayerID]int64{}
	type decided struct {
		out   hunt.Outcome
		count int64
	}
	first := map[reqKey]decided{}
	for _, so := range order {
		if so.at < 0 {
			continue
		}
		op := &ops[so.ordinal].op
		switch op.Kind {
		case OpWallet:
			op.Balance = balance[op.Player]
			continue
		}
		k := reqKey{op.Player, op.Key}
		d, replay := first[k]
		if !replay {
			switch op.Kind {
			case OpClaim:
				h := [2]string{string(op.Player), string(op.Hotspot)}
				switch {
				case holds[h]:
					d.out = hunt.AlreadyClaimed
				case granted[op.Hotspot] >= s.tickets[op.Hotspot]:
					d.out = hunt.SoldOut
				default:
					d.out = hunt.Granted
					granted[op.Hotspot]++
					holds[h] = true
					balance[op.Player] += s.rewards[op.Hotspot]
				}
				d.count = s.tickets[op.Hotspot] - granted[op.Hotspot]
			case OpSpend:
				d.out = hunt.InsufficientFunds
				if balance[op.Player] >= op.Amount {
					d.out = hunt.Spent
					balance[op.Player] -= op.Amount
				}
				d.count = balance[op.Player]
			}
			first[k] = d
		}
		if !op.Unknown {
			op.Outcome, op.Detailed = d.out, true
			if op.Kind == OpClaim {
				op.TicketsLeft = d.count
			} else {
				op.Balance = d.count
			}
		}
	}
	out := make([]Op, len(ops))
	for i, so := range ops {
		out[i] = so.op
	}
	return out
}

// TestCheckLinearizableSimulated: histories that are linearizable by
// construction pass, with unknown outcomes and retries; the same histories
// with one impossible answer fail.
func TestCheckLinearizableSimulated(t *testing.T) {
	s := newSimulation()
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		ops := s.run(rng, 2+int(seed%7), 150, int(seed%4)*8)
		ok, _, err := CheckLinearizable(history(ops...), s.tickets, s.rewards, checkTimeout)
		if !ok || err != nil {
			t.Fatalf("seed %d: CheckLinearizable(%s) = %v, %v; want true, nil", seed, describe(ops), ok, err)
		}

		// One answer no order can give: a negative balance, or more
		// tickets left than the hotspot has.
		var answers []int
		for i, op := range ops {
			if !op.Unknown && (op.Kind == OpWallet || op.Kind == OpClaim) {
				answers = append(answers, i)
			}
		}
		i := answers[rng.IntN(len(answers))]
		bad := slices.Clone(ops)
		if bad[i].Kind == OpWallet {
			bad[i].Balance = -1
		} else {
			bad[i].TicketsLeft = s.tickets[bad[i].Hotspot] + 1
		}
		ok, _, err = CheckLinearizable(history(bad...), s.tickets, s.rewards, checkTimeout)
		if ok || err != nil {
			t.Fatalf("seed %d: CheckLinearizable(op %d changed to %+v) = %v, %v; want false, nil", seed, i, bad[i], ok, err)
		}
	}
}

// BenchmarkCheckLinearizable checks a 16-client history of 1000 operations
// with 10% unknown outcomes.
func BenchmarkCheckLinearizable(b *testing.B) {
	s := newSimulation()
	ops := s.run(rand.New(rand.NewPCG(1, 2)), 16, 1000, 10)
	h := history(ops...)
	b.ReportAllocs()
	for b.Loop() {
		if ok, _, err := CheckLinearizable(h, s.tickets, s.rewards, time.Minute); !ok || err != nil {
			b.Fatalf("CheckLinearizable = %v, %v; want true, nil", ok, err)
		}
	}
}

// summary renders prepared operations as "kind player key [call,return] outcome slot".
func summary(ops []porcupine.Operation) []string {
	var out []string
	for _, op := range ops {
		in, o := op.Input.(*input), op.Output.(*output)
		ret, res := fmt.Sprint(op.Return), fmt.Sprintf("%v/%d", o.outcome, o.count)
		if o.unknown {
			ret, res = "end", "?"
		}
		out = append(out, fmt.Sprintf("%v %s %s [%d,%s] %s slot %d", in.kind, in.c.players[in.player], in.key, op.Call, ret, res, in.slot))
	}
	return out
}

func TestPrepareMergesAttempts(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []Op
		want []string
	}{
		{"unknowns resolved by retries", []Op{
			claimOp(0, "a", "one", "k", 2, never, 0, 0),
			readOp(1, "b", 3, 4, 0),
			claimOp(0, "a", "one", "k", 5, never, 0, 0),
			claimOp(0, "a", "one", "k", 6, 12, hunt.Granted, 0),
			claimOp(1, "a", "one", "k", 7, 10, hunt.Granted, 0),
		}, []string{
			"claim a k [0,8] granted/0 slot -1",
			"wallet b  [1,2] none/0 slot -1",
		}},
		{"unknowns only", []Op{
			spendOp(0, "a", "s", 2, 4, never, 0, 0),
			spendOp(1, "a", "s", 2, 2, never, 0, 0),
			readOp(1, "a", 3, 9, 0),
		}, []string{
			"spend a s [0,end] ? slot -1",
			"wallet a  [1,7] none/0 slot -1",
		}},
		{"an answer without details takes the other's", []Op{
			spendOut(0, "a", "s", 2, 0, 5, hunt.InsufficientFunds),
			spendOp(1, "a", "s", 2, 1, 3, hunt.InsufficientFunds, 1),
		}, []string{
			"spend a s [0,3] insufficient_funds/1 slot -1",
		}},
		{"disagreeing answers stay apart", []Op{
			claimOp(0, "a", "two", "k", 0, never, 0, 0),
			claimOp(0, "a", "two", "k", 1, 2, hunt.Granted, 1),
			claimOp(1, "a", "two", "k", 3, 4, hunt.Granted, 0),
		}, []string{
			"claim a k [0,end] ? slot 0",
			"claim a k [1,2] granted/1 slot 0",
			"claim a k [3,4] granted/0 slot 0",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops, err := prepare(tc.ops, testTickets, testRewards)
			if got := summary(ops); err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("prepare(%s) = %q, %v; want %q", describe(tc.ops), got, err, tc.want)
			}
		})
	}
}

func TestPrepareDropsSettledClaims(t *testing.T) {
	ops := []Op{
		claimOp(0, "a", "one", "k1", 0, 1, hunt.Granted, 0),
		claimOp(1, "b", "one", "k1", 2, 3, hunt.SoldOut, 0),
		claimOp(2, "c", "one", "k1", 4, never, 0, 0), // after the sold_out: dropped
		claimOp(3, "d", "one", "k1", 3, never, 0, 0), // as it returned: may come first, kept
		claimOp(0, "a", "two", "k2", 4, 5, hunt.Granted, 1),
		claimOp(0, "a", "two", "k3", 6, never, 0, 0), // after a's grant there: dropped
		claimOp(1, "b", "two", "k2", 6, never, 0, 0), // b holds nothing there: kept
	}
	got, err := prepare(ops, testTickets, testRewards)
	want := []string{
		"claim a k1 [0,1] granted/0 slot -1",
		"claim b k1 [2,3] sold_out/0 slot -1",
		"claim d k1 [3,end] ? slot -1",
		"claim a k2 [4,5] granted/1 slot -1",
		"claim b k2 [6,end] ? slot -1",
	}
	if s := summary(got); err != nil || !slices.Equal(s, want) {
		t.Fatalf("prepare(%s) = %q, %v; want %q", describe(ops), s, err, want)
	}
}

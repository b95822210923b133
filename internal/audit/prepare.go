package audit

import (
	"fmt"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairnhq/cairn/internal/hunt"
)

// Preparing the history for the model: validating every operation, merging
// the attempts of one request, and splitting it into components.

// component is one connected component: its hotspots, players and repeated
// keys, numbered densely so states are small slices.
type component struct {
	id       int
	players  []hunt.PlayerID
	hotspots []hunt.Hotspot // Tickets and Reward; everything else zero (always open, at 0,0)
	words    int            // uint64 words of one hotspot's holder set
	slots    int            // (player, key) pairs used by more than one operation
	hunt     hunt.Hunt      // the one hunt: no window, no speed limit
}

// input and output are what porcupine passes to the model for one operation.
type input struct {
	c       *component
	kind    OpKind
	player  int // index in c.players
	hotspot int // index in c.hotspots; claims
	slot    int // index of the (player, key) idempotency record; -1: key used once
	amount  int64
	key     string
}

type output struct {
	unknown  bool
	outcome  hunt.Outcome
	count    int64 // tickets left (claims), balance after (spends), balance (reads)
	detailed bool
}

type reqKey struct {
	player hunt.PlayerID
	key    string
}

// unionFind over node ids (players and hotspots).
type unionFind []int

func (u unionFind) find(x int) int {
	for u[x] != x {
		u[x] = u[u[x]]
		x = u[x]
	}
	return x
}

func (u unionFind) union(a, b int) { u[u.find(a)] = u.find(b) }

func badOp(i int, op *Op, format string, args ...any) error {
	return fmt.Errorf("%w: op %d (%s by %s): %s", ErrBadHistory, i, op.Kind, op.Player, fmt.Sprintf(format, args...))
}

// validate checks one operation against what the model covers.
func validate(i int, op *Op, tickets map[hunt.HotspotID]int64) error {
	if op.Client < 0 {
		return badOp(i, op, "client %d < 0", op.Client)
	}
	if op.Player == "" {
		return badOp(i, op, "no player")
	}
	if !op.Unknown && op.Return.Before(op.Call) {
		return badOp(i, op, "returned before it was called")
	}
	if op.Kind != OpWallet && op.Key == "" {
		return badOp(i, op, "no Idempotency-Key")
	}
	switch op.Kind {
	case OpClaim:
		if _, ok := tickets[op.Hotspot]; !ok {
			return badOp(i, op, "hotspot %q has no tickets given", op.Hotspot)
		}
		if !op.Unknown && op.Outcome != hunt.Granted && op.Outcome != hunt.AlreadyClaimed && op.Outcome != hunt.SoldOut {
			return badOp(i, op, "outcome %v is not modeled", op.Outcome)
		}
	case OpSpend:
		if op.Amount <= 0 {
			return badOp(i, op, "amount %d <= 0", op.Amount)
		}
		if !op.Unknown && op.Outcome != hunt.Spent && op.Outcome != hunt.InsufficientFunds {
			return badOp(i, op, "outcome %v is not modeled", op.Outcome)
		}
	case OpWallet:
	default:
		return badOp(i, op, "unknown kind")
	}
	return nil
}

// prepare validates the history, splits it into components and converts it
// to porcupine operations with times in nanoseconds since the first call.
func prepare(all []Op, tickets, rewards map[hunt.HotspotID]int64) ([]porcupine.Operation, error) {
	if len(all) > OpsMax {
		return nil, fmt.Errorf("%w: %d operations > OpsMax %d", ErrBadHistory, len(all), OpsMax)
	}
	ops := make([]*Op, 0, len(all))
	for i := range all {
		op := &all[i]
		if err := validate(i, op, tickets); err != nil {
			return nil, err
		}
		if op.Kind == OpWallet && op.Unknown {
			continue // a read nobody saw constrains nothing
		}
		ops = append(ops, op)
	}
	ops, err := mergeAttempts(ops)
	if err != nil {
		return nil, err
	}
	ops = dropSettled(ops)
	if len(ops) == 0 {
		return nil, nil
	}

	// Nodes: players, then hotspots; a claim joins its player and hotspot.
	playerNode, hotspotNode := map[string]int{}, map[string]int{}
	var names []string // node → player or hotspot id
	var isHotspot []bool
	node := func(hotspot bool, name string) int {
		m := playerNode
		if hotspot {
			m = hotspotNode
		}
		if n, ok := m[name]; ok {
			return n
		}
		m[name] = len(names)
		names = append(names, name)
		isHotspot = append(isHotspot, hotspot)
		return len(names) - 1
	}
	type ends struct{ player, hotspot int }
	nodes := make([]ends, len(ops))
	for i, op := range ops {
		nodes[i] = ends{player: node(false, string(op.Player)), hotspot: -1}
		if op.Kind == OpClaim {
			nodes[i].hotspot = node(true, string(op.Hotspot))
		}
	}
	uf := make(unionFind, len(names))
	for i := range uf {
		uf[i] = i
	}
	for _, n := range nodes {
		if n.hotspot >= 0 {
			uf.union(n.player, n.hotspot)
		}
	}

	// Components, numbered in order of first appearance, with dense member indices.
	comps := map[int]*component{}
	local := make([]int, len(names)) // node → index within its component
	var order []*component
	compOf := func(n int) *component {
		root := uf.find(n)
		c, ok := comps[root]
		if !ok {
			c = &component{id: len(order), hunt: hunt.Hunt{ID: "linearize", ClaimRadiusM: hunt.ClaimRadiusMDefault}}
			comps[root] = c
			order = append(order, c)
		}
		return c
	}
	for n, name := range names {
		c := compOf(n)
		if isHotspot[n] {
			local[n] = len(c.hotspots)
			id := hunt.HotspotID(name)
			c.hotspots = append(c.hotspots, hunt.Hotspot{ID: id, Tickets: tickets[id], Reward: rewards[id]})
		} else {
			local[n] = len(c.players)
			c.players = append(c.players, hunt.PlayerID(name))
		}
	}
	for _, c := range order {
		c.words = (len(c.players) + 63) / 64
	}

	// Idempotency records: only keys used more than once after merging (a
	// request whose answers disagree) can be replayed, so only they need a
	// place in the state.
	uses := map[reqKey]int{}
	for _, op := range ops {
		if op.Kind != OpWallet {
			uses[reqKey{op.Player, op.Key}]++
		}
	}
	slot := map[reqKey]int{}

	base, end := ops[0].Call, ops[0].Call
	for _, op := range ops {
		if op.Call.Before(base) {
			base = op.Call
		}
		if op.Call.After(end) {
			end = op.Call
		}
		if !op.Unknown && op.Return.After(end) {
			end = op.Return
		}
	}
	// Unknown operations may take effect until the end of the history.
	endNs := int64(end.Sub(base)) + 1

	out := make([]porcupine.Operation, len(ops))
	for i, op := range ops {
		c := compOf(nodes[i].player)
		in := &input{c: c, kind: op.Kind, player: local[nodes[i].player], hotspot: -1, slot: -1, amount: op.Amount, key: op.Key}
		if nodes[i].hotspot >= 0 {
			in.hotspot = local[nodes[i].hotspot]
		}
		if k := (reqKey{op.Player, op.Key}); op.Kind != OpWallet && uses[k] > 1 {
			s, ok := slot[k]
			if !ok {
				s = c.slots
				c.slots++
				slot[k] = s
			}
			in.slot = s
		}
		o := &output{unknown: op.Unknown, outcome: op.Outcome, detailed: op.Detailed, count: count(op)}
		ret := endNs
		if !op.Unknown {
			ret = int64(op.Return.Sub(base))
		}
		out[i] = porcupine.Operation{ClientId: op.Client, Input: in, Output: o, Call: int64(op.Call.Sub(base)), Return: ret}
	}
	return out, nil
}

// mergeAttempts turns every group of operations with one (player, key) into
// one operation. They are attempts at one request (I3): its decision is made
// once, after the first attempt was called and before the first definite
// answer returned, and every definite answer reports it. So the group is
// exactly one operation over [first call, first definite return] answering
// what they all answered (unknown if none did). This takes unknown
// attempts that a retry resolved out of the search, where each would double
// the orders to try. A group whose definite answers disagree is kept apart,
// and the model's idempotency record shows it is not linearizable.
func mergeAttempts(ops []*Op) ([]*Op, error) {
	groups := map[reqKey][]int{}
	for i, op := range ops {
		if op.Kind == OpWallet {
			continue
		}
		k := reqKey{op.Player, op.Key}
		if g := groups[k]; len(g) > 0 {
			if f := ops[g[0]]; f.Kind != op.Kind || f.Hotspot != op.Hotspot || f.Amount != op.Amount {
				return nil, fmt.Errorf("%w: key %q of %s used for %v %s %d and %v %s %d (the model covers retries only)",
					ErrBadHistory, op.Key, op.Player, f.Kind, f.Hotspot, f.Amount, op.Kind, op.Hotspot, op.Amount)
			}
		}
		groups[k] = append(groups[k], i)
	}
	out := ops[:0:0]
	for i, op := range ops {
		if op.Kind == OpWallet {
			out = append(out, op)
			continue
		}
		g := groups[reqKey{op.Player, op.Key}]
		if len(g) == 1 {
			out = append(out, op)
			continue
		}
		if g[0] != i {
			continue // merged into the group's first
		}
		merged, agree := mergeGroup(ops, g)
		if !agree {
			for _, j := range g {
				out = append(out, ops[j])
			}
			continue
		}
		out = append(out, merged)
	}
	return out, nil
}

// dropSettled drops unknown claims that cannot have changed anything: those
// called after a definite sold_out of their hotspot returned, or after a
// definite grant or already_claimed of their player there returned. Grants
// are never taken back and tickets are constant, so in every order such a
// claim is decided sold_out or already_claimed: no effect, and nobody saw
// its answer. Dropping them is exact, and spares the search the places each
// could take.
func dropSettled(ops []*Op) []*Op {
	type holding struct {
		player  hunt.PlayerID
		hotspot hunt.HotspotID
	}
	soldOut := map[hunt.HotspotID]time.Time{}
	held := map[holding]time.Time{}
	for _, op := range ops {
		if op.Kind != OpClaim || op.Unknown {
			continue
		}
		switch op.Outcome {
		case hunt.SoldOut:
			earliest(soldOut, op.Hotspot, op.Return)
		case hunt.Granted, hunt.AlreadyClaimed:
			earliest(held, holding{op.Player, op.Hotspot}, op.Return)
		}
	}
	uses := map[reqKey]int{}
	for _, op := range ops {
		if op.Kind == OpClaim {
			uses[reqKey{op.Player, op.Key}]++
		}
	}
	return slices.DeleteFunc(ops, func(op *Op) bool {
		// Attempts left apart by mergeAttempts share an idempotency record
		// that even a no-op decision writes: keep them.
		if op.Kind != OpClaim || !op.Unknown || uses[reqKey{op.Player, op.Key}] > 1 {
			return false
		}
		s, sold := soldOut[op.Hotspot]
		h, holds := held[holding{op.Player, op.Hotspot}]
		return (sold && op.Call.After(s)) || (holds && op.Call.After(h))
	})
}

func earliest[K comparable](m map[K]time.Time, k K, t time.Time) {
	if old, ok := m[k]; !ok || t.Before(old) {
		m[k] = t
	}
}

// mergeGroup merges the attempts ops[g...], or reports that their definite answers disagree.
func mergeGroup(ops []*Op, g []int) (*Op, bool) {
	m := *ops[g[0]]
	m.Unknown = true
	for _, j := range g {
		op := ops[j]
		if op.Call.Before(m.Call) {
			m.Call, m.Client = op.Call, op.Client
		}
		if op.Unknown {
			continue
		}
		if m.Unknown {
			m.Unknown, m.Return, m.Outcome, m.Detailed = false, op.Return, op.Outcome, op.Detailed
			m.TicketsLeft, m.Balance = op.TicketsLeft, op.Balance
			continue
		}
		if op.Outcome != m.Outcome {
			return nil, false
		}
		if op.Detailed {
			if m.Detailed && count(op) != count(&m) {
				return nil, false
			}
			m.Detailed, m.TicketsLeft, m.Balance = true, op.TicketsLeft, op.Balance
		}
		if op.Return.Before(m.Return) {
			m.Return = op.Return
		}
	}
	return &m, true
}

// count is the number an answer carries besides its outcome.
func count(op *Op) int64 {
	if op.Kind == OpClaim {
		return op.TicketsLeft
	}
	return op.Balance
}

package audit

import (
	"fmt"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairnhq/cairn/internal/hunt"
)

// The model: the sequential specification of the linearizability file
// comment, as porcupine steps it.

// decision is an idempotency record: the first decision of a (player, key).
type decision struct {
	outcome hunt.Outcome // OutcomeNone: not decided yet
	count   int64        // the answer's tickets left or balance
}

// state is one component's state. States are immutable once built: a step
// copies only the slices it changes and shares the rest.
type state struct {
	c       *component
	granted []int64    // per hotspot
	holders []uint64   // per hotspot, c.words words: bit p set when player p holds a ticket
	balance []int64    // per player
	decided []decision // per idempotency slot
	hash    uint64
}

func newState(c *component) *state {
	s := &state{c: c, granted: make([]int64, len(c.hotspots)), holders: make([]uint64, len(c.hotspots)*c.words),
		balance: make([]int64, len(c.players)), decided: make([]decision, c.slots)}
	s.seal()
	return s
}

func mix(h, v uint64) uint64 {
	h ^= v
	h *= 0x100000001b3
	return h ^ h>>29
}

// seal computes the hash of a finished state.
func (s *state) seal() {
	h := uint64(0xcbf29ce484222325)
	for _, v := range s.granted {
		h = mix(h, uint64(v))
	}
	for _, v := range s.holders {
		h = mix(h, v)
	}
	for _, v := range s.balance {
		h = mix(h, uint64(v))
	}
	for _, d := range s.decided {
		h = mix(mix(h, uint64(d.outcome)), uint64(d.count))
	}
	s.hash = h
}

func (s *state) holds(hotspot, player int) bool {
	return s.holders[hotspot*s.c.words+player/64]&(1<<(player%64)) != 0
}

// decide is the first decision of in on s: the state after it and the
// decision (with the count its answer carries).
func (s *state) decide(in *input) (*state, decision) {
	next := *s
	var d decision
	switch in.kind {
	case OpClaim:
		hs := &s.c.hotspots[in.hotspot]
		st := hunt.ClaimState{Hunt: &s.c.hunt, Hotspot: hs, Granted: s.granted[in.hotspot], AlreadyClaimed: s.holds(in.hotspot, in.player)}
		req := hunt.ClaimRequest{Player: s.c.players[in.player], Key: in.key, Hunt: s.c.hunt.ID, Hotspot: hs.ID, Lat: hs.Lat, Lon: hs.Lon}
		d.outcome = hunt.DecideClaim(&st, &req, time.Time{})
		if d.outcome == hunt.Granted {
			next.granted = slices.Clone(s.granted)
			next.granted[in.hotspot]++
			next.holders = slices.Clone(s.holders)
			next.holders[in.hotspot*s.c.words+in.player/64] |= 1 << (in.player % 64)
			if hs.Reward != 0 {
				next.balance = slices.Clone(s.balance)
				next.balance[in.player] += hs.Reward
			}
		}
		d.count = hs.Tickets - next.granted[in.hotspot]
	case OpSpend:
		req := hunt.SpendRequest{Player: s.c.players[in.player], Key: in.key, Amount: in.amount}
		d.outcome = hunt.DecideSpend(s.balance[in.player], &req)
		if d.outcome == hunt.Spent {
			next.balance = slices.Clone(s.balance)
			next.balance[in.player] -= in.amount
		}
		d.count = next.balance[in.player]
	default:
		panic(fmt.Sprintf("invariant: decide called for %v", in.kind))
	}
	if in.slot >= 0 {
		next.decided = slices.Clone(s.decided)
		next.decided[in.slot] = d
	}
	next.seal()
	return &next, d
}

func (o *output) matches(d decision) bool {
	return o.outcome == d.outcome && (!o.detailed || o.count == d.count)
}

// step applies one operation to st: whether it can happen there, and the
// state after it. An unknown operation always can, taking whatever decision
// the state gives; "it never took effect" is the search placing it after
// everything that could have seen it.
func step(st, in0, out0 any) (bool, any) {
	in, out := in0.(*input), out0.(*output)
	s, _ := st.(*state)
	if s == nil {
		s = newState(in.c) // Init cannot know the component; its first step does
	}
	if in.kind == OpWallet {
		return s.balance[in.player] == out.count, s
	}
	if in.slot >= 0 {
		if d := s.decided[in.slot]; d.outcome != hunt.OutcomeNone {
			// A replay: no effect, and the first decision again.
			return out.unknown || out.matches(d), s
		}
	}
	next, d := s.decide(in)
	return out.unknown || out.matches(d), next
}

func equal(a, b any) bool {
	x, _ := a.(*state)
	y, _ := b.(*state)
	if x == nil || y == nil {
		return x == y
	}
	return x.hash == y.hash && slices.Equal(x.granted, y.granted) && slices.Equal(x.holders, y.holders) &&
		slices.Equal(x.balance, y.balance) && slices.Equal(x.decided, y.decided)
}

func hashState(a any) uint64 {
	if s, _ := a.(*state); s != nil {
		return s.hash
	}
	return 0
}

func partition(history []porcupine.Operation) [][]porcupine.Operation {
	var parts [][]porcupine.Operation
	for _, op := range history {
		id := op.Input.(*input).c.id
		for len(parts) <= id {
			parts = append(parts, nil)
		}
		parts[id] = append(parts[id], op)
	}
	return slices.DeleteFunc(parts, func(p []porcupine.Operation) bool { return len(p) == 0 })
}

// LinearizationModel is the porcupine model CheckLinearizable uses; it is
// what porcupine.VisualizePath needs next to the LinearizationInfo.
func LinearizationModel() porcupine.Model {
	return porcupine.Model{
		Partition:         partition,
		Init:              func() any { return (*state)(nil) },
		Step:              step,
		Equal:             equal,
		Hash:              hashState,
		DescribeOperation: describeOp,
		DescribeState:     describeState,
	}
}

package audit

// Linearizability. Where Check looks at the log after the
// fact, CheckLinearizable looks at what clients saw while it happened: each
// client records every call it made, when it started and returned, and what
// it answered; porcupine then searches for one sequential order of all those
// operations that respects real time (an operation that returned before
// another was called comes first) and in which every answer is the one the
// sequential specification below gives. If no such order exists, some client
// saw something no correct engine could have shown it: a second grant of a
// last ticket, a grant after a sold_out with nothing in between, a balance
// that no order of grants and spends explains, a retry answered differently
// from the first decision.
//
// The specification (one hunt; hotspots always open and in reach, so a claim
// is granted, already_claimed or sold_out):
//
//   - claim(player, hotspot, key): the first decision of (player, key) is
//     hunt.DecideClaim on the hotspot's grants and holders; a grant adds the
//     player to the holders, counts a ticket, and credits the hotspot's reward
//     to the player's wallet. The answer carries the tickets left after it.
//   - spend(player, amount, key): the first decision of (player, key) is
//     hunt.DecideSpend on the balance; spent lowers it. The answer carries the
//     balance right after the decision.
//   - wallet(player): answers the balance.
//   - Every later call with a decided (player, key) changes nothing and
//     answers the first decision again (I3), whatever happened in between.
//
// Unknown outcomes. A call that timed out, hit a crash or a restart may or
// may not have taken effect, and if it did, at any time after it was called,
// even long after the caller gave up (the request may still sit in an inbox or
// a stream). Such an operation gets the end of the history as its return time,
// as porcupine's documentation suggests, and answers whatever the state at its
// place decides: porcupine's search may place it anywhere after its call, and
// placed after everything that could have seen it, it is as if it never took
// effect. An unknown wallet read shows nothing and is dropped.
//
// Retries. Calls with one (player, key) are attempts at one request: its
// decision is made once, after the first attempt was called and before the
// first definite answer returned, and every definite answer reports it. The
// checker merges them into that one operation (mergeAttempts), which is
// exact and takes unknown attempts that a retry resolved out of the search;
// each unresolved unknown operation roughly doubles the orders the search
// may have to try, so clients should retry until they get an answer. Attempts
// whose answers disagree stay apart, and the model's idempotency record (the
// first decision of a key, replayed to every later attempt) shows them
// illegal. Unknown claims that can only have been decided sold_out or
// already_claimed are dropped (dropSettled), also exactly.
//
// Partitions. A claim touches one hotspot and one wallet at once, so the
// history does not split by hotspot alone (checking per-hotspot and per-wallet
// projections separately would accept, for instance, a player's read that
// misses a grant which already made someone else's claim sold_out). It splits
// exactly into the connected components of the graph whose nodes are hotspots
// and players and whose edges are claims; spends and reads belong to their
// player's component. Each component is checked on its own, in parallel,
// with its own small state, which is what keeps the search fast.
//
// Concurrency: History is safe for concurrent Record; CheckLinearizable reads
// a snapshot and may run while clients still record (it checks the snapshot).
// The model keeps no state between calls: CheckLinearizable and
// LinearizationModel are safe for concurrent use, and porcupine checks the
// components of one history on parallel goroutines.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairnhq/cairn/internal/hunt"
)

// OpKind is what a recorded operation did.
type OpKind uint8

const (
	OpClaim  OpKind = iota + 1 // hunt claim: Player, Hotspot, Key → Outcome, TicketsLeft
	OpSpend                    // wallet spend: Player, Amount, Key → Outcome, Balance
	OpWallet                   // wallet read: Player → Balance
)

func (k OpKind) String() string {
	switch k {
	case OpClaim:
		return "claim"
	case OpSpend:
		return "spend"
	case OpWallet:
		return "wallet"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Op is one call a client made and what it answered. Call is taken just
// before the request is sent and Return just after the answer arrived (any
// clock reading with a monotonic part, such as time.Now, or any consistent
// times for hand-made histories).
type Op struct {
	Client  int // zero-based; one row of the visualization
	Kind    OpKind
	Player  hunt.PlayerID
	Hotspot hunt.HotspotID // claims
	Key     string         // claims and spends: the Idempotency-Key
	Amount  int64          // spends

	Call, Return time.Time

	// Unknown: the call ended without an answer (timeout, crash, 5xx); it may
	// or may not have taken effect. Return and the fields below are ignored.
	Unknown bool
	// Outcome of a claim (granted, already_claimed, sold_out) or a spend
	// (spent, insufficient_funds).
	Outcome hunt.Outcome
	// TicketsLeft is the hotspot's tickets left right after a claim's
	// decision; checked only when Detailed.
	TicketsLeft int64
	// Balance is a wallet read's answer (always checked), or the balance right
	// after a spend's decision (checked only when Detailed).
	Balance int64
	// Detailed: the answer's TicketsLeft (claims) or Balance (spends) was
	// observed and is checked; otherwise only the Outcome is.
	Detailed bool
}

// OpsMax bounds the operations CheckLinearizable accepts; the search is
// exponential in the worst case, and histories this long belong in pieces.
const OpsMax = 1_000_000

// Errors of CheckLinearizable. A history that is simply not linearizable is
// not an error: CheckLinearizable answers ok == false.
var (
	// ErrBadHistory: an operation is malformed or outside what the model
	// covers (an outcome such as too_far, a hotspot without tickets, a key
	// reused for another request).
	ErrBadHistory = errors.New("history not checkable")
	// ErrCheckTimeout: the search did not finish within its timeout; the
	// history is neither proven linearizable nor shown not to be.
	ErrCheckTimeout = errors.New("linearizability check timed out")
)

// History collects operations from concurrent clients.
type History struct {
	mu struct {
		sync.Mutex
		ops []Op
	}
}

// Record adds one operation. Safe for concurrent use.
func (h *History) Record(op Op) {
	h.mu.Lock()
	h.mu.ops = append(h.mu.ops, op)
	h.mu.Unlock()
}

// Ops returns a copy of the operations recorded so far, in recording order.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.mu.ops)
}

// Len is the number of operations recorded so far.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.mu.ops)
}

// CheckLinearizable checks the history against the model in the file
// comment. tickets gives every claimed hotspot's tickets; rewards its reward
// (missing: 0). Both must be constant over the history. timeout bounds the
// search (0: none); on timeout err is ErrCheckTimeout.
//
// info is porcupine's account of the search for every component: pass it
// with LinearizationModel to porcupine.VisualizePath to see the history and
// the longest orders found (for a failed check, where they break off).
func CheckLinearizable(h *History, tickets, rewards map[hunt.HotspotID]int64, timeout time.Duration) (ok bool, info porcupine.LinearizationInfo, err error) {
	ops, err := prepare(h.Ops(), tickets, rewards)
	if err != nil {
		return false, porcupine.LinearizationInfo{}, err
	}
	res, info := porcupine.CheckOperationsVerbose(LinearizationModel(), ops, timeout)
	switch res {
	case porcupine.Ok:
		return true, info, nil
	case porcupine.Illegal:
		return false, info, nil
	}
	return false, info, fmt.Errorf("%w after %v (%d operations)", ErrCheckTimeout, timeout, len(ops))
}

// VisualizePath writes porcupine's HTML view of info to path.
func VisualizePath(info porcupine.LinearizationInfo, path string) error {
	return porcupine.VisualizePath(LinearizationModel(), info, path)
}

// ---- preparing the history ----

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
			c = &component{id: len(order), hunt: hunt.Hunt{ID: "linearize", ClaimRadiusM: hunt.ClaimRadiusMDef}}
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

// ---- the model ----

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

func describeOp(in0, out0 any) string {
	in, out := in0.(*input), out0.(*output)
	var b strings.Builder
	p := in.c.players[in.player]
	switch in.kind {
	case OpClaim:
		fmt.Fprintf(&b, "claim(%s, %s, %q)", p, in.c.hotspots[in.hotspot].ID, in.key)
	case OpSpend:
		fmt.Fprintf(&b, "spend(%s, %d, %q)", p, in.amount, in.key)
	case OpWallet:
		fmt.Fprintf(&b, "wallet(%s) → %d", p, out.count)
		return b.String()
	}
	switch {
	case out.unknown:
		b.WriteString(" → ?")
	case !out.detailed:
		fmt.Fprintf(&b, " → %v", out.outcome)
	case in.kind == OpClaim:
		fmt.Fprintf(&b, " → %v, %d left", out.outcome, out.count)
	default:
		fmt.Fprintf(&b, " → %v, balance %d", out.outcome, out.count)
	}
	return b.String()
}

func describeState(a any) string {
	s, _ := a.(*state)
	if s == nil {
		return "initial"
	}
	var b strings.Builder
	for h, hs := range s.c.hotspots {
		fmt.Fprintf(&b, "%s %d/%d [", hs.ID, s.granted[h], hs.Tickets)
		sep := ""
		for p, id := range s.c.players {
			if s.holds(h, p) {
				fmt.Fprintf(&b, "%s%s", sep, id)
				sep = " "
			}
		}
		b.WriteString("]; ")
	}
	for p, id := range s.c.players {
		fmt.Fprintf(&b, "%s=%d ", id, s.balance[p])
	}
	return strings.TrimSpace(b.String())
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

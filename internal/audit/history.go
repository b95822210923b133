package audit

import (
	"fmt"
	"slices"
	"sync"
	"time"

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

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
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairnhq/cairn/internal/hunt"
)

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

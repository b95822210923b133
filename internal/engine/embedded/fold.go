package embedded

import (
	"errors"
	"fmt"

	"github.com/cairnhq/cairn/internal/hunt"
)

// The fold: how one event changes the engine's memory. The live writer and
// replay on Open call the same two steps, so replay equals live by
// construction (I7):
//
//   - apply: the writer's own effects, made before the commit, that later
//     decisions of the same partition must see: the partition's seq, the
//     hotspot's decided count and claimers, the player's last position, a
//     spend's reservation.
//   - publish: what others may see only once the event is durable: the
//     hotspot's granted count, a grant's credit, the wallet's epoch.
//
// Live, the writer decides (pure), applies, and hands the batch to the
// committer, which publishes it after the synced write. Replay reads the
// logged decision (never deciding again), applies and publishes it at once.

// errFold wraps what a logged event breaks; replay reports it as ErrCorrupt,
// the live writer panics (its own decision broke an invariant: a bug).
var errFold = errors.New("event does not fold")

// apply folds one decided event into the writer-owned state of p. s is the
// hotspot of a claim (nil for a spend). It returns the hotspot's decided
// grant count after the event, which publish makes visible.
func (p *partition) apply(ev *hunt.Event, s *slot) (int64, error) {
	if ev.Epoch.Partition != p.id || ev.Epoch.Seq != p.seq+1 {
		return 0, fmt.Errorf("%w: epoch %v after seq %d of partition %d (the log is gapless)", errFold, ev.Epoch, p.seq, p.id)
	}
	var granted int64
	switch ev.Kind {
	case hunt.KindClaimCompleted:
		if s == nil || s.wdef == nil {
			return 0, fmt.Errorf("%w: claim of hotspot %s/%s that does not exist", errFold, ev.Hunt, ev.Hotspot)
		}
		if s.part != p.id {
			return 0, fmt.Errorf("%w: hotspot %s/%s of partition %d in the log of %d", errFold, ev.Hunt, ev.Hotspot, s.part, p.id)
		}
		if ev.Outcome == hunt.Granted {
			if _, dup := s.claimers[ev.Player]; dup {
				return 0, fmt.Errorf("%w: I2: %s granted twice at %s/%s", errFold, ev.Player, ev.Hunt, ev.Hotspot)
			}
			if s.decided >= s.wdef.Tickets {
				return 0, fmt.Errorf("%w: I1: hotspot %s/%s granted more than its %d tickets", errFold, ev.Hunt, ev.Hotspot, s.wdef.Tickets)
			}
			s.decided++
			if s.claimers == nil {
				s.claimers = make(map[hunt.PlayerID]struct{}, 1)
			}
			s.claimers[ev.Player] = struct{}{}
			p.e.pos.update(posKey{ev.Player, ev.Hunt}, position{lat: ev.Lat, lon: ev.Lon, at: ev.At, epoch: ev.Epoch})
		}
		granted = s.decided
	case hunt.KindSpendCompleted:
		if ev.Outcome == hunt.Spent {
			// A reservation: subtracted before the commit so that the next
			// spend of the player (decided by this same writer) sees it.
			p.e.wallets.getOrCreate(ev.Player).balance.Add(-ev.Amount)
		}
	default:
		return 0, fmt.Errorf("%w: unknown event kind %d", errFold, ev.Kind)
	}
	p.seq = ev.Epoch.Seq
	return granted, nil
}

// publish makes one durable event visible. s and granted are what apply
// was given and returned.
func (e *Engine) publish(ev *hunt.Event, s *slot, granted int64) {
	switch {
	case ev.Kind == hunt.KindClaimCompleted && ev.Outcome == hunt.Granted:
		// A batch's grants publish in order, so the last store is its highest count.
		s.granted.Store(granted)
		if c := ev.Credit(); c != 0 {
			// Credited only now that the grant is durable: nobody can spend
			// a credit that a crash could still take back.
			e.wallets.getOrCreate(ev.Player).change(c, ev.At, ev.Epoch)
		}
	case ev.Kind == hunt.KindSpendCompleted && ev.Outcome == hunt.Spent:
		e.wallets.getOrCreate(ev.Player).touch(ev.At, ev.Epoch)
	}
}

package embedded

import (
	"errors"
	"fmt"

	"github.com/cairnhq/cairn/internal/geo"
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

// noSpot stands for "no hotspot" where a hotspot index is expected.
const noSpot = ^uint32(0)

// apply folds one decided event into the writer-owned state of p. spot is
// the hotspot of a claim (noSpot for a spend, or a claim of a hotspot that
// does not exist). It returns the hotspot's decided grant count after the
// event, which publish makes visible.
func (p *partition) apply(ev *hunt.Event, spot uint32) (uint32, error) {
	if ev.Epoch.Partition != p.id || ev.Epoch.Seq != p.seq+1 {
		return 0, fmt.Errorf("%w: epoch %v after seq %d of partition %d (the log is gapless)", errFold, ev.Epoch, p.seq, p.id)
	}
	var granted uint32
	switch ev.Kind {
	case hunt.KindClaimCompleted:
		t := &p.e.spots
		var def spotDef
		if spot != noSpot {
			def = p.def(spot)
		}
		if !def.exists() {
			return 0, fmt.Errorf("%w: claim of hotspot %s/%s that does not exist", errFold, ev.Hunt, ev.Hotspot)
		}
		if part := t.partOf(spot); part != p.id {
			return 0, fmt.Errorf("%w: hotspot %s/%s of partition %d in the log of %d", errFold, ev.Hunt, ev.Hotspot, part, p.id)
		}
		decided := t.decided(spot)
		if ev.Outcome == hunt.Granted {
			pl, _ := p.players.number(ev.Player, true)
			k := grantKey(spot, pl)
			if p.grants.has(k) {
				return 0, fmt.Errorf("%w: I2: %s granted twice at %s/%s", errFold, ev.Player, ev.Hunt, ev.Hotspot)
			}
			if decided >= def.tickets {
				return 0, fmt.Errorf("%w: I1: hotspot %s/%s granted more than its %d tickets", errFold, ev.Hunt, ev.Hotspot, def.tickets)
			}
			decided++
			t.setDecided(spot, decided)
			var m grantMeta
			if p.grants.keepMeta {
				m.gh, _ = geo.HashToBits(ev.Geohash)
				m.reward, m.points = uint32(ev.Reward), uint32(ev.Points)
			}
			p.grants.add(k, m)
			p.e.pos.update(posKey{ev.Player, ev.Hunt}, position{lat: ev.Lat, lon: ev.Lon, at: ev.At, epoch: ev.Epoch})
		}
		granted = decided
	case hunt.KindSpendCompleted:
		if ev.Outcome == hunt.Spent {
			// A reservation: subtracted before the commit so that the next
			// spend of the player (decided by this same writer) sees it.
			// Not durable yet: wallet reads wait for its publish (Engine.Wallet).
			p.e.wallets.getOrCreate(ev.Player).reserve(ev.Amount)
		}
	default:
		return 0, fmt.Errorf("%w: unknown event kind %d", errFold, ev.Kind)
	}
	p.seq = ev.Epoch.Seq
	return granted, nil
}

// publish makes one durable event visible. spot and granted are what apply
// was given and returned.
func (e *Engine) publish(ev *hunt.Event, spot uint32, granted uint32) {
	switch {
	case ev.Kind == hunt.KindClaimCompleted && ev.Outcome == hunt.Granted:
		// A batch's grants publish in order, so the last store is its highest count.
		e.spots.setGranted(spot, granted)
		if c := ev.Credit(); c != 0 {
			// Credited only now that the grant is durable: nobody can spend
			// a credit that a crash could still take back.
			e.wallets.getOrCreate(ev.Player).change(c, ev.At, ev.Epoch)
		}
	case ev.Kind == hunt.KindSpendCompleted && ev.Outcome == hunt.Spent:
		e.wallets.getOrCreate(ev.Player).settle(ev.At, ev.Epoch)
	}
}

// publishDef makes hotspot i's durable definition d visible and returns
// the spatial entry to add for it, if it is new or has moved (the committer
// adds a batch's entries to their hunt's index at once).
func (e *Engine) publishDef(i uint32, d spotDef) (spatialAdd, bool) {
	t := &e.spots
	old := t.def(i)
	t.setDef(i, d)
	gh := geohashOf(d)
	if old.exists() && geohashOf(old) == gh {
		return spatialAdd{}, false
	}
	return spatialAdd{gh: gh, idx: i, moved: old.exists()}, true
}

package embedded

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// Hunt returns a hunt or hunt.ErrUnknownHunt.
func (e *Engine) Hunt(ctx context.Context, id hunt.HuntID) (hunt.Hunt, error) {
	he := e.hunts.get(id)
	if he == nil {
		return hunt.Hunt{}, hunt.ErrUnknownHunt
	}
	return *he.def.Load(), nil
}

// Hunts lists every hunt ordered by id.
func (e *Engine) Hunts(ctx context.Context) ([]hunt.Hunt, error) {
	list := e.hunts.list()
	out := make([]hunt.Hunt, len(list))
	for i, he := range list {
		out[i] = *he.def.Load()
	}
	return out, nil
}

// Hotspots calls fn for every published hotspot of a hunt.
func (e *Engine) Hotspots(ctx context.Context, id hunt.HuntID, fn func(hunt.HotspotView) error) error {
	he := e.hunts.get(id)
	if he == nil {
		return hunt.ErrUnknownHunt
	}
	for i, s := range he.all() {
		if i%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fn(view(s)); err != nil {
			return err
		}
	}
	return nil
}

// view is a published slot as a HotspotView (granted is loaded before def,
// see partition.publish).
func view(s *slot) hunt.HotspotView {
	g := s.granted.Load()
	def := s.def.Load()
	return hunt.HotspotView{Hotspot: *def, TicketsLeft: max(def.Tickets-g, 0)}
}

// Nearby lists up to limit hotspots within radiusM of lat/lon, nearest first
// (ties by id). limit is capped at engine.NearbyLimitMax.
func (e *Engine) Nearby(ctx context.Context, id hunt.HuntID, lat, lon, radiusM float64, limit int) ([]hunt.HotspotView, error) {
	if !geo.ValidCoord(lat, lon) {
		return nil, hunt.Invalid("lat/lon", "must be finite, lat in [-90, 90], lon in [-180, 180]")
	}
	if math.IsNaN(radiusM) || radiusM <= 0 || radiusM > engine.NearbyRadiusMMax {
		return nil, hunt.Invalid("radius_m", "must be in (0, %d]", engine.NearbyRadiusMMax)
	}
	if limit <= 0 {
		return nil, hunt.Invalid("limit", "must be positive")
	}
	limit = min(limit, engine.NearbyLimitMax)
	he := e.hunts.get(id)
	if he == nil {
		return nil, hunt.ErrUnknownHunt
	}
	// Cells are chosen for a slightly larger radius so that cells narrowing
	// with latitude never leave a corner uncovered; the distance filter is exact.
	out := []hunt.HotspotView{}
	for _, s := range he.candidates(lat, lon, radiusM*1.1) {
		v := view(s)
		if d := geo.DistanceM(lat, lon, v.Lat, v.Lon); d <= radiusM {
			v.DistanceM = d
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].DistanceM != out[j].DistanceM {
			return out[i].DistanceM < out[j].DistanceM
		}
		return out[i].ID < out[j].ID
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Wallet returns the player's balance and the epoch of its latest change.
func (e *Engine) Wallet(ctx context.Context, player hunt.PlayerID) (hunt.Wallet, error) {
	out := hunt.Wallet{Player: player}
	if w := e.wallets.get(player); w != nil {
		w.mu.Lock()
		out.Balance, out.Epoch = w.balance.Load(), w.epoch
		w.mu.Unlock()
	}
	return out, nil
}

// Ledger returns up to limit (capped at engine.LedgerLimitMax) of the
// player's wallet changes, newest first, read from the l/ index.
func (e *Engine) Ledger(ctx context.Context, player hunt.PlayerID, limit int) ([]hunt.LedgerEntry, error) {
	if e.closed.Load() {
		return nil, engine.ErrClosed
	}
	if limit <= 0 {
		return nil, hunt.Invalid("limit", "must be positive")
	}
	limit = min(limit, engine.LedgerLimitMax)
	lo := ledgerPrefix(nil, player)
	it, err := e.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lo, UpperBound: upperBound(lo)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := []hunt.LedgerEntry{}
	var ev hunt.Event
	for it.Last(); it.Valid() && len(out) < limit; it.Prev() {
		ek, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		v, closer, err := e.db.Get(ek)
		if err != nil {
			return nil, fmt.Errorf("%w: ledger key %x names event %x: %v", ErrCorrupt, it.Key(), ek, err)
		}
		err = hunt.DecodeEvent(v, &ev)
		closer.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: key %x: %v", ErrCorrupt, ek, err)
		}
		out = append(out, ledgerEntry(&ev))
	}
	return out, it.Error()
}

// Events replays the committed log of every partition after the given seqs.
func (e *Engine) Events(ctx context.Context, after []hunt.Seq, fn func(*hunt.Event) error) error {
	if e.closed.Load() {
		return engine.ErrClosed
	}
	var ev hunt.Event
	for _, p := range e.parts {
		var from hunt.Seq
		if int(p.id) < len(after) {
			from = after[p.id]
		}
		if from == math.MaxUint64 {
			continue
		}
		err := func() error {
			it, err := e.db.NewIterWithContext(ctx, &pebble.IterOptions{
				LowerBound: eventKey(nil, p.id, from+1), UpperBound: eventKey(nil, p.id+1, 0)})
			if err != nil {
				return err
			}
			defer it.Close()
			n := 0
			for valid := it.First(); valid; valid = it.Next() {
				if n++; n%1024 == 0 && ctx.Err() != nil {
					return ctx.Err()
				}
				v, err := it.ValueAndErr()
				if err != nil {
					return err
				}
				if err := hunt.DecodeEvent(v, &ev); err != nil {
					return fmt.Errorf("%w: key %x: %v", ErrCorrupt, it.Key(), err)
				}
				if err := fn(&ev); err != nil {
					return err
				}
			}
			return it.Error()
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

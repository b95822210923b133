package embedded

import (
	"context"
	"fmt"
	"math"
	"time"

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
	t := &e.spots
	n := t.len()
	for i := range n {
		if i%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if t.huntOf(i) != he.ord {
			continue
		}
		v, ok := e.view(he.id, i)
		if !ok {
			continue
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	return nil
}

// view is hotspot i as a HotspotView, or false while it has no published
// definition (granted is loaded before the definition, see partition.publish).
func (e *Engine) view(id hunt.HuntID, i uint32) (hunt.HotspotView, bool) {
	g := e.spots.granted(i)
	d := e.spots.def(i)
	if !d.exists() {
		return hunt.HotspotView{}, false
	}
	return hunt.HotspotView{Hotspot: e.spots.hotspot(i, id, d), TicketsLeft: max(int64(d.tickets)-int64(g), 0)}, true
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
	hits, err := nearest(ctx, &e.spots, he.spatial.view.Load(), lat, lon, radiusM, limit)
	if err != nil {
		return nil, err
	}
	out := make([]hunt.HotspotView, 0, len(hits))
	for _, h := range hits {
		if v, ok := e.view(he.id, h.idx); ok {
			// The distance the answer was ranked by (the definition may have
			// moved since; the next query sees where it is now).
			v.DistanceM = h.dist
			out = append(out, v)
		}
	}
	return out, nil
}

// Wallet returns the player's balance and the epoch of its latest change.
// The balance includes the player's spends from their decision on (what
// their next spend is decided against), so it is answered only once those
// spends are durable: a read made while one is being committed waits for
// its commit, and gets engine.ErrUnavailable if the commit fails (a crash
// would have undone the spend: the answer would contradict every later read).
func (e *Engine) Wallet(ctx context.Context, player hunt.PlayerID) (hunt.Wallet, error) {
	out := hunt.Wallet{Player: player}
	w := e.wallets.get(player)
	if w == nil {
		return out, nil
	}
	balance := w.balance.Load()
	n := w.reserved.Load() // after the balance: it counts every spend the balance includes
	for {
		w.mu.Lock()
		if w.settled >= n {
			out.Balance, out.Epoch = balance, w.epoch
			w.mu.Unlock()
			return out, nil
		}
		if w.settledCh == nil {
			w.settledCh = make(chan struct{})
		}
		settled := w.settledCh
		w.mu.Unlock()
		select {
		case <-settled:
		case <-e.failCh: // nothing is published after a failure
			return hunt.Wallet{}, engine.ErrUnavailable
		case <-ctx.Done():
			return hunt.Wallet{}, ctx.Err()
		}
	}
}

// Ledger returns up to limit (capped at engine.LedgerLimitMax) of the
// player's wallet changes, newest first, read from the l/ index: those in
// the log (with --log-retention, the retained part).
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
		if e.eventGone(ek) {
			continue // before the log's start: its key is being dropped
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
		// Below the log's start: dropped, or being dropped (retention.go).
		from = max(from, e.logStartOf(p.id)-1)
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

// IdempotencyWindow is how long a decided (player, Idempotency-Key) is
// honoured; past it the key is a new request. The audit reads it so that a
// key decided again after the window is not taken for a broken I3.
func (e *Engine) IdempotencyWindow() time.Duration { return e.idem.window }

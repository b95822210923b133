package ops

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/mmcloughlin/geohash"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
)

// The index's cells are geohash cells of an even number of bits (square-ish:
// as many latitude as longitude bits), from indexBitsMax (30 bits, ~1.2 km x
// 0.6 km at the equator) down to 2.
const (
	indexBitsMax = 30
)

// agg is one cell's sums.
type agg struct {
	n       int64 // hotspots
	tickets int64
	left    int64
}

// level is the index at one precision; cells nil when that precision held
// more than IndexCellsMax cells and was not kept.
type level struct {
	bits  uint
	cells map[uint64]agg
}

// index is one hunt's hotspots summed per cell, at every precision kept. It
// is built by one scan of engine.Hotspots and then follows grants by reading
// the console's claim ring (apply). Owned by Ops.mu while building; after
// done is closed, its fields are guarded by mu.
type index struct {
	huntID hunt.HuntID
	done   chan struct{} // closed when the build ended
	err    error         // the build's error, read after done

	mu      sync.Mutex
	built   time.Time
	cursor  uint64  // ring cursor up to which grants were applied
	levels  []level // finest first
	total   agg
	stale   bool // grants were lost from the ring: rebuild on the next request
	scratch []string
	scanned int64
}

// indexFor returns the hunt's index, starting a build when there is none, it
// is older than IndexMaxAge, it lost grants, or rebuild asks for one (and
// the current one is older than a second); it waits up to indexWaitMax for
// a build and returns nil, nil when it is still running.
func (o *Ops) indexFor(ctx context.Context, id hunt.HuntID, rebuild bool) (*index, error) {
	now := o.cfg.Clock()
	o.mu.Lock()
	idx := o.mu.indexes[id]
	if idx != nil && isDone(idx) && idx.err == nil {
		idx.mu.Lock()
		old := now.Sub(idx.built)
		renew := idx.stale || old > o.cfg.IndexMaxAge || (rebuild && old > time.Second)
		idx.mu.Unlock()
		if renew {
			idx = nil
		}
	} else if idx != nil && isDone(idx) {
		idx = nil // a failed build: try again
	}
	if idx == nil {
		if o.mu.runCtx == nil {
			o.mu.Unlock()
			return nil, engine.ErrClosed
		}
		idx = &index{huntID: id, done: make(chan struct{})}
		o.mu.indexes[id] = idx
		o.mu.builds.Add(1)
		runCtx := o.mu.runCtx
		go func() {
			defer o.mu.builds.Done()
			o.build(runCtx, idx)
		}()
	}
	o.mu.Unlock()

	t := time.NewTimer(indexWaitMax)
	defer t.Stop()
	select {
	case <-idx.done:
		if idx.err != nil {
			return nil, idx.err
		}
		return idx, nil
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func isDone(idx *index) bool {
	select {
	case <-idx.done:
		return true
	default:
		return false
	}
}

// build scans the hunt's hotspots into idx. The ring cursor is read before
// the scan: grants published during the scan may be counted by both (a
// cell's tickets left then reads low by those grants until the next build).
func (o *Ops) build(ctx context.Context, idx *index) {
	defer close(idx.done)
	start := o.cfg.Clock()
	cursor := o.ring.newest()
	bits := uint(indexBitsMax)
	cells := map[uint64]agg{}
	var total agg
	var scanned int64
	err := o.cfg.Engine.Hotspots(ctx, idx.huntID, func(v hunt.HotspotView) error {
		scanned++
		if scanned%65536 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		k := geohash.EncodeIntWithPrecision(v.Lat, v.Lon, bits)
		a := cells[k]
		a.n++
		a.tickets += v.Tickets
		a.left += v.TicketsLeft
		cells[k] = a
		total.n++
		total.tickets += v.Tickets
		total.left += v.TicketsLeft
		for len(cells) > o.cfg.IndexCellsMax && bits > 2 { // too fine to keep: coarsen and go on
			cells = coarsen(cells, 2)
			bits -= 2
		}
		return nil
	})
	if err != nil {
		idx.err = err
		if !errors.Is(err, hunt.ErrUnknownHunt) {
			o.log.Warn("ops: building a hunt's map index failed", "hunt", idx.huntID, "err", err)
		}
		return
	}
	levels := []level{}
	for b := uint(indexBitsMax); b >= 2; b -= 2 {
		if b > bits {
			levels = append(levels, level{bits: b}) // not kept
			continue
		}
		levels = append(levels, level{bits: b, cells: cells})
		cells = coarsen(cells, 2)
	}
	idx.built, idx.cursor, idx.levels, idx.total, idx.scanned = o.cfg.Clock(), cursor, levels, total, scanned
	o.log.Debug("ops: map index built", "hunt", idx.huntID, "hotspots", scanned, "finest_bits", bits,
		"took", o.cfg.Clock().Sub(start))
}

// coarsen sums cells into cells of `by` fewer bits.
func coarsen(cells map[uint64]agg, by uint) map[uint64]agg {
	out := make(map[uint64]agg, len(cells)/2+1)
	for k, a := range cells {
		p := out[k>>by]
		p.n += a.n
		p.tickets += a.tickets
		p.left += a.left
		out[k>>by] = p
	}
	return out
}

// apply takes the grants the ring recorded since the index's cursor off its
// cells' tickets left. It copies their geohashes out of the ring first, so
// the ring's lock, which the engine's sink takes, is held only for the copy.
// Called with idx.mu held.
func (o *Ops) apply(idx *index) {
	hashes := idx.scratch[:0]
	next, lost := o.ring.since(idx.cursor, func(c *claim) {
		if c.huntID == idx.huntID && c.outcome == hunt.Granted && len(c.geohash) > 0 {
			hashes = append(hashes, c.geohash)
		}
	})
	idx.cursor = next
	if lost {
		idx.stale = true
	}
	for _, h := range hashes {
		v, bits := geohash.ConvertStringToInt(h)
		if bits < indexBitsMax {
			continue
		}
		v >>= bits - indexBitsMax
		idx.total.left = max(0, idx.total.left-1)
		for i := range idx.levels {
			l := &idx.levels[i]
			if l.cells == nil {
				continue
			}
			k := v >> (indexBitsMax - l.bits)
			if a, ok := l.cells[k]; ok && a.left > 0 {
				a.left--
				l.cells[k] = a
			}
		}
	}
	clear(hashes)
	idx.scratch = hashes[:0]
}

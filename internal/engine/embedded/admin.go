package embedded

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// PutHunt creates or updates a hunt; it is written synced before it is visible.
func (e *Engine) PutHunt(ctx context.Context, h hunt.Hunt) error {
	if err := e.writable(); err != nil {
		return err
	}
	if err := h.Normalize(); err != nil {
		return err
	}
	b, err := json.Marshal(&h)
	if err != nil {
		return err
	}
	e.hunts.mu.Lock()
	defer e.hunts.mu.Unlock()
	if err := e.db.Set(huntKey(h.ID), b, pebble.Sync); err != nil {
		// Memory was not touched, so the engine has not failed.
		return fmt.Errorf("%w: put hunt %s: %v", engine.ErrUnavailable, h.ID, err)
	}
	if he := e.hunts.get(h.ID); he != nil {
		he.def.Store(&h)
		return nil
	}
	e.hunts.add(&h)
	return nil
}

// ImportHotspots upserts up to engine.ImportBatchMax hotspots of one hunt
// through their partitions' writers and returns once all are durable.
func (e *Engine) ImportHotspots(ctx context.Context, id hunt.HuntID, hs []hunt.Hotspot) error {
	if err := e.writable(); err != nil {
		return err
	}
	he := e.hunts.get(id)
	if he == nil {
		return hunt.ErrUnknownHunt
	}
	if len(hs) > engine.ImportBatchMax {
		return hunt.Invalid("hotspots", "at most %d per call", engine.ImportBatchMax)
	}
	if len(hs) == 0 {
		return nil
	}
	items := make([]importItem, len(hs))
	for i := range hs {
		def := hs[i]
		def.Hunt = id
		if err := def.Normalize(); err != nil {
			return fmt.Errorf("hotspot %d (%q): %w", i, def.ID, err)
		}
		items[i].def = def
	}
	byPart := make(map[geo.Partition][]importItem)
	for i := range items {
		it := items[i]
		it.spot = e.spots.create(he.ord, string(it.def.ID), geo.PartitionOf(it.def.Geohash, e.prefixLen, len(e.parts)))
		it.decided = e.spots.compact(&it.def)
		part := e.spots.partOf(it.spot)
		byPart[part] = append(byPart[part], it)
	}
	var sent []*request
	var err error
	for p, list := range byPart {
		r := &request{kind: reqImport, imp: list, impDone: make(chan error, 1)}
		if err = e.parts[p].send(ctx, r); err != nil {
			break
		}
		sent = append(sent, r)
	}
	// Whatever was sent will be committed; wait for it so the answer tells
	// the truth about what is durable.
	for _, r := range sent {
		select {
		case rerr := <-r.impDone:
			if err == nil {
				err = rerr
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

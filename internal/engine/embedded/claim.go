package embedded

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// Claim decides a claim and returns once its event is durable (see engine.Engine).
func (e *Engine) Claim(ctx context.Context, req *hunt.ClaimRequest) (hunt.ClaimResult, error) {
	if err := req.Check(); err != nil {
		return hunt.ClaimResult{}, err
	}
	if e.failure() != nil {
		e.shedUnavailable.Inc()
		return hunt.ClaimResult{}, engine.ErrUnavailable
	}
	he := e.hunts.get(req.Hunt)
	if he == nil {
		return hunt.ClaimResult{}, hunt.ErrUnknownHunt
	}
	spot, ok := e.spots.find(he.ord, string(req.Hotspot))
	if !ok || !e.spots.def(spot).exists() {
		return hunt.ClaimResult{}, hunt.ErrUnknownHotspot
	}
	r := &request{kind: reqClaim, key: idemKey{req.Player, req.Key}, claim: *req, spot: spot}
	ev, replayed, err := e.submit(ctx, e.parts[e.spots.partOf(spot)], r, req.Fingerprint(), hunt.KindClaimCompleted)
	return hunt.ClaimResult{Event: ev, Replayed: replayed}, err
}

// Spend decides a spend on the partition that serializes the player's spends.
func (e *Engine) Spend(ctx context.Context, req *hunt.SpendRequest) (hunt.SpendResult, error) {
	if err := req.Check(); err != nil {
		return hunt.SpendResult{}, err
	}
	if e.failure() != nil {
		e.shedUnavailable.Inc()
		return hunt.SpendResult{}, engine.ErrUnavailable
	}
	p := e.parts[fnv32(fnv32Offset, string(req.Player))%uint32(len(e.parts))]
	r := &request{kind: reqSpend, key: idemKey{req.Player, req.Key}, spend: *req}
	ev, replayed, err := e.submit(ctx, p, r, req.Fingerprint(), hunt.KindSpendCompleted)
	return hunt.SpendResult{Event: ev, Replayed: replayed}, err
}

// submit applies the idempotency rules, then offers r to p and waits for its decision.
func (e *Engine) submit(ctx context.Context, p *partition, r *request, fp uint64, kind hunt.EventKind) (hunt.Event, bool, error) {
	if ctx, r.span = telemetry.StartChild(ctx, "engine.submit"); r.span != nil {
		defer r.span.End()
	}
	fresh := &entry{fp: fp, kind: kind, done: make(chan struct{})}
	en, found, err := e.idem.reserve(r.key, fresh, e.now())
	if err != nil {
		return hunt.Event{}, false, fmt.Errorf("%w: %v", engine.ErrUnavailable, err)
	}
	if found {
		if en.fp != fp || en.kind != kind {
			return hunt.Event{}, false, hunt.ErrKeyReused
		}
		// A retry, or a duplicate while the first is in flight: both get the
		// first decision and never cause a second effect.
		select {
		case <-en.done:
		case <-ctx.Done():
			return hunt.Event{}, false, ctx.Err()
		}
		if en.err != nil {
			return hunt.Event{}, false, en.err
		}
		e.metrics.Replays.Inc()
		return en.event, true, nil
	}
	r.entry = fresh
	if err := p.offer(r); err != nil {
		e.idem.remove(r.key, fresh)
		fresh.err = err
		close(fresh.done)
		if errors.Is(err, engine.ErrOverloaded) {
			e.shedOverloaded.Inc()
		}
		return hunt.Event{}, false, err
	}
	select {
	case <-fresh.done:
	case <-ctx.Done():
		// The request stays in flight; a retry with the same key gets its decision.
		return hunt.Event{}, false, ctx.Err()
	}
	if fresh.err != nil {
		return hunt.Event{}, false, fresh.err
	}
	return fresh.event, false, nil
}

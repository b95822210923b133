package leaderboard

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// Source is the committed log as Rebuild reads it; engine.Engine satisfies it.
// It is an alias, so Rebuild's signature is identical to one spelled with
// the interface literal (interfaces declared elsewhere match it).
type Source = interface {
	Events(ctx context.Context, after []hunt.Seq, fn func(*hunt.Event) error) error
}

// replayed is one event of a Rebuild, reduced like an inbox item.
type replayed struct {
	part    geo.Partition
	seq     hunt.Seq
	at      time.Time
	granted bool
	grant   grant
}

// Rebuild replays the log from the projection's watermarks (src.Events with
// after = Watermarks()) and applies it on the caller's goroutine, a chunk per
// hold of the write lock. Events at or below a watermark are skipped, so a
// source that replays more than asked is harmless. While it runs, the
// applier holds Committed items back (see the package doc), and they are
// applied, deduplicated, when it returns. Only one Rebuild runs at a time.
// On error (ctx, the source, ErrUnknownPartition) what was applied stays
// applied and consistent: watermarks only cover applied events.
func (p *Projection) Rebuild(ctx context.Context, src Source) error {
	p.rebuildMu.Lock()
	defer p.rebuildMu.Unlock()
	start := p.clock()
	p.mu.Lock()
	p.mu.rebuilding = true
	p.mu.rebuildStart = start
	after := slices.Clone(p.mu.applied)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.mu.rebuilding = false
		p.mu.Unlock()
		notify(p.in.ready) // the applier may have held items back
	}()

	if err := p.rebuildBase(ctx, src, after); err != nil {
		return err
	}
	p.mu.Lock()
	after = slices.Clone(p.mu.applied)
	p.mu.Unlock()

	chunk := make([]replayed, 0, rebuildChunkLenMax)
	events, grants := 0, 0
	err := src.Events(ctx, after, func(ev *hunt.Event) error {
		if int(ev.Epoch.Partition) >= p.parts {
			return fmt.Errorf("%w: event %v, partitions %d", ErrUnknownPartition, ev.Epoch, p.parts)
		}
		r := replayed{part: ev.Epoch.Partition, seq: ev.Epoch.Seq, at: ev.At, granted: isGrant(ev)}
		if r.granted {
			r.grant = grantOf(ev)
			grants++
		}
		chunk = append(chunk, r)
		events++
		if len(chunk) == cap(chunk) {
			p.applyReplayed(chunk)
			clear(chunk)
			chunk = chunk[:0]
			return ctx.Err()
		}
		return nil
	})
	p.applyReplayed(chunk)
	if err != nil {
		return fmt.Errorf("leaderboard: rebuild after %d events: %w", events, err)
	}
	p.log.Info("leaderboard: rebuilt from the log", "events", events, "grants", grants, "duration", p.clock().Sub(start))
	return nil
}

// based is the optional part of Source whose log may start at a snapshot
// (engine.Based).
type based interface {
	LogBase(ctx context.Context, fn func(*hunt.Event) error) ([]hunt.Seq, time.Time, error)
}

// rebuildBase applies the grants of a truncated log's base (what the log
// dropped folded to) when the projection has applied nothing yet, and moves
// the watermarks to where the log starts.
func (p *Projection) rebuildBase(ctx context.Context, src Source, applied []hunt.Seq) error {
	b, ok := src.(based)
	if !ok || slices.ContainsFunc(applied, func(s hunt.Seq) bool { return s > 0 }) {
		return nil
	}
	var chunk []grant
	flush := func() {
		p.mu.Lock()
		for i := range chunk {
			p.stageLocked(&chunk[i])
		}
		p.flushLocked()
		p.mu.Unlock()
		clear(chunk)
		chunk = chunk[:0]
	}
	n := 0
	after, at, err := b.LogBase(ctx, func(ev *hunt.Event) error {
		if !isGrant(ev) {
			return nil
		}
		chunk = append(chunk, grantOf(ev))
		n++
		if len(chunk) == rebuildChunkLenMax {
			flush()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("leaderboard: rebuild from the log's base: %w", err)
	}
	flush()
	if after == nil {
		return nil
	}
	p.mu.Lock()
	for part, s := range after {
		if part < p.parts && s > p.mu.applied[part] {
			p.advanceLocked(geo.Partition(part), s, at)
		}
	}
	p.mu.Unlock()
	p.log.Info("leaderboard: rebuilt the log's base (it starts at a snapshot)", "grants", n)
	return nil
}

func (p *Projection) applyReplayed(chunk []replayed) {
	if len(chunk) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range chunk {
		r := &chunk[i]
		wm := p.mu.applied[r.part]
		if r.seq <= wm {
			continue
		}
		p.checkGapLocked(r.part, wm, r.seq)
		if r.granted {
			p.stageLocked(&r.grant)
		}
		p.advanceLocked(r.part, r.seq, r.at)
	}
	p.flushLocked()
}

// Package leaderboard is Cairn's CQRS read side: it folds committed
// ClaimCompleted events with outcome granted into rankings, one global board
// per hunt and one per region (each geohash prefix of length 1..RegionLenMax
// of the hotspot), and answers reads with how stale they may be.
//
// # Invariants
//
//   - I5: once the projection has caught up, a player's score on a hunt's
//     board is the sum of the points of their grants in that hunt (on a region
//     board: of their grants at hotspots inside the region).
//   - Exact dedupe: per partition the projection keeps a watermark, the highest
//     Seq it has applied. An event with Seq <= watermark is skipped, so
//     redelivery (after a restart, or Rebuild overlapping Committed) never
//     counts twice. Every event advances the watermark (rejected claims and
//     spends too, though only grants change scores), so Wait works for any
//     consistency token.
//   - Ordering on a board: score descending, then player id ascending. Ties
//     are thus broken by id and every ranked player has a distinct rank.
//
// # Structure
//
// A board is a counted B+tree (btree.go): entries sorted by the board order
// in flat leaf arrays, linked both ways, under inner nodes that keep each
// child's separator key and entry count. Rank, page-from-rank and around-me
// are one descent of O(log n) levels (3 or 4 up to a million players, each a
// binary search of a few contiguous cache lines) followed, for pages, by a
// walk along the leaves. Chosen over the span-width skiplist it replaced
// because a skiplist descent of a large board is ~30 dependent cache misses
// and every grant moves a player on ~5 boards. A player id map per board
// finds the player's entry, and thus the key to descend by.
//
// A hunt's global board is kept from its first grant; a region board is
// built on the first read of that region (region.go), from per-cell sums
// (Σ points per player in each finest region, RegionLenMax long), and kept
// up to date from then on. So a grant costs one tree operation plus one
// sum while nobody reads regions, and every read answers what it would if
// all region boards had been kept from the start.
//
// # Concurrency
//
// Committed is called by the engine's partition writers (concurrently across
// partitions, in Seq order within one). It copies the batch's granted claims
// into a bounded inbox and returns; when the inbox is full it blocks
// (back-pressure to the engine, never a dropped event). Run is the single
// applier goroutine: it takes inbox items in order and applies them under the
// write side of one RWMutex, a bounded number of grants per lock hold so that
// readers never wait long. One hold applies what it took as one set
// (stage.go): watermarks and dedupe go event by event as described above,
// the points are summed per (board, player), and each distinct (board,
// player) then costs one tree operation. Reads (Top, Around, Score) come
// from many HTTP goroutines and hold the read side only while they walk
// O(log n + limit) entries; the first read of a region takes the write
// side once, to build that region's board (O(entries in its cells)). An
// RWMutex is enough here: the writer is one goroutine doing short, batched
// holds, and readers never block each other.
//
// Rebuild replays the log on the caller's goroutine and applies under the
// same lock. While it runs, the applier holds back (Committed items wait in
// the inbox), because applying a newer delivered batch first would raise the
// watermark over log events Rebuild has not replayed yet, which would then be
// skipped for good. Call Rebuild before the engine starts committing (before
// engine.Run) so the inbox never fills during it; if it overlaps live traffic,
// Committed blocks once the inbox is full until Rebuild ends. Engine logs are
// contiguous per partition, so a delivered batch that skips seqs above the
// watermark means events were committed that this projection never saw and
// Rebuild did not replay first (a wiring error): it is logged at Error level
// and applied; a restart (New + Rebuild) recovers the missing points.
//
// Watermarks advance under the same write lock as the boards, so a read made
// after Wait returns sees the waited-for event.
//
// Wait blocks on a per-partition channel that is created by the first waiter
// and closed (then forgotten) when that partition's watermark advances, so
// waiting costs nothing when nobody waits and never busy-polls.
//
// # Memory
//
// Bounded by players x boards: every (player, board) pair with a grant is one
// entry (from a slab), its slot in a leaf and one map entry, and every
// (player, cell) pair one sum in the cell's map; the player's id is copied
// once per hunt and shared by all their entries and sums there. Measured,
// everything included, 100k players with 13-byte ids at hotspots of one
// cell, RegionLenMax 4: 182 B per player while no region is read (the global
// board and the cell), 130 B per (player, board) once all 4 of the player's
// region boards are read (5 boards). A player who scores in a hunt sits on
// its global board, in one cell per distinct cell of the hotspots they
// scored at, and on every read region board containing one of those, so
// 50k players in one region of a hunt with all its regions read cost about
// 50k x 5 x 130 B = 33 MB. Boards and cells are never
// removed while the process runs. The inbox holds at most InboxLenMax
// batches, each a copy of its grants (about 64 bytes per grant).
//
// # Staleness
//
// After applying a batch, now - At of its newest event is observed in
// Metrics.ProjectionStaleness{projection="leaderboard"} (live batches only;
// replayed ones would measure the age of the log). A read's Page.Staleness is
// 0 when the inbox is empty, else now - At of the oldest event still queued
// (an upper bound); while a Rebuild runs it is now - At of the newest event
// applied so far (or the time since Rebuild began if none was).
package leaderboard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// Limits and defaults. Units are in the names.
const (
	RegionLenDefault   = 4
	InboxLenDefault    = 1024    // batches
	InboxLenMax        = 1 << 20 // batches
	PageLenMax         = 1000    // entries per read; larger limits are clamped
	applyGrantsMax     = 512     // grants applied per hold of the write lock (x boards each: ~2.5k tree updates)
	applyItemsMax      = 256     // batches applied per hold of the write lock
	rebuildChunkLenMax = 512     // replayed events applied per hold of the write lock
	metricsName        = "leaderboard"
)

// Errors.
var (
	// ErrAlreadyRun: Run was called a second time; a Projection runs once.
	ErrAlreadyRun = errors.New("leaderboard: Run called twice")
	// ErrUnknownPartition: an epoch or a replayed event names a partition
	// outside 0..Partitions-1 (the engine has another partition count).
	ErrUnknownPartition = errors.New("leaderboard: partition out of range")
)

// Entry is one ranked player.
type Entry struct {
	Rank   int           `json:"rank"` // 1-based
	Player hunt.PlayerID `json:"player"`
	Score  int64         `json:"score"`
}

// Page is the answer to a read.
type Page struct {
	Entries []Entry
	// LastUpdated is the commit time (Event.At) of the newest event applied to
	// the whole projection; zero if none.
	LastUpdated time.Time
	// Staleness bounds how far behind the log this answer may be; 0 when caught up.
	Staleness time.Duration
}

// Options configure a Projection. Zero values take the documented defaults.
type Options struct {
	Partitions   int                // number of log partitions (watermarks); required
	RegionLenMax int                // regions are geohash prefixes of length 1..RegionLenMax; default 4
	InboxLenMax  int                // batches queued between the engine writers and the projection; default 1024
	Clock        func() time.Time   // default time.Now
	Metrics      *telemetry.Metrics // ProjectionStaleness{projection="leaderboard"}; default telemetry.Discard()
	Logger       *slog.Logger       // default: discard
}

// Validate reports every problem with o, joined.
func (o Options) Validate() error {
	var errs []error
	if o.Partitions < 1 || o.Partitions > geo.PartitionsMax {
		errs = append(errs, fmt.Errorf("leaderboard: Partitions %d not in [1, %d]", o.Partitions, geo.PartitionsMax))
	}
	if o.RegionLenMax < 0 || o.RegionLenMax > geo.GeohashLen {
		errs = append(errs, fmt.Errorf("leaderboard: RegionLenMax %d not in [0, %d] (0 = default %d)", o.RegionLenMax, geo.GeohashLen, RegionLenDefault))
	}
	if o.InboxLenMax < 0 || o.InboxLenMax > InboxLenMax {
		errs = append(errs, fmt.Errorf("leaderboard: InboxLenMax %d not in [0, %d] (0 = default %d)", o.InboxLenMax, InboxLenMax, InboxLenDefault))
	}
	return errors.Join(errs...)
}

type boardKey struct {
	hunt   hunt.HuntID
	region string // "" for the hunt's global board
}

// Projection is the leaderboard read model. See the package doc for its
// concurrency rules; every exported method is safe for concurrent use.
type Projection struct {
	parts        int
	regionLenMax int
	clock        func() time.Time
	log          *slog.Logger
	stale        prometheus.Observer
	components   []string // "leaderboard/<p>", built once

	in      inbox
	started atomic.Bool
	onHeld  func() // tests only: the applier was held back by a Rebuild

	rebuildMu sync.Mutex // one Rebuild at a time

	mu struct {
		sync.RWMutex
		boards       map[boardKey]*board // global boards and materialised region boards
		cells        map[boardKey]*cell  // per hunt and finest region (region.go)
		applied      []hunt.Seq          // watermark per partition
		appliedAt    []time.Time         // At of the event at the watermark
		lastUpdated  time.Time           // newest At applied
		rebuilding   bool
		rebuildStart time.Time
		stage        stager // the set being applied (stage.go)
	}

	wake struct {
		sync.Mutex
		ch []chan struct{} // per partition; nil when nobody waits
	}
}

var _ engine.Sink = (*Projection)(nil)

// New validates opts, fills defaults and returns a Projection. Call Run to
// start applying, Rebuild to replay the log.
func New(opts Options) (*Projection, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.RegionLenMax = cmp.Or(opts.RegionLenMax, RegionLenDefault)
	opts.InboxLenMax = cmp.Or(opts.InboxLenMax, InboxLenDefault)
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Metrics == nil {
		opts.Metrics = telemetry.Discard()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Projection{
		parts:        opts.Partitions,
		regionLenMax: opts.RegionLenMax,
		clock:        opts.Clock,
		log:          opts.Logger,
		stale:        opts.Metrics.ProjectionStaleness.WithLabelValues(metricsName),
		components:   make([]string, opts.Partitions),
	}
	for i := range p.components {
		p.components[i] = metricsName + "/" + strconv.Itoa(i)
	}
	p.in.init(opts.InboxLenMax, opts.Partitions)
	p.mu.boards = make(map[boardKey]*board)
	p.mu.cells = make(map[boardKey]*cell)
	p.mu.applied = make([]hunt.Seq, opts.Partitions)
	p.mu.appliedAt = make([]time.Time, opts.Partitions)
	p.wake.ch = make([]chan struct{}, opts.Partitions)
	return p, nil
}

// Committed implements engine.Sink. It is called from partition writer
// goroutines; it copies the granted claims of batch and queues one item,
// blocking while the inbox is full. After Run returned it drops the batch (a
// restarted projection rebuilds from the log). It panics on a partition out
// of range or seqs not strictly increasing within the batch: both are wiring
// or engine bugs that would corrupt the watermarks.
func (p *Projection) Committed(part geo.Partition, batch []hunt.Event) {
	p.committed(part, batch, nil)
}

// CommittedTraced is Committed for a batch holding sampled requests
// (engine.TracedSink): once the batch is applied, a "projection.apply" span
// from its delivery to its application is recorded under each of spans.
func (p *Projection) CommittedTraced(part geo.Partition, batch []hunt.Event, spans []trace.Span) {
	p.committed(part, batch, slices.Clone(spans))
}

func (p *Projection) committed(part geo.Partition, batch []hunt.Event, spans []trace.Span) {
	if len(batch) == 0 {
		return
	}
	if int(part) >= p.parts {
		panic(fmt.Sprintf("leaderboard: partition %d out of range [0, %d): Options.Partitions must match the engine", part, p.parts))
	}
	granted := 0
	prev := hunt.Seq(0)
	for i := range batch {
		ev := &batch[i]
		if ev.Epoch.Partition != part || ev.Epoch.Seq <= prev {
			panic(fmt.Sprintf("leaderboard: invariant: a batch of partition %d holds only its events in strictly increasing seq (event %v after seq %d)", part, ev.Epoch, prev))
		}
		prev = ev.Epoch.Seq
		if isGrant(ev) {
			granted++
		}
	}
	it := item{
		part:    part,
		first:   batch[0].Epoch.Seq,
		last:    batch[len(batch)-1].Epoch.Seq,
		firstAt: batch[0].At,
		lastAt:  batch[len(batch)-1].At,
		events:  len(batch),
	}
	if len(spans) > 0 {
		it.spans, it.delivered = spans, time.Now()
	}
	if granted > 0 {
		it.grants = make([]grant, 0, granted)
		for i := range batch {
			if ev := &batch[i]; isGrant(ev) {
				it.grants = append(it.grants, grantOf(ev))
			}
		}
	}
	p.in.push(it)
}

func isGrant(ev *hunt.Event) bool {
	return ev.Kind == hunt.KindClaimCompleted && ev.Outcome == hunt.Granted
}

// grantOf copies what the boards need. Strings are immutable, so sharing
// them with the engine's event is safe; boards clone ids they keep.
func grantOf(ev *hunt.Event) grant {
	return grant{seq: ev.Epoch.Seq, player: ev.Player, hunt: ev.Hunt, geohash: ev.Geohash, points: ev.Points}
}

// Run is the single applier goroutine. It returns nil when ctx is done (the
// batches still queued are dropped with the process: the next start rebuilds
// them from the log), or ErrAlreadyRun if called again.
func (p *Projection) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	defer p.in.close()
	items := make([]item, 0, applyItemsMax)
	for {
		if ctx.Err() != nil {
			return nil
		}
		items = p.in.peek(items[:0], applyGrantsMax)
		if len(items) > 0 && p.apply(items) {
			clear(items)
			continue
		}
		if len(items) > 0 && p.onHeld != nil {
			p.onHeld()
		}
		// Empty, or a Rebuild holds the applier back; either a push or the
		// end of the Rebuild leaves a token in ready.
		select {
		case <-ctx.Done():
			return nil
		case <-p.in.ready:
		}
	}
}

// apply applies items under one hold of the write lock and removes them
// from the inbox before releasing it, so a reader that sees their effect
// (e.g. after Wait) also sees them gone from the staleness computation. It
// returns false, having applied nothing, while a Rebuild runs.
func (p *Projection) apply(items []item) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.rebuilding {
		return false
	}
	now := p.clock()
	for i := range items {
		it := &items[i]
		wm := p.mu.applied[it.part]
		if it.last <= wm {
			continue // a redelivered batch
		}
		p.checkGapLocked(it.part, wm, it.first)
		for j := range it.grants {
			if g := &it.grants[j]; g.seq > wm {
				p.stageLocked(g)
			}
		}
		p.advanceLocked(it.part, it.last, it.lastAt)
		p.stale.Observe(now.Sub(it.lastAt).Seconds())
	}
	for i := range items {
		if it := &items[i]; len(it.spans) > 0 {
			traceApplied(it)
		}
	}
	// Waiters woken above take the read lock, so they see the flushed set.
	p.flushLocked()
	p.in.remove(len(items)) // lock order: p.mu, then p.in.mu
	return true
}

// checkGapLocked reports a delivery that skips seqs the projection never
// applied. Engine logs are contiguous per partition, so this means events
// were committed before this projection was subscribed and Rebuild did not
// replay them first: their points are missing and later replays will skip
// them. It is a wiring error, logged loudly rather than stopping the engine.
func (p *Projection) checkGapLocked(part geo.Partition, wm, first hunt.Seq) {
	if first > wm+1 {
		p.log.Error("leaderboard: gap in a partition's events; scores miss them (call Rebuild before the engine commits)",
			"partition", part, "watermark", wm, "next_seq", first)
	}
}

// advanceLocked raises part's watermark to seq and wakes its waiters.
func (p *Projection) advanceLocked(part geo.Partition, seq hunt.Seq, at time.Time) {
	p.mu.applied[part] = seq
	p.mu.appliedAt[part] = at
	if at.After(p.mu.lastUpdated) {
		p.mu.lastUpdated = at
	}
	p.wake.Lock()
	if c := p.wake.ch[part]; c != nil {
		close(c)
		p.wake.ch[part] = nil
	}
	p.wake.Unlock()
}

// Wait returns when watermark[e.Partition] >= e.Seq, i.e. when every event
// of that partition up to e is applied and visible to reads; or ctx.Err();
// or ErrUnknownPartition.
func (p *Projection) Wait(ctx context.Context, e hunt.Epoch) error {
	if int(e.Partition) >= p.parts {
		return fmt.Errorf("%w: %d not in [0, %d)", ErrUnknownPartition, e.Partition, p.parts)
	}
	for {
		if p.watermark(e.Partition) >= e.Seq {
			return nil
		}
		p.wake.Lock()
		c := p.wake.ch[e.Partition]
		if c == nil {
			c = make(chan struct{})
			p.wake.ch[e.Partition] = c
		}
		p.wake.Unlock()
		// Check again: an advance between the first check and taking the
		// channel closed an older channel (or none).
		if p.watermark(e.Partition) >= e.Seq {
			return nil
		}
		select {
		case <-c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (p *Projection) watermark(part geo.Partition) hunt.Seq {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.mu.applied[part]
}

// Watermarks returns a copy of the per-partition watermarks.
func (p *Projection) Watermarks() []hunt.Seq {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.Clone(p.mu.applied)
}

// Status reports one component per partition, "leaderboard/<p>": its
// watermark epoch, the At of that event, and the events of that partition
// still queued in the inbox.
func (p *Projection) Status() []engine.Status {
	depth := p.in.depths(make([]int, 0, p.parts))
	out := make([]engine.Status, p.parts)
	p.mu.RLock()
	defer p.mu.RUnlock()
	for i := range out {
		out[i] = engine.Status{
			Component: p.components[i],
			Epoch:     hunt.Epoch{Partition: geo.Partition(i), Seq: p.mu.applied[i]},
			At:        p.mu.appliedAt[i],
			Depth:     depth[i],
		}
	}
	return out
}

// Top returns up to limit entries (clamped to PageLenMax) of a board from
// 0-based position offset. region "" is the hunt's global board; an unknown
// hunt or region gives an empty page.
func (p *Projection) Top(h hunt.HuntID, region string, offset, limit int) Page {
	offset = max(offset, 0)
	limit = min(max(limit, 0), PageLenMax)
	p.materialise(h, region)
	return p.read(func() []Entry {
		b := p.mu.boards[boardKey{h, region}]
		if b == nil || limit == 0 || offset >= b.len() {
			return []Entry{}
		}
		return b.appendRange(make([]Entry, 0, min(limit, b.len()-offset)), offset+1, limit)
	})
}

// Around returns up to limit entries (clamped to PageLenMax) centred on
// player: the window is shifted at the top and bottom of the board so it
// still holds limit entries when the board has them. false if player is not
// ranked on that board.
func (p *Projection) Around(h hunt.HuntID, region string, player hunt.PlayerID, limit int) (Page, bool) {
	limit = min(max(limit, 0), PageLenMax)
	p.materialise(h, region)
	ranked := false
	page := p.read(func() []Entry {
		b := p.mu.boards[boardKey{h, region}]
		if b == nil {
			return []Entry{}
		}
		r, _, ok := b.get(player)
		if !ok {
			return []Entry{}
		}
		ranked = true
		if limit == 0 {
			return []Entry{}
		}
		from := max(1, r-(limit-1)/2)
		if to := from + limit - 1; to > b.len() {
			from = max(1, b.len()-limit+1)
		}
		return b.appendRange(make([]Entry, 0, min(limit, b.len())), from, limit)
	})
	return page, ranked
}

// Score returns player's 1-based rank and score on a board; ok is false if
// the player is not ranked there.
func (p *Projection) Score(h hunt.HuntID, region string, player hunt.PlayerID) (rank int, score int64, ok bool) {
	p.materialise(h, region)
	p.mu.RLock()
	defer p.mu.RUnlock()
	b := p.mu.boards[boardKey{h, region}]
	if b == nil {
		return 0, 0, false
	}
	return b.get(player)
}

// read runs entries under the read lock and fills the page's freshness.
// The inbox is looked at first, so entries are at least as fresh as the
// staleness says (it stays an upper bound).
func (p *Projection) read(entries func() []Entry) Page {
	now := p.clock()
	oldest, queued := p.in.oldest()
	p.mu.RLock()
	pg := Page{Entries: entries(), LastUpdated: p.mu.lastUpdated}
	rebuilding, rebuildStart := p.mu.rebuilding, p.mu.rebuildStart
	p.mu.RUnlock()
	switch {
	case rebuilding && !pg.LastUpdated.IsZero():
		pg.Staleness = now.Sub(pg.LastUpdated)
	case rebuilding:
		pg.Staleness = now.Sub(rebuildStart)
	case queued:
		pg.Staleness = now.Sub(oldest)
	}
	pg.Staleness = max(pg.Staleness, 0)
	return pg
}

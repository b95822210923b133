package embedded

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

type reqKind uint8

const (
	reqClaim reqKind = iota + 1
	reqSpend
	reqImport
)

// request is one command in a partition's inbox. The caller fills it and
// never touches it again; the writer answers through entry.done (claims,
// spends) or impDone (imports).
type request struct {
	kind  reqKind
	key   idemKey
	entry *entry
	claim hunt.ClaimRequest // a copy: the caller may return (ctx) while the writer still reads it
	spend hunt.SpendRequest
	spot  uint32 // the claimed hotspot's index (hotspots.go)
	// granted is the hotspot's decided grant count right after this claim's
	// decision: what publish makes visible once the claim is durable (the
	// writer may have decided later batches meanwhile).
	granted uint32
	// span is the caller's engine span when its trace is sampled, else nil
	// (trace.go): the writer and the committer record their share of the
	// batch's work as its children.
	span trace.Span

	imp     []importItem
	impDone chan error // buffered (1): the writer never blocks on it
}

// importItem is one hotspot of an import request. def is the definition as
// the caller sent it and decided its table form; the writer clamps both's
// tickets to what the hotspot has granted, and publish makes decided visible.
type importItem struct {
	spot    uint32
	def     hunt.Hotspot
	decided spotDef
}

// freshDef is a definition the writer decided in import number no, which
// it uses instead of the published one until that import is published.
type freshDef struct {
	def spotDef
	no  uint64
}

// partition is one log partition and its writer goroutine. Everything under
// "writer-owned" is touched only by that goroutine (and by Open before it
// starts); the atomics are its published view.
//
// The writer is a state machine of three steps per request: decide (pure:
// hunt.DecideClaim / hunt.DecideSpend against the writer's state), apply (the
// writer's own effects, before the commit: see fold.go) and publish (what
// others may see, after the commit). The writer decides and applies a batch
// into a pending, hands it to the committer and goes on with the next batch
// while the previous one is being synced; the committer publishes it.
type partition struct {
	e     *Engine
	id    geo.Partition
	name  string
	inbox chan *request
	gate  struct {
		sync.RWMutex
		closed bool // true before Run and after it stops: no more sends
	}
	depth prometheus.Gauge
	// free holds this partition's idle pendings; its capacity is the
	// pipeline depth (Config.PipelineDepth). The writer takes one before it
	// takes requests, so with every pending in flight the inbox fills and
	// callers are shed instead of the pipeline growing without bound.
	free chan *pending

	// Published after each durable batch.
	lastSeq atomic.Uint64
	lastAt  atomic.Int64 // unix ns of the last committed batch's decision time; 0 = none

	// logStart is the first seq still in the log (0 or 1: all of it; retention.go).
	logStart atomic.Uint64

	// pubImports is the number of the last import batch published.
	pubImports atomic.Uint64
	adds       []spatialAdd // the committer's scratch for publish

	// Writer-owned.
	seq     hunt.Seq
	reqs    []*request
	players players // who this partition granted something (claimset.go)
	grants  grants  // (hotspot, player) pairs granted: I2
	fresh   map[uint32]freshDef
	imports uint64 // import batches decided
	// lastHash is the xxhash64 of the last event a loaded snapshot covers
	// (Open checks that the log holds that very event).
	lastHash uint64
}

// def is hotspot i's definition as the writer decides against it: its own
// latest import, or the published one.
func (p *partition) def(i uint32) spotDef {
	if len(p.fresh) > 0 {
		if f, ok := p.fresh[i]; ok {
			return f.def
		}
	}
	return p.e.spots.def(i)
}

// forget drops the writer's copies of definitions that are now published.
func (p *partition) forget() {
	if len(p.fresh) == 0 {
		return
	}
	pub := p.pubImports.Load()
	for i, f := range p.fresh {
		if f.no <= pub {
			delete(p.fresh, i)
		}
	}
}

// offer hands r to the writer without blocking (claims and spends).
func (p *partition) offer(r *request) error {
	p.gate.RLock()
	defer p.gate.RUnlock()
	if p.gate.closed {
		return engine.ErrClosed
	}
	select {
	case p.inbox <- r:
		return nil
	default:
		return engine.ErrOverloaded
	}
}

// send hands r to the writer, waiting for room (imports: a bulk admin call
// would rather wait than fail half-way). The read lock is held while waiting;
// that only delays shutdown until the writer, which keeps draining, makes room.
func (p *partition) send(ctx context.Context, r *request) error {
	p.gate.RLock()
	defer p.gate.RUnlock()
	if p.gate.closed {
		return engine.ErrClosed
	}
	select {
	case p.inbox <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *partition) setClosed(closed bool) {
	p.gate.Lock()
	p.gate.closed = closed
	p.gate.Unlock()
}

// run is the writer: it processes batches until stop is closed, then drains
// whatever the inbox still holds (no new sends can arrive: the gate is closed
// before stop) and returns. Every pending it made is then with the committer,
// which answers it.
func (p *partition) run(stop <-chan struct{}) {
	for {
		pd := <-p.free // the committer always gives pendings back, failed or not
		select {
		case r := <-p.inbox:
			p.collect(r)
			p.process(pd)
		case <-stop:
			p.free <- pd
			for {
				select {
				case r := <-p.inbox:
					pd := <-p.free
					p.collect(r)
					p.process(pd)
				default:
					return
				}
			}
		}
	}
}

// collect gathers first and up to BatchLenMax-1 more requests without blocking.
func (p *partition) collect(first *request) {
	p.reqs = append(p.reqs[:0], first)
	for len(p.reqs) < p.e.cfg.BatchLenMax {
		select {
		case r := <-p.inbox:
			p.reqs = append(p.reqs, r)
		default:
			return
		}
	}
}

// process decides and applies one batch into pd and hands it to the
// committer, which makes it durable, publishes it and answers its callers.
func (p *partition) process(pd *pending) {
	e := p.e
	defer p.depth.Set(float64(len(p.inbox)))
	// The pending takes the batch's requests; the writer keeps the pending's
	// old (cleared) slice for its next collect.
	pd.reqs, p.reqs = p.reqs, pd.reqs[:0]
	if e.failure() != nil {
		pd.err = engine.ErrUnavailable
	} else if e.checkDisk() {
		// Nothing decided, memory untouched: the engine has not failed.
		pd.err = errDiskLow
	} else {
		now := e.now()
		pd.now = now
		p.forget()
		decideStart := pd.collectSpans()
		for _, r := range pd.reqs {
			switch r.kind {
			case reqClaim:
				p.recordClaim(pd, r, p.decideClaim(r, now), now)
			case reqSpend:
				p.recordSpend(pd, r, now)
			case reqImport:
				if pd.importNo == 0 {
					p.imports++
					pd.importNo = p.imports
				}
				p.recordImport(pd, r)
			}
			if err := e.hook(FaultMidBatch); err != nil {
				// Memory is now ahead of what will be durable: the engine fails.
				p.e.setFailed(fmt.Errorf("%w: partition %d: batch failed: %v", engine.ErrUnavailable, p.id, err))
				break
			}
		}
		pd.seq = p.seq
		p.traceDecided(pd, decideStart)
	}
	if pd.err == nil {
		e.metrics.BatchSize.Observe(float64(len(pd.events)))
	}
	e.commit.submit(pd)
}

// decideClaim is the decide step: lookups and hunt.DecideClaim, no writes and
// no allocations (BenchmarkDecide).
func (p *partition) decideClaim(r *request, now time.Time) hunt.Outcome {
	t := &p.e.spots
	if part := t.partOf(r.spot); part != p.id {
		panic(fmt.Sprintf("invariant: hotspot %s of partition %d decided by partition %d", r.claim.Hotspot, part, p.id))
	}
	var hs hunt.Hotspot
	t.fill(&hs, p.def(r.spot))
	st := hunt.ClaimState{Hunt: p.e.hunts.ord(t.huntOf(r.spot)).def.Load(), Hotspot: &hs, Granted: int64(t.decided(r.spot))}
	if pl, ok := p.players.number(r.claim.Player, false); ok {
		st.AlreadyClaimed = p.grants.has(grantKey(r.spot, pl))
	}
	if st.Hunt.MaxSpeedMps > 0 {
		st.Last = p.e.pos.get(posKey{r.claim.Player, r.claim.Hunt})
	}
	return hunt.DecideClaim(&st, &r.claim, now)
}

// recordClaim turns a decided claim into its event, applies it to the
// writer's state and writes it into the pending batch.
func (p *partition) recordClaim(pd *pending, r *request, o hunt.Outcome, now time.Time) {
	c := &r.claim
	def := p.def(r.spot)
	lat, lon := geo.FromE7(def.lat), geo.FromE7(def.lon)
	ev := &r.entry.event
	*ev = hunt.Event{
		Kind: hunt.KindClaimCompleted, Epoch: hunt.Epoch{Partition: p.id, Seq: p.seq + 1}, At: now,
		Player: c.Player, Key: c.Key, Fingerprint: r.entry.fp, Outcome: o,
		Hunt: c.Hunt, Hotspot: c.Hotspot, Lat: c.Lat, Lon: c.Lon, Geohash: geo.Encode(lat, lon, geo.GeohashLen),
	}
	if o == hunt.Granted {
		ev.Reward, ev.Points = int64(def.reward), int64(def.points)
	}
	ev.TicketsLeft = int64(def.tickets) - int64(p.e.spots.decided(r.spot))
	if o == hunt.Granted {
		ev.TicketsLeft--
	}
	granted, err := p.apply(ev, r.spot)
	if err != nil {
		panic("invariant: live decision does not fold: " + err.Error())
	}
	r.granted = granted
	pd.write(ev)
}

// recordSpend decides a spend against the balance (durable credits minus the
// reservations of spends decided before it) and applies it, which reserves
// its amount, so a later spend of the same player in this batch sees it.
func (p *partition) recordSpend(pd *pending, r *request, now time.Time) {
	sp := &r.spend
	var balance int64
	if w := p.e.wallets.get(sp.Player); w != nil {
		balance = w.balance.Load()
	}
	o := hunt.DecideSpend(balance, sp)
	if o == hunt.Spent {
		balance -= sp.Amount
	}
	ev := &r.entry.event
	*ev = hunt.Event{
		Kind: hunt.KindSpendCompleted, Epoch: hunt.Epoch{Partition: p.id, Seq: p.seq + 1}, At: now,
		Player: sp.Player, Key: sp.Key, Fingerprint: r.entry.fp, Outcome: o,
		Amount: sp.Amount, Reason: sp.Reason, Balance: balance,
	}
	if _, err := p.apply(ev, noSpot); err != nil {
		panic("invariant: live decision does not fold: " + err.Error())
	}
	if o == hunt.Spent {
		// Only this writer subtracts from this player's balance and others
		// only add, so the balance cannot have dropped since it was read.
		if b := p.e.wallets.get(sp.Player).balance.Load(); b < 0 {
			panic(fmt.Sprintf("invariant I4: wallet of %s reserved below zero (%d)", sp.Player, b))
		}
	}
	pd.write(ev)
}

// recordImport upserts definitions, never lowering tickets below what the
// hotspot has granted (I1), and writes them into the pending batch.
func (p *partition) recordImport(pd *pending, r *request) {
	t := &p.e.spots
	if p.fresh == nil {
		p.fresh = make(map[uint32]freshDef)
	}
	for i := range r.imp {
		it := &r.imp[i]
		if part := t.partOf(it.spot); part != p.id {
			panic(fmt.Sprintf("invariant: hotspot %s of partition %d imported by partition %d", it.def.ID, part, p.id))
		}
		dec := t.decided(it.spot)
		it.def.Tickets = max(it.def.Tickets, int64(dec))
		it.decided.tickets = max(it.decided.tickets, dec)
		p.fresh[it.spot] = freshDef{it.decided, pd.importNo}
		pd.key = defKey(pd.key[:0], it.def.Hunt, it.def.ID)
		pd.val = appendDef(pd.val[:0], p.id, &it.def)
		pd.batch.Set(pd.key, pd.val, nil)
		pd.ikey = journalKey(pd.ikey[:0], p.id, pd.importNo, pd.journalled)
		pd.journalled++
		pd.batch.Set(pd.ikey, pd.key, nil)
	}
}

// publish makes a durable pending visible: definitions first, then granted
// counts (a reader that loads granted before def never sees more grants than
// tickets), credits, wallet epochs, and the partition's epoch. The committer
// calls it, in the order the writer submitted its pendings.
func (p *partition) publish(pd *pending) {
	e := p.e
	for _, r := range pd.reqs {
		if r.kind != reqImport {
			continue
		}
		// An import request holds hotspots of one hunt.
		adds := p.adds[:0]
		for i := range r.imp {
			if a, ok := e.publishDef(r.imp[i].spot, r.imp[i].decided); ok {
				adds = append(adds, a)
			}
		}
		if len(r.imp) > 0 {
			e.hunts.ord(e.spots.huntOf(r.imp[0].spot)).spatial.add(&e.spots, adds)
		}
		p.adds = adds[:0]
	}
	if pd.importNo != 0 {
		p.pubImports.Store(pd.importNo)
	}
	for _, r := range pd.reqs {
		if r.kind != reqImport {
			e.publish(&r.entry.event, r.spot, r.granted)
		}
	}
	if prev := hunt.Seq(p.lastSeq.Load()); pd.seq < prev || (len(pd.events) > 0 && pd.seq == prev) {
		panic(fmt.Sprintf("invariant: partition %d seq not strictly increasing (%d after %d)", p.id, pd.seq, prev))
	}
	if len(pd.events) > 0 {
		p.lastSeq.Store(uint64(pd.seq))
		p.lastAt.Store(pd.now.UnixNano())
	}
}

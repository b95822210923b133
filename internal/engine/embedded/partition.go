package embedded

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

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
	slot  *slot

	imp     []importItem
	impDone chan error // buffered (1): the writer never blocks on it
}

type importItem struct {
	slot *slot
	def  hunt.Hotspot
}

// partition is one log partition and its writer goroutine. Everything under
// "writer-owned" is touched only by that goroutine (and by Open before it
// starts); the atomics are its published view.
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

	// Published after each durable batch.
	lastSeq atomic.Uint64
	lastAt  atomic.Int64 // unix ns of the last committed batch's decision time; 0 = none

	// Writer-owned.
	seq    hunt.Seq
	batch  *pebble.Batch
	reqs   []*request
	events []hunt.Event
	key    []byte
	val    []byte
	lkey   []byte
	sinks  []engine.Sink
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
// before stop) and returns.
func (p *partition) run(stop <-chan struct{}) {
	for {
		select {
		case r := <-p.inbox:
			p.collect(r)
			p.process()
		case <-stop:
			for {
				select {
				case r := <-p.inbox:
					p.collect(r)
					p.process()
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

// process decides, commits and answers one batch.
func (p *partition) process() {
	e := p.e
	reqs := p.reqs
	defer func() {
		clear(p.reqs) // drop references so answered requests can be collected
		p.depth.Set(float64(len(p.inbox)))
	}()
	if e.failure() != nil {
		p.answerErr(reqs, engine.ErrUnavailable)
		return
	}
	if e.checkDisk() {
		// Nothing decided, memory untouched: the engine has not failed.
		p.answerErr(reqs, errDiskLow)
		return
	}
	now := e.now()
	p.batch.Reset()
	p.events = p.events[:0]
	for _, r := range reqs {
		switch r.kind {
		case reqClaim:
			p.recordClaim(r, p.decideClaim(r, now), now)
		case reqSpend:
			p.recordSpend(r, now)
		case reqImport:
			p.recordImport(r)
		}
		if err := e.hook(FaultMidBatch); err != nil {
			p.fail(reqs, err)
			return
		}
	}
	if err := e.hook(FaultBeforeCommit); err != nil {
		p.fail(reqs, err)
		return
	}
	start := time.Now()
	if err := p.batch.Commit(pebble.Sync); err != nil {
		p.fail(reqs, err)
		return
	}
	e.metrics.CommitLatency.Observe(time.Since(start).Seconds())
	e.metrics.BatchSize.Observe(float64(len(p.events)))
	if err := e.hook(FaultAfterCommit); err != nil {
		p.fail(reqs, err)
		return
	}
	p.publish(reqs, now)
	for _, s := range p.sinks {
		s.Committed(p.id, p.events)
	}
	if err := e.hook(FaultBeforeAnswer); err != nil {
		p.fail(reqs, err)
		return
	}
	for _, r := range reqs {
		switch r.kind {
		case reqClaim, reqSpend:
			e.metrics.Outcome(r.entry.event.Outcome).Inc()
			close(r.entry.done)
		case reqImport:
			r.impDone <- nil
		}
	}
}

// decideClaim is the decide step: lookups and hunt.DecideClaim, no writes and
// no allocations (BenchmarkDecide).
func (p *partition) decideClaim(r *request, now time.Time) hunt.Outcome {
	s := r.slot
	if s.part != p.id {
		panic(fmt.Sprintf("invariant: hotspot %s of partition %d decided by partition %d", r.claim.Hotspot, s.part, p.id))
	}
	st := hunt.ClaimState{Hunt: s.hunt.def.Load(), Hotspot: s.wdef, Granted: s.decided}
	_, st.AlreadyClaimed = s.claimers[r.claim.Player]
	if st.Hunt.MaxSpeedMps > 0 {
		st.Last = p.e.pos.get(posKey{r.claim.Player, r.claim.Hunt})
	}
	return hunt.DecideClaim(&st, &r.claim, now)
}

// recordClaim applies a decided claim to the writer's state and the batch.
func (p *partition) recordClaim(r *request, o hunt.Outcome, now time.Time) {
	s, c := r.slot, &r.claim
	def := s.wdef
	ev := &r.entry.event
	p.seq++
	*ev = hunt.Event{
		Kind: hunt.KindClaimCompleted, Epoch: hunt.Epoch{Partition: p.id, Seq: p.seq}, At: now,
		Player: c.Player, Key: c.Key, Fingerprint: r.entry.fp, Outcome: o,
		Hunt: c.Hunt, Hotspot: c.Hotspot, Lat: c.Lat, Lon: c.Lon, Geohash: def.Geohash,
	}
	if o == hunt.Granted {
		s.decided++
		if s.decided > def.Tickets {
			panic(fmt.Sprintf("invariant I1: hotspot %s/%s granted %d > tickets %d", c.Hunt, c.Hotspot, s.decided, def.Tickets))
		}
		if s.claimers == nil {
			s.claimers = make(map[hunt.PlayerID]struct{}, 1)
		}
		s.claimers[c.Player] = struct{}{}
		p.e.pos.update(posKey{c.Player, c.Hunt}, position{lat: c.Lat, lon: c.Lon, at: now, epoch: ev.Epoch})
		ev.Reward, ev.Points = def.Reward, def.Points
	}
	ev.TicketsLeft = def.Tickets - s.decided
	p.write(ev)
}

// recordSpend decides a spend and reserves its amount before the commit, so
// a later spend of the same player in this batch sees the reservation.
func (p *partition) recordSpend(r *request, now time.Time) {
	sp := &r.spend
	w := p.e.wallets.get(sp.Player)
	var balance int64
	if w != nil {
		balance = w.balance.Load()
	}
	o := hunt.DecideSpend(balance, sp)
	if o == hunt.Spent {
		balance = w.balance.Add(-sp.Amount)
		if balance < 0 {
			panic(fmt.Sprintf("invariant I4: wallet of %s reserved below zero (%d)", sp.Player, balance))
		}
	}
	p.seq++
	ev := &r.entry.event
	*ev = hunt.Event{
		Kind: hunt.KindSpendCompleted, Epoch: hunt.Epoch{Partition: p.id, Seq: p.seq}, At: now,
		Player: sp.Player, Key: sp.Key, Fingerprint: r.entry.fp, Outcome: o,
		Amount: sp.Amount, Reason: sp.Reason, Balance: balance,
	}
	p.write(ev)
}

// recordImport upserts definitions, never lowering tickets below what the
// hotspot has granted (I1), and writes them into the batch.
func (p *partition) recordImport(r *request) {
	for i := range r.imp {
		it := &r.imp[i]
		if it.slot.part != p.id {
			panic(fmt.Sprintf("invariant: hotspot %s of partition %d imported by partition %d", it.def.ID, it.slot.part, p.id))
		}
		it.def.Tickets = max(it.def.Tickets, it.slot.decided)
		def := it.def // the slot keeps its own copy
		it.slot.wdef = &def
		p.key = defKey(p.key[:0], def.Hunt, def.ID)
		p.val = appendDef(p.val[:0], p.id, &def)
		p.batch.Set(p.key, p.val, nil)
	}
}

func (p *partition) write(ev *hunt.Event) {
	p.key = eventKey(p.key[:0], ev.Epoch.Partition, ev.Epoch.Seq)
	p.val = hunt.AppendEvent(p.val[:0], ev)
	p.batch.Set(p.key, p.val, nil)
	if ev.Credit() != 0 {
		p.lkey = ledgerKey(p.lkey[:0], ev)
		p.batch.Set(p.lkey, p.key, nil)
	}
	p.events = append(p.events, *ev)
}

// publish makes a durable batch visible: definitions first, then granted
// counts (a reader that loads granted before def never sees more grants than
// tickets), credits, wallet epochs, and the partition's epoch.
func (p *partition) publish(reqs []*request, now time.Time) {
	e := p.e
	for _, r := range reqs {
		if r.kind != reqImport {
			continue
		}
		for i := range r.imp {
			s := r.imp[i].slot
			if old := s.def.Load(); old != s.wdef {
				s.def.Store(s.wdef)
				s.hunt.publish(s, old, s.wdef)
			}
		}
	}
	for _, r := range reqs {
		if r.kind == reqImport {
			continue
		}
		ev := &r.entry.event
		switch {
		case ev.Kind == hunt.KindClaimCompleted && ev.Outcome == hunt.Granted:
			r.slot.granted.Store(r.slot.decided)
			if c := ev.Credit(); c != 0 {
				// Credited only now that the grant is durable: nobody can spend
				// a credit that a crash could still take back.
				e.wallets.getOrCreate(ev.Player).change(c, ev.At, ev.Epoch)
			}
		case ev.Kind == hunt.KindSpendCompleted && ev.Outcome == hunt.Spent:
			e.wallets.get(ev.Player).touch(ev.At, ev.Epoch)
		}
	}
	if prev := hunt.Seq(p.lastSeq.Load()); p.seq < prev || (len(p.events) > 0 && p.seq == prev) {
		panic(fmt.Sprintf("invariant: partition %d seq not strictly increasing (%d after %d)", p.id, p.seq, prev))
	}
	p.lastSeq.Store(uint64(p.seq))
	p.lastAt.Store(now.UnixNano())
}

// fail puts the engine in its failed state (memory may now be ahead of disk)
// and answers the batch with ErrUnavailable.
func (p *partition) fail(reqs []*request, cause error) {
	p.e.setFailed(fmt.Errorf("%w: partition %d: commit failed: %v", engine.ErrUnavailable, p.id, cause))
	p.answerErr(reqs, engine.ErrUnavailable)
}

// answerErr answers requests that did not commit; their idempotency records
// are forgotten so that nobody replays a decision that does not exist.
func (p *partition) answerErr(reqs []*request, err error) {
	for _, r := range reqs {
		switch r.kind {
		case reqClaim, reqSpend:
			p.e.idem.remove(r.key, r.entry)
			r.entry.err = err
			close(r.entry.done)
			p.e.shedUnavailable.Inc()
		case reqImport:
			r.impDone <- err
		}
	}
}

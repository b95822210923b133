package embedded

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
)

// pending is one partition batch between its decision and its answer: the
// Pebble writes of its events (and imported definitions), its requests, and
// what publish needs. A partition owns PipelineDepth pendings and cycles them
// through the committer; nothing in a pending is shared while it is in flight.
type pending struct {
	p      *partition
	batch  *pebble.Batch
	reqs   []*request
	events []hunt.Event // copies, delivered to the sinks after the commit
	now    time.Time    // the batch's decision time
	seq    hunt.Seq     // the partition's seq after this batch
	// importNo numbers the batch among its partition's import batches (0: it imports nothing).
	importNo uint64
	// journalled counts the definitions of this batch in the import journal (j/ keys).
	journalled uint32
	// err is set when the batch was refused before anything was decided
	// (engine failed, disk low): nothing to write, every request gets err.
	err error
	// traced holds the spans of the batch's sampled requests (trace.go); usually empty.
	traced []trace.Span

	key, val, lkey, ikey, ival []byte // encoding scratch
}

func newPending(p *partition) *pending {
	return &pending{p: p, batch: p.e.db.NewBatch()}
}

// write adds one event, its idempotency record and, where it changes a
// wallet, its ledger index entry.
func (pd *pending) write(ev *hunt.Event) {
	pd.key = eventKey(pd.key[:0], ev.Epoch.Partition, ev.Epoch.Seq)
	pd.val = hunt.AppendEvent(pd.val[:0], ev)
	pd.batch.Set(pd.key, pd.val, nil)
	idem := &pd.p.e.idem
	pd.ikey = idemRecordKey(pd.ikey[:0], idem.bucketOf(ev.At), idemKey{ev.Player, ev.Key})
	pd.ival = idemRecordValue(pd.ival[:0], ev.Epoch)
	pd.batch.Set(pd.ikey, pd.ival, nil)
	if ev.Credit() != 0 {
		pd.lkey = ledgerKey(pd.lkey[:0], ev)
		pd.batch.Set(pd.lkey, pd.key, nil)
	}
	pd.events = append(pd.events, *ev)
}

// hasWrites reports whether pd has anything for the store: it was decided
// (not refused) and wrote at least one key.
func (pd *pending) hasWrites() bool { return pd.err == nil && !pd.batch.Empty() }

// reset readies pd for its partition's next batch.
func (pd *pending) reset() {
	pd.batch.Reset()
	clear(pd.events) // drop string references
	pd.events = pd.events[:0]
	clear(pd.reqs) // drop references so answered requests can be collected
	pd.reqs = pd.reqs[:0]
	pd.err = nil
	pd.importNo = 0
	pd.journalled = 0
	clear(pd.traced)
	pd.traced = pd.traced[:0]
}

// committer makes the pendings of every partition durable together: it takes
// whatever batches are ready and writes them as ONE synced Pebble write (a
// group). Partition writers keep deciding their next batches meanwhile, so
// under load a group grows to cover every busy partition and one fsync pays
// for all of them.
//
// Two goroutines share the work, so that building and writing the next
// group overlaps the fsync of the previous ones:
//
//   - run takes the ready pendings, copies them into one group batch and
//     applies it to Pebble without waiting for the WAL sync
//     (ApplyNoSyncWait; Pebble syncs every group written meanwhile at once);
//   - settle waits for each group's sync in order, then publishes it,
//     delivers it to the sinks and answers its callers.
//
// At most groupsInFlight groups are between the two.
//
// Order. Pendings arrive in one FIFO channel and a partition submits its own
// in seq order, so each partition's batches are written, synced and
// published in seq order. Once a group fails, the engine fails before settle
// takes the next one, so no later batch (which may have been decided against
// the failed one's effects) is ever answered as a success.
type committer struct {
	e       *Engine
	in      chan *pending // capacity: every pending of every partition, so submit never blocks
	synced  chan *group   // groups written, in order, waiting for their sync
	idle    chan *group   // groupsInFlight reusable groups
	sinks   []engine.Sink
	settled chan struct{} // closed when settle returns
	// applied numbers the groups handed to Pebble (set before the write);
	// durable is the last of them known synced. A Pebble snapshot taken
	// after reading applied holds nothing past it (snapshot.go).
	applied atomic.Uint64
	durable atomic.Uint64
}

// group is one synced write: the pendings it holds and the batch written.
type group struct {
	list    []*pending
	batch   *pebble.Batch // the group's own batch, reused
	written *pebble.Batch // what was applied: batch, or a lone pending's own
	events  int
	batches int
	no      uint64 // the group's number (committer.applied), once written
	start   time.Time
	err     error // set when the group failed before or while being written
}

// groupsInFlight bounds the groups written but not yet synced and settled.
const groupsInFlight = 4

func newCommitter(e *Engine, capacity int) *committer {
	c := &committer{e: e, in: make(chan *pending, capacity),
		synced: make(chan *group, groupsInFlight), idle: make(chan *group, groupsInFlight),
		settled: make(chan struct{})}
	for range groupsInFlight {
		c.idle <- &group{batch: e.db.NewBatch()}
	}
	return c
}

// submit hands a decided pending to the committer (writer goroutines).
func (c *committer) submit(pd *pending) { c.in <- pd }

// run writes groups until in is closed and drained, then waits for settle.
func (c *committer) run() {
	go c.settle()
	for pd := range c.in {
		g := <-c.idle
		g.list = append(g.list[:0], pd)
	more:
		for {
			select {
			case pd, ok := <-c.in:
				if !ok {
					break more
				}
				g.list = append(g.list, pd)
			default:
				break more
			}
		}
		c.write(g)
		c.synced <- g
	}
	close(c.synced)
	<-c.settled
	for range groupsInFlight {
		(<-c.idle).batch.Close()
	}
}

// write applies the group's batches to Pebble as one synced write, without
// waiting for the sync. A group of one batch is written as it is;
// otherwise the batches are copied into the group's batch.
func (c *committer) write(g *group) {
	e := c.e
	g.err, g.written, g.events, g.batches = nil, nil, 0, 0
	for _, pd := range g.list {
		if pd.hasWrites() {
			g.batches++
			g.events += len(pd.events)
			g.written = pd.batch
		}
	}
	if g.err = e.failure(); g.err != nil || g.batches == 0 {
		g.written = nil
		return
	}
	g.err = e.hook(FaultBeforeCommit)
	g.start = time.Now()
	if g.err == nil && g.batches > 1 {
		g.batch.Reset()
		for _, pd := range g.list {
			if pd.hasWrites() {
				if g.err = g.batch.Apply(pd.batch, nil); g.err != nil {
					break
				}
			}
		}
		g.written = g.batch
	}
	if g.err == nil {
		g.no = c.applied.Add(1)
		g.err = e.db.ApplyNoSyncWait(g.written, pebble.Sync)
	}
	if g.err != nil {
		// Fail now, not when settle gets here: no later group may be
		// written, or the log would have a gap where this one is missing.
		g.written = nil
		e.setFailed(fmt.Errorf("%w: commit failed: %v", engine.ErrUnavailable, g.err))
	}
}

// settle waits for each written group's sync, in order, then publishes and
// answers it.
func (c *committer) settle() {
	defer close(c.settled)
	e := c.e
	for g := range c.synced {
		if g.err == nil && g.batches == 0 {
			// Nothing was written (every batch was refused before its
			// decisions): no commit to wait for, nothing to publish.
			c.finishAll(g, nil)
			continue
		}
		err := g.err
		if g.written != nil {
			if serr := g.written.SyncWait(); err == nil {
				err = serr
			}
			if err == nil {
				e.metrics.CommitLatency.Observe(time.Since(g.start).Seconds())
				e.metrics.GroupSize.Observe(float64(g.events))
				e.metrics.GroupBatches.Observe(float64(g.batches))
			}
		}
		if err == nil {
			// An earlier group failed: this one may build on its effects.
			err = e.failure()
		}
		if err == nil {
			err = e.hook(FaultAfterCommit)
		}
		if err != nil {
			// Memory (decided state) may now be ahead of disk: fail for good.
			e.setFailed(fmt.Errorf("%w: commit failed: %v", engine.ErrUnavailable, err))
			c.finishAll(g, engine.ErrUnavailable)
			continue
		}
		if g.written != nil {
			c.durable.Store(g.no)
		}
		for _, pd := range g.list {
			if pd.err != nil {
				continue
			}
			pd.p.publish(pd)
			if len(pd.traced) > 0 {
				c.traceCommitted(g, pd)
				continue
			}
			for _, s := range c.sinks {
				s.Committed(pd.p.id, pd.events)
			}
		}
		if err = e.hook(FaultBeforeAnswer); err != nil {
			e.setFailed(fmt.Errorf("%w: answer failed: %v", engine.ErrUnavailable, err))
			err = engine.ErrUnavailable
		}
		c.finishAll(g, err)
	}
}

// finishAll answers every pending of g and gives g back.
func (c *committer) finishAll(g *group, err error) {
	for _, pd := range g.list {
		c.finish(pd, err)
	}
	clear(g.list)
	g.list = g.list[:0]
	g.written = nil
	c.idle <- g
}

// finish answers every request of pd (err: the commit failed, or pd.err
// refused the batch) and gives pd back to its partition.
func (c *committer) finish(pd *pending, err error) {
	if pd.err != nil {
		err = pd.err
	}
	e := c.e
	for _, r := range pd.reqs {
		switch {
		case r.kind == reqImport:
			r.impDone <- err
		case err != nil:
			// Forget the idempotency record: nobody may replay a decision
			// that does not exist.
			e.idem.remove(r.key, r.entry)
			r.entry.err = err
			close(r.entry.done)
			e.shedUnavailable.Inc()
		default:
			e.metrics.Outcome(r.entry.event.Outcome).Inc()
			e.idem.decided(r.key, r.entry) // durable: from now on a retry finds it in memory or on disk
			close(r.entry.done)
		}
	}
	pd.reset()
	pd.p.free <- pd
}

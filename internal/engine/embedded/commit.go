package embedded

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

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
	// err is set when the batch was refused before anything was decided
	// (engine failed, disk low): nothing to write, every request gets err.
	err error

	key, val, lkey []byte // encoding scratch
}

func newPending(p *partition) *pending {
	return &pending{p: p, batch: p.e.db.NewBatch()}
}

// write adds one event and, where it changes a wallet, its ledger index entry.
func (pd *pending) write(ev *hunt.Event) {
	pd.key = eventKey(pd.key[:0], ev.Epoch.Partition, ev.Epoch.Seq)
	pd.val = hunt.AppendEvent(pd.val[:0], ev)
	pd.batch.Set(pd.key, pd.val, nil)
	if ev.Credit() != 0 {
		pd.lkey = ledgerKey(pd.lkey[:0], ev)
		pd.batch.Set(pd.lkey, pd.key, nil)
	}
	pd.events = append(pd.events, *ev)
}

// reset readies pd for its partition's next batch.
func (pd *pending) reset() {
	pd.batch.Reset()
	clear(pd.events) // drop string references
	pd.events = pd.events[:0]
	clear(pd.reqs) // drop references so answered requests can be collected
	pd.reqs = pd.reqs[:0]
	pd.err = nil
}

// committer makes the pendings of every partition durable together: it takes
// whatever batches are ready, writes them as ONE synced Pebble batch, then
// publishes them in order, delivers them to the sinks and answers their
// callers. Partition writers keep deciding their next batches meanwhile, so
// under load a group grows to cover every busy partition and one fsync pays
// for all of them.
//
// Order. Pendings arrive in one FIFO channel and a partition submits its own
// in seq order, so each partition's batches are committed and published in
// seq order. If a commit fails, the engine fails before the next group is
// taken, so no later batch (which may have been decided against the failed
// one's effects) is ever made durable or answered as a success.
type committer struct {
	e     *Engine
	in    chan *pending // capacity: every pending of every partition, so submit never blocks
	group *pebble.Batch
	list  []*pending
	sinks []engine.Sink
}

func newCommitter(e *Engine, capacity int) *committer {
	return &committer{e: e, in: make(chan *pending, capacity)}
}

// submit hands a decided pending to the committer (writer goroutines).
func (c *committer) submit(pd *pending) { c.in <- pd }

// run commits groups until in is closed and drained.
func (c *committer) run() {
	c.group = c.e.db.NewBatch()
	defer func() { c.group.Close(); c.group = nil }()
	for pd := range c.in {
		c.list = append(c.list[:0], pd)
	more:
		for {
			select {
			case pd, ok := <-c.in:
				if !ok {
					break more
				}
				c.list = append(c.list, pd)
			default:
				break more
			}
		}
		c.commit(c.list)
		clear(c.list)
	}
}

// commit makes one group durable, publishes and answers it.
func (c *committer) commit(list []*pending) {
	e := c.e
	err := e.failure()
	if err == nil {
		err = e.hook(FaultBeforeCommit)
	}
	if err == nil {
		err = c.write(list)
	}
	if err == nil {
		err = e.hook(FaultAfterCommit)
	}
	if err != nil {
		// Memory (decided state) may now be ahead of disk: fail for good.
		e.setFailed(fmt.Errorf("%w: commit failed: %v", engine.ErrUnavailable, err))
		for _, pd := range list {
			c.finish(pd, engine.ErrUnavailable)
		}
		return
	}
	for _, pd := range list {
		if pd.err != nil {
			continue
		}
		pd.p.publish(pd)
		for _, s := range c.sinks {
			s.Committed(pd.p.id, pd.events)
		}
	}
	if err = e.hook(FaultBeforeAnswer); err != nil {
		e.setFailed(fmt.Errorf("%w: answer failed: %v", engine.ErrUnavailable, err))
		err = engine.ErrUnavailable
	}
	for _, pd := range list {
		c.finish(pd, err)
	}
}

// write commits the group's batches as one synced write. A group of one
// batch is committed as it is; otherwise the batches are copied into one.
func (c *committer) write(list []*pending) error {
	var only *pebble.Batch
	batches, events := 0, 0
	for _, pd := range list {
		if pd.err != nil || pd.batch.Empty() {
			continue
		}
		batches++
		events += len(pd.events)
		only = pd.batch
	}
	if batches == 0 {
		return nil
	}
	start := time.Now()
	var err error
	if batches == 1 {
		err = only.Commit(pebble.Sync)
	} else {
		c.group.Reset()
		for _, pd := range list {
			if pd.err == nil && !pd.batch.Empty() {
				if err = c.group.Apply(pd.batch, nil); err != nil {
					return err
				}
			}
		}
		err = c.group.Commit(pebble.Sync)
	}
	if err != nil {
		return err
	}
	e := c.e
	e.metrics.CommitLatency.Observe(time.Since(start).Seconds())
	e.metrics.GroupSize.Observe(float64(events))
	e.metrics.GroupBatches.Observe(float64(batches))
	return nil
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
			close(r.entry.done)
		}
	}
	pd.reset()
	pd.p.free <- pd
}

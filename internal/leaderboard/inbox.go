package leaderboard

import (
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// grant is what the projection keeps of one granted claim.
type grant struct {
	seq     hunt.Seq
	player  hunt.PlayerID
	hunt    hunt.HuntID
	geohash string
	points  int64
}

// item is one committed batch of one partition, reduced to what the
// projection needs: its seq range (every event advances the watermark), the
// commit times of its first and last events, and its granted claims.
type item struct {
	part        geo.Partition
	first, last hunt.Seq
	firstAt     time.Time // staleness of reads while this item is queued
	lastAt      time.Time // the newest event's commit time
	events      int
	grants      []grant
	// spans of the batch's sampled requests (usually none) and when the
	// batch was delivered: the start of their "projection.apply" spans.
	spans     []trace.Span
	delivered time.Time
}

// traceApplied records "projection.apply" under each sampled request of it.
func traceApplied(it *item) {
	end := time.Now()
	for _, sp := range it.spans {
		telemetry.ChildAt(sp, "projection.apply", it.delivered, end,
			attribute.Int("cairn.partition", int(it.part)),
			attribute.Int("cairn.batch.events", it.events))
	}
	it.spans = nil
}

// inbox is the bounded FIFO between the engine's partition writers and the
// applier (the nats-server ipqueue shape: a mutex-guarded ring, batch
// consumption, non-blocking wake-ups through capacity-1 channels).
//
// The single consumer peeks items, applies them and only then removes them,
// so the head is always the oldest unapplied batch: reads derive their
// staleness from it, and Status its per-partition depth. Producers block
// while it is full (back-pressure; never a dropped event) and return at once
// after the consumer stopped: the projection is dead then, and its next start
// rebuilds from the log.
type inbox struct {
	mu struct {
		sync.Mutex
		buf    []item // ring of capacity InboxLenMax
		head   int
		n      int
		depth  []int // events queued per partition
		closed bool
	}
	ready chan struct{} // a token: there may be items (or a Rebuild ended)
	space chan struct{} // a token: there may be room
	done  chan struct{} // closed when the consumer stopped
}

func (q *inbox) init(lenMax, partitions int) {
	q.mu.buf = make([]item, lenMax)
	q.mu.depth = make([]int, partitions)
	q.ready = make(chan struct{}, 1)
	q.space = make(chan struct{}, 1)
	q.done = make(chan struct{})
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push appends it, blocking while the inbox is full.
func (q *inbox) push(it item) {
	waited := false
	for {
		q.mu.Lock()
		if q.mu.closed {
			q.mu.Unlock()
			return
		}
		if q.mu.n < len(q.mu.buf) {
			q.mu.buf[(q.mu.head+q.mu.n)%len(q.mu.buf)] = it
			q.mu.n++
			q.mu.depth[it.part] += it.events
			room := q.mu.n < len(q.mu.buf)
			q.mu.Unlock()
			notify(q.ready)
			if waited && room {
				// Pass the wake-up on: another producer may be blocked too.
				notify(q.space)
			}
			return
		}
		q.mu.Unlock()
		waited = true
		select {
		case <-q.space:
		case <-q.done:
		}
	}
}

// peek copies the oldest items into dst (at most cap(dst), and no more than
// grantsMax grants unless the first item alone has more) without removing them.
func (q *inbox) peek(dst []item, grantsMax int) []item {
	q.mu.Lock()
	defer q.mu.Unlock()
	grants := 0
	for i := 0; i < q.mu.n && len(dst) < cap(dst); i++ {
		it := &q.mu.buf[(q.mu.head+i)%len(q.mu.buf)]
		if len(dst) > 0 && grants+len(it.grants) > grantsMax {
			break
		}
		grants += len(it.grants)
		dst = append(dst, *it)
	}
	return dst
}

// remove drops the k oldest items (the ones just applied).
func (q *inbox) remove(k int) {
	q.mu.Lock()
	for range k {
		it := &q.mu.buf[q.mu.head]
		q.mu.depth[it.part] -= it.events
		*it = item{} // release the grants for the collector
		q.mu.head = (q.mu.head + 1) % len(q.mu.buf)
		q.mu.n--
	}
	q.mu.Unlock()
	notify(q.space)
}

// oldest returns the commit time of the oldest unapplied event.
func (q *inbox) oldest() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.mu.n == 0 {
		return time.Time{}, false
	}
	return q.mu.buf[q.mu.head].firstAt, true
}

// depths copies the per-partition event counts into dst.
func (q *inbox) depths(dst []int) []int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append(dst, q.mu.depth...)
}

// close stops the inbox: producers (blocked or future) return at once.
func (q *inbox) close() {
	q.mu.Lock()
	// Queued items stay: reads keep reporting how stale the stopped projection is.
	q.mu.closed = true
	q.mu.Unlock()
	close(q.done)
}

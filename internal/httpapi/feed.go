package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// hub fans committed ClaimCompleted events out to SSE subscribers. It is an
// engine.Sink: Committed runs on the engine's goroutines, before their
// callers are answered, so its cost must not grow with the number of
// subscribers and it must never wait for one, nor render anything.
//
// Each hunt with subscribers has one ring of its latest rendered frames.
// Committed only reserves the frame's slot in its hunt's ring and queues a
// copy of the fields the frame shows (bounded: feedQueueLenMax events). The
// hub's own goroutine (render) renders queued frames in queue order, puts
// each in its slot and wakes the readers by closing the ring's wake channel
// (one operation, however many listen). Each subscriber's handler keeps its
// own cursor and copies what it has not sent yet; one that falls more than
// the ring's length behind has lost frames and is disconnected (the client
// reconnects; EventSource does so by itself). A slow subscriber thus costs
// the engine nothing. When the queue is full (render cannot keep up),
// Committed drops the frame but keeps its slot reserved: the slot stays
// empty, and a subscriber that reaches it has lost a frame and is
// disconnected as if it had fallen behind. Frames of one partition reach a
// subscriber in seq order; frames of different partitions interleave.
//
// A subscriber sees exactly the frames committed after it subscribed:
// subscribe starts its cursor at the ring's next reserved slot, under the
// lock Committed holds shared while it reserves.
//
// The render goroutine is started by subscribe when none runs, and ends when
// the hub is closed or when it has no subscribers and nothing queued.
//
// Locks, in order: hub.mu guards the map of rings, the counts and whether
// render runs (Committed takes it shared, and skips even that when nobody
// listens); hub.q.mu guards the queue; ring.mu guards a ring's frames,
// cursors and wake channel, held only to copy slice headers.
type hub struct {
	lagMax int // frames per ring: how far a subscriber may fall behind
	max    int // subscribers
	count  atomic.Int64
	mu     struct {
		sync.RWMutex
		rings     map[hunt.HuntID]*ring
		closed    bool
		rendering bool // the render goroutine runs
	}
	q struct {
		sync.Mutex
		items []queuedFrame // cap feedQueueLenMax; never grows
	}
	spare   []queuedFrame // render's other buffer, swapped with q.items
	pending chan struct{} // cap 1: something was queued or unsubscribed
	done    chan struct{} // closed by close: every stream ends
	once    sync.Once
}

// feedQueueLenMax bounds the frames queued between Committed and render.
const feedQueueLenMax = 8192

// queuedFrame is a frame to render: its ring, its slot there, and a copy of
// the event's fields the frame shows (frameFields).
type queuedFrame struct {
	ring *ring
	slot uint64
	ev   hunt.Event
}

// frameFields is the part of ev that appendClaimFrame reads.
func frameFields(ev *hunt.Event) hunt.Event {
	return hunt.Event{Kind: ev.Kind, Epoch: ev.Epoch, At: ev.At, Player: ev.Player, Outcome: ev.Outcome,
		Hunt: ev.Hunt, Hotspot: ev.Hotspot, Points: ev.Points, TicketsLeft: ev.TicketsLeft}
}

// ring is one hunt's latest frames.
type ring struct {
	subs     int // guarded by hub.mu
	mu       sync.Mutex
	buf      [][]byte      // len lagMax; frame n is at buf[n%len]; frames are shared, read-only; nil: lost
	reserved uint64        // slots ever reserved by Committed
	next     uint64        // slots ever rendered (or lost): readers may read below it
	wake     chan struct{} // closed and replaced when a frame is added
}

func newHub(subscribersMax, lagMax int) *hub {
	h := &hub{lagMax: lagMax, max: subscribersMax, pending: make(chan struct{}, 1), done: make(chan struct{})}
	h.mu.rings = map[hunt.HuntID]*ring{}
	h.q.items = make([]queuedFrame, 0, feedQueueLenMax)
	h.spare = make([]queuedFrame, 0, feedQueueLenMax)
	return h
}

// subscription is one stream's position in its hunt's ring.
type subscription struct {
	id     hunt.HuntID
	ring   *ring
	cursor uint64   // the next frame to send
	batch  [][]byte // reused by read
}

// subscribe starts a subscription at the hunt's next frame, or
// errTooManySubscribers, or errFeedClosed.
func (h *hub) subscribe(id hunt.HuntID) (*subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.closed {
		return nil, errFeedClosed
	}
	if h.count.Load() >= int64(h.max) {
		return nil, errTooManySubscribers
	}
	r := h.mu.rings[id]
	if r == nil {
		r = &ring{buf: make([][]byte, h.lagMax), wake: make(chan struct{})}
		h.mu.rings[id] = r
	}
	r.subs++
	h.count.Add(1)
	if !h.mu.rendering {
		h.mu.rendering = true
		go h.render()
	}
	r.mu.Lock()
	cursor := r.reserved
	r.mu.Unlock()
	return &subscription{id: id, ring: r, cursor: cursor}, nil
}

// unsubscribe ends a subscription; the last one of a hunt frees its ring.
func (h *hub) unsubscribe(sub *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sub.ring == nil {
		return
	}
	sub.ring.subs--
	if sub.ring.subs == 0 {
		delete(h.mu.rings, sub.id)
	}
	sub.ring = nil
	if h.count.Add(-1) == 0 {
		h.poke() // render may end
	}
}

// subscribers is the number of open subscriptions.
func (h *hub) subscribers() int { return int(h.count.Load()) }

// poke tells render to look at the queue and the subscriber count.
func (h *hub) poke() {
	select {
	case h.pending <- struct{}{}:
	default:
	}
}

// Committed implements engine.Sink: it queues one frame per ClaimCompleted
// of a hunt that has subscribers, whatever their number; render renders it.
func (h *hub) Committed(_ geo.Partition, batch []hunt.Event) {
	if h.count.Load() == 0 {
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	queued := false
	h.q.Lock()
	for i := range batch {
		ev := &batch[i]
		if ev.Kind != hunt.KindClaimCompleted {
			continue
		}
		r := h.mu.rings[ev.Hunt]
		if r == nil {
			continue
		}
		r.mu.Lock()
		slot := r.reserved
		r.reserved++
		r.mu.Unlock()
		if len(h.q.items) < cap(h.q.items) {
			h.q.items = append(h.q.items, queuedFrame{ring: r, slot: slot, ev: frameFields(ev)})
			queued = true
		}
		// Else the frame is lost: its slot stays empty (see hub).
	}
	h.q.Unlock()
	if queued {
		h.poke()
	}
}

// render is the hub's goroutine: it renders queued frames into their rings
// until the hub is closed, or until nobody listens and nothing is queued.
func (h *hub) render() {
	for {
		select {
		case <-h.done:
			return
		case <-h.pending:
		}
		h.q.Lock()
		batch := h.q.items
		h.q.items = h.spare
		h.q.Unlock()
		for i := range batch {
			f := &batch[i]
			f.ring.put(f.slot, appendClaimFrame(make([]byte, 0, 320), &f.ev))
			*f = queuedFrame{} // keep no ring or strings alive
		}
		h.spare = batch[:0]
		if h.count.Load() == 0 && h.idle() {
			return
		}
	}
}

// idle reports, and records, that render may end: no subscribers and
// nothing queued. A later subscribe starts a new render.
func (h *hub) idle() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.q.Lock()
	empty := len(h.q.items) == 0
	h.q.Unlock()
	if h.count.Load() != 0 || !empty {
		return false
	}
	h.mu.rendering = false
	return true
}

// put stores the frame of slot; slots between the last one stored and this
// one were lost (dropped from a full queue) and are left empty.
func (r *ring) put(slot uint64, frame []byte) {
	r.mu.Lock()
	n := uint64(len(r.buf))
	from := r.next
	if slot-from > n {
		from = slot - n
	}
	for s := from; s < slot; s++ {
		r.buf[s%n] = nil
	}
	r.buf[slot%n] = frame
	r.next = slot + 1
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

// read returns the frames after the subscription's cursor (valid until the
// next read) and a channel closed when more arrive. behind reports that
// frames were overwritten or lost before this subscriber read them.
func (s *subscription) read() (frames [][]byte, wake <-chan struct{}, behind bool) {
	r := s.ring
	s.batch = s.batch[:0]
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.cursor >= r.next {
		return nil, r.wake, false // its first slot is reserved but not rendered yet
	}
	if r.next-s.cursor > uint64(len(r.buf)) {
		return nil, r.wake, true
	}
	for ; s.cursor < r.next; s.cursor++ {
		f := r.buf[s.cursor%uint64(len(r.buf))]
		if f == nil {
			return nil, r.wake, true
		}
		s.batch = append(s.batch, f)
	}
	return s.batch, r.wake, false
}

// close ends every stream and refuses new ones.
func (h *hub) close() {
	h.once.Do(func() {
		h.mu.Lock()
		h.mu.closed = true
		h.mu.Unlock()
		close(h.done)
	})
}

// errFeedClosed refuses streams once the server shuts down.
var errFeedClosed = fmt.Errorf("%w: the event feed is shutting down", engine.ErrClosed)

// events answers GET /v1/hunts/{hunt}/events with Server-Sent Events: every
// ClaimCompleted of the hunt from now on, as `event: claim` frames whose
// `id:` is the claim's consistency token, and a comment every HeartbeatEvery
// so proxies and clients see a live connection. There is no replay of past
// events (Last-Event-ID is ignored); a client that needs history reads the
// leaderboard or the wallet.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if _, err := s.auth.player(r); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	hctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	h, err := s.huntOf(r.WithContext(hctx))
	cancel()
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	sub, err := s.feed.subscribe(h.ID)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	defer s.feed.unsubscribe(sub)

	// The server's ReadTimeout does not end the stream: net/http lifts the
	// read deadline once the (empty) body is read, and its background read
	// notices a client that goes away. The WriteTimeout would end it, so
	// every write extends its own deadline: a stuck client is cut off after
	// sseWriteTimeout, heartbeats included.
	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 2000\n: connected\n\n")) {
		return
	}
	beat := time.NewTicker(s.cfg.HeartbeatEvery)
	defer beat.Stop()
	for {
		frames, wake, behind := sub.read()
		if behind {
			s.log.Info("sse subscriber dropped: it fell behind", "hunt", h.ID, "frames_max", s.cfg.SubscriberLagMax)
			return
		}
		if len(frames) > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
			for _, f := range frames {
				if _, err := w.Write(f); err != nil {
					return
				}
			}
			if rc.Flush() != nil {
				return
			}
		}
		// wake is from the read above: if frames came while writing, it
		// is closed already and the loop goes round at once, still
		// noticing shutdown and a client that went away.
		select {
		case <-r.Context().Done():
			return
		case <-s.feed.done:
			return
		case <-wake:
		case <-beat.C:
			if !write([]byte(": heartbeat\n\n")) {
				return
			}
		}
	}
}

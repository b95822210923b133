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
// engine.Sink: Committed runs on the partition writers' goroutines, before
// their callers are answered, so its cost must not grow with the number of
// subscribers and it must never wait for one.
//
// Each hunt with subscribers has one ring of its latest rendered frames.
// Committed renders a frame once, puts it in the ring and wakes the readers
// by closing the ring's wake channel (one operation, however many listen).
// Each subscriber's handler keeps its own cursor and copies what it has not
// sent yet; one that falls more than the ring's length behind has lost
// frames and is disconnected (the client reconnects; EventSource does so by
// itself). A slow subscriber thus costs the writers nothing. Frames of one
// partition reach a subscriber in seq order; frames of different partitions
// interleave.
//
// Locks: hub.mu guards the map of rings and the counts (Committed takes it
// shared, and skips even that when nobody listens); ring.mu guards a ring's
// frames, cursor and wake channel, held only to copy slice headers.
type hub struct {
	lagMax int // frames per ring: how far a subscriber may fall behind
	max    int // subscribers
	count  atomic.Int64
	mu     struct {
		sync.RWMutex
		rings  map[hunt.HuntID]*ring
		closed bool
	}
	done chan struct{} // closed by close: every stream ends
	once sync.Once
}

// ring is one hunt's latest frames.
type ring struct {
	subs int // guarded by hub.mu
	mu   sync.Mutex
	buf  [][]byte      // len lagMax; frame n is at buf[n%len]; frames are shared, read-only
	next uint64        // frames ever added
	wake chan struct{} // closed and replaced when a frame is added
}

func newHub(subscribersMax, lagMax int) *hub {
	h := &hub{lagMax: lagMax, max: subscribersMax, done: make(chan struct{})}
	h.mu.rings = map[hunt.HuntID]*ring{}
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
	r.mu.Lock()
	cursor := r.next
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
	h.count.Add(-1)
}

// subscribers is the number of open subscriptions.
func (h *hub) subscribers() int { return int(h.count.Load()) }

// Committed implements engine.Sink: one rendered frame per ClaimCompleted of
// a hunt that has subscribers, whatever their number.
func (h *hub) Committed(_ geo.Partition, batch []hunt.Event) {
	if h.count.Load() == 0 {
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for i := range batch {
		ev := &batch[i]
		if ev.Kind != hunt.KindClaimCompleted {
			continue
		}
		if r := h.mu.rings[ev.Hunt]; r != nil {
			r.add(appendClaimFrame(make([]byte, 0, 320), ev))
		}
	}
}

func (r *ring) add(frame []byte) {
	r.mu.Lock()
	r.buf[r.next%uint64(len(r.buf))] = frame
	r.next++
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

// read returns the frames after the subscription's cursor (valid until the
// next read) and a channel closed when more arrive. behind reports that
// frames were overwritten before this subscriber read them.
func (s *subscription) read() (frames [][]byte, wake <-chan struct{}, behind bool) {
	r := s.ring
	s.batch = s.batch[:0]
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next-s.cursor > uint64(len(r.buf)) {
		return nil, r.wake, true
	}
	for ; s.cursor < r.next; s.cursor++ {
		s.batch = append(s.batch, r.buf[s.cursor%uint64(len(r.buf))])
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

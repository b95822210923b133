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
// engine.Sink: Committed runs on the partition writers' goroutines, so it
// never blocks and never waits for a subscriber. Each subscriber has a
// bounded channel of rendered frames; when a send would block, the
// subscriber is marked dropped and its handler ends the stream (the client
// reconnects; EventSource does so by itself). Frames of one partition reach
// a subscriber in seq order; frames of different partitions interleave.
//
// The subscriber set is guarded by mu; Committed takes it shared, and skips
// even that when nobody listens (count), so an API without subscribers adds
// one atomic load per batch to the writers.
type hub struct {
	bufLen int
	max    int
	count  atomic.Int64
	mu     struct {
		sync.RWMutex
		subs   map[hunt.HuntID]map[*subscriber]struct{}
		closed bool
	}
	done chan struct{} // closed by close: every stream ends
	once sync.Once
}

// subscriber is one SSE stream's queue.
type subscriber struct {
	hunt    hunt.HuntID
	frames  chan []byte   // rendered frames; shared read-only between subscribers
	dropped chan struct{} // closed when the subscriber fell behind
	drop    sync.Once
}

func newHub(subscribersMax, bufLen int) *hub {
	h := &hub{bufLen: bufLen, max: subscribersMax, done: make(chan struct{})}
	h.mu.subs = map[hunt.HuntID]map[*subscriber]struct{}{}
	return h
}

// subscribe adds a subscriber to a hunt's events, or errTooManySubscribers.
func (h *hub) subscribe(id hunt.HuntID) (*subscriber, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.closed {
		return nil, errFeedClosed
	}
	if h.count.Load() >= int64(h.max) {
		return nil, errTooManySubscribers
	}
	sub := &subscriber{hunt: id, frames: make(chan []byte, h.bufLen), dropped: make(chan struct{})}
	m := h.mu.subs[id]
	if m == nil {
		m = map[*subscriber]struct{}{}
		h.mu.subs[id] = m
	}
	m[sub] = struct{}{}
	h.count.Add(1)
	return sub, nil
}

func (h *hub) unsubscribe(sub *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.mu.subs[sub.hunt]
	if _, ok := m[sub]; !ok {
		return
	}
	delete(m, sub)
	if len(m) == 0 {
		delete(h.mu.subs, sub.hunt)
	}
	h.count.Add(-1)
}

// subscribers is the number of open streams.
func (h *hub) subscribers() int { return int(h.count.Load()) }

// Committed implements engine.Sink. A frame is rendered once per event that
// has subscribers and shared by all of them.
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
		subs := h.mu.subs[ev.Hunt]
		if len(subs) == 0 {
			continue
		}
		frame := appendClaimFrame(make([]byte, 0, 320), ev)
		for sub := range subs {
			select {
			case sub.frames <- frame:
			default:
				sub.drop.Do(func() { close(sub.dropped) })
			}
		}
	}
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
		select {
		case <-r.Context().Done():
			return
		case <-s.feed.done:
			return
		case <-sub.dropped:
			s.log.Info("sse subscriber dropped: it fell behind", "hunt", h.ID, "buffer_frames", cap(sub.frames))
			return
		case f := <-sub.frames:
			// Write what is queued, then flush once.
			_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
			if _, err := w.Write(f); err != nil {
				return
			}
			for more := true; more; {
				select {
				case f := <-sub.frames:
					if _, err := w.Write(f); err != nil {
						return
					}
				default:
					more = false
				}
			}
			if rc.Flush() != nil {
				return
			}
		case <-beat.C:
			if !write([]byte(": heartbeat\n\n")) {
				return
			}
		}
	}
}

package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
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
// the ring's length behind is disconnected (the client reconnects with
// Last-Event-ID; EventSource does so by itself). A slow subscriber thus
// costs the engine nothing. When the queue is full (render cannot keep up),
// Committed drops the frame but keeps its slot reserved: the slot stays
// empty, and a subscriber that reaches it is sent a gap event instead.
// Frames of one partition reach a subscriber in seq order; frames of
// different partitions interleave.
//
// Privacy: a grant is public, shown to every subscriber of the hunt; any
// other outcome (a refusal) only to the streams of its own player. The
// player of a frame is a pseudonym, stable within a hunt (pseudonym), unless
// the hunt opts in to showing player ids (hunt.Hunt.FeedShowsPlayerIDs).
//
// Positions: a ring is created with a random generation, and the frame in
// slot n has the SSE id "<generation>-<n+1>": the position after it. A
// client that reconnects with Last-Event-ID resumes exactly there while that
// slot is still in the ring; otherwise (the ring moved on, or is another
// one: a restart, another node, a ring that expired) it is sent a gap event
// first. A ring outlives its last subscriber by retain, so a client that
// reconnects within it misses nothing; a ring idle longer is freed.
//
// A subscriber sees exactly the frames committed after it subscribed (or
// after its Last-Event-ID): subscribe starts its cursor at the ring's next
// reserved slot, under the lock Committed holds shared while it reserves.
//
// Streams are bounded three ways: in all (max, 503), per player and per
// client address (perPlayerMax, perAddrMax, 429); the counts live in maps
// whose keys are the open streams' players and addresses, so they are
// bounded by max.
//
// The render goroutine is started by subscribe when none runs, and ends when
// the hub is closed or when it has no rings and nothing queued.
//
// Locks, in order: hub.mu guards the map of rings, the counts and whether
// render runs (Committed takes it shared, and skips even that when no ring
// exists); hub.q.mu guards the queue; ring.mu guards a ring's frames,
// cursors and wake channel, held only to copy slice headers.
type hub struct {
	lagMax       int // frames per ring: how far a subscriber may fall behind
	max          int // subscribers
	perPlayerMax int
	perAddrMax   int
	retain       time.Duration
	now          func() time.Time
	pseudoKey    []byte // the key of pseudonym
	count        atomic.Int64
	rings        atomic.Int64 // len(mu.rings), read by Committed without the lock
	mu           struct {
		sync.RWMutex
		rings     map[hunt.HuntID]*ring
		players   map[hunt.PlayerID]int // open streams per player
		addrs     map[string]int        // open streams per client address (ipKey)
		closed    bool
		rendering bool // the render goroutine runs
	}
	q struct {
		sync.Mutex
		items []queuedFrame // at most feedQueueLenMax; grows as frames come
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

// frame is one rendered frame in a ring. owner is empty for a public frame
// (a grant), else the only player whose streams may see it (a refusal). A
// nil b is a lost frame.
type frame struct {
	b     []byte // shared, read-only
	owner hunt.PlayerID
}

// ring is one hunt's latest frames.
type ring struct {
	id        hunt.HuntID
	gen       uint64      // random; names the ring in SSE ids
	subs      int         // guarded by hub.mu
	idleSince time.Time   // guarded by hub.mu: when subs fell to 0
	named     atomic.Bool // frames show player ids (the hunt opted in)
	mu        sync.Mutex
	buf       []frame       // len lagMax; frame n is at buf[n%len]
	reserved  uint64        // slots ever reserved by Committed
	next      uint64        // slots ever rendered (or lost): readers may read below it
	wake      chan struct{} // closed and replaced when a frame is added
}

// hubConfig is what newHub needs of Config.
type hubConfig struct {
	subscribersMax, lagMax, perPlayerMax, perAddrMax int
	retain                                           time.Duration
	now                                              func() time.Time
	secret                                           []byte
}

func newHub(c hubConfig) *hub {
	h := &hub{lagMax: c.lagMax, max: c.subscribersMax, perPlayerMax: c.perPlayerMax, perAddrMax: c.perAddrMax,
		retain: c.retain, now: c.now, pending: make(chan struct{}, 1), done: make(chan struct{})}
	if h.now == nil {
		h.now = time.Now
	}
	// The pseudonyms' key is derived from the secret, not the secret itself:
	// one key per purpose.
	mac := hmac.New(sha256.New, c.secret)
	mac.Write([]byte("cairn feed pseudonym key"))
	h.pseudoKey = mac.Sum(nil)
	h.mu.rings = map[hunt.HuntID]*ring{}
	h.mu.players = map[hunt.PlayerID]int{}
	h.mu.addrs = map[string]int{}
	return h
}

// subscription is one stream's position in its hunt's ring.
type subscription struct {
	id     hunt.HuntID
	player hunt.PlayerID
	addr   string
	ring   *ring
	cursor uint64   // the next slot to send
	gap    bool     // frames before cursor were missed: send a gap event first
	gapAt  uint64   // set by read: the position before the first frame it returned
	batch  [][]byte // reused by read
}

// position is a parsed SSE id: a ring's generation and a slot count.
type position struct {
	gen, pos uint64
}

// parsePosition parses a Last-Event-ID this hub wrote ("<gen>-<pos>").
func parsePosition(s string) (position, bool) {
	g, p, ok := strings.Cut(s, "-")
	if !ok {
		return position{}, false
	}
	gen, err1 := strconv.ParseUint(g, 10, 64)
	pos, err2 := strconv.ParseUint(p, 10, 64)
	return position{gen, pos}, err1 == nil && err2 == nil
}

// appendPosition appends the SSE id of a position.
func appendPosition(dst []byte, gen, pos uint64) []byte {
	dst = strconv.AppendUint(dst, gen, 10)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, pos, 10)
}

// subscribe starts player's subscription to hunt h from address addr: at
// the hunt's next frame, or, when from is set, after it (exactly, while it
// is still in the ring; else with gap set). It fails with
// errTooManySubscribers, errTooManyStreams or errFeedClosed.
func (h *hub) subscribe(hu *hunt.Hunt, player hunt.PlayerID, addr string, from *position) (*subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.closed {
		return nil, errFeedClosed
	}
	if h.count.Load() >= int64(h.max) {
		return nil, errTooManySubscribers
	}
	if h.mu.players[player] >= h.perPlayerMax {
		return nil, fmt.Errorf("%w: this player has %d open streams", errTooManyStreams, h.perPlayerMax)
	}
	if h.mu.addrs[addr] >= h.perAddrMax {
		return nil, fmt.Errorf("%w: this client address has %d open streams", errTooManyStreams, h.perAddrMax)
	}
	r := h.mu.rings[hu.ID]
	if r == nil {
		r = &ring{id: hu.ID, gen: rand.Uint64() >> 1, buf: make([]frame, h.lagMax), wake: make(chan struct{})}
		h.mu.rings[hu.ID] = r
		h.rings.Store(int64(len(h.mu.rings)))
	}
	r.named.Store(hu.FeedShowsPlayerIDs)
	r.subs++
	h.count.Add(1)
	h.mu.players[player]++
	h.mu.addrs[addr]++
	if !h.mu.rendering {
		h.mu.rendering = true
		go h.render()
	}
	sub := &subscription{id: hu.ID, player: player, addr: addr, ring: r}
	r.mu.Lock()
	sub.cursor = r.reserved
	if from != nil {
		oldest := r.next - min(r.next, uint64(len(r.buf)))
		switch {
		case from.gen != r.gen || from.pos > r.reserved:
			// Another ring's position (a restart, another node, an
			// expired ring): what it missed is unknown; go on from now.
			sub.gap = true
		case from.pos < oldest:
			// The ring moved past it: send what the ring still holds.
			sub.cursor, sub.gap = oldest, true
		default:
			sub.cursor = from.pos
		}
	}
	r.mu.Unlock()
	return sub, nil
}

// unsubscribe ends a subscription; a ring without subscribers is kept for
// retain (render frees it later).
func (h *hub) unsubscribe(sub *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sub.ring == nil {
		return
	}
	sub.ring.subs--
	if sub.ring.subs == 0 {
		sub.ring.idleSince = h.now()
	}
	sub.ring = nil
	if h.mu.players[sub.player]--; h.mu.players[sub.player] <= 0 {
		delete(h.mu.players, sub.player)
	}
	if h.mu.addrs[sub.addr]--; h.mu.addrs[sub.addr] <= 0 {
		delete(h.mu.addrs, sub.addr)
	}
	h.count.Add(-1)
}

// subscribers is the number of open subscriptions.
func (h *hub) subscribers() int { return int(h.count.Load()) }

// setNamed records whether a hunt's frames show player ids, for a ring that
// exists (a new ring reads it from the hunt at subscribe).
func (h *hub) setNamed(id hunt.HuntID, named bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if r := h.mu.rings[id]; r != nil {
		r.named.Store(named)
	}
}

// poke tells render to look at the queue.
func (h *hub) poke() {
	select {
	case h.pending <- struct{}{}:
	default:
	}
}

// Committed implements engine.Sink: it queues one frame per ClaimCompleted
// of a hunt that has a ring, whatever its number of subscribers; render
// renders it.
func (h *hub) Committed(_ geo.Partition, batch []hunt.Event) {
	if h.rings.Load() == 0 {
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
		if len(h.q.items) < feedQueueLenMax {
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
// and frees rings idle for longer than retain, until the hub is closed, or
// until no ring is left and nothing is queued.
func (h *hub) render() {
	tidy := time.NewTicker(max(h.retain/4, 10*time.Millisecond))
	defer tidy.Stop()
	p := pseudonymizer{mac: hmac.New(sha256.New, h.pseudoKey)}
	for {
		select {
		case <-h.done:
			return
		case <-h.pending:
		case <-tidy.C:
		}
		h.q.Lock()
		batch := h.q.items
		h.q.items = h.spare
		h.q.Unlock()
		for i := range batch {
			f := &batch[i]
			player := string(f.ev.Player)
			if !f.ring.named.Load() {
				player = p.of(f.ev.Hunt, f.ev.Player)
			}
			var owner hunt.PlayerID
			if f.ev.Outcome != hunt.Granted {
				owner = f.ev.Player
			}
			b := appendClaimFrame(make([]byte, 0, 320), f.ring.gen, f.slot+1, &f.ev, player)
			f.ring.put(f.slot, frame{b: b, owner: owner})
			*f = queuedFrame{} // keep no ring or strings alive
		}
		h.spare = batch[:0]
		if h.tidy() {
			return
		}
	}
}

// tidy frees the rings idle for longer than retain, and reports, and
// records, that render may end: no ring left and nothing queued. A later
// subscribe starts a new render.
func (h *hub) tidy() bool {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, r := range h.mu.rings {
		if r.subs == 0 && now.Sub(r.idleSince) >= h.retain {
			delete(h.mu.rings, id)
		}
	}
	h.rings.Store(int64(len(h.mu.rings)))
	h.q.Lock()
	empty := len(h.q.items) == 0
	h.q.Unlock()
	if len(h.mu.rings) != 0 || !empty {
		return false
	}
	h.mu.rendering = false
	return true
}

// pseudonymizer computes the public feed's player pseudonyms: the first
// pseudonymLen bytes of HMAC-SHA256(key, hunt 0x00 player), hex. They are
// stable within a hunt (and across restarts, for one secret), differ
// between hunts, and cannot be turned back into the id without the key.
// Owned by one goroutine.
type pseudonymizer struct {
	mac hash.Hash
	sum []byte
}

// pseudonymLen: 6 bytes (48 bits). Among 100,000 players of one hunt, two
// share a pseudonym with probability ~2e-5.
const pseudonymLen = 6

func (p *pseudonymizer) of(h hunt.HuntID, player hunt.PlayerID) string {
	p.mac.Reset()
	p.mac.Write([]byte(h))
	p.mac.Write([]byte{0})
	p.mac.Write([]byte(player))
	p.sum = p.mac.Sum(p.sum[:0])
	return "anon-" + hex.EncodeToString(p.sum[:pseudonymLen])
}

// put stores the frame of slot; slots between the last one stored and this
// one were lost (dropped from a full queue) and are left empty.
func (r *ring) put(slot uint64, f frame) {
	r.mu.Lock()
	n := uint64(len(r.buf))
	from := r.next
	if slot-from > n {
		from = slot - n
	}
	for s := from; s < slot; s++ {
		r.buf[s%n] = frame{}
	}
	r.buf[slot%n] = f
	r.next = slot + 1
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

// read returns the frames after the subscription's cursor that its player
// may see (valid until the next read), and a channel closed when more
// arrive. gap reports that frames were lost before the ones returned (the
// caller sends a gap event first); behind, that the subscriber fell further
// behind than the ring (the caller disconnects it).
func (s *subscription) read() (frames [][]byte, wake <-chan struct{}, gap, behind bool) {
	r := s.ring
	s.batch = s.batch[:0]
	gap, s.gap = s.gap, false
	r.mu.Lock()
	defer r.mu.Unlock()
	n := uint64(len(r.buf))
	if r.next-min(r.next, s.cursor) > n {
		return nil, r.wake, gap, true
	}
	for ; s.cursor < r.next; s.cursor++ {
		f := &r.buf[s.cursor%n]
		switch {
		case f.b == nil: // lost
			if len(s.batch) > 0 {
				return s.batch, r.wake, gap, false // the gap comes before the next read's frames
			}
			gap = true
		case f.owner == "" || f.owner == s.player:
			if len(s.batch) == 0 {
				s.gapAt = s.cursor
			}
			s.batch = append(s.batch, f.b)
		}
	}
	if len(s.batch) == 0 {
		s.gapAt = s.cursor
	}
	return s.batch, r.wake, gap, false
}

// position returns the SSE id of the subscription's cursor.
func (s *subscription) position(dst []byte) []byte {
	return appendPosition(dst, s.ring.gen, s.cursor)
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

// events answers GET /v1/hunts/{hunt}/events with Server-Sent Events: the
// hunt's claim decisions from now on (or from Last-Event-ID), as `event:
// claim` frames (see hub for who sees what and the ids), an `event: gap`
// when frames were missed, and a comment every HeartbeatEvery so proxies and
// clients see a live connection. The first block carries the stream's
// position as its id, so a client that saw no frame yet also resumes
// exactly.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	player, err := s.auth.player(r)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	var from *position
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		p, ok := parsePosition(v)
		if !ok {
			s.writeError(w, r, hunt.Invalid("Last-Event-ID", "must be an id this feed sent (<generation>-<position>)"), nil)
			return
		}
		from = &p
	}
	hctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	h, err := s.huntOf(r.WithContext(hctx))
	cancel()
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	sub, err := s.feed.subscribe(&h, player, ipKey(clientIP(r, s.cfg.TrustedProxies)), from)
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
	// An id-only block sets the client's last event id without an event.
	hello := append([]byte("retry: 2000\nid: "), sub.position(nil)...)
	if !write(append(hello, "\n: connected\n\n"...)) {
		return
	}
	beat := time.NewTicker(s.cfg.HeartbeatEvery)
	defer beat.Stop()
	var gapBuf []byte
	for {
		frames, wake, gap, behind := sub.read()
		if behind {
			s.log.Info("sse subscriber dropped: it fell behind", "hunt", h.ID, "frames_max", s.cfg.SubscriberLagMax)
			return
		}
		if gap || len(frames) > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
			if gap {
				s.feedGaps.Inc()
				gapBuf = appendGapFrame(gapBuf[:0], sub)
				if _, err := w.Write(gapBuf); err != nil {
					return
				}
			}
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

// appendGapFrame appends an `event: gap` frame: frames were missed before
// the ones that follow it. Its id is the position before the first of them
// (the read's gapAt), so a client that reconnects right after it is not
// told of the same gap twice.
func appendGapFrame(dst []byte, sub *subscription) []byte {
	dst = append(dst, "id: "...)
	dst = appendPosition(dst, sub.ring.gen, sub.gapAt)
	return append(dst, "\nevent: gap\ndata: {\"detail\":\"events of this hunt were missed here; read the leaderboard or the wallet for the current state\"}\n\n"...)
}

package httpapi

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// stream is an open SSE response read line by line on its own goroutine.
type stream struct {
	lines chan string // closed at EOF
	body  interface{ Close() error }
	all   struct {
		sync.Mutex
		lines []string // every line read so far
	}
}

func (e *testEnv) openStream(huntID, tok string) (*stream, resp) {
	e.t.Helper()
	return e.openStreamFrom(huntID, tok, "")
}

// openStreamFrom opens a stream with Last-Event-ID lastID (none if empty).
func (e *testEnv) openStreamFrom(huntID, tok, lastID string) (*stream, resp) {
	e.t.Helper()
	hr, _ := http.NewRequest("GET", e.srv.URL+"/v1/hunts/"+huntID+"/events", nil)
	hr.Header.Set("Authorization", "Bearer "+tok)
	if lastID != "" {
		hr.Header.Set("Last-Event-ID", lastID)
	}
	// A client without a whole-request timeout: the stream is long-lived.
	res, err := (&http.Client{Transport: e.client.Transport}).Do(hr)
	if err != nil {
		e.t.Fatalf("GET events: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		var b strings.Builder
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			b.WriteString(sc.Text())
		}
		res.Body.Close()
		return nil, resp{status: res.StatusCode, header: res.Header, body: []byte(b.String())}
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		e.t.Fatalf("events Content-Type = %q; want text/event-stream", ct)
	}
	s := &stream{lines: make(chan string, 1024), body: res.Body}
	s.all.lines = []string{}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			s.all.Lock()
			s.all.lines = append(s.all.lines, sc.Text())
			s.all.Unlock()
			s.lines <- sc.Text()
		}
	}()
	e.t.Cleanup(func() { res.Body.Close() })
	return s, resp{status: res.StatusCode, header: res.Header}
}

// next returns the next line that satisfies match, failing after 20 s or at EOF.
func (s *stream) next(t testing.TB, what string, match func(string) bool) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				t.Fatalf("stream ended while waiting for %s", what)
			}
			if match(l) {
				return l
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// frame reads the next claim frame: its id and its data.
func (s *stream) frame(t testing.TB) (id string, data map[string]any) {
	t.Helper()
	id, event, data := s.event(t)
	if event != "claim" {
		t.Fatalf("event %s %q %v; want a claim", id, event, data)
	}
	return id, data
}

// event reads the next event (a block with an event line): its id, its
// type and its data. An id-only block (the stream's first) is skipped.
func (s *stream) event(t testing.TB) (id, event string, data map[string]any) {
	t.Helper()
	for {
		id = strings.TrimPrefix(s.next(t, "an id line", func(l string) bool { return strings.HasPrefix(l, "id: ") }), "id: ")
		l := s.next(t, "the line after the id", func(string) bool { return true })
		if strings.HasPrefix(l, ":") {
			continue // the first block: its id and a comment
		}
		event, ok := strings.CutPrefix(l, "event: ")
		if !ok {
			t.Fatalf("line after id = %q; want an event line", l)
		}
		l = s.next(t, "the data line", func(string) bool { return true })
		if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "data: ")), &data); err != nil {
			t.Fatalf("data line %q: %v", l, err)
		}
		return id, event, data
	}
}

// position reads the stream's first block and returns its id.
func (s *stream) position(t testing.TB) string {
	t.Helper()
	return strings.TrimPrefix(s.next(t, "the first id line", func(l string) bool { return strings.HasPrefix(l, "id: ") }), "id: ")
}

// text is every line read so far, joined.
func (s *stream) text() string {
	s.all.Lock()
	defer s.all.Unlock()
	return strings.Join(s.all.lines, "\n")
}

// TestEventsReceiveClaims: a subscriber gets the grants of its hunt (and not
// another hunt's), heartbeats, and the end of the stream at shutdown.
// The server's ReadTimeout and WriteTimeout are short, and the stream outlives them.
func TestEventsReceiveClaims(t *testing.T) {
	const ioTimeout = 200 * time.Millisecond
	e := newEnv(t, envOption{ioTimeout: ioTimeout, api: func(c *Config) { c.HeartbeatEvery = 20 * time.Millisecond }})
	s := numSpot(0, 1)
	e.basicHunt(s)
	e.putHunt("other", `{"name":"Other"}`)
	e.importSpots("other", s)
	tok := e.token("watcher")
	st, _ := e.openStream("h1", tok)
	st.next(t, "the connected comment", func(l string) bool { return l == ": connected" })
	st.next(t, "a heartbeat", func(l string) bool { return l == ": heartbeat" })
	waitFor(t, "one subscriber", func() bool { return e.api.feed.subscribers() == 1 })

	// Outlive the server's ReadTimeout and WriteTimeout:
	// the stream must not be cut at the server's request deadlines. This
	// waits for time itself to pass, which is what is under test.
	<-time.After(3 * ioTimeout)
	// The server closes idle keep-alive connections after its (short)
	// ReadTimeout; a claim sent on one as it closes would fail with EOF.
	e.client.Transport.(*http.Transport).CloseIdleConnections()

	mustStatus(t, "claim in the other hunt", e.claim(e.token("x"), "other", s.id, e.key(), s.lat, s.lon), http.StatusCreated)
	mustStatus(t, "winning claim", e.claim(e.token("p1"), "h1", s.id, e.key(), s.lat, s.lon), http.StatusCreated)
	lost := e.claim(e.token("p2"), "h1", s.id, e.key(), s.lat, s.lon)
	checkProblem(t, "losing claim", lost, http.StatusConflict, "sold_out")
	id, data := st.frame(t)
	if data["hunt"] != "h1" || data["outcome"] != "granted" || data["claim_id"] == id {
		t.Fatalf("frame %s = %v; want hunt h1, outcome granted, a claim_id apart from the id", id, data)
	}
	for _, k := range []string{"player", "hotspot", "tickets_left", "epoch", "at", "points", "claim_id"} {
		if _, ok := data[k]; !ok {
			t.Fatalf("frame %v lacks %s", data, k)
		}
	}
	e.api.EndStreams()
	for range st.lines { // drains to EOF; fails by the test's timeout if it never ends
	}
	waitFor(t, "no subscribers", func() bool { return e.api.feed.subscribers() == 0 })
	_, r := e.openStream("h1", tok)
	checkProblem(t, "events after EndStreams", r, http.StatusServiceUnavailable, "shutting_down")
}

// TestEventsSubscriberCap: beyond SubscribersMax, 503 with Retry-After.
func TestEventsSubscriberCap(t *testing.T) {
	e := newEnv(t, envOption{api: func(c *Config) { c.SubscribersMax = 1 }})
	e.basicHunt(numSpot(0, 1))
	tok := e.token("w")
	st, _ := e.openStream("h1", tok)
	st.next(t, "the connected comment", func(l string) bool { return l == ": connected" })
	_, r := e.openStream("h1", tok)
	checkProblem(t, "second subscriber", r, http.StatusServiceUnavailable, "too_many_subscribers")
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After")
	}
}

// blockingWriter is a ResponseWriter whose writes block until release is
// closed: a subscriber whose connection does not drain.
type blockingWriter struct {
	header  http.Header
	release chan struct{}
	mu      sync.Mutex
	written strings.Builder
}

func (w *blockingWriter) Header() http.Header { return w.header }
func (w *blockingWriter) WriteHeader(int)     {}
func (w *blockingWriter) Flush()              {}
func (w *blockingWriter) Write(b []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written.Write(b)
}

// TestEventsSlowSubscriberDropped: a subscriber that does not read is
// disconnected once its buffer is full, and claims never wait for it.
func TestEventsSlowSubscriberDropped(t *testing.T) {
	e := newEnv(t, envOption{api: func(c *Config) { c.SubscriberLagMax = 2 }})
	s := numSpot(0, 100)
	e.basicHunt(s)
	w := &blockingWriter{header: http.Header{}, release: make(chan struct{})}
	r := httptest.NewRequest("GET", "/v1/hunts/h1/events", nil)
	r.Header.Set("Authorization", "Bearer "+e.token("slow"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.api.Handler().ServeHTTP(w, r)
	}()
	waitFor(t, "the slow subscriber", func() bool { return e.api.feed.subscribers() == 1 })
	// Its handler is stuck in its first write; five claims overrun the
	// hunt's two-frame ring. Every claim is answered all the same.
	for i := 0; i < 5; i++ {
		mustStatus(t, "claim past a stuck subscriber", e.claim(e.token("p"+string(rune('a'+i))), "h1", s.id, e.key(), s.lat, s.lon), http.StatusCreated)
	}
	close(w.release)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("the dropped subscriber's handler did not return")
	}
	if n := e.api.feed.subscribers(); n != 0 {
		t.Fatalf("subscribers after the drop = %d; want 0", n)
	}
}

// testHub is a hub with generous per-player and per-address caps.
func testHub(subscribersMax, lagMax int) *hub {
	return newHub(hubConfig{subscribersMax: subscribersMax, lagMax: lagMax, perPlayerMax: 1 << 20, perAddrMax: 1 << 20,
		retain: time.Minute, secret: []byte("0123456789abcdef0123456789abcdef")})
}

// hubSubscribe subscribes player "w<i>" to hunt id from a test address.
func hubSubscribe(h *hub, id hunt.HuntID, i int) (*subscription, error) {
	return h.subscribe(&hunt.Hunt{ID: id}, hunt.PlayerID("w"+strconv.Itoa(i)), "test", nil)
}

// readFrames reads from sub until it has n frames or is behind, waiting
// (bounded) for the hub's goroutine to render them.
func readFrames(t *testing.T, sub *subscription, n int) (frames [][]byte, behind bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		fs, wake, gap, b := sub.read()
		frames = append(frames, fs...)
		if b || gap || len(frames) >= n {
			return frames, b || gap
		}
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("timed out waiting for %d frames; read %q", n, frames)
		}
	}
}

// TestHubFanOut drives the hub alone: every subscriber of a hunt reads the
// same frames in order, other hunts and spends are skipped, and a
// subscriber that falls further behind than the ring is told so.
func TestHubFanOut(t *testing.T) {
	h := testHub(1000, 2)
	subs := make([]*subscription, 500)
	for i := range subs {
		var err error
		if subs[i], err = hubSubscribe(h, "h1", i); err != nil {
			t.Fatalf("subscribe %d: %v", i, err)
		}
	}
	other, _ := hubSubscribe(h, "h2", 0)
	claim := func(seq hunt.Seq) hunt.Event {
		return hunt.Event{Kind: hunt.KindClaimCompleted, Outcome: hunt.Granted, Hunt: "h1", Player: "p", Epoch: hunt.Epoch{Partition: 1, Seq: seq}}
	}
	h.Committed(geo.Partition(1), []hunt.Event{
		claim(1),
		{Kind: hunt.KindSpendCompleted, Outcome: hunt.Spent, Player: "p", Epoch: hunt.Epoch{Partition: 1, Seq: 2}},
		claim(3),
	})
	for i, sub := range subs[:len(subs)-1] {
		frames, behind := readFrames(t, sub, 2)
		if behind || len(frames) != 2 || !strings.Contains(string(frames[0]), `"claim_id":"1.1"`) || !strings.Contains(string(frames[1]), `"claim_id":"1.3"`) {
			t.Fatalf("subscriber %d read %q, behind %v; want frames 1.1 and 1.3", i, frames, behind)
		}
	}
	if frames, _, _, behind := other.read(); behind || len(frames) != 0 {
		t.Fatalf("subscriber of h2 read %q, behind %v; want nothing", frames, behind)
	}
	// The last subscriber has not read; a third frame overwrites 1.1 in the ring of two.
	_, wake, _, _ := subs[0].read()
	h.Committed(geo.Partition(1), []hunt.Event{claim(4)})
	select {
	case <-wake:
	case <-time.After(20 * time.Second):
		t.Fatalf("a new frame did not wake the readers")
	}
	if _, _, _, behind := subs[len(subs)-1].read(); !behind {
		t.Fatalf("a subscriber 3 frames behind a ring of 2 is not behind")
	}
	if frames, _, _, behind := subs[0].read(); behind || len(frames) != 1 {
		t.Fatalf("an up-to-date subscriber read %q, behind %v; want the one new frame", frames, behind)
	}
	// A subscriber sees only what is committed after it subscribed.
	late, _ := hubSubscribe(h, "h1", 0)
	h.Committed(geo.Partition(1), []hunt.Event{claim(5)})
	if frames, behind := readFrames(t, late, 1); behind || len(frames) != 1 || !strings.Contains(string(frames[0]), `"claim_id":"1.5"`) {
		t.Fatalf("a late subscriber read %q, behind %v; want frame 1.5 only", frames, behind)
	}
	h.unsubscribe(late)
	for _, sub := range subs {
		h.unsubscribe(sub)
	}
	h.unsubscribe(subs[0]) // twice is harmless
	if n := h.subscribers(); n != 1 || len(h.mu.players) != 1 || len(h.mu.addrs) != 1 {
		t.Fatalf("after unsubscribing h1: %d subscribers, %d players, %d addresses; want 1, 1 and 1", n, len(h.mu.players), len(h.mu.addrs))
	}
	h.close()
	if _, err := hubSubscribe(h, "h1", 0); err == nil {
		t.Fatalf("subscribe after close succeeded")
	}
}

// TestHubQueueFull: a frame that does not fit the queue between Committed
// and the hub's goroutine is lost without Committed waiting, and a
// subscriber that would have seen it is disconnected (behind) instead of
// silently missing it; one that subscribed after the loss reads on.
func TestHubQueueFull(t *testing.T) {
	h := testHub(10, 4)
	defer h.close()
	early, _ := hubSubscribe(h, "h1", 0)
	other, _ := hubSubscribe(h, "h2", 1)
	claim := func(id hunt.HuntID, seq hunt.Seq) hunt.Event {
		return hunt.Event{Kind: hunt.KindClaimCompleted, Outcome: hunt.Granted, Hunt: id, Player: "p", Epoch: hunt.Epoch{Partition: 1, Seq: seq}}
	}
	// Fill the queue without waking the goroutine (Committed wakes it only
	// when it queued something): frames of h2, reserved as Committed would.
	h.mu.RLock()
	r2 := h.mu.rings["h2"]
	h.mu.RUnlock()
	h.q.Lock()
	for len(h.q.items) < feedQueueLenMax {
		r2.mu.Lock()
		slot := r2.reserved
		r2.reserved++
		r2.mu.Unlock()
		h.q.items = append(h.q.items, queuedFrame{ring: r2, slot: slot, ev: claim("h2", hunt.Seq(slot+1))})
	}
	h.q.Unlock()
	h.Committed(geo.Partition(1), []hunt.Event{claim("h1", 1)}) // lost: the queue is full
	h.poke()
	waitFor(t, "the goroutine to take the queue", func() bool {
		h.q.Lock()
		defer h.q.Unlock()
		return len(h.q.items) == 0
	})
	late, _ := hubSubscribe(h, "h1", 2)
	h.Committed(geo.Partition(1), []hunt.Event{claim("h1", 2)})
	if frames, behind := readFrames(t, late, 1); behind || len(frames) != 1 || !strings.Contains(string(frames[0]), `"claim_id":"1.2"`) {
		t.Fatalf("the late subscriber read %q, behind %v; want frame 1.2", frames, behind)
	}
	if frames, _, gap, _ := early.read(); !gap || len(frames) != 1 || !strings.Contains(string(frames[0]), `"claim_id":"1.2"`) {
		t.Fatalf("the early subscriber read %q, gap %v; want a gap (frame 1.1 was lost), then frame 1.2", frames, gap)
	}
	r2.mu.Lock()
	rendered := r2.next
	r2.mu.Unlock()
	if rendered != feedQueueLenMax {
		t.Fatalf("h2's ring holds %d frames rendered; want the %d queued", rendered, feedQueueLenMax)
	}
	h.unsubscribe(other)
}

// FuzzLastEventID: the Last-Event-ID parser never panics, and what it
// accepts prints back to an id that parses to the same position.
func FuzzLastEventID(f *testing.F) {
	for _, s := range []string{"4611686018427387904-42", "0-0", "1-18446744073709551615", "17.4242", "-", "-1", "1-", "1--2", "+1-2", " 1-2", "18446744073709551616-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := parsePosition(s)
		if !ok {
			return
		}
		again, ok := parsePosition(string(appendPosition(nil, p.gen, p.pos)))
		if !ok || again != p {
			t.Fatalf("parsePosition(%q) = %v, then %v, %v after printing; want the same position", s, p, again, ok)
		}
	})
}

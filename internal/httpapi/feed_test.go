package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
}

func (e *testEnv) openStream(huntID, tok string) (*stream, resp) {
	e.t.Helper()
	hr, _ := http.NewRequest("GET", e.srv.URL+"/v1/hunts/"+huntID+"/events", nil)
	hr.Header.Set("Authorization", "Bearer "+tok)
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
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
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
	id = strings.TrimPrefix(s.next(t, "an id line", func(l string) bool { return strings.HasPrefix(l, "id: ") }), "id: ")
	if l := s.next(t, "the event line", func(string) bool { return true }); l != "event: claim" {
		t.Fatalf("line after id = %q; want event: claim", l)
	}
	l := s.next(t, "the data line", func(string) bool { return true })
	if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "data: ")), &data); err != nil {
		t.Fatalf("data line %q: %v", l, err)
	}
	return id, data
}

// TestEventsReceiveClaims: a subscriber gets the ClaimCompleted of its hunt
// (and not another hunt's), heartbeats, and the end of the stream at shutdown.
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

	mustStatus(t, "claim in the other hunt", e.claim(e.token("x"), "other", s.id, e.key(), s.lat, s.lon), http.StatusCreated)
	mustStatus(t, "winning claim", e.claim(e.token("p1"), "h1", s.id, e.key(), s.lat, s.lon), http.StatusCreated)
	lost := e.claim(e.token("p2"), "h1", s.id, e.key(), s.lat, s.lon)
	checkProblem(t, "losing claim", lost, http.StatusConflict, "sold_out")
	for _, want := range []struct{ player, outcome string }{{"p1", "granted"}, {"p2", "sold_out"}} {
		id, data := st.frame(t)
		if data["hunt"] != "h1" || data["player"] != want.player || data["outcome"] != want.outcome || data["claim_id"] != id {
			t.Fatalf("frame %s = %v; want hunt h1, player %s, outcome %s, claim_id = id", id, data, want.player, want.outcome)
		}
		for _, k := range []string{"hotspot", "tickets_left", "epoch", "at", "points"} {
			if _, ok := data[k]; !ok {
				t.Fatalf("frame %v lacks %s", data, k)
			}
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
	e := newEnv(t, envOption{api: func(c *Config) { c.SubscriberBufLen = 2 }})
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
	// Its handler is stuck in its first write; five claims overflow its
	// two-frame buffer. Every claim is answered all the same.
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

// TestHubNeverBlocks drives the hub alone: Committed returns with full
// subscribers, drops exactly those, and skips other hunts and spends.
func TestHubNeverBlocks(t *testing.T) {
	h := newHub(10, 1)
	slow, err := h.subscribe("h1")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := h.subscribe("h2")
	batch := []hunt.Event{
		{Kind: hunt.KindClaimCompleted, Outcome: hunt.Granted, Hunt: "h1", Player: "p", Epoch: hunt.Epoch{Partition: 1, Seq: 1}},
		{Kind: hunt.KindSpendCompleted, Outcome: hunt.Spent, Player: "p", Epoch: hunt.Epoch{Partition: 1, Seq: 2}},
		{Kind: hunt.KindClaimCompleted, Outcome: hunt.SoldOut, Hunt: "h1", Player: "q", Epoch: hunt.Epoch{Partition: 1, Seq: 3}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	returned := make(chan struct{})
	go func() { h.Committed(geo.Partition(1), batch); close(returned) }()
	select {
	case <-returned:
	case <-ctx.Done():
		t.Fatalf("Committed blocked on a full subscriber")
	}
	select {
	case <-slow.dropped:
	default:
		t.Fatalf("subscriber with a full buffer was not dropped")
	}
	if got := string(<-slow.frames); !strings.HasPrefix(got, "id: 1.1\nevent: claim\n") {
		t.Fatalf("first frame = %q; want the grant 1.1", got)
	}
	select {
	case <-other.dropped:
		t.Fatalf("subscriber of another hunt was dropped")
	case f := <-other.frames:
		t.Fatalf("subscriber of h2 got a frame of h1: %q", f)
	default:
	}
	h.unsubscribe(slow)
	h.unsubscribe(slow) // twice is harmless
	if n := h.subscribers(); n != 1 {
		t.Fatalf("subscribers = %d; want 1", n)
	}
}

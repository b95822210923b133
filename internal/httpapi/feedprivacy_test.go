package httpapi

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestEventsStreamsPerPlayer: a player's fifth stream is refused with 429
// too_many_streams and Retry-After, another player is not affected, and a
// closed stream frees its place.
func TestEventsStreamsPerPlayer(t *testing.T) {
	// The read limit is off: this is about the stream cap alone.
	e := newEnv(t, envOption{api: func(c *Config) { c.ReadRate = LimitOff }})
	e.basicHunt(numSpot(0, 1))
	tok := e.token("hog")
	var open []*stream
	for i := range StreamsPerPlayerMaxDefault {
		st, r := e.openStream("h1", tok)
		if st == nil {
			t.Fatalf("stream %d of one player = %v; want 200", i+1, r)
		}
		st.next(t, "the connected comment", func(l string) bool { return l == ": connected" })
		open = append(open, st)
	}
	// The hog keeps trying: every further stream is refused at once.
	const tries = 1000
	start := time.Now()
	for range tries {
		_, r := e.openStream("h1", tok)
		checkProblem(t, "a player's fifth stream", r, http.StatusTooManyRequests, "too_many_streams")
		if r.header.Get("Retry-After") == "" {
			t.Fatalf("429 too_many_streams without Retry-After")
		}
	}
	t.Logf("one player: %d streams open, %d more tries answered 429 too_many_streams in %v; %d subscribers",
		StreamsPerPlayerMaxDefault, tries, time.Since(start).Round(time.Millisecond), e.api.feed.subscribers())
	if st, r := e.openStream("h1", e.token("other")); st == nil {
		t.Fatalf("another player's stream = %v; want 200", r)
	}
	open[0].body.Close()
	waitFor(t, "the closed stream to be released", func() bool {
		return e.api.feed.subscribers() == StreamsPerPlayerMaxDefault
	})
	if st, r := e.openStream("h1", tok); st == nil {
		t.Fatalf("a stream after one was closed = %v; want 200", r)
	}
}

// TestEventsStreamsPerAddress: past the per-address cap, streams of any
// player from that address are refused.
func TestEventsStreamsPerAddress(t *testing.T) {
	e := newEnv(t, envOption{api: func(c *Config) { c.StreamsPerAddressMax = 2 }})
	e.basicHunt(numSpot(0, 1))
	for _, p := range []string{"a", "b"} {
		if st, r := e.openStream("h1", e.token(p)); st == nil {
			t.Fatalf("stream of %s = %v; want 200", p, r)
		}
	}
	_, r := e.openStream("h1", e.token("c"))
	checkProblem(t, "a third stream from one address", r, http.StatusTooManyRequests, "too_many_streams")
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("429 too_many_streams without Retry-After")
	}
}

// near returns hotspot i of a cluster a few metres apart, so one player may
// claim several at once under the default speed limit.
func near(i int, tickets int64) spot {
	return spot{id: "n" + string(rune('a'+i)), lat: parisLat + float64(i)*0.00001, lon: parisLon, tickets: tickets, reward: 1, points: 1}
}

// TestEventsPseudonyms: by default another player's stream shows a
// pseudonym, never the player's id; the pseudonym is the same for the
// player's next grant in the hunt and differs in another hunt; a hunt that
// opts in shows ids.
func TestEventsPseudonyms(t *testing.T) {
	e := newEnv(t, envOption{})
	const who = "alice-real-id"
	e.putHunt("h1", `{"name":"private"}`)
	e.importSpots("h1", near(0, 5), near(1, 5))
	e.putHunt("h2", `{"name":"private too"}`)
	e.importSpots("h2", near(0, 5))
	e.putHunt("named", `{"name":"named","feed_shows_player_ids":true}`)
	e.importSpots("named", near(0, 5))
	watcher := e.token("watcher")
	st1, _ := e.openStream("h1", watcher)
	st2, _ := e.openStream("h2", watcher)
	stn, _ := e.openStream("named", watcher)
	waitFor(t, "three subscribers", func() bool { return e.api.feed.subscribers() == 3 })

	alice := e.token(who)
	for _, c := range []struct {
		hunt string
		s    spot
	}{{"h1", near(0, 5)}, {"h1", near(1, 5)}, {"h2", near(0, 5)}, {"named", near(0, 5)}} {
		mustStatus(t, "grant in "+c.hunt, e.claim(alice, c.hunt, c.s.id, e.key(), c.s.lat, c.s.lon), http.StatusCreated)
	}
	_, a := st1.frame(t)
	_, b := st1.frame(t)
	_, c := st2.frame(t)
	_, d := stn.frame(t)
	p1, _ := a["player"].(string)
	if !strings.HasPrefix(p1, "anon-") || len(p1) != len("anon-")+2*pseudonymLen {
		t.Fatalf("player in the feed = %q; want anon- and %d hex digits", p1, 2*pseudonymLen)
	}
	if b["player"] != p1 {
		t.Fatalf("the second grant's player = %v; want the same pseudonym %s within a hunt", b["player"], p1)
	}
	if c["player"] == p1 {
		t.Fatalf("the pseudonym %s is the same in another hunt; want one per hunt", p1)
	}
	if d["player"] != who {
		t.Fatalf("player in the opted-in hunt's feed = %v; want %s", d["player"], who)
	}
	for name, st := range map[string]*stream{"h1": st1, "h2": st2} {
		if txt := st.text(); strings.Contains(txt, who) {
			t.Fatalf("the %s stream shows the player id:\n%s", name, txt)
		}
	}
	// Turning the option off applies to open streams.
	e.putHunt("named", `{"name":"named"}`)
	e.importSpots("named", near(1, 5))
	mustStatus(t, "grant after the opt-out", e.claim(alice, "named", near(1, 5).id, e.key(), near(1, 5).lat, near(1, 5).lon), http.StatusCreated)
	if _, f := stn.frame(t); f["player"] == who {
		t.Fatalf("after the hunt turned ids off, the feed shows %v", f["player"])
	}
}

// TestEventsRefusalsPrivate: a refusal reaches only its own player's
// streams; everyone sees the grants around it.
func TestEventsRefusalsPrivate(t *testing.T) {
	e := newEnv(t, envOption{})
	one, other := numSpot(0, 1), numSpot(1, 5)
	e.basicHunt(one, other)
	watch, _ := e.openStream("h1", e.token("watcher"))
	loser := e.token("loser")
	own, _ := e.openStream("h1", loser)
	waitFor(t, "two subscribers", func() bool { return e.api.feed.subscribers() == 2 })

	mustStatus(t, "winner", e.claim(e.token("winner"), "h1", one.id, e.key(), one.lat, one.lon), http.StatusCreated)
	checkProblem(t, "loser", e.claim(loser, "h1", one.id, e.key(), one.lat, one.lon), http.StatusConflict, "sold_out")
	checkProblem(t, "too far", e.claim(loser, "h1", other.id, e.key(), other.lat+0.01, other.lon), http.StatusUnprocessableEntity, "too_far")
	mustStatus(t, "third", e.claim(e.token("third"), "h1", other.id, e.key(), other.lat, other.lon), http.StatusCreated)

	var seen []string
	for range 2 {
		_, f := watch.frame(t)
		seen = append(seen, f["outcome"].(string))
	}
	if seen[0] != "granted" || seen[1] != "granted" || strings.Contains(watch.text(), "sold_out") || strings.Contains(watch.text(), "too_far") {
		t.Fatalf("another player's stream read %v:\n%s\nwant the two grants only", seen, watch.text())
	}
	seen = seen[:0]
	for range 4 {
		_, f := own.frame(t)
		seen = append(seen, f["outcome"].(string))
	}
	if strings.Join(seen, ",") != "granted,sold_out,too_far,granted" {
		t.Fatalf("the refused player's stream read %v; want granted,sold_out,too_far,granted", seen)
	}
}

// TestEventsResume: a client that reconnects with Last-Event-ID gets exactly
// the frames it missed (none twice, none lost), also when it had seen no
// frame; an id older than the buffer, or of another feed, gets a gap event
// first; a malformed one is 400.
func TestEventsResume(t *testing.T) {
	e := newEnv(t, envOption{api: func(c *Config) { c.SubscriberLagMax = 4 }})
	s := numSpot(0, 1000)
	e.basicHunt(s)
	tok := e.token("reader")
	n := 0
	claim := func() string {
		n++
		r := e.claim(e.token("c"+string(rune('a'+n))), "h1", s.id, e.key(), s.lat, s.lon)
		mustStatus(t, "claim", r, http.StatusCreated)
		return decodeJSON(t, r)["claim_id"].(string)
	}
	reconnect := func(st *stream, last string) *stream {
		t.Helper()
		st.body.Close()
		waitFor(t, "the stream to close", func() bool { return e.api.feed.subscribers() == 0 })
		nst, r := e.openStreamFrom("h1", tok, last)
		if nst == nil {
			t.Fatalf("resume from %s = %v; want 200", last, r)
		}
		return nst
	}
	expect := func(st *stream, what string, want ...string) string {
		t.Helper()
		var id string
		for i, w := range want {
			var data map[string]any
			id, data = st.frame(t)
			if data["claim_id"] != w {
				t.Fatalf("%s: frame %d has claim %v; want %s", what, i, data["claim_id"], w)
			}
		}
		return id
	}

	// Seen nothing yet: resume from the stream's first id.
	st, _ := e.openStream("h1", tok)
	pos := st.position(t)
	missed := []string{claim(), claim()}
	st = reconnect(st, pos)
	last := expect(st, "resume before any frame", missed...)

	// Seen some: resume after the last one.
	missed = []string{claim(), claim(), claim()}
	st = reconnect(st, last)
	last = expect(st, "resume after a frame", missed...)
	after := claim()
	expect(st, "the next live frame", after)

	// Too old: six claims overrun the buffer of four.
	st.body.Close()
	waitFor(t, "the stream to close", func() bool { return e.api.feed.subscribers() == 0 })
	for range 6 {
		missed = append(missed, claim())
	}
	st, _ = e.openStreamFrom("h1", tok, last)
	if id, ev, _ := st.event(t); ev != "gap" {
		t.Fatalf("resume from an id older than the buffer: first event %s %s; want gap", id, ev)
	}
	expect(st, "after the gap", missed[len(missed)-4:]...)

	// Another feed's id (another server, or before a restart).
	other, _ := e.openStreamFrom("h1", e.token("other"), "12345-6")
	if id, ev, _ := other.event(t); ev != "gap" {
		t.Fatalf("resume from another feed's id: first event %s %s; want gap", id, ev)
	}
	now := claim()
	expect(other, "after the gap", now)

	_, r := e.openStreamFrom("h1", e.token("bad"), "17.4242")
	checkProblem(t, "a malformed Last-Event-ID", r, http.StatusBadRequest, "invalid_request")
}

// TestHubRingRetained: a hunt's ring outlives its last subscriber until
// FeedRetain has passed, then is freed (and render ends).
func TestHubRingRetained(t *testing.T) {
	clock := make(chan time.Time, 1) // holds the fake time
	clock <- time.Unix(1000, 0)
	now := func() time.Time { t := <-clock; clock <- t; return t }
	h := newHub(hubConfig{subscribersMax: 10, lagMax: 4, perPlayerMax: 4, perAddrMax: 4, retain: time.Minute, now: now,
		secret: []byte("0123456789abcdef0123456789abcdef")})
	defer h.close()
	sub, _ := hubSubscribe(h, "h1", 0)
	h.unsubscribe(sub)
	h.poke()
	if h.rings.Load() != 1 {
		t.Fatalf("rings right after the last subscriber left = %d; want 1 (retained)", h.rings.Load())
	}
	<-clock
	clock <- time.Unix(1000, 0).Add(time.Minute)
	h.poke()
	waitFor(t, "the idle ring to be freed and render to end", func() bool {
		h.mu.RLock()
		defer h.mu.RUnlock()
		return h.rings.Load() == 0 && !h.mu.rendering
	})
}

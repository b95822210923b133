package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/cairnhq/cairn/internal/hunt"
)

// Scenario names.
const (
	ScenarioHunt    = "hunt"
	ScenarioStorm   = "storm"
	ScenarioUniform = "uniform"
	ScenarioReplay  = "replay"
)

// Scenarios lists every scenario, for flag help and validation.
var Scenarios = []string{ScenarioHunt, ScenarioStorm, ScenarioUniform, ScenarioReplay}

// Geography. The hunt happens around a city centre; uniform spreads over a
// continent so its hotspots land in many geohash prefixes (partitions).
const (
	cityLat, cityLon = 48.8566, 2.3522 // Paris
	citySigmaM       = 2500            // Rayleigh scale of hotspot distance from the centre
	metresPerDegLat  = 111_320.0
	claimJitterM     = 10  // a player claims within this of the hotspot (radius is 50 m)
	earlyMinM        = 150 // an early claim (still walking) is this far or more: too_far
	earlyMaxM        = 300
	continentLat0    = 36.0 // uniform: lat in [36, 60], lon in [-10, 30]
	continentLatSpan = 24.0
	continentLon0    = -10.0
	continentLonSpan = 40.0
	zipfS            = 1.1 // hotspot popularity skew in the hunt scenario
	retryRingLen     = 1024
	uniformTickets   = 1_000_000
)

// The hunt scenario's request mix, as cumulative shares of requests.
const (
	shareClaim      = 0.70
	shareRetry      = shareClaim + 0.05 // a client retry re-sending a recent claim's key
	shareTop        = shareRetry + 0.05
	shareAround     = shareTop + 0.05
	shareAroundAfer = shareAround + 0.05 // around=me&after=<the player's last consistency token>
	shareWallet     = shareAroundAfer + 0.07
	shareEarlyClaim = 0.02 // of claims: sent before arriving, answered too_far
)

// world is what every planner shares: the run's hunt, players and keys.
type world struct {
	hunt    hunt.HuntID
	nonce   string // makes this run's player ids and keys unique
	tokens  []string
	auth    [][]byte // per player: the pre-rendered Authorization header line
	players []hunt.PlayerID
	// wantTokens: claims keep their answer's consistency token (the hunt's
	// after= reads use it); other scenarios skip it.
	wantTokens bool
	// lastToken is each player's latest consistency token (for after= reads);
	// written by answers on many goroutines.
	lastToken []atomic.Pointer[string]
}

// setTokens sets the players' tokens and their pre-rendered header lines.
func (w *world) setTokens(tokens []string) {
	w.tokens = tokens
	w.auth = make([][]byte, len(tokens))
	for i, t := range tokens {
		w.auth[i] = authBlock(t)
	}
}

func (w *world) claimPath(spot hunt.HotspotID) string {
	return "/v1/hunts/" + string(w.hunt) + "/hotspots/" + string(spot) + "/claim"
}

func (w *world) key(i int64) string { return w.nonce + "-" + strconv.FormatInt(i, 10) }

// claim builds a claim of hotspot spot by player p from lat/lon.
func (w *world) claim(i int64, p int, spot hunt.HotspotID, lat, lon float64) *request {
	rq := &request{
		kind:   opClaim,
		method: http.MethodPost,
		path:   w.claimPath(spot),
		auth:   w.auth[p],
		key:    w.key(i),
		body:   appendClaimBody(make([]byte, 0, claimBodyCap), lat, lon),
	}
	if w.wantTokens {
		rq.done = func(status int, a *answer) {
			if a.ConsistencyToken != "" {
				tok := a.ConsistencyToken
				w.lastToken[p].Store(&tok)
			}
		}
	}
	return rq
}

func (w *world) spend(i int64, p int, amount int64) *request {
	return &request{
		kind:   opSpend,
		method: http.MethodPost,
		path:   "/v1/wallet/spend",
		auth:   w.auth[p],
		key:    w.key(i),
		body:   []byte(`{"amount":` + strconv.FormatInt(amount, 10) + `,"reason":"cairn load"}`),
	}
}

func (w *world) leaderboard(p int, query string) *request {
	return &request{kind: opLeaderboard, method: http.MethodGet, auth: w.auth[p],
		path: "/v1/hunts/" + string(w.hunt) + "/leaderboard?limit=10" + query}
}

func (w *world) wallet(p int) *request {
	return &request{kind: opWallet, method: http.MethodGet, path: "/v1/wallet", auth: w.auth[p]}
}

// resend is the second copy of a request sent twice: the same key, token and
// body, compared with the first through their shared pair.
func resend(rq *request, kind opKind) *request {
	dup := *rq
	dup.kind = kind
	dup.side = 1
	return &dup
}

// claimBodyCap fits a claim body with full-precision coordinates.
const claimBodyCap = 64

func appendClaimBody(b []byte, lat, lon float64) []byte {
	b = append(b, `{"lat":`...)
	b = strconv.AppendFloat(b, lat, 'f', -1, 64)
	b = append(b, `,"lon":`...)
	b = strconv.AppendFloat(b, lon, 'f', -1, 64)
	return append(b, '}')
}

func appendHotspotJSON(b []byte, s *hunt.Hotspot) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, s.ID...) // hotspot ids are [A-Za-z0-9._:-]: nothing to escape
	b = append(b, `","lat":`...)
	b = strconv.AppendFloat(b, s.Lat, 'f', -1, 64)
	b = append(b, `,"lon":`...)
	b = strconv.AppendFloat(b, s.Lon, 'f', -1, 64)
	b = append(b, `,"tickets":`...)
	b = strconv.AppendInt(b, s.Tickets, 10)
	b = append(b, `,"reward":`...)
	b = strconv.AppendInt(b, s.Reward, 10)
	b = append(b, `,"points":`...)
	b = strconv.AppendInt(b, s.Points, 10)
	return append(b, "}\n"...)
}

// offset moves lat/lon by distM metres in direction angle (radians); a flat
// approximation, exact enough at the few hundred metres it is used for.
func offset(lat, lon, distM, angle float64) (float64, float64) {
	dLat := distM * math.Cos(angle) / metresPerDegLat
	dLon := distM * math.Sin(angle) / (metresPerDegLat * math.Cos(lat*math.Pi/180))
	return lat + dLat, lon + dLon
}

// mix is SplitMix64: uniform scatter for hotspots generated from their index,
// so millions of them never need to be held in memory.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func unit(x uint64) float64 { return float64(x>>11) / (1 << 53) }

// uniformSpot is hotspot i of the uniform and replay scenarios: scattered
// evenly over a continent, with tickets to spare.
func uniformSpot(seed uint64, i int, s *hunt.Hotspot) {
	*s = hunt.Hotspot{
		ID:      hunt.HotspotID("u" + strconv.Itoa(i)),
		Lat:     continentLat0 + continentLatSpan*unit(mix(seed+2*uint64(i))),
		Lon:     continentLon0 + continentLonSpan*unit(mix(seed+2*uint64(i)+1)),
		Tickets: uniformTickets,
		Reward:  1,
		Points:  1,
	}
}

// huntSpots places n hotspots around the city centre (Rayleigh-distributed
// distance, so the centre is dense) with 1..players/20+1 tickets each:
// the popular ones sell out, the tail does not.
func huntSpots(rng *rand.Rand, n, players int) []hunt.Hotspot {
	spots := make([]hunt.Hotspot, n)
	ticketsMax := players/20 + 1
	for i := range spots {
		dist := citySigmaM * math.Sqrt(-2*math.Log(1-rng.Float64()))
		lat, lon := offset(cityLat, cityLon, dist, 2*math.Pi*rng.Float64())
		spots[i] = hunt.Hotspot{
			ID:      hunt.HotspotID("h" + strconv.Itoa(i)),
			Lat:     lat,
			Lon:     lon,
			Tickets: 1 + rng.Int64N(int64(ticketsMax)),
			Reward:  1 + rng.Int64N(10),
			Points:  10 * (1 + rng.Int64N(10)),
		}
	}
	return spots
}

// huntPlanner is the seed's week compressed: players walk between hotspots
// whose popularity is Zipf-skewed, claim where they arrive (a few too early),
// read leaderboards and wallets, spend a little, and retry some claims with
// the same Idempotency-Key.
type huntPlanner struct {
	w     *world
	rng   *rand.Rand
	zipf  *rand.Zipf
	spots []hunt.Hotspot
	rec   *recorder
	ring  []*request // recent claims a client may retry
}

func newHuntPlanner(w *world, rng *rand.Rand, spots []hunt.Hotspot, rec *recorder) *huntPlanner {
	w.wantTokens = true
	return &huntPlanner{w: w, rng: rng, spots: spots, rec: rec,
		zipf: rand.NewZipf(rng, zipfS, 1, uint64(len(spots)-1))}
}

func (h *huntPlanner) next(i int64) *request {
	p := h.rng.IntN(len(h.w.players))
	u := h.rng.Float64()
	switch {
	case u < shareClaim:
		return h.claim(i, p)
	case u < shareRetry:
		if len(h.ring) == 0 {
			return h.claim(i, p)
		}
		j := h.rng.IntN(len(h.ring))
		orig := h.ring[j]
		h.ring[j] = h.ring[len(h.ring)-1]
		h.ring = h.ring[:len(h.ring)-1]
		h.rec.newPair()
		return resend(orig, opRetry)
	case u < shareTop:
		return h.w.leaderboard(p, "")
	case u < shareAround:
		return h.w.leaderboard(p, "&around=me")
	case u < shareAroundAfer:
		if tok := h.w.lastToken[p].Load(); tok != nil {
			return h.w.leaderboard(p, "&around=me&after="+*tok)
		}
		return h.w.leaderboard(p, "&around=me")
	case u < shareWallet:
		return h.w.wallet(p)
	default:
		return h.w.spend(i, p, 1+h.rng.Int64N(5))
	}
}

func (h *huntPlanner) claim(i int64, p int) *request {
	s := &h.spots[h.zipf.Uint64()]
	dist, angle := claimJitterM*h.rng.Float64(), 2*math.Pi*h.rng.Float64()
	if h.rng.Float64() < shareEarlyClaim {
		dist = earlyMinM + (earlyMaxM-earlyMinM)*h.rng.Float64()
	}
	lat, lon := offset(s.Lat, s.Lon, dist, angle)
	rq := h.w.claim(i, p, s.ID, lat, lon)
	rq.pair = &pair{}
	if len(h.ring) < retryRingLen {
		h.ring = append(h.ring, rq)
	} else {
		h.ring[h.rng.IntN(retryRingLen)] = rq
	}
	return rq
}

// uniformPlanner spreads claims evenly over many hotspots with plenty of
// tickets: the ceiling of the claim path, not of one hot partition.
type uniformPlanner struct {
	w      *world
	rng    *rand.Rand
	seed   uint64
	nSpots int
}

func (u *uniformPlanner) next(i int64) *request {
	var s hunt.Hotspot
	uniformSpot(u.seed, u.rng.IntN(u.nSpots), &s)
	return u.w.claim(i, u.rng.IntN(len(u.w.players)), s.ID, s.Lat, s.Lon)
}

// replayPlanner sends every request twice, the copy in the next slot, so the
// two are often in flight together: both answers must be the same decision,
// one of them marked Idempotent-Replayed. One in ten is a spend.
type replayPlanner struct {
	uniformPlanner
	rec  *recorder
	last *request
}

func (r *replayPlanner) next(i int64) *request {
	if i%2 == 1 && r.last != nil {
		dup := resend(r.last, r.last.kind)
		r.last = nil
		return dup
	}
	var rq *request
	if r.rng.IntN(10) == 0 {
		rq = r.w.spend(i, r.rng.IntN(len(r.w.players)), 1)
	} else {
		rq = r.uniformPlanner.next(i)
	}
	rq.pair = &pair{}
	r.last = rq
	r.rec.newPair()
	return rq
}

// StormRound is one round of the storm: K concurrent claims of one
// single-ticket hotspot, of which exactly one must be granted.
type StormRound struct {
	Round    int     `json:"round"`
	Hotspot  string  `json:"hotspot"`
	Claims   int     `json:"claims"`
	Granted  int     `json:"granted"`
	SoldOut  int     `json:"sold_out"`
	Other    int     `json:"other"` // any other answer, errors included
	P99MS    float64 `json:"p99_ms"`
	MaxMS    float64 `json:"max_ms"`
	AllInMS  float64 `json:"all_answered_ms"` // from the start of the round to the last answer
	Verified bool    `json:"exactly_one_granted"`
}

// storm runs rounds of k concurrent claims on a fresh single-ticket hotspot.
// Every claim of a round is built and its goroutine started before a shared
// start signal, and latency counts from that signal.
func storm(ctx context.Context, c *client, rec *recorder, w *world, k, rounds int) ([]StormRound, error) {
	// Open k connections first, so the storm measures claims, not k
	// simultaneous TCP handshakes against the listen backlog.
	warm(c, k)
	var out []StormRound
	for r := 1; r <= rounds && ctx.Err() == nil; r++ {
		id := hunt.HotspotID(fmt.Sprintf("storm-%s-%d", w.nonce, r))
		spot := hunt.Hotspot{ID: id, Lat: cityLat, Lon: cityLon, Tickets: 1, Reward: 10, Points: 10}
		if err := c.importHotspots(ctx, w.hunt, 1, func(_ int, s *hunt.Hotspot) { *s = spot }); err != nil {
			return out, fmt.Errorf("storm round %d: %w", r, err)
		}
		reqs := make([]*request, k)
		for j := range reqs {
			reqs[j] = w.claim(int64(r)*int64(k)+int64(j), j, id, cityLat, cityLon)
		}
		round := StormRound{Round: r, Hotspot: string(id), Claims: k}
		hist := newHist()
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		var at time.Time
		for _, rq := range reqs {
			rec.scheduledOne(true)
			wg.Go(func() {
				<-start
				resp, a := rec.execute(c, rq, at)
				lat := time.Since(at)
				mu.Lock()
				defer mu.Unlock()
				recordUS(hist, lat)
				switch {
				case resp.status == http.StatusCreated && a.Outcome == hunt.Granted.String():
					round.Granted++
				case resp.status == http.StatusConflict && a.Outcome == hunt.SoldOut.String():
					round.SoldOut++
				default:
					round.Other++
				}
			})
		}
		at = time.Now() // written before close(start): the goroutines read it after
		close(start)
		wg.Wait()
		round.AllInMS = ms(time.Since(at))
		round.P99MS = usToMS(hist.ValueAtQuantile(99))
		round.MaxMS = usToMS(hist.Max())
		round.Verified = round.Granted == 1
		if !round.Verified {
			rec.violation(fmt.Sprintf("storm round %d: %d of %d claims on single-ticket hotspot %s granted; want exactly 1",
				r, round.Granted, k, id))
		}
		out = append(out, round)
	}
	return out, nil
}

// warm opens up to n keep-alive connections with concurrent /healthz calls.
func warm(c *client, n int) {
	var wg sync.WaitGroup
	for range n {
		// A failed warm-up is not reported: it shows up in the storm itself.
		wg.Go(func() { c.do(&request{method: http.MethodGet, path: "/healthz"}) })
	}
	wg.Wait()
}

// SSEStats describes the live-feed subscribers of the hunt scenario.
type SSEStats struct {
	Subscribers int     `json:"subscribers"`
	Events      int64   `json:"events"`
	Disconnects int64   `json:"disconnects"` // streams the server ended before the run did (each reopened)
	DelayP50MS  float64 `json:"delay_p50_ms"`
	DelayP99MS  float64 `json:"delay_p99_ms"` // event's decision time to its arrival here
	DelayMaxMS  float64 `json:"delay_max_ms"`
}

// feed counts what the SSE subscribers receive. Safe for concurrent use.
type feed struct {
	mu struct {
		sync.Mutex
		events, disconnects int64
		delay               *hdrhistogram.Histogram
	}
}

func newFeed() *feed {
	f := &feed{}
	f.mu.delay = newHist()
	return f
}

func (f *feed) stats(n int) *SSEStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &SSEStats{Subscribers: n, Events: f.mu.events, Disconnects: f.mu.disconnects,
		DelayP50MS: usToMS(f.mu.delay.ValueAtQuantile(50)), DelayP99MS: usToMS(f.mu.delay.ValueAtQuantile(99)),
		DelayMaxMS: usToMS(f.mu.delay.Max())}
}

// subscribe reads the hunt's event stream until ctx ends. A stream the
// server closes early (it drops subscribers that fall behind) is counted as
// a disconnect and reopened, as a real client would.
func subscribe(ctx context.Context, c *client, rec *recorder, f *feed, w *world, p int) {
	for {
		stream(ctx, c, rec, f, w, p)
		if ctx.Err() != nil {
			return
		}
		f.mu.Lock()
		f.mu.disconnects++
		f.mu.Unlock()
		t := time.NewTimer(sseReconnectWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// sseReconnectWait is the pause before reopening a dropped stream.
const sseReconnectWait = 100 * time.Millisecond

// stream reads one connection to the event stream until it ends.
func stream(ctx context.Context, c *client, rec *recorder, f *feed, w *world, p int) {
	rq := &request{method: http.MethodGet, path: "/v1/hunts/" + string(w.hunt) + "/events", auth: w.auth[p],
		accept: "text/event-stream"}
	status, body, end, err := c.openStream(ctx, rq)
	defer end()
	if err != nil {
		if ctx.Err() == nil {
			rec.error(errSSE, err.Error())
		}
		return
	}
	if status != http.StatusOK {
		rec.error(errSSE, fmt.Sprintf("subscribe: status %d", status))
		return
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data:"))
		if !ok {
			continue
		}
		now := time.Now()
		at, parsed := eventAt(data)
		parsed = parsed && !at.IsZero()
		f.mu.Lock()
		f.mu.events++
		if parsed {
			recordUS(f.mu.delay, now.Sub(at))
		}
		f.mu.Unlock()
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func usToMS(us int64) float64 { return float64(us) / 1000 }

package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want Rate
		ok   bool
	}{
		{"1000", Rate{1000, 1000}, true},
		{"1000:20000", Rate{1000, 20000}, true},
		{"20000:1000", Rate{20000, 1000}, true},
		{"0.5", Rate{0.5, 0.5}, true},
		{" 10 : 20 ", Rate{10, 20}, true},
		{"1000000", Rate{1e6, 1e6}, true},
		{"", Rate{}, false},
		{"0", Rate{}, false},
		{"-5", Rate{}, false},
		{"1000001", Rate{}, false},
		{"NaN", Rate{}, false},
		{"Inf", Rate{}, false},
		{"10:", Rate{}, false},
		{":10", Rate{}, false},
		{"10:0", Rate{}, false},
		{"10:20:30", Rate{}, false},
		{"fast", Rate{}, false},
	}
	for _, tc := range tests {
		got, err := ParseRate(tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if !tc.ok && !errors.Is(err, ErrBadRate) {
			t.Errorf("ParseRate(%q) error = %v; want it to wrap ErrBadRate", tc.in, err)
		}
	}
}

func TestRateCountAndAtConstant(t *testing.T) {
	r := Rate{50, 50}
	const d = 2 * time.Second
	if n := r.Count(d); n != 100 {
		t.Fatalf("Rate{50}.Count(2s) = %d; want 100", n)
	}
	for _, tc := range []struct {
		i    int64
		want time.Duration
	}{{0, 0}, {1, 20 * time.Millisecond}, {50, time.Second}, {99, 1980 * time.Millisecond}, {100, 2 * time.Second}} {
		if got := r.At(tc.i, d); absDur(got-tc.want) > time.Microsecond {
			t.Errorf("Rate{50}.At(%d, 2s) = %v; want %v", tc.i, got, tc.want)
		}
	}
}

// TestRateRamp checks the ramp against its definition: the number sent by
// time t is ∫rate = From·t + (To−From)·t²/(2d).
func TestRateRamp(t *testing.T) {
	for _, r := range []Rate{{1000, 20000}, {20000, 1000}, {100, 101}, {5, 5000}} {
		const d = 10 * time.Second
		n := r.Count(d)
		if want := int64((r.From + r.To) / 2 * 10); n != want {
			t.Errorf("%v.Count(10s) = %d; want %d", r, n, want)
		}
		a := (r.To - r.From) / d.Seconds()
		prev := time.Duration(-1)
		for _, i := range []int64{0, 1, 2, n / 10, n / 3, n / 2, n - 1, n} {
			at := r.At(i, d)
			s := at.Seconds()
			sent := r.From*s + a*s*s/2
			if math.Abs(sent-float64(i)) > 1e-3*max(1, float64(i)*1e-6) && math.Abs(sent-float64(i)) > 1e-3 {
				t.Errorf("%v.At(%d) = %v: N(t) = %.4f; want %d", r, i, at, sent, i)
			}
			if at <= prev {
				t.Errorf("%v.At(%d) = %v after %v; want strictly increasing", r, i, at, prev)
			}
			prev = at
		}
		if got := r.At(n, d); absDur(got-d) > time.Millisecond {
			t.Errorf("%v.At(Count) = %v; want the end of the run, %v", r, got, d)
		}
	}
	// A ramp's instantaneous rate at the start and the end is From and To.
	r := Rate{1000, 20000}
	const d = 10 * time.Second
	early := float64(10) / (r.At(10, d) - r.At(0, d)).Seconds()
	late := float64(10) / (r.At(r.Count(d), d) - r.At(r.Count(d)-10, d)).Seconds()
	if math.Abs(early-1000) > 10 || math.Abs(late-20000) > 100 {
		t.Errorf("ramp 1000:20000: rate at start %.0f, at end %.0f; want ≈1000 and ≈20000", early, late)
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func TestCheckTargetLoopbackGuard(t *testing.T) {
	ok := []string{
		"http://127.0.0.1:8080", "http://127.9.8.7:1", "http://localhost:8080", "http://LOCALHOST",
		"http://[::1]:8080", "https://127.0.0.1", "http://127.0.0.1:8080/", "http://127.0.0.1:8080/prefix/",
	}
	for _, s := range ok {
		if _, err := CheckTarget(s); err != nil {
			t.Errorf("CheckTarget(%q) = %v; want nil", s, err)
		}
	}
	refused := []string{
		"http://10.0.0.1:8080", "http://192.168.1.2", "http://8.8.8.8", "http://example.com",
		"http://localhost.example.com", "http://127.0.0.1.nip.io", "http://[::2]:80", "http://0.0.0.0:8080",
		"http://[::]:8080", "http://128.0.0.1",
	}
	for _, s := range refused {
		if _, err := CheckTarget(s); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("CheckTarget(%q) = %v; want ErrNotLoopback", s, err)
		}
	}
	malformed := []string{"127.0.0.1:8080", "ftp://127.0.0.1", "http://user:pw@127.0.0.1", "http://127.0.0.1/?x=1", "://"}
	for _, s := range malformed {
		if _, err := CheckTarget(s); err == nil {
			t.Errorf("CheckTarget(%q) = nil; want an error", s)
		}
	}
	if u, _ := CheckTarget("http://127.0.0.1:8080/"); u.String() != "http://127.0.0.1:8080" {
		t.Errorf("CheckTarget kept a trailing slash: %q", u.String())
	}
}

// TestDialerRefusesNonLoopback: even when a URL slips through, the dialer's
// Control hook refuses a non-loopback address before connecting.
func TestDialerRefusesNonLoopback(t *testing.T) {
	c := newClient(context.Background(), &url.URL{Scheme: "http", Host: "192.0.2.1:80"}, "", 1, 5*time.Second)
	defer c.close()
	r, _ := c.do(&request{method: http.MethodGet, path: "/"})
	if r.status != 0 || !errors.Is(r.err, ErrNotLoopback) {
		t.Fatalf("send to 192.0.2.1 = status %d, err %v; want ErrNotLoopback", r.status, r.err)
	}
	if err := loopbackOnly("tcp", "127.0.0.1:80", nil); err != nil {
		t.Errorf("loopbackOnly(127.0.0.1:80) = %v; want nil", err)
	}
	if err := loopbackOnly("tcp6", "[::1]:80", nil); err != nil {
		t.Errorf("loopbackOnly([::1]:80) = %v; want nil", err)
	}
}

func TestMintToken(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	tok, err := mintToken([]byte(testSecret), "alice", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.RegisteredClaims
	p := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(func() time.Time { return now.Add(time.Minute) }))
	if _, err := p.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return []byte(testSecret), nil }); err != nil {
		t.Fatalf("parse minted token: %v", err)
	}
	if c.Subject != "alice" || !c.IssuedAt.Equal(now) || !c.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Errorf("claims = sub %q iat %v exp %v; want alice, %v, %v", c.Subject, c.IssuedAt, c.ExpiresAt, now, now.Add(time.Hour))
	}
	if _, err := p.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return []byte("another-secret-xx"), nil }); err == nil {
		t.Error("a token minted with one secret verified with another")
	}
}

func TestLabel(t *testing.T) {
	tests := []struct {
		kind   opKind
		status int
		body   string
		want   string
	}{
		{opClaim, 201, `{"outcome":"granted"}`, "201 granted"},
		{opClaim, 409, `{"type":"https://cairn.dev/problems/sold_out","outcome":"sold_out"}`, "409 sold_out"},
		{opClaim, 422, `{"type":"https://cairn.dev/problems/idempotency_key_reused"}`, "422 idempotency_key_reused"},
		{opClaim, 429, `{"code":"overloaded","type":"https://cairn.dev/problems/x"}`, "429 overloaded"},
		{opLeaderboard, 200, `{"entries":[]}`, "200 leaderboard"},
		{opWallet, 200, `{"balance":3}`, "200 wallet"},
		{opSpend, 201, `{"outcome":"spent"}`, "201 spent"},
		{opClaim, 503, ``, "503 service_unavailable"},
		{opClaim, 404, `{"type":"about:blank"}`, "404 not_found"},
	}
	for _, tc := range tests {
		var a answer
		scanAnswer([]byte(tc.body), &a, false)
		if got := label(tc.kind, tc.status, &a); got != tc.want {
			t.Errorf("label(%s, %d, %s) = %q; want %q", opNames[tc.kind], tc.status, tc.body, got, tc.want)
		}
	}
}

func TestPairCompare(t *testing.T) {
	granted := []byte(`{"outcome":"granted","claim_id":"1.1"}`)
	tests := []struct {
		name         string
		a, b         response
		decision     bool
		wantCompared bool
		wantMismatch string // substring; "" = none
	}{
		{"first then replay", response{status: 201, body: granted}, response{status: 201, body: granted, replayed: true}, true, true, ""},
		{"replay overtook first", response{status: 201, body: granted, replayed: true}, response{status: 201, body: granted}, true, true, ""},
		{"neither replayed", response{status: 201, body: granted}, response{status: 201, body: granted}, true, true, "on both answers"},
		{"both replayed", response{status: 201, body: granted, replayed: true}, response{status: 201, body: granted, replayed: true}, true, true, "on both answers"},
		{"status differs", response{status: 201, body: granted}, response{status: 409, body: granted, replayed: true}, true, true, "status 201 then 409"},
		{"body differs", response{status: 201, body: granted}, response{status: 201, body: []byte(`{"outcome":"granted","claim_id":"1.2"}`), replayed: true}, true, true, "bodies differ"},
		{"first overloaded", response{status: 429}, response{status: 201, body: granted}, true, false, ""},
		{"second unavailable", response{status: 201, body: granted}, response{status: 503}, true, false, ""},
		{"transport error", response{err: errors.New("reset")}, response{status: 201, body: granted}, true, false, ""},
		{"same 400, not a decision", response{status: 400, body: []byte(`{}`)}, response{status: 400, body: []byte(`{}`)}, false, true, ""},
	}
	for _, tc := range tests {
		var p pair
		if c, m := p.record(0, &tc.a, tc.decision); c || m != "" {
			t.Errorf("%s: first record = %v, %q; want nothing to compare yet", tc.name, c, m)
		}
		c, m := p.record(1, &tc.b, tc.decision)
		if c != tc.wantCompared || (tc.wantMismatch == "") != (m == "") || !strings.Contains(m, tc.wantMismatch) {
			t.Errorf("%s: record = %v, %q; want compared %v, mismatch containing %q", tc.name, c, m, tc.wantCompared, tc.wantMismatch)
		}
	}
}

func TestSummarize(t *testing.T) {
	h := newHist()
	for i := 1; i <= 1000; i++ {
		recordUS(h, time.Duration(i)*time.Millisecond) // 1..1000 ms
	}
	recordUS(h, 2*time.Hour) // clamped to the top, not dropped
	recordUS(h, 0)           // clamped to 1 µs
	l := summarize(h)
	near := func(got, want float64) bool { return math.Abs(got-want) <= want*0.002+0.01 }
	if l.Count != 1002 {
		t.Errorf("Count = %d; want 1002", l.Count)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", l.P50MS, 500}, {"p90", l.P90MS, 900}, {"p99", l.P99MS, 990}, {"p99.9", l.P999MS, 1000}, {"max", l.MaxMS, 60_000}} {
		if !near(c.got, c.want) {
			t.Errorf("%s = %.3f ms; want ≈ %.0f", c.name, c.got, c.want)
		}
	}
	if wantMean := (500.5*1000 + 60_000) / 1002; !near(l.MeanMS, wantMean) {
		t.Errorf("mean = %.3f ms; want ≈ %.3f", l.MeanMS, wantMean)
	}
	if (summarize(newHist()) != Latency{}) {
		t.Errorf("summarize(empty) = %+v; want zero", summarize(newHist()))
	}
}

func testWorld(players int) *world {
	w := &world{hunt: "hx", nonce: "n1"}
	var tokens []string
	for i := range players {
		w.players = append(w.players, hunt.PlayerID("p"+string(rune('a'+i))))
		tokens = append(tokens, "tok-"+string(rune('a'+i)))
	}
	w.setTokens(tokens)
	w.lastToken = make([]atomic.Pointer[string], players)
	return w
}

// TestHuntPlannerMix plans 20,000 requests and checks the mix, that claims
// come from where the players are, and that a retry repeats a recent claim.
func TestHuntPlannerMix(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	w := testWorld(20)
	spots := huntSpots(rng, 300, 1000)
	rec := newRecorder()
	p := newHuntPlanner(w, rng, spots, rec)
	byID := map[hunt.HotspotID]*hunt.Hotspot{}
	for i := range spots {
		byID[spots[i].ID] = &spots[i]
		if err := spots[i].Normalize(); err != nil {
			t.Fatalf("hotspot %d does not normalize: %v", i, err)
		}
		if d := geo.DistanceM(cityLat, cityLon, spots[i].Lat, spots[i].Lon); d > 20_000 {
			t.Errorf("hotspot %s is %.0f m from the centre; want a city", spots[i].ID, d)
		}
	}
	const n = 20_000
	counts := map[string]int{}
	claimsBySpot := map[hunt.HotspotID]int{}
	keys := map[string]bool{}
	var far, after int
	for i := range int64(n) {
		rq := p.next(i)
		name := opNames[rq.kind]
		switch rq.kind {
		case opClaim:
			if keys[rq.key] {
				t.Fatalf("claim %d reuses key %q", i, rq.key)
			}
			keys[rq.key] = true
			id := hunt.HotspotID(strings.Split(rq.path, "/")[5])
			claimsBySpot[id]++
			var b struct{ Lat, Lon float64 }
			if err := json.Unmarshal(rq.body, &b); err != nil {
				t.Fatalf("claim body %s: %v", rq.body, err)
			}
			s := byID[id]
			if geo.DistanceM(b.Lat, b.Lon, s.Lat, s.Lon) > hunt.ClaimRadiusMDefault {
				far++
			}
			if rq.pair == nil || rq.method != http.MethodPost || len(rq.auth) == 0 {
				t.Fatalf("claim %d = %+v; want a POST with a token and a pair", i, rq)
			}
		case opRetry:
			if !keys[rq.key] || rq.pair == nil || rq.side != 1 {
				t.Fatalf("retry %d = key %q side %d; want a recent claim's key on side 1", i, rq.key, rq.side)
			}
		case opLeaderboard:
			if strings.Contains(rq.path, "after=") {
				after++
			}
		case opSpend:
			if rq.key == "" || keys[rq.key] {
				t.Fatalf("spend %d key %q; want a fresh key", i, rq.key)
			}
			keys[rq.key] = true
		}
		counts[name]++
		if rq.kind == opClaim && i%3 == 0 {
			// Answers arrive for some claims: later after= reads use them.
			rq.done(201, &answer{ConsistencyToken: "1.2"})
		}
	}
	share := func(k string) float64 { return float64(counts[k]) / n }
	for _, c := range []struct {
		kind string
		want float64
	}{{"claim", 0.70}, {"retry", 0.05}, {"leaderboard", 0.15}, {"wallet", 0.07}, {"spend", 0.03}} {
		if got := share(c.kind); math.Abs(got-c.want) > 0.015 {
			t.Errorf("share of %s = %.3f; want ≈ %.2f", c.kind, got, c.want)
		}
	}
	if got := float64(far) / float64(counts["claim"]); math.Abs(got-shareEarlyClaim) > 0.01 {
		t.Errorf("share of claims from too far = %.3f; want ≈ %.2f", got, shareEarlyClaim)
	}
	if after == 0 {
		t.Error("no leaderboard read used after=; want some once claims have tokens")
	}
	// Zipf: the most popular hotspot gets a large share, most get few.
	top := claimsBySpot["h0"]
	if float64(top)/float64(counts["claim"]) < 0.10 {
		t.Errorf("hotspot h0 got %d of %d claims; want ≥ 10%% (Zipf skew)", top, counts["claim"])
	}
	if len(claimsBySpot) < 100 {
		t.Errorf("claims touched %d hotspots; want the tail too (≥ 100 of 300)", len(claimsBySpot))
	}
	if rec.replayStats().Pairs != int64(counts["retry"]) {
		t.Errorf("pairs = %d; want one per retry (%d)", rec.replayStats().Pairs, counts["retry"])
	}
}

func TestUniformSpotsAndReplayPlanner(t *testing.T) {
	var s, s2 hunt.Hotspot
	for i := range 1000 {
		uniformSpot(42, i, &s)
		uniformSpot(42, i, &s2)
		if s != s2 {
			t.Fatalf("uniformSpot(42, %d) is not deterministic: %+v vs %+v", i, s, s2)
		}
		if s.Lat < continentLat0 || s.Lat >= continentLat0+continentLatSpan || s.Lon < continentLon0 || s.Lon >= continentLon0+continentLonSpan {
			t.Fatalf("uniformSpot(42, %d) = %v,%v; want inside the continent box", i, s.Lat, s.Lon)
		}
		line := appendHotspotJSON(nil, &s)
		var back hunt.Hotspot
		dec := json.NewDecoder(strings.NewReader(string(line)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&back); err != nil || back.ID != s.ID || back.Lat != s.Lat || back.Lon != s.Lon || back.Tickets != s.Tickets {
			t.Fatalf("appendHotspotJSON(%+v) = %s; decodes to %+v, %v", s, line, back, err)
		}
		if err := back.Normalize(); err != nil {
			t.Fatalf("hotspot line %s does not normalize: %v", line, err)
		}
	}
	// Spread: the hotspots land in many geohash prefixes, i.e. partitions.
	parts := map[geo.Partition]bool{}
	for i := range 1000 {
		uniformSpot(7, i, &s)
		_ = s.Normalize()
		parts[geo.PartitionOf(s.Geohash, geo.PrefixLenDefault, geo.PartitionsDefault)] = true
	}
	if len(parts) < 50 {
		t.Errorf("1000 uniform hotspots hit %d of 64 partitions; want ≥ 50", len(parts))
	}

	rec := newRecorder()
	w := testWorld(5)
	p := &replayPlanner{uniformPlanner: uniformPlanner{w: w, rng: rand.New(rand.NewPCG(3, 4)), seed: 9, nSpots: 100}, rec: rec}
	spends := 0
	for i := int64(0); i < 200; i += 2 {
		a, b := p.next(i), p.next(i+1)
		if a.pair == nil || a.pair != b.pair || a.side != 0 || b.side != 1 {
			t.Fatalf("requests %d and %d are not one pair (sides %d, %d)", i, i+1, a.side, b.side)
		}
		if a.key != b.key || string(a.body) != string(b.body) || a.path != b.path || !bytes.Equal(a.auth, b.auth) || a.kind != b.kind {
			t.Fatalf("replay %d differs from its original: %+v vs %+v", i, a, b)
		}
		if a.kind == opSpend {
			spends++
		}
	}
	if spends == 0 || spends > 25 {
		t.Errorf("%d of 100 replayed requests are spends; want about 10", spends)
	}
	if got := rec.replayStats().Pairs; got != 100 {
		t.Errorf("pairs = %d; want 100", got)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Target: "http://127.0.0.1:1", Scenario: ScenarioHunt, Rate: Rate{10, 10}, Duration: time.Second,
		Secret: []byte("s"), AdminToken: "a"}
	good.setDefaults()
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v; want nil", err)
	}
	bad := Config{Target: "http://10.1.1.1", Scenario: "chaos", Rate: Rate{0, 5}, Duration: 2 * time.Hour,
		Players: -1, Hotspots: -1, Concurrency: StormConcurrencyMax + 1, Rounds: -1, Hunt: "bad id",
		Subscribers: -1, InFlightMax: -1, RequestTimeout: -time.Second}
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate(bad) = nil; want every problem")
	}
	for _, want := range []string{"loopback", "scenario", "rate", "duration", "players", "hotspots", "concurrency",
		"rounds", "hunt", "subscribers", "in-flight", "timeout", "secret", "admin token"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(bad) = %v; want it to mention %q", err, want)
		}
	}
	if !errors.Is(err, ErrNotLoopback) {
		t.Errorf("Validate(bad) does not wrap ErrNotLoopback: %v", err)
	}
	huge := good
	huge.Rate, huge.Duration = Rate{RateMax, RateMax}, DurationMax
	if err := huge.Validate(); err == nil || !strings.Contains(err.Error(), "requests: at most") {
		t.Errorf("Validate(1M/s for 1h) = %v; want the request count refused", err)
	}
}

// TestAuditAnswers decodes every shape GET /v1/admin/audit can answer.
func TestAuditAnswers(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string // substring; "" = no error
		wantOK  bool
		verdict string // prefix
	}{
		{"ok", 200, `{"ok":true,"events":3,"checked":["I1","I7"],"violations":[],"violation_count":0}`, "", true, "verify: OK: 3 events"},
		{"violated", 409, `{"type":"https://cairn.dev/problems/invariant_violated","status":409,"report":{"ok":false,"violations":[{"invariant":"I2","detail":"x"}],"violation_count":1}}`, "", false, "verify: FAIL: I2 x (1 violation)"},
		{"409 says ok", 409, `{"report":{"ok":true,"violations":[],"violation_count":0}}`, "", false, "verify: FAIL: ? status 409"},
		{"200 not ok", 200, `{"ok":false}`, "", false, "verify: FAIL: ? status 200"},
		{"409 without report", 409, `{"type":"x"}`, "without a report", false, ""},
		{"garbage", 200, `<html>`, "does not decode", false, ""},
		{"not configured", 404, `{"type":"https://cairn.dev/problems/not_found"}`, "status 404", false, ""},
		{"server error", 500, `{}`, "status 500", false, ""},
	}
	for _, tc := range tests {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/admin/audit" || r.Header.Get("Authorization") != "Bearer "+testAdmin {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.WriteHeader(tc.status)
			w.Write([]byte(tc.body))
		}))
		rep, err := Audit(context.Background(), srv.URL, testAdmin)
		srv.Close()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: Audit() = %+v, %v; want an error containing %q", tc.name, rep, err, tc.wantErr)
			}
			continue
		}
		if err != nil || rep.OK != tc.wantOK || !strings.HasPrefix(rep.Verdict(), tc.verdict) {
			t.Errorf("%s: Audit() = ok %v verdict %q, %v; want ok %v, verdict prefix %q", tc.name, rep.OK, rep.Verdict(), err, tc.wantOK, tc.verdict)
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestProgressLine: every progressPeriod the live line is rewritten in place with
// elapsed time, requests sent, rate, p99 so far and errors.
func TestProgressLine(t *testing.T) {
	rec := newRecorder()
	for range 3 {
		rec.scheduledOne(true)
	}
	rec.mu.Lock()
	recordUS(rec.mu.all, 7*time.Millisecond)
	rec.mu.Unlock()
	rec.error(errTimeout, "slow")
	var out lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); showProgress(ctx, &out, rec) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "errors") {
		if time.Now().After(deadline) {
			t.Fatal("no progress line within 10 s")
		}
		time.Sleep(10 * time.Millisecond) // polling the buffer
	}
	cancel()
	<-done
	line := out.String()
	for _, want := range []string{"\r\x1b[2K", "sent 3", "req/s", "p99 7.0", "errors 1"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q lacks %q", line, want)
		}
	}
}

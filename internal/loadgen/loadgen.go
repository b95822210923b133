// Package loadgen is `cairn load`: an open-loop load generator for a Cairn
// server, with the scenarios that judge it (hunt, storm, uniform, replay).
//
// Open loop: request i is due at start + Rate.At(i); the scheduler fires it
// at that time whatever the server is doing, and its latency counts from
// that scheduled time, not from when it was sent. A slow server therefore
// cannot slow the clock down and hide its own latency (no coordinated
// omission). In-flight requests are bounded (Config.InFlightMax); a request
// due when every slot is busy is not delayed but counted as a "client
// saturated" error. Latencies go into HDR histograms (1 µs..60 s, 3
// significant digits).
//
// Every run is bounded: by count (the schedule's integral over Duration),
// by time (Duration plus RequestTimeout for the last answers, plus setup and
// the final audit), and by target: only loopback hosts are accepted, and the
// dialer re-checks the resolved address. Every run ends with the server's
// audit (GET /v1/admin/audit); its verdict is part of the Result.
//
// The package talks to Cairn only over HTTP; it mints player tokens itself
// (HS256, CAIRN_SECRET) and sets its hunt up with the admin token. The load
// itself goes through a client of its own (rawhttp.go: keep-alive
// connections, requests pre-rendered into a reused buffer, only the status
// line, a few headers and the needed body members parsed), so that the
// generator costs well under the server it measures on a shared machine;
// setup, the audit and the SSE streams use net/http.
//
// Concurrency: Run owns every goroutine it starts (one per request in
// flight, SSE subscribers, the progress line) and waits for all of them
// before it returns. Planners run on the scheduler goroutine only.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/hunt"
)

// Limits on a run. Units are in the names.
const (
	DurationMax             = time.Hour
	RequestsMax             = 100_000_000
	PlayersMax              = 1_000_000
	HotspotsMax             = 20_000_000 // streamed: the uniform and replay scenarios hold none in memory
	HuntHotspotsMax         = 1_000_000  // the hunt scenario keeps its hotspots in memory
	StormConcurrencyMax     = 100_000
	RoundsMax               = 1000
	SubscribersMax          = 1000
	InFlightLimit           = 100_000
	RequestTimeoutMax       = 5 * time.Minute
	InFlightMaxDefault      = 4096
	RequestTimeoutDefault   = 10 * time.Second
	PlayersDefault          = 10_000
	HuntHotspotsDefault     = 300
	SpreadHotspotsDefault   = 10_000
	StormConcurrencyDefault = 200
	StormRoundsDefault      = 5
	progressPeriod          = 250 * time.Millisecond
	tokenTTLMargin          = time.Hour
	tokenTTLStormPerStep    = time.Minute
)

// Config describes one run. Zero values take the defaults above, except
// Subscribers (0 = none), Seed (0 = from the clock) and Progress (nil = none).
type Config struct {
	Target   string // base URL of the server, e.g. http://127.0.0.1:8080; loopback only
	Scenario string // one of Scenarios
	Rate     Rate   // not used by storm
	Duration time.Duration
	Players  int
	Hotspots int // hunt: around the city; uniform/replay: spread over a continent; storm: unused
	// Concurrency is the storm's K: concurrent claims per round.
	Concurrency int
	Rounds      int
	Hunt        hunt.HuntID // "" = "load-<unix seconds>"
	Subscribers int         // hunt: SSE subscribers reading the live feed
	InFlightMax int         // bound on requests in flight (storm raises it to Concurrency)
	// RequestTimeout bounds one exchange; a request that takes longer is a "timeout" error.
	RequestTimeout time.Duration
	Secret         []byte // CAIRN_SECRET: signs player tokens
	AdminToken     string // CAIRN_ADMIN_TOKEN: setup and audit
	Seed           uint64
	Progress       io.Writer // where the live line goes, four times a second (a terminal)
	Clock          func() time.Time
}

func (c *Config) setDefaults() {
	if c.Players == 0 {
		c.Players = PlayersDefault
	}
	if c.Hotspots == 0 {
		c.Hotspots = SpreadHotspotsDefault
		if c.Scenario == ScenarioHunt {
			c.Hotspots = HuntHotspotsDefault
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = StormConcurrencyDefault
	}
	if c.Rounds == 0 {
		c.Rounds = StormRoundsDefault
	}
	if c.InFlightMax == 0 {
		c.InFlightMax = InFlightMaxDefault
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = RequestTimeoutDefault
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}

// Validate checks every field (after defaults) and joins every problem.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, err := CheckTarget(c.Target); err != nil {
		errs = append(errs, err)
	}
	if !slices.Contains(Scenarios, c.Scenario) {
		bad("scenario %q: want one of %v", c.Scenario, Scenarios)
	}
	if c.Scenario != ScenarioStorm {
		if err := c.Rate.Validate(); err != nil {
			bad("rate %v: %w", c.Rate, err)
		}
		if c.Duration <= 0 || c.Duration > DurationMax {
			bad("duration %v: must be in (0, %v]", c.Duration, DurationMax)
		}
		if n := c.Rate.Count(c.Duration); n > RequestsMax {
			bad("rate %v for %v is %d requests: at most %d", c.Rate, c.Duration, n, RequestsMax)
		}
	}
	if c.Players < 1 || c.Players > PlayersMax {
		bad("players %d: must be in [1, %d]", c.Players, PlayersMax)
	}
	hsMax := HotspotsMax
	if c.Scenario == ScenarioHunt {
		hsMax = HuntHotspotsMax
	}
	if c.Hotspots < 1 || c.Hotspots > hsMax {
		bad("hotspots %d: must be in [1, %d] for scenario %s", c.Hotspots, hsMax, c.Scenario)
	}
	if c.Concurrency < 1 || c.Concurrency > StormConcurrencyMax {
		bad("concurrency %d: must be in [1, %d]", c.Concurrency, StormConcurrencyMax)
	}
	if c.Rounds < 1 || c.Rounds > RoundsMax {
		bad("rounds %d: must be in [1, %d]", c.Rounds, RoundsMax)
	}
	if c.Hunt != "" && !hunt.ValidID(string(c.Hunt)) {
		bad("hunt %q: must be 1-%d characters of letters, digits, '.', '_', ':' or '-'", c.Hunt, hunt.IDLenMax)
	}
	if c.Subscribers < 0 || c.Subscribers > SubscribersMax {
		bad("subscribers %d: must be in [0, %d]", c.Subscribers, SubscribersMax)
	}
	if c.InFlightMax < 1 || c.InFlightMax > InFlightLimit {
		bad("in-flight max %d: must be in [1, %d]", c.InFlightMax, InFlightLimit)
	}
	if c.RequestTimeout <= 0 || c.RequestTimeout > RequestTimeoutMax {
		bad("request timeout %v: must be in (0, %v]", c.RequestTimeout, RequestTimeoutMax)
	}
	if len(c.Secret) == 0 {
		bad("no secret to sign player tokens (CAIRN_SECRET)")
	}
	if c.AdminToken == "" {
		bad("no admin token (CAIRN_ADMIN_TOKEN)")
	}
	return errors.Join(errs...)
}

// Run sets up a hunt on the target, runs the scenario, audits the server and
// returns what it measured. An error means the run could not happen (bad
// config, setup failed); a run that found violations returns a Result with
// OK false, and a run whose audit could not be fetched has Verify.Error set.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, _ := CheckTarget(cfg.Target)
	now := cfg.Clock()
	seed := cfg.Seed
	if seed == 0 {
		seed = uint64(now.UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, mix(seed)))
	huntID := cfg.Hunt
	if huntID == "" {
		huntID = hunt.HuntID("load-" + strconv.FormatInt(now.Unix(), 10))
	}
	slots := cfg.InFlightMax
	players := cfg.Players
	ttl := cfg.Duration + tokenTTLMargin
	if cfg.Scenario == ScenarioStorm {
		slots = max(slots, cfg.Concurrency)
		players = max(players, cfg.Concurrency)
		ttl = tokenTTLMargin + time.Duration(cfg.Rounds)*tokenTTLStormPerStep
	}
	c := newClient(ctx, u, cfg.AdminToken, slots, cfg.RequestTimeout)
	defer c.close()

	w := &world{hunt: huntID, nonce: strconv.FormatInt(now.UnixNano(), 36)}
	w.players = make([]hunt.PlayerID, players)
	tokens := make([]string, players)
	w.lastToken = make([]atomic.Pointer[string], players)
	for i := range w.players {
		w.players[i] = hunt.PlayerID("ld" + w.nonce + "-p" + strconv.Itoa(i))
		tok, err := mintToken(cfg.Secret, w.players[i], now, ttl)
		if err != nil {
			return nil, fmt.Errorf("mint token: %w", err)
		}
		tokens[i] = tok
	}
	w.setTokens(tokens)

	res := &Result{Scenario: cfg.Scenario, Params: paramsOf(&cfg, huntID, seed)}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	setupCtx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	if err := c.putHunt(setupCtx, huntID, "cairn load "+cfg.Scenario); err != nil {
		return nil, fmt.Errorf("create hunt %s: %w", huntID, err)
	}
	var spots []hunt.Hotspot
	t0 := time.Now()
	switch cfg.Scenario {
	case ScenarioHunt:
		spots = huntSpots(rng, cfg.Hotspots, players)
		err := c.importHotspots(setupCtx, huntID, len(spots), func(i int, s *hunt.Hotspot) { *s = spots[i] })
		if err != nil {
			return nil, err
		}
		res.Setup = &Setup{Hotspots: len(spots), ImportMS: ms(time.Since(t0))}
	case ScenarioUniform, ScenarioReplay:
		err := c.importHotspots(setupCtx, huntID, cfg.Hotspots, func(i int, s *hunt.Hotspot) { uniformSpot(seed, i, s) })
		if err != nil {
			return nil, err
		}
		res.Setup = &Setup{Hotspots: cfg.Hotspots, ImportMS: ms(time.Since(t0))}
	}

	rec := newRecorder()
	runCtx, stopRun := context.WithCancel(ctx)
	var bg sync.WaitGroup
	if cfg.Progress != nil {
		bg.Go(func() { showProgress(runCtx, cfg.Progress, rec) })
	}
	var f *feed
	if cfg.Scenario == ScenarioHunt && cfg.Subscribers > 0 {
		f = newFeed()
		for s := range cfg.Subscribers {
			bg.Go(func() { subscribe(runCtx, c, rec, f, w, s%players) })
		}
	}

	slotsCh := make(inflight, slots)
	var start time.Time
	switch cfg.Scenario {
	case ScenarioHunt:
		start = openLoop(ctx, c, rec, cfg.Rate, cfg.Duration, slotsCh, newHuntPlanner(w, rng, spots, rec))
	case ScenarioUniform:
		start = openLoop(ctx, c, rec, cfg.Rate, cfg.Duration, slotsCh,
			&uniformPlanner{w: w, rng: rng, seed: seed, nSpots: cfg.Hotspots})
	case ScenarioReplay:
		start = openLoop(ctx, c, rec, cfg.Rate, cfg.Duration, slotsCh,
			&replayPlanner{uniformPlanner: uniformPlanner{w: w, rng: rng, seed: seed, nSpots: cfg.Hotspots}, rec: rec})
	case ScenarioStorm:
		start = time.Now()
		rounds, err := storm(ctx, c, rec, w, cfg.Concurrency, cfg.Rounds)
		res.Storm = rounds
		if err != nil {
			stopRun()
			bg.Wait()
			return nil, err
		}
	}
	stopRun()
	bg.Wait()
	if cfg.Progress != nil {
		fmt.Fprint(cfg.Progress, "\r\x1b[2K")
	}
	rec.fill(res, start)
	if f != nil {
		res.SSE = f.stats(cfg.Subscribers)
	}
	if cfg.Scenario == ScenarioReplay || cfg.Scenario == ScenarioHunt {
		res.Replay = rec.replayStats()
	}

	res.Verify = &Verify{}
	if rep, err := c.audit(ctx); err != nil {
		res.Verify.Error = err.Error()
		res.Verify.Verdict = "verify: could not run: " + err.Error()
	} else {
		res.Verify.Ran, res.Verify.OK, res.Verify.Verdict, res.Verify.Report = true, rep.OK, rep.Verdict(), &rep
	}
	res.OK = len(res.Violations) == 0 && res.Verify.OK
	return res, nil
}

// showProgress rewrites the live line in place (\r, then erase the line)
// every progressPeriod until ctx ends: elapsed time, requests sent, the
// rate over the last period, p99 so far and errors.
func showProgress(ctx context.Context, w io.Writer, rec *recorder) {
	t := time.NewTicker(progressPeriod)
	defer t.Stop()
	start := time.Now()
	var lastSent int64
	last := start
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p := rec.progress()
			rps := float64(p.sent-lastSent) / now.Sub(last).Seconds()
			lastSent, last = p.sent, now
			fmt.Fprintf(w, "\r\x1b[2K%6.1fs  sent %d  %.0f req/s  p99 %.2f ms  errors %d",
				now.Sub(start).Seconds(), p.sent, rps, ms(p.p99), p.errors)
		}
	}
}

// Verify is the server audit's verdict at the end of the run.
type Verify struct {
	Ran     bool          `json:"ran"`
	OK      bool          `json:"ok"`
	Verdict string        `json:"verdict"`
	Error   string        `json:"error,omitempty"`
	Report  *audit.Report `json:"report,omitempty"`
}

package enginetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
)

// The linearizability test drives an engine from
// concurrent clients, records every call with its start, its return and its
// answer in an audit.History, and asks audit.CheckLinearizable (porcupine)
// whether one sequential order of all of them explains every answer. Unlike
// the other tests here it asserts nothing about single answers: it catches
// what only shows across clients and time, such as a balance read that misses
// a grant which already sold a hotspot out, or a retry after a restart that
// is decided a second time.
//
// Clients. 16 clients in 4 teams; a team has 3 players, one of them played
// by two clients so that its claims, spends and reads race each other, and 12
// hotspots of 1-2 tickets that only its players claim, all walking them in
// the same order so they contend for the same tickets at once. Teams share
// the engine's partitions (each team's hotspots lie in three cities) but no
// hotspot or player, so the history splits into one independent part per
// team: porcupine's search is exponential in the clients that share a part,
// and one 16-client part takes seconds to minutes where four 4-client parts
// take milliseconds. One call in eight gets a deadline of at most a few
// hundred microseconds (some are cancelled before they are made): it ends
// "unknown", may still take effect, and is mostly retried with the same key
// until it gets an answer (the checker merges the attempts into one request);
// one unknown in four is left unresolved.
//
// Restart. In the Restart variant the engine is restarted when half the
// operations are done: every call in flight is abandoned first (its context
// cancelled, as a dropped connection would), so it ends unknown although the
// engine may still commit it, then Stop and Start. Clients wait for the new
// engine and carry on, retrying what they lost. A client never calls an
// engine whose restart began; one that raced the restart has its Call time
// before the stop, so the old engine's final state is a valid answer.
//
// Sizes keep the test within a few seconds with -race on two cores.

// Sizes and limits of the linearizability test.
const (
	linTeams          = 4
	linTeamClients    = 4 // the first two play one player
	linTeamSpots      = 12
	linClients        = linTeams * linTeamClients
	linOpsPerClient   = 100
	linRetryMax       = 8 // attempts after an unknown answer, before giving up
	linShortMax       = 300 * time.Microsecond
	linCheckTimeout   = 60 * time.Second // porcupine's search; a linearizable history takes milliseconds
	linRestartTimeout = 30 * time.Second // how long a client waits for the restarted engine
)

// Linearizable runs the linearizability test on engines from newHarness, in
// two variants: with timeouts only, and with a restart in the middle.
func Linearizable(t *testing.T, newHarness func(t *testing.T) Harness) {
	for _, restart := range []bool{false, true} {
		name := "Timeouts"
		if restart {
			name = "Restart"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testLinearizable(t, newHarness(t), restart)
		})
	}
}

// linGen is one engine process of the test: a restart makes a new one.
type linGen struct {
	r        *Running
	n        int
	ctx      context.Context // every call's parent; cancelled when the restart begins
	cancel   context.CancelFunc
	stopping atomic.Bool
}

type linLab struct {
	t      *testing.T
	hunt   hunt.HuntID
	hist   audit.History
	cur    atomic.Pointer[linGen]
	abort  chan struct{} // closed when the test goroutine gives up
	done   atomic.Int64  // operations finished (with their retries)
	half   chan struct{} // closed when half the operations are done
	halfAt int64
	stats  struct {
		sync.Mutex
		linStats
	}
}

// linStats says what the workload did, so a test that proved little fails.
type linStats struct {
	unknown, unresolved, granted, soldOut, spent int
	perGen                                       map[int]int // definite answers per engine generation
}

func newGen(r *Running, n int) *linGen {
	g := &linGen{r: r, n: n}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g
}

// live returns the engine clients may call now, waiting out a restart; nil
// when the test gave up.
func (l *linLab) live() *linGen {
	deadline := time.Now().Add(linRestartTimeout)
	for {
		if g := l.cur.Load(); !g.stopping.Load() {
			return g
		}
		select {
		case <-l.abort:
			return nil
		case <-time.After(time.Millisecond): // polling interval, bounded by the deadline
		}
		if time.Now().After(deadline) {
			l.t.Errorf("no engine to call %v after a restart began", linRestartTimeout)
			return nil
		}
	}
}

func (l *linLab) count(f func()) {
	l.stats.Lock()
	defer l.stats.Unlock()
	f()
}

// expected reports whether err is an answer the test allows: one that leaves
// the outcome unknown. Anything else (a domain error, a reused key) is a bug.
func expected(err error, g *linGen) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, engine.ErrClosed) || errors.Is(err, engine.ErrUnavailable) ||
		errors.Is(err, engine.ErrOverloaded) || g.stopping.Load()
}

type linClient struct {
	l      *linLab
	id     int
	player hunt.PlayerID
	spots  []hunt.Hotspot // the team's
	rng    *rand.Rand
}

// attempt makes one call of op on the live engine and records it; fn fills
// the answer into op. short gives the call a deadline it will likely miss.
func (c *linClient) attempt(op audit.Op, short bool, fn func(ctx context.Context, e engine.Engine, op *audit.Op) error) (unknown bool) {
	op.Client = c.id
	op.Call = time.Now() // before the engine is chosen: a call racing a restart started before it
	g := c.l.live()
	if g == nil {
		return false
	}
	limit := callTimeout
	if short {
		limit = time.Duration(c.rng.Int64N(int64(linShortMax)))
	}
	ctx, cancel := context.WithTimeout(g.ctx, limit)
	if short && c.rng.IntN(4) == 0 {
		cancel() // given up before it was even sent
	}
	err := fn(ctx, g.r, &op)
	op.Return = time.Now()
	cancel()
	if err != nil {
		if !expected(err, g) {
			c.l.t.Errorf("client %d: %v(%s, %s, %q) on engine %d = %v; want an answer or a timeout", c.id, op.Kind, op.Player, op.Hotspot, op.Key, g.n, err)
		}
		op.Unknown = true
	}
	c.l.hist.Record(op)
	c.l.count(func() {
		switch {
		case op.Unknown:
			c.l.stats.unknown++
		case op.Outcome == hunt.Granted:
			c.l.stats.granted++
		case op.Outcome == hunt.SoldOut:
			c.l.stats.soldOut++
		case op.Outcome == hunt.Spent:
			c.l.stats.spent++
		}
		if !op.Unknown {
			c.l.stats.perGen[g.n]++
		}
	})
	return op.Unknown
}

// request makes a claim or spend, retrying an unknown answer with the same
// key (mostly) until it gets one.
func (c *linClient) request(op audit.Op, fn func(ctx context.Context, e engine.Engine, op *audit.Op) error) {
	unknown := c.attempt(op, c.rng.IntN(8) == 0, fn)
	if unknown && c.rng.IntN(4) == 0 {
		c.l.count(func() { c.l.stats.unresolved++ })
		return
	}
	for i := 0; unknown && i < linRetryMax; i++ {
		select {
		case <-c.l.abort:
			return
		default:
		}
		unknown = c.attempt(op, false, fn)
	}
	if unknown {
		c.l.count(func() { c.l.stats.unresolved++ })
	}
}

func claimInto(req *hunt.ClaimRequest) func(ctx context.Context, e engine.Engine, op *audit.Op) error {
	return func(ctx context.Context, e engine.Engine, op *audit.Op) error {
		res, err := Claim(ctx, e, req)
		if err == nil {
			op.Outcome, op.TicketsLeft, op.Detailed = res.Event.Outcome, res.Event.TicketsLeft, true
		}
		return err
	}
}

func spendInto(req *hunt.SpendRequest) func(ctx context.Context, e engine.Engine, op *audit.Op) error {
	return func(ctx context.Context, e engine.Engine, op *audit.Op) error {
		res, err := Spend(ctx, e, req)
		if err == nil {
			op.Outcome, op.Balance, op.Detailed = res.Event.Outcome, res.Event.Balance, true
		}
		return err
	}
}

func readInto(ctx context.Context, e engine.Engine, op *audit.Op) error {
	w, err := e.Wallet(ctx, op.Player)
	if err == nil {
		if w.Player != op.Player {
			return fmt.Errorf("Wallet(%s) answered for %q", op.Player, w.Player)
		}
		op.Balance = w.Balance
	}
	return err
}

func (c *linClient) run() {
	for j := range linOpsPerClient {
		select {
		case <-c.l.abort:
			return
		default:
		}
		key := fmt.Sprintf("c%d-%d", c.id, j)
		switch r := c.rng.IntN(100); {
		case r < 55:
			// The team walks its hotspots in the same order, two at a time.
			s := c.spots[(j*linTeamSpots/linOpsPerClient+c.rng.IntN(2))%linTeamSpots]
			req := claimReq(string(c.player), key, c.l.hunt, string(s.ID), place{s.Lat, s.Lon})
			c.request(audit.Op{Kind: audit.OpClaim, Player: c.player, Hotspot: s.ID, Key: key}, claimInto(req))
		case r < 75:
			amount := 1 + c.rng.Int64N(6)
			req := spendReq(string(c.player), key, amount, "linearize")
			c.request(audit.Op{Kind: audit.OpSpend, Player: c.player, Key: key, Amount: amount}, spendInto(req))
		default:
			c.attempt(audit.Op{Kind: audit.OpWallet, Player: c.player}, c.rng.IntN(8) == 0, readInto)
		}
		if c.l.done.Add(1) == c.l.halfAt {
			close(c.l.half)
		}
	}
}

// LinearizableRun is what RecordLinearizable recorded.
type LinearizableRun struct {
	History          *audit.History
	Tickets, Rewards map[hunt.HotspotID]int64 // of every hotspot, for audit.CheckLinearizable
	stats            linStats
}

func (r *LinearizableRun) String() string {
	st := r.stats
	return fmt.Sprintf("%d operations (%d unknown, %d never resolved; %d granted, %d sold_out, %d spent; answers per engine %v)",
		r.History.Len(), st.unknown, st.unresolved, st.granted, st.soldOut, st.spent, st.perGen)
}

func testLinearizable(t *testing.T, h Harness, restart bool) {
	run := RecordLinearizable(t, h, restart)
	start := time.Now()
	ok, info, err := audit.CheckLinearizable(run.History, run.Tickets, run.Rewards, linCheckTimeout)
	t.Logf("%v, checked in %v", run, time.Since(start).Round(time.Millisecond))
	if !ok || err != nil {
		path := filepath.Join(t.ArtifactDir(), "linearizability.html")
		if verr := audit.VisualizePath(info, path); verr != nil {
			path = fmt.Sprintf("(not written: %v)", verr)
		}
		t.Fatalf("CheckLinearizable(%v) = %v, %v; want true, nil; porcupine's view: %s (kept with go test -artifacts -outputdir DIR)",
			run, ok, err, path)
	}
}

// RecordLinearizable runs the linearizability test's workload on h (with a
// restart in the middle if restart) and returns the history, unchecked. It
// fails t if an engine call answers an error other than a timeout, a
// shutdown or an overload, or if the workload did not contend (no grant, no
// sold_out, or in the Restart variant no answer on either side of the
// restart). Tests of the checker itself use it on engines with planted bugs.
func RecordLinearizable(t *testing.T, h Harness, restart bool) *LinearizableRun {
	l := &linLab{t: t, hunt: "linearize", abort: make(chan struct{}), half: make(chan struct{}),
		halfAt: linClients * linOpsPerClient / 2}
	l.stats.perGen = map[int]int{}
	gen := newGen(Start(t, h), 0)
	l.cur.Store(gen)
	mustPutHunt(t, gen.r, hunt.Hunt{ID: l.hunt, Name: "linearizability"})
	tickets, rewards := map[hunt.HotspotID]int64{}, map[hunt.HotspotID]int64{}
	var spots []hunt.Hotspot
	for i := range linTeams * linTeamSpots {
		// Three cities, so several partitions shared by every team; 1-2
		// tickets; rewards 1-5.
		s := spot(fmt.Sprintf("s%02d", i), cities[i%3].north(float64(i/3)*200), int64(1+i%2), int64(1+i%5), 1)
		spots = append(spots, s)
		tickets[s.ID], rewards[s.ID] = s.Tickets, s.Reward
	}
	mustImport(t, gen.r, l.hunt, spots...)

	var wg sync.WaitGroup
	var once sync.Once
	stopClients := func() { once.Do(func() { close(l.abort) }); wg.Wait() }
	defer stopClients() // a Fatal below must not leave clients logging after the test
	seed := uint64(time.Now().UnixNano())
	t.Logf("client seed %d", seed)
	var players []hunt.PlayerID
	for i := range linClients {
		team, member := i/linTeamClients, max(i%linTeamClients-1, 0)
		p := hunt.PlayerID(fmt.Sprintf("t%dp%d", team, member))
		if !slices.Contains(players, p) {
			players = append(players, p)
		}
		c := &linClient{l: l, id: i, player: p, spots: spots[team*linTeamSpots : (team+1)*linTeamSpots],
			rng: rand.New(rand.NewPCG(seed, uint64(i)))}
		wg.Go(c.run)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	if restart {
		select {
		case <-l.half:
		case <-finished:
		}
		gen.stopping.Store(true)
		gen.cancel() // abandon every call in flight: the clients see the connection drop
		if err := gen.r.Stop(); err != nil {
			t.Errorf("Run() = %v; want nil after cancel", err)
		}
		gen = newGen(Start(t, h), 1)
		l.cur.Store(gen)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// A last read of every wallet, when nothing else is running.
	for _, p := range players {
		c := &linClient{l: l, id: linClients, player: p, rng: rand.New(rand.NewPCG(seed, linClients))}
		c.attempt(audit.Op{Kind: audit.OpWallet, Player: p}, false, readInto)
	}

	l.stats.Lock()
	st := l.stats.linStats
	l.stats.Unlock()
	// The workload must have contended: otherwise a check proves little.
	if st.granted == 0 || st.soldOut == 0 {
		t.Fatalf("workload saw %d grants and %d sold_out; want both > 0", st.granted, st.soldOut)
	}
	if restart && (st.perGen[0] == 0 || st.perGen[1] == 0) {
		t.Fatalf("answers per engine = %v; want some from before and after the restart", st.perGen)
	}
	return &LinearizableRun{History: &l.hist, Tickets: tickets, Rewards: rewards, stats: st}
}

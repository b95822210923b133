// Package lintest is the one linearizability workload of Cairn's tests: it
// drives a target from concurrent clients, records every call with its
// start, its return and its answer in an audit.History, and hands the
// history to audit.CheckLinearizable (porcupine), which must find one
// sequential order of all of them that explains every answer. Unlike the
// conformance suite it asserts nothing about single answers: it catches what
// only shows across clients and time, such as a balance read that misses a
// grant which already sold a hotspot out, or a retry after a restart that is
// decided a second time.
//
// What is generic and what is not. The package owns the operations (who
// calls what, with which key, when it retries), the recording, the restarts'
// bookkeeping and the check. A Target makes one call and says what it
// answered, or that its outcome is unknown (ErrUnknown); restarting is a
// function of the caller's (Config.Restart). The targets are the in-process
// engine (enginetest.Linearizable, which restarts with Stop and Start), a
// running node over HTTP (HTTP, here), and the built binary killed with -9
// (cmd/cairn's tests: HTTP plus a kill loop). The package lives apart from
// enginetest so that the HTTP target and the workload need neither the
// engine contract nor httpapi: it imports only audit and hunt, and both
// enginetest and cmd/cairn's tests import it.
//
// Clients. 16 clients in 4 teams; a team has 3 players, one of them played by
// two clients so that its claims, spends and reads race each other, and 12
// hotspots of 1-2 tickets that only its players claim, all walking them in
// the same order so they contend for the same tickets at once. Each client
// makes 100 operations: 55% claims, 20% spends, 25% wallet reads. Teams share
// the engine's partitions (each team's hotspots lie in three cities) but no
// hotspot or player, so the history splits into one independent part per
// team: porcupine's search is exponential in the clients that share a part,
// and one 16-client part takes seconds to minutes where four 4-client parts
// take milliseconds.
//
// Unknown outcomes. One first attempt in eight gets a deadline of at most
// Config.ShortMax (one in four of those is given up before it is sent): it
// ends unknown and may still take effect. An unknown claim or spend is
// retried with the same key, as a real client would, until it gets an answer
// (one in four is left unresolved); the checker merges the attempts of one
// key into one request. A target's answer that no correct server gives (a
// domain error, a reused key, a malformed body) fails the test.
//
// Restarts. When the operations done reach each of Config.RestartAt, the
// test goroutine marks the current life of the target as going down and
// calls Config.Restart, which must return once the next life serves. Clients
// that see the mark wait for the next life instead of burning attempts; a
// client that got past the mark just before gets an unknown outcome, or a
// real answer after its call: fine. Every operation's Call is taken after the
// client knows a life is up, just before its call is made, and Return when
// the answer is read. An answer counts for a life only if no restart began
// while it was made.
//
// Concurrency: Record runs the clients on their own goroutines and the
// restarts on the caller's; a Target's Do is called concurrently, and
// concurrently with Config.Restart.
package lintest

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
	"github.com/cairnhq/cairn/internal/hunt"
)

// Sizes of the workload.
const (
	Teams         = 4
	TeamClients   = 4 // the first two play one player
	TeamSpots     = 12
	Clients       = Teams * TeamClients
	OpsPerClient  = 100
	Ops           = Clients * OpsPerClient
	RetryMax      = 8                // attempts after an unknown answer, before giving up
	CheckTimeout  = 60 * time.Second // porcupine's search; a linearizable history takes milliseconds
	Hunt          = hunt.HuntID("linearize")
	spotSpacingM  = 200.0 // between a city's hotspots, north
	metresPerDeg  = 111_195.0
	spendReason   = "linearize"
	seedStreamEnd = Clients // the rng stream of the last wallet reads
)

// cities are where the hotspots lie: three cities, so that several
// partitions are shared by every team.
var cities = [3][2]float64{{48.8566, 2.3522}, {51.5074, -0.1278}, {52.5200, 13.4050}}

// Spots returns the workload's hotspots, Teams*TeamSpots of them, team by
// team: three cities, 200 m apart within one; 1-2 tickets; rewards 1-5. The
// target's hunt is Hunt, and must hold exactly these before Record.
func Spots() []hunt.Hotspot {
	var out []hunt.Hotspot
	for i := range Teams * TeamSpots {
		city := cities[i%3]
		out = append(out, hunt.Hotspot{ID: hunt.HotspotID(fmt.Sprintf("s%02d", i)),
			Lat: city[0] + float64(i/3)*spotSpacingM/metresPerDeg, Lon: city[1],
			Tickets: int64(1 + i%2), Reward: int64(1 + i%5), Points: 1})
	}
	return out
}

// Players returns the workload's players, in the order of their first client.
func Players() []hunt.PlayerID {
	var out []hunt.PlayerID
	for i := range Clients {
		if p := player(i); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func player(client int) hunt.PlayerID {
	team, member := client/TeamClients, max(client%TeamClients-1, 0)
	return hunt.PlayerID(fmt.Sprintf("t%dp%d", team, member))
}

// Call is one call a client makes.
type Call struct {
	Kind   audit.OpKind
	Player hunt.PlayerID
	Key    string       // claims and spends: the Idempotency-Key
	Spot   hunt.Hotspot // claims: the hotspot, claimed where it lies
	Amount int64        // spends
	Reason string       // spends
}

// Answer is what a target answered to a Call.
type Answer struct {
	Outcome     hunt.Outcome // claims and spends
	TicketsLeft int64        // claims: right after the decision
	Balance     int64        // spends: right after the decision; reads: the balance
	// Label names the answer for the log (an HTTP status and outcome); it is
	// set for unknown outcomes too, and may be empty.
	Label string
}

// ErrUnknown marks a call whose outcome the client cannot know: it may or may
// not have taken effect.
var ErrUnknown = errors.New("outcome unknown")

// Target makes the workload's calls.
type Target interface {
	// Do makes c and returns its answer. A claim's or spend's answer carries
	// the outcome and the tickets left or balance right after the decision;
	// a read's, the wallet of c.Player. Do returns an error wrapping
	// ErrUnknown when the outcome is unknown (a timeout, a lost connection,
	// a restart, an overload), and any other error for an answer no correct
	// server gives. Safe for concurrent use.
	Do(ctx context.Context, c Call) (Answer, error)
}

// Config is how Record drives a target.
type Config struct {
	// CallTimeout bounds every call but the short ones.
	CallTimeout time.Duration
	// ShortMax bounds the deadline of a call meant to miss it: about one
	// claim's round trip.
	ShortMax time.Duration
	// RestartAt lists, in increasing order, the counts of finished operations
	// at which the target is restarted; each must be below Ops.
	RestartAt []int64
	// Restart restarts the target (the k-th time, from 0) and returns once the
	// next life serves. It runs on the test goroutine and may call t.Fatal.
	Restart func(k int)
	// RestartTimeout bounds how long a client waits for the next life.
	RestartTimeout time.Duration
}

// Run is what Record recorded.
type Run struct {
	History          *audit.History
	Tickets, Rewards map[hunt.HotspotID]int64 // of every hotspot, for audit.CheckLinearizable
	// Restarts holds when each restart began: after the life was marked as
	// going down, before Config.Restart was called.
	Restarts []time.Time
	Stats    Stats
}

// Stats says what the workload did, so a test that proved little fails.
type Stats struct {
	Unknown, Unresolved, Granted, SoldOut, Spent int
	PerLife                                      map[int]int    // definite answers per life of the target
	Labels                                       map[string]int // per answer label, for the log
}

func (r *Run) String() string {
	st := r.Stats
	s := fmt.Sprintf("%d operations (%d unknown, %d never resolved; %d granted, %d sold_out, %d spent); %d restarts; answers per life %v",
		r.History.Len(), st.Unknown, st.Unresolved, st.Granted, st.SoldOut, st.Spent, len(r.Restarts), st.PerLife)
	if len(st.Labels) > 0 {
		s += fmt.Sprintf("; answers %v", st.Labels)
	}
	return s
}

// life is one life of the target: a restart begins the next.
type life struct {
	n        int
	stopping atomic.Bool   // set just before the restart
	replaced chan struct{} // closed once the next life serves
}

type lab struct {
	t      *testing.T
	cfg    Config
	target Target
	hist   audit.History
	cur    atomic.Pointer[life]
	abort  chan struct{}   // closed when the test goroutine gives up
	done   atomic.Int64    // operations finished (with their retries)
	reach  []chan struct{} // reach[k] closed when done reaches cfg.RestartAt[k]
	stats  struct {
		sync.Mutex
		Stats
	}
}

func (l *lab) count(f func(st *Stats)) {
	l.stats.Lock()
	defer l.stats.Unlock()
	f(&l.stats.Stats)
}

// live returns the life clients may call now, waiting out a restart; nil
// when the test gave up.
func (l *lab) live() *life {
	timer := time.NewTimer(l.cfg.RestartTimeout)
	defer timer.Stop()
	for {
		g := l.cur.Load()
		if !g.stopping.Load() {
			return g
		}
		select {
		case <-g.replaced:
		case <-l.abort:
			return nil
		case <-timer.C:
			l.t.Errorf("no target to call %v after a restart began", l.cfg.RestartTimeout)
			return nil
		}
	}
}

type client struct {
	l      *lab
	id     int
	player hunt.PlayerID
	spots  []hunt.Hotspot // the team's
	rng    *rand.Rand
}

// attempt makes one call and records it. short gives the call a deadline it
// will likely miss.
func (c *client) attempt(call Call, short bool) (unknown bool) {
	op := audit.Op{Client: c.id, Kind: call.Kind, Player: call.Player, Hotspot: call.Spot.ID, Key: call.Key, Amount: call.Amount}
	g := c.l.live()
	if g == nil {
		return false
	}
	limit := c.l.cfg.CallTimeout
	given := false // up before the call is made
	if short {
		if c.rng.IntN(4) == 0 {
			given = true
		} else {
			limit = max(time.Duration(c.rng.Int64N(int64(c.l.cfg.ShortMax))), time.Nanosecond)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	if given {
		cancel()
	}
	op.Call = time.Now()
	a, err := c.l.target.Do(ctx, call)
	op.Return = time.Now() // kept for unknowns too: the checker ignores it, the restart figures use it
	cancel()
	if err != nil {
		if !errors.Is(err, ErrUnknown) {
			c.l.t.Errorf("client %d: %v(%s, %s, %q) on life %d = %v; want an answer or an unknown outcome",
				c.id, op.Kind, op.Player, op.Hotspot, op.Key, g.n, err)
		}
		op.Unknown = true
	} else {
		op.Outcome, op.Balance = a.Outcome, a.Balance
		switch call.Kind {
		case audit.OpClaim:
			op.TicketsLeft, op.Detailed = a.TicketsLeft, true
		case audit.OpSpend:
			op.Detailed = true
		}
	}
	c.l.hist.Record(op)
	sameLife := c.l.cur.Load() == g // else either life may have answered
	c.l.count(func(st *Stats) {
		if a.Label != "" {
			st.Labels[a.Label]++
		}
		switch {
		case op.Unknown:
			st.Unknown++
		case op.Outcome == hunt.Granted:
			st.Granted++
		case op.Outcome == hunt.SoldOut:
			st.SoldOut++
		case op.Outcome == hunt.Spent:
			st.Spent++
		}
		if !op.Unknown && sameLife {
			st.PerLife[g.n]++
		}
	})
	return op.Unknown
}

// request makes a claim or spend, retrying an unknown answer with the same
// key (mostly) until it gets one.
func (c *client) request(call Call) {
	unknown := c.attempt(call, c.rng.IntN(8) == 0)
	if unknown && c.rng.IntN(4) == 0 {
		c.l.count(func(st *Stats) { st.Unresolved++ })
		return
	}
	for i := 0; unknown && i < RetryMax; i++ {
		select {
		case <-c.l.abort:
			return
		default:
		}
		unknown = c.attempt(call, false)
	}
	if unknown {
		c.l.count(func(st *Stats) { st.Unresolved++ })
	}
}

func (c *client) run() {
	for j := range OpsPerClient {
		select {
		case <-c.l.abort:
			return
		default:
		}
		key := fmt.Sprintf("c%d-%d", c.id, j)
		switch r := c.rng.IntN(100); {
		case r < 55:
			// The team walks its hotspots in the same order, two at a time.
			s := c.spots[(j*TeamSpots/OpsPerClient+c.rng.IntN(2))%TeamSpots]
			c.request(Call{Kind: audit.OpClaim, Player: c.player, Key: key, Spot: s})
		case r < 75:
			amount := 1 + c.rng.Int64N(6)
			c.request(Call{Kind: audit.OpSpend, Player: c.player, Key: key, Amount: amount, Reason: spendReason})
		default:
			c.attempt(Call{Kind: audit.OpWallet, Player: c.player}, c.rng.IntN(8) == 0)
		}
		n := c.l.done.Add(1)
		for k, m := range c.l.cfg.RestartAt {
			if n == m {
				close(c.l.reach[k])
			}
		}
	}
}

// Record runs the workload on target, whose hunt Hunt holds Spots(),
// restarting it as cfg says, and returns the history, unchecked. It fails t
// if the target answers what no correct server does, if a restart was not
// made, or if the workload did not contend (no grant, no sold_out, or a life
// of the target that answered nothing). Tests of the checker itself use it on
// targets with planted bugs.
func Record(t *testing.T, target Target, cfg Config) *Run {
	t.Helper()
	l := &lab{t: t, cfg: cfg, target: target, abort: make(chan struct{})}
	l.stats.PerLife, l.stats.Labels = map[int]int{}, map[string]int{}
	for range cfg.RestartAt {
		l.reach = append(l.reach, make(chan struct{}))
	}
	l.cur.Store(&life{replaced: make(chan struct{})})
	spots := Spots()
	tickets, rewards := map[hunt.HotspotID]int64{}, map[hunt.HotspotID]int64{}
	for _, s := range spots {
		tickets[s.ID], rewards[s.ID] = s.Tickets, s.Reward
	}

	var wg sync.WaitGroup
	var once sync.Once
	stopClients := func() { once.Do(func() { close(l.abort) }); wg.Wait() }
	defer stopClients() // a Fatal below must not leave clients logging after the test
	seed := uint64(time.Now().UnixNano())
	t.Logf("client seed %d", seed)
	for i := range Clients {
		team := i / TeamClients
		c := &client{l: l, id: i, player: player(i), spots: spots[team*TeamSpots : (team+1)*TeamSpots],
			rng: rand.New(rand.NewPCG(seed, uint64(i)))}
		wg.Go(c.run)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	var restarts []time.Time
restart:
	for k := range cfg.RestartAt {
		select {
		case <-l.reach[k]:
		case <-finished: // only when clients gave up
			break restart
		}
		g := l.cur.Load()
		g.stopping.Store(true)
		restarts = append(restarts, time.Now())
		cfg.Restart(k)
		l.cur.Store(&life{n: k + 1, replaced: make(chan struct{})})
		close(g.replaced)
	}
	<-finished
	if t.Failed() {
		t.FailNow()
	}
	// A last read of every wallet, when nothing else is running.
	for _, p := range Players() {
		c := &client{l: l, id: Clients, player: p, rng: rand.New(rand.NewPCG(seed, seedStreamEnd))}
		c.attempt(Call{Kind: audit.OpWallet, Player: p}, false)
	}

	l.stats.Lock()
	st := l.stats.Stats
	l.stats.Unlock()
	run := &Run{History: &l.hist, Tickets: tickets, Rewards: rewards, Restarts: restarts, Stats: st}
	// The workload must have contended, and every life must have answered:
	// otherwise a check proves little.
	if st.Granted == 0 || st.SoldOut == 0 {
		t.Fatalf("%v; want grants and sold_out > 0", run)
	}
	if len(restarts) != len(cfg.RestartAt) {
		t.Fatalf("%v; want %d restarts", run, len(cfg.RestartAt))
	}
	for n := range len(restarts) + 1 {
		if st.PerLife[n] == 0 {
			t.Fatalf("%v; life %d answered nothing; want answers before and after every restart", run, n)
		}
	}
	return run
}

// Check checks run with audit.CheckLinearizable and fails t unless it is
// linearizable, leaving porcupine's HTML view in the test's artifact
// directory.
func Check(t *testing.T, run *Run) {
	t.Helper()
	start := time.Now()
	ok, info, err := audit.CheckLinearizable(run.History, run.Tickets, run.Rewards, CheckTimeout)
	t.Logf("%v; linearizable %v, %v, checked in %v", run, ok, err, time.Since(start).Round(time.Millisecond))
	if !ok || err != nil {
		path := filepath.Join(t.ArtifactDir(), "linearizability.html")
		if verr := audit.VisualizePath(info, path); verr != nil {
			path = fmt.Sprintf("(not written: %v)", verr)
		}
		t.Fatalf("CheckLinearizable(%v) = %v, %v; want true, nil; porcupine's view: %s (kept with go test -artifacts -outputdir DIR)",
			run, ok, err, path)
	}
}

package main

// Linearizability across real crashes. The engine
// packages record porcupine histories in-process, where a "crash" is a
// graceful Stop and Start (enginetest.RecordLinearizable). Here the history
// is recorded the way players see the service: through the built binary,
// over HTTP, while the node is SIGKILLed three times and restarted on the
// same data directory and address. audit.CheckLinearizable must then find
// one sequential order of every claim, spend and wallet read that explains
// every answer, on the embedded store and on Redis (where only the Cairn
// node dies; Redis stays up).
//
// Workload: the shape of enginetest.RecordLinearizable, so that porcupine
// stays fast (its search is exponential in the clients sharing a component
// of the history): 16 clients in 4 teams; a team has 3 players, one played
// by two clients; 12 hotspots per team of 1-2 tickets, spread over three
// cities so teams share partitions but no hotspot or player; each client
// makes 100 operations, 55% claims walking the team's hotspots in the same
// order, 20% spends, 25% wallet reads. Answers are recorded exactly as there:
// claims and spends are Detailed (the HTTP answer carries tickets_left or
// balance), reads check the balance.
//
// Unknown outcomes: a transport error (connection reset by the kill, refused
// while the node is down), a 5xx or a 429 leaves an operation unknown: it may
// have taken effect, at any time after its call. One first attempt in eight
// gets a client deadline of at most a few milliseconds (one in four of those
// is given up before it is sent), so unknowns also come from clients giving
// up on a live node, whose request the node may still commit. An unknown
// claim or spend is retried with the same Idempotency-Key, as a real client
// would, until it gets an answer (one in four is left unresolved); the
// checker merges the attempts of one key into one request.
//
// Kills: at three random operation counts (one in each of [1/8, 1/4),
// [3/8, 1/2), [5/8, 3/4) of the total), the test goroutine marks the node as
// going down, SIGKILLs it and restarts it. Clients that see the node marked
// down wait for the restart instead of burning attempts on a closed port; a
// client that got past the mark just before it sends to a dead port (its
// answer: unknown) or to the restarted node (a real answer, after its
// call: fine). Every operation's Call is taken after the client knows a node
// is up, just before its request is sent, and Return when the answer is
// read.
//
// The test fails on an answer no correct server gives (a 4xx other than the
// outcomes, a 500, a malformed body), when the workload proved little (no
// grant or no sold_out, a kill that cut no operation, a node generation that
// answered nothing), on a non-linearizable verdict (with porcupine's HTML
// view in the test's artifact directory), on a check that times out, and
// when the history plus one planted impossible answer (a second grant of a
// hotspot to its holder) is not rejected: the control that the verdict came
// from the recorded answers.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/hunt"
)

// Sizes and limits of the kill -9 linearizability test.
const (
	lkTeams          = 4
	lkTeamClients    = 4 // the first two play one player
	lkTeamSpots      = 12
	lkClients        = lkTeams * lkTeamClients
	lkOpsPerClient   = 100
	lkOps            = lkClients * lkOpsPerClient
	lkKills          = 3
	lkRetryMax       = 8                    // attempts after an unknown answer, before giving up
	lkShortMax       = 3 * time.Millisecond // a short client deadline: about one claim's round trip
	lkCallTimeout    = 10 * time.Second     // any other HTTP call
	lkCheckTimeout   = 60 * time.Second     // porcupine's search; a linearizable history takes milliseconds
	lkRestartTimeout = 45 * time.Second     // how long a client waits for the restarted node (startServe allows 30 s)
	lkTokenTTL       = 10 * time.Minute     // player tokens outlive the test
	lkHunt           = "linearize"
	lkSpotSpacingM   = 200.0 // between a city's hotspots, north
	lkMetresPerDeg   = 111_195.0
)

// lkCities are where the hotspots lie: three cities, so several of the 8
// partitions are shared by every team (the hotspots of enginetest's test).
var lkCities = [3][2]float64{{48.8566, 2.3522}, {51.5074, -0.1278}, {52.5200, 13.4050}}

// TestLinearizableKill9: porcupine finds the history of concurrent claims,
// spends and wallet reads over HTTP linearizable, with the embedded node
// SIGKILLed 3 times under load and restarted on its directory.
func TestLinearizableKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real server; skipped with -short")
	}
	linearizeKill9(t)
}

// TestLinearizableKill9Redis is the same on a node whose store is Redis
// (appendfsync always): the Cairn node is SIGKILLed; Redis stays up.
func TestLinearizableKill9Redis(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real server; skipped with -short")
	}
	srv := redistest.Start(t)
	linearizeKill9(t, "--store", srv.URL())
}

// lkGen is one life of the node: a kill and restart begins the next.
type lkGen struct {
	n        int
	stopping atomic.Bool   // set just before the kill
	replaced chan struct{} // closed once the next generation serves
}

// errLkUnknown marks an exchange whose outcome the client cannot know.
var errLkUnknown = errors.New("outcome unknown")

type lkLab struct {
	t      *testing.T
	base   string
	tr     *http.Transport
	tokens map[hunt.PlayerID]string
	hist   audit.History
	cur    atomic.Pointer[lkGen]
	abort  chan struct{} // closed when the test goroutine gives up
	done   atomic.Int64  // operations finished (with their retries)
	marks  [lkKills]int64
	reach  [lkKills]chan struct{} // reach[k] closed when done reaches marks[k]
	stats  struct {
		sync.Mutex
		lkStats
	}
}

// lkStats says what the workload did, so a run that proved little fails.
type lkStats struct {
	unknown, unresolved, granted, soldOut, spent int
	perGen                                       map[int]int    // definite answers per node generation
	statuses                                     map[string]int // per HTTP answer, for the log
}

func (l *lkLab) count(f func(st *lkStats)) {
	l.stats.Lock()
	defer l.stats.Unlock()
	f(&l.stats.lkStats)
}

// live returns the generation clients may call now, waiting out a restart;
// nil when the test gave up.
func (l *lkLab) live() *lkGen {
	timer := time.NewTimer(lkRestartTimeout)
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
			l.t.Errorf("no node to call %v after a kill", lkRestartTimeout)
			return nil
		}
	}
}

type lkClient struct {
	l      *lkLab
	id     int
	player hunt.PlayerID
	token  string
	spots  []hunt.Hotspot // the team's
	rng    *rand.Rand
	hc     *crashClient // no deadline of its own beyond lkCallTimeout
}

// lkSend makes one HTTP exchange for op and fills the answer into it. It
// returns a label of the answer for the log, and an error wrapping
// errLkUnknown when the outcome is unknown, or any other error for an
// answer no correct server gives.
type lkSend func(hc *crashClient, c *lkClient, op *audit.Op) (string, error)

// attempt makes one call of op and records it. short gives the call a
// client deadline it will likely miss.
func (c *lkClient) attempt(op audit.Op, short bool, send lkSend) (unknown bool) {
	op.Client = c.id
	g := c.l.live()
	if g == nil {
		return false
	}
	hc := c.hc
	if short {
		limit := time.Nanosecond // given up before it is even sent
		if c.rng.IntN(4) != 0 {
			limit = max(time.Duration(c.rng.Int64N(int64(lkShortMax))), time.Nanosecond)
		}
		hc = &crashClient{http: &http.Client{Transport: c.l.tr, Timeout: limit}, base: c.l.base}
	}
	op.Call = time.Now()
	label, err := send(hc, c, &op)
	op.Return = time.Now() // kept for unknowns too: the checker ignores it, the kill figures use it
	if err != nil {
		if !errors.Is(err, errLkUnknown) {
			c.l.t.Errorf("client %d: %v(%s, %s, %q) on node %d = %v; want an answer or an unknown outcome",
				c.id, op.Kind, op.Player, op.Hotspot, op.Key, g.n, err)
		}
		op.Unknown = true
	}
	c.l.hist.Record(op)
	sameGen := c.l.cur.Load() == g // else either life may have answered
	c.l.count(func(st *lkStats) {
		st.statuses[label]++
		switch {
		case op.Unknown:
			st.unknown++
		case op.Outcome == hunt.Granted:
			st.granted++
		case op.Outcome == hunt.SoldOut:
			st.soldOut++
		case op.Outcome == hunt.Spent:
			st.spent++
		}
		if !op.Unknown && sameGen {
			st.perGen[g.n]++
		}
	})
	return op.Unknown
}

// request makes a claim or spend, retrying an unknown answer with the same
// key (mostly) until it gets one.
func (c *lkClient) request(op audit.Op, send lkSend) {
	unknown := c.attempt(op, c.rng.IntN(8) == 0, send)
	if unknown && c.rng.IntN(4) == 0 {
		c.l.count(func(st *lkStats) { st.unresolved++ })
		return
	}
	for i := 0; unknown && i < lkRetryMax; i++ {
		select {
		case <-c.l.abort:
			return
		default:
		}
		unknown = c.attempt(op, false, send)
	}
	if unknown {
		c.l.count(func(st *lkStats) { st.unresolved++ })
	}
}

// lkStatus sorts an HTTP status that is not an answer: nil for 2xx and 409
// (decisions, parsed by the caller), errLkUnknown for what leaves the
// outcome unknown, an error for the rest.
func lkStatus(st int, b []byte, err error) (string, error) {
	switch {
	case err != nil:
		return "no answer", fmt.Errorf("%w: %v", errLkUnknown, err)
	case st == http.StatusInternalServerError:
		// Unknown for the history, but a server that fails this way has a bug.
		return "500", fmt.Errorf("500 %s", b)
	case st == http.StatusTooManyRequests || st >= 500:
		return strconv.Itoa(st), fmt.Errorf("%w: %d %s", errLkUnknown, st, b)
	case st < 300 || st == http.StatusConflict:
		return strconv.Itoa(st), nil
	}
	return strconv.Itoa(st), fmt.Errorf("status %d %s", st, b)
}

// lkDecision is the part of a claim's or spend's answer (201 or a 409
// problem) the history records.
type lkDecision struct {
	Outcome     string `json:"outcome"`
	Player      string `json:"player"`
	TicketsLeft *int64 `json:"tickets_left"`
	Balance     *int64 `json:"balance"`
}

func lkParse(st int, b []byte, want map[string]int) (hunt.Outcome, lkDecision, error) {
	var d lkDecision
	if err := json.Unmarshal(b, &d); err != nil {
		return 0, d, fmt.Errorf("%d %s: %v", st, b, err)
	}
	o, ok := hunt.ParseOutcome(d.Outcome)
	if !ok || want[d.Outcome] != st {
		return 0, d, fmt.Errorf("%d %s: outcome %q is not an answer of this call with this status", st, b, d.Outcome)
	}
	return o, d, nil
}

func sendClaim(spot hunt.Hotspot) lkSend {
	path := "/v1/hunts/" + lkHunt + "/hotspots/" + string(spot.ID) + "/claim"
	body := map[string]float64{"lat": spot.Lat, "lon": spot.Lon}
	want := map[string]int{"granted": 201, "already_claimed": 409, "sold_out": 409}
	return func(hc *crashClient, c *lkClient, op *audit.Op) (string, error) {
		st, b, _, err := hc.do("POST", path, c.token, op.Key, body)
		label, err := lkStatus(st, b, err)
		if err != nil {
			return label, err
		}
		o, d, err := lkParse(st, b, want)
		if err == nil && (d.TicketsLeft == nil || d.Player != string(op.Player)) {
			err = fmt.Errorf("%d %s: want tickets_left and player %s", st, b, op.Player)
		}
		if err != nil {
			return label, err
		}
		op.Outcome, op.TicketsLeft, op.Detailed = o, *d.TicketsLeft, true
		return label + " " + d.Outcome, nil
	}
}

func sendSpend(amount int64) lkSend {
	body := map[string]any{"amount": amount, "reason": "linearize"}
	want := map[string]int{"spent": 201, "insufficient_funds": 409}
	return func(hc *crashClient, c *lkClient, op *audit.Op) (string, error) {
		st, b, _, err := hc.do("POST", "/v1/wallet/spend", c.token, op.Key, body)
		label, err := lkStatus(st, b, err)
		if err != nil {
			return label, err
		}
		o, d, err := lkParse(st, b, want)
		if err == nil && (d.Balance == nil || d.Player != string(op.Player)) {
			err = fmt.Errorf("%d %s: want balance and player %s", st, b, op.Player)
		}
		if err != nil {
			return label, err
		}
		op.Outcome, op.Balance, op.Detailed = o, *d.Balance, true
		return label + " " + d.Outcome, nil
	}
}

func sendWallet(hc *crashClient, c *lkClient, op *audit.Op) (string, error) {
	st, b, _, err := hc.do("GET", "/v1/wallet", c.token, "", nil)
	label, err := lkStatus(st, b, err)
	if err != nil {
		return label, err
	}
	var w hunt.Wallet
	if st != http.StatusOK || json.Unmarshal(b, &w) != nil || w.Player != op.Player {
		return label, fmt.Errorf("%d %s: want 200 and the wallet of %s", st, b, op.Player)
	}
	op.Balance = w.Balance
	return label + " wallet", nil
}

func (c *lkClient) run() {
	for j := range lkOpsPerClient {
		select {
		case <-c.l.abort:
			return
		default:
		}
		key := fmt.Sprintf("c%d-%d", c.id, j)
		switch r := c.rng.IntN(100); {
		case r < 55:
			// The team walks its hotspots in the same order, two at a time.
			s := c.spots[(j*lkTeamSpots/lkOpsPerClient+c.rng.IntN(2))%lkTeamSpots]
			c.request(audit.Op{Kind: audit.OpClaim, Player: c.player, Hotspot: s.ID, Key: key}, sendClaim(s))
		case r < 75:
			amount := 1 + c.rng.Int64N(6)
			c.request(audit.Op{Kind: audit.OpSpend, Player: c.player, Key: key, Amount: amount}, sendSpend(amount))
		default:
			c.attempt(audit.Op{Kind: audit.OpWallet, Player: c.player}, c.rng.IntN(8) == 0, sendWallet)
		}
		n := c.l.done.Add(1)
		for k, m := range c.l.marks {
			if n == m {
				close(c.l.reach[k])
			}
		}
	}
}

// linearizeKill9 records the history on a `cairn serve` started with extra
// flags, killing it lkKills times, and checks it (see the file comment).
func linearizeKill9(t *testing.T, extra ...string) {
	bin := cairnBinary(t)
	data := t.TempDir()
	addr := freeAddr(t)
	p := startServe(t, bin, data, addr, extra...)
	defer func() { p.kill() }()

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, lkClients+1))
	tr := &http.Transport{MaxIdleConns: 4 * lkClients, MaxIdleConnsPerHost: 4 * lkClients, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	l := &lkLab{t: t, base: p.base, tr: tr, tokens: map[hunt.PlayerID]string{}, abort: make(chan struct{})}
	l.stats.perGen, l.stats.statuses = map[int]int{}, map[string]int{}
	for k := range l.marks {
		// Kill k falls in [(2k+1)/8, (2k+2)/8) of the operations: each kill
		// under load, and a quarter of the workload after the last.
		l.marks[k] = int64(lkOps*(2*k+1)/8 + rng.IntN(lkOps/8))
		l.reach[k] = make(chan struct{})
	}
	l.cur.Store(&lkGen{replaced: make(chan struct{})})
	admin := &crashClient{http: &http.Client{Transport: tr, Timeout: lkCallTimeout}, base: p.base}

	if st, b, _, err := admin.do("PUT", "/v1/admin/hunts/"+lkHunt, testAdmin, "", map[string]any{"name": "linearizability"}); err != nil || st >= 300 {
		t.Fatalf("PUT hunt = %d %s %v; want 2xx", st, b, err)
	}
	tickets, rewards := map[hunt.HotspotID]int64{}, map[hunt.HotspotID]int64{}
	var spots []hunt.Hotspot
	var body []map[string]any
	for i := range lkTeams * lkTeamSpots {
		// Three cities, 200 m apart within one; 1-2 tickets; rewards 1-5.
		city := lkCities[i%3]
		s := hunt.Hotspot{ID: hunt.HotspotID(fmt.Sprintf("s%02d", i)), Lat: city[0] + float64(i/3)*lkSpotSpacingM/lkMetresPerDeg,
			Lon: city[1], Tickets: int64(1 + i%2), Reward: int64(1 + i%5), Points: 1}
		spots = append(spots, s)
		tickets[s.ID], rewards[s.ID] = s.Tickets, s.Reward
		body = append(body, map[string]any{"id": s.ID, "lat": s.Lat, "lon": s.Lon, "tickets": s.Tickets, "reward": s.Reward, "points": s.Points})
	}
	if st, b, _, err := admin.do("POST", "/v1/admin/hunts/"+lkHunt+"/hotspots", testAdmin, "", body); err != nil || st != 200 {
		t.Fatalf("import = %d %s %v; want 200", st, b, err)
	}

	var wg sync.WaitGroup
	var once sync.Once
	stopClients := func() { once.Do(func() { close(l.abort) }); wg.Wait() }
	defer stopClients() // a Fatal below must not leave clients logging after the test
	var players []hunt.PlayerID
	newClient := func(id int, p hunt.PlayerID) *lkClient {
		if _, ok := l.tokens[p]; !ok {
			tok, err := httpapi.MintToken([]byte(testSecret), p, lkTokenTTL, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			l.tokens[p] = tok
			players = append(players, p)
		}
		return &lkClient{l: l, id: id, player: p, token: l.tokens[p], rng: rand.New(rand.NewPCG(seed, uint64(id))),
			hc: &crashClient{http: &http.Client{Transport: tr, Timeout: lkCallTimeout}, base: l.base}}
	}
	clients := make([]*lkClient, lkClients)
	for i := range clients {
		team, member := i/lkTeamClients, max(i%lkTeamClients-1, 0)
		clients[i] = newClient(i, hunt.PlayerID(fmt.Sprintf("t%dp%d", team, member)))
		clients[i].spots = spots[team*lkTeamSpots : (team+1)*lkTeamSpots]
	}
	for _, c := range clients {
		wg.Go(c.run)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	var killedAt []time.Time
kills:
	for k := range lkKills {
		select {
		case <-l.reach[k]:
		case <-finished: // only when clients gave up
			break kills
		}
		g := l.cur.Load()
		g.stopping.Store(true)
		killedAt = append(killedAt, time.Now())
		p.kill() // SIGKILL mid-load; every request in flight loses its answer
		tr.CloseIdleConnections()
		p = startServe(t, bin, data, addr, extra...)
		l.cur.Store(&lkGen{n: k + 1, replaced: make(chan struct{})})
		close(g.replaced)
	}
	<-finished
	if t.Failed() {
		t.FailNow()
	}
	// A last read of every wallet, when nothing else is running.
	for _, pl := range players {
		c := newClient(lkClients, pl)
		c.attempt(audit.Op{Kind: audit.OpWallet, Player: pl}, false, sendWallet)
	}

	// The workload must have contended, and every kill must be in the
	// history: operations it cut, and answers from every life of the node.
	l.stats.Lock()
	st := l.stats.lkStats
	l.stats.Unlock()
	ops := l.hist.Ops()
	cut := make([]int, len(killedAt))
	for k, at := range killedAt {
		for _, op := range ops {
			if op.Unknown && op.Call.Before(at) && op.Return.After(at) {
				cut[k]++
			}
		}
	}
	summary := fmt.Sprintf("%d operations (%d unknown, %d never resolved; %d granted, %d sold_out, %d spent); %d kills cutting %v operations; answers per node life %v; HTTP answers %v",
		len(ops), st.unknown, st.unresolved, st.granted, st.soldOut, st.spent, len(killedAt), cut, st.perGen, st.statuses)
	if st.granted == 0 || st.soldOut == 0 {
		t.Fatalf("%s; want grants and sold_out > 0", summary)
	}
	if len(killedAt) != lkKills || slices.Contains(cut, 0) {
		t.Fatalf("%s; want %d kills, each cutting an operation in flight", summary, lkKills)
	}
	for n := range lkKills + 1 {
		if st.perGen[n] == 0 {
			t.Fatalf("%s; node life %d answered nothing; want answers before and after every kill", summary, n)
		}
	}

	start := time.Now()
	ok, info, err := audit.CheckLinearizable(&l.hist, tickets, rewards, lkCheckTimeout)
	t.Logf("%s; linearizable %v, %v, checked in %v", summary, ok, err, time.Since(start).Round(time.Millisecond))
	if !ok || err != nil {
		path := filepath.Join(t.ArtifactDir(), "linearizability.html")
		if verr := audit.VisualizePath(info, path); verr != nil {
			path = fmt.Sprintf("(not written: %v)", verr)
		}
		t.Fatalf("CheckLinearizable(%s) = %v, %v; want true, nil; porcupine's view: %s (kept with go test -artifacts -outputdir DIR)",
			summary, ok, err, path)
	}

	// Control: the same history plus one answer no order explains (a second
	// grant of a hotspot to a player already granted it, after everything)
	// must be rejected, so the verdict above came from the recorded answers.
	i := slices.IndexFunc(ops, func(op audit.Op) bool { return op.Kind == audit.OpClaim && !op.Unknown && op.Outcome == hunt.Granted })
	var planted audit.History
	for _, op := range ops {
		planted.Record(op)
	}
	bad := ops[i]
	bad.Key, bad.Call, bad.Return = "planted", time.Now(), time.Now().Add(time.Millisecond)
	planted.Record(bad)
	if ok, _, err := audit.CheckLinearizable(&planted, tickets, rewards, lkCheckTimeout); ok || err != nil {
		t.Fatalf("CheckLinearizable(history + a second grant of %s to %s) = %v, %v; want false, nil", bad.Hotspot, bad.Player, ok, err)
	}
}

package main

// Linearizability across real crashes. The engine packages record porcupine
// histories in-process, where a "crash" is a graceful Stop and Start
// (enginetest.RecordLinearizable). Here the same workload (lintest: 16
// clients in 4 teams of 3 players, 12 hotspots of 1-2 tickets per team in
// three cities, claims, spends and wallet reads, unknown outcomes retried with
// their Idempotency-Key) is recorded the way players see the service: through
// the built binary, over HTTP (lintest.HTTP), while the node is SIGKILLed
// three times and restarted on the same data directory and address.
// audit.CheckLinearizable must then find one sequential order of every claim,
// spend and wallet read that explains every answer, on the embedded store and
// on Redis (where only the Cairn node dies; Redis stays up).
//
// Unknown outcomes: a transport error (connection reset by the kill, refused
// while the node is down), a 5xx or a 429 leaves an operation unknown: it may
// have taken effect, at any time after its call. One first attempt in eight
// gets a client deadline of at most a few milliseconds (one in four of those
// is given up before it is sent), so unknowns also come from clients giving
// up on a live node, whose request the node may still commit.
//
// Kills: at three random operation counts (one in each of [1/8, 1/4),
// [3/8, 1/2), [5/8, 3/4) of the total), the workload marks the node as going
// down and the test SIGKILLs it and restarts it. Clients that see the node
// marked down wait for the restart instead of burning attempts on a closed
// port; a client that got past the mark just before it sends to a dead port
// (its answer: unknown) or to the restarted node (a real answer, after its
// call: fine).
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
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/lintest"
)

// Sizes and limits of the kill -9 linearizability test.
const (
	lkKills          = 3
	lkShortMax       = 3 * time.Millisecond // a short client deadline: about one claim's round trip
	lkCallTimeout    = 10 * time.Second     // any other HTTP call
	lkRestartTimeout = 45 * time.Second     // how long a client waits for the restarted node (startServe allows 30 s)
	lkTokenTTL       = 10 * time.Minute     // player tokens outlive the test
)

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

// linearizeKill9 records the history on a `cairn serve` started with extra
// flags, killing it lkKills times, and checks it (see the file comment).
func linearizeKill9(t *testing.T, extra ...string) {
	bin := faultBinary(t)
	data := t.TempDir()
	addr := freeAddr(t)
	p := startServe(t, bin, data, addr, extra...)
	defer func() { p.kill() }()

	seed := uint64(time.Now().UnixNano())
	t.Logf("kill seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, lintest.Clients+1))
	tr := &http.Transport{MaxIdleConns: 4 * lintest.Clients, MaxIdleConnsPerHost: 4 * lintest.Clients, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	admin := &crashClient{http: &http.Client{Transport: tr, Timeout: lkCallTimeout}, base: p.base}

	if st, b, _, err := admin.do("PUT", "/v1/admin/hunts/"+string(lintest.Hunt), testAdmin, "", map[string]any{"name": "linearizability", "max_speed_mps": 0}); err != nil || st >= 300 {
		t.Fatalf("PUT hunt = %d %s %v; want 2xx", st, b, err)
	}
	var body []map[string]any
	for _, s := range lintest.Spots() {
		body = append(body, map[string]any{"id": s.ID, "lat": s.Lat, "lon": s.Lon, "tickets": s.Tickets, "reward": s.Reward, "points": s.Points})
	}
	if st, b, _, err := admin.do("POST", "/v1/admin/hunts/"+string(lintest.Hunt)+"/hotspots", testAdmin, "", body); err != nil || st != 200 {
		t.Fatalf("import = %d %s %v; want 200", st, b, err)
	}
	tokens := map[hunt.PlayerID]string{}
	for _, pl := range lintest.Players() {
		tok, err := httpapi.MintToken([]byte(testSecret), pl, lkTokenTTL, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		tokens[pl] = tok
	}
	target := &lintest.HTTP{Client: &http.Client{Transport: tr}, Base: p.base, Token: func(pl hunt.PlayerID) string { return tokens[pl] }}

	cfg := lintest.Config{CallTimeout: lkCallTimeout, ShortMax: lkShortMax, RestartTimeout: lkRestartTimeout,
		RestartAt: make([]int64, lkKills)}
	for k := range cfg.RestartAt {
		// Kill k falls in [(2k+1)/8, (2k+2)/8) of the operations: each kill
		// under load, and a quarter of the workload after the last.
		cfg.RestartAt[k] = int64(lintest.Ops*(2*k+1)/8 + rng.IntN(lintest.Ops/8))
	}
	cfg.Restart = func(int) {
		p.kill() // SIGKILL mid-load; every request in flight loses its answer
		tr.CloseIdleConnections()
		p = startServe(t, bin, data, addr, extra...)
	}
	run := lintest.Record(t, target, cfg)

	// Every kill must be in the history: operations it cut.
	ops := run.History.Ops()
	cut := make([]int, len(run.Restarts))
	for k, at := range run.Restarts {
		for _, op := range ops {
			if op.Unknown && op.Call.Before(at) && op.Return.After(at) {
				cut[k]++
			}
		}
	}
	if slices.Contains(cut, 0) {
		t.Fatalf("%v; kills cut %v operations; want each to cut an operation in flight", run, cut)
	}
	t.Logf("kills cut %v operations", cut)
	lintest.Check(t, run)

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
	if ok, _, err := audit.CheckLinearizable(&planted, run.Tickets, run.Rewards, lintest.CheckTimeout); ok || err != nil {
		t.Fatalf("CheckLinearizable(history + a second grant of %s to %s) = %v, %v; want false, nil", bad.Hotspot, bad.Player, ok, err)
	}
}

// Package enginetest is the one conformance suite every Cairn engine passes:
// same requests, same outcomes, same invariants I1–I4 and
// I7, across restarts.
//
// An engine joins by giving Run a factory of Harnesses: each Harness owns one
// persistent state (a directory, a Redis database) and opens engines on it;
// Open may be called again after the previous engine was stopped and closed,
// and must then see the same state (a restart).
//
// Time. The suite uses no fake clock, so that every engine, including ones
// whose decision time comes from a server, is tested the same way. Every
// time-dependent case is built relative to real time with wide margins: hunt
// and hotspot windows an hour away from now, and movements of kilometres
// between claims made within seconds against speed limits of a few m/s
// (see testImplausibleMovement), so no outcome depends on scheduling.
//
// Concurrency. Sub-tests run in parallel, each on its own fresh state. An
// engine that answers engine.ErrOverloaded is retried with the same request
// after a millisecond: shedding load is allowed, changing a decision is not.
package enginetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
)

// Harness opens engines on one persistent state; Open may be called again
// after the previous engine was stopped and closed (a restart) and must see
// the same state. Open returns an engine whose Run has not been called.
type Harness interface {
	Open(t *testing.T) engine.Engine
}

// Run runs every conformance test. newHarness gives a fresh, empty state per test.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"ClaimOutcomes", testClaimOutcomes},
		{"NotOpen", testNotOpen},
		{"ImplausibleMovement", testImplausibleMovement},
		{"Unknown", testUnknown},
		{"IdempotentReplays", testIdempotentReplays},
		{"ConcurrentDuplicates", testConcurrentDuplicates},
		{"KeyReuse", testKeyReuse},
		{"Storm", testStorm},
		{"Spends", testSpends},
		{"SpendsRaceCredits", testSpendsRaceCredits},
		{"ImportClamp", testImportClamp},
		{"ImportUpsert", testImportUpsert},
		{"HuntsAndNearby", testHuntsAndNearby},
		{"Restart", testRestart},
		{"FoldEvents", testFoldEvents},
		{"Sinks", testSinks},
		{"Revocations", testRevocations},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newHarness(t))
		})
	}
	t.Run("Model", func(t *testing.T) {
		t.Parallel()
		testModel(t, newHarness)
	})
}

// Running is an engine whose Run loop is going.
type Running struct {
	engine.Engine
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// StopTimeout bounds how long Stop waits for Run to return.
const StopTimeout = 30 * time.Second

// Start opens an engine from h, subscribes sinks, starts Run in a goroutine
// and waits until the engine is ready. Stop is registered as a cleanup.
func Start(t *testing.T, h Harness, sinks ...engine.Sink) *Running {
	t.Helper()
	e := h.Open(t)
	for _, s := range sinks {
		e.Subscribe(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Engine: e, t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- e.Run(ctx) }()
	t.Cleanup(func() { r.Stop() })
	waitFor(t, 10*time.Second, "engine ready", func() bool { return e.Ready() == nil })
	return r
}

// Stop cancels Run, waits for it to return (at most StopTimeout), closes the
// engine and returns Run's error. It is safe to call more than once.
func (r *Running) Stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(StopTimeout):
			r.t.Errorf("engine Run did not return within %v of cancel", StopTimeout)
			return
		}
		if err := r.Engine.Close(); err != nil {
			r.t.Errorf("Close() = %v", err)
		}
	})
	return r.err
}

// tb is what helpers need from *testing.T and *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
}

// callTimeout bounds every single engine call the suite makes.
const callTimeout = 30 * time.Second

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t tb, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		<-tick.C
	}
}

// Claim calls e.Claim, retrying the same request while the engine sheds load.
func Claim(c context.Context, e engine.Engine, req *hunt.ClaimRequest) (hunt.ClaimResult, error) {
	return retryShed(c, func() (hunt.ClaimResult, error) { return e.Claim(c, req) })
}

// Spend calls e.Spend, retrying the same request while the engine sheds load.
func Spend(c context.Context, e engine.Engine, req *hunt.SpendRequest) (hunt.SpendResult, error) {
	return retryShed(c, func() (hunt.SpendResult, error) { return e.Spend(c, req) })
}

// retryShed calls f until it answers anything but engine.ErrOverloaded, a
// millisecond apart, or until c ends (then with f's last answer).
func retryShed[T any](c context.Context, f func() (T, error)) (T, error) {
	for {
		res, err := f()
		if !errors.Is(err, engine.ErrOverloaded) {
			return res, err
		}
		select {
		case <-c.Done():
			return res, err
		case <-time.After(time.Millisecond):
		}
	}
}

// ---- fixtures ----

// place is a named point; hotspots near one city share a partition (same
// geohash prefix), hotspots of different cities most likely do not.
type place struct{ lat, lon float64 }

var cities = []place{
	{48.8566, 2.3522},    // Paris
	{51.5074, -0.1278},   // London
	{52.5200, 13.4050},   // Berlin
	{40.4168, -3.7038},   // Madrid
	{41.9028, 12.4964},   // Rome
	{35.6762, 139.6503},  // Tokyo
	{40.7128, -74.0060},  // New York
	{-33.8688, 151.2093}, // Sydney
	{-23.5505, -46.6333}, // São Paulo
	{30.0444, 31.2357},   // Cairo
	{19.0760, 72.8777},   // Mumbai
	{43.6532, -79.3832},  // Toronto
}

// north returns a point dNorthM metres north of p.
func (p place) north(dNorthM float64) place { return place{p.lat + dNorthM/111_195, p.lon} }

func spot(id string, at place, tickets, reward, points int64) hunt.Hotspot {
	return hunt.Hotspot{ID: hunt.HotspotID(id), Lat: at.lat, Lon: at.lon, Tickets: tickets, Reward: reward, Points: points}
}

func claimReq(player, key string, h hunt.HuntID, s string, at place) *hunt.ClaimRequest {
	return &hunt.ClaimRequest{Player: hunt.PlayerID(player), Key: key, Hunt: h, Hotspot: hunt.HotspotID(s), Lat: at.lat, Lon: at.lon}
}

func spendReq(player, key string, amount int64, reason string) *hunt.SpendRequest {
	return &hunt.SpendRequest{Player: hunt.PlayerID(player), Key: key, Amount: amount, Reason: reason}
}

func mustPutHunt(t tb, e engine.Engine, h hunt.Hunt) {
	t.Helper()
	c, cancel := ctx()
	defer cancel()
	if err := e.PutHunt(c, h); err != nil {
		t.Fatalf("PutHunt(%s) = %v; want nil", h.ID, err)
	}
}

func mustImport(t tb, e engine.Engine, id hunt.HuntID, hs ...hunt.Hotspot) {
	t.Helper()
	c, cancel := ctx()
	defer cancel()
	if err := e.ImportHotspots(c, id, hs); err != nil {
		t.Fatalf("ImportHotspots(%s, %d hotspots) = %v; want nil", id, len(hs), err)
	}
}

func mustClaim(t tb, e engine.Engine, req *hunt.ClaimRequest) hunt.ClaimResult {
	t.Helper()
	c, cancel := ctx()
	defer cancel()
	res, err := Claim(c, e, req)
	if err != nil {
		t.Fatalf("Claim(%+v) = %v; want nil error", *req, err)
	}
	return res
}

// wantClaim claims and checks the outcome.
func wantClaim(t tb, e engine.Engine, req *hunt.ClaimRequest, want hunt.Outcome) hunt.Event {
	t.Helper()
	res := mustClaim(t, e, req)
	if res.Event.Outcome != want || res.Replayed {
		t.Fatalf("Claim(%s by %s key %s) = %v (replayed %v); want %v (not replayed)",
			req.Hotspot, req.Player, req.Key, res.Event.Outcome, res.Replayed, want)
	}
	return res.Event
}

func mustSpend(t tb, e engine.Engine, req *hunt.SpendRequest) hunt.SpendResult {
	t.Helper()
	c, cancel := ctx()
	defer cancel()
	res, err := Spend(c, e, req)
	if err != nil {
		t.Fatalf("Spend(%+v) = %v; want nil error", *req, err)
	}
	return res
}

func mustWallet(t tb, e engine.Engine, p string) hunt.Wallet {
	t.Helper()
	c, cancel := ctx()
	defer cancel()
	w, err := e.Wallet(c, hunt.PlayerID(p))
	if err != nil {
		t.Fatalf("Wallet(%s) = %v", p, err)
	}
	return w
}

func wantBalance(t tb, e engine.Engine, p string, want int64) {
	t.Helper()
	if w := mustWallet(t, e, p); w.Balance != want {
		t.Fatalf("Wallet(%s).Balance = %d; want %d", p, w.Balance, want)
	}
}

// views returns every hotspot of a hunt by id.
func views(t tb, e engine.Engine, id hunt.HuntID) map[hunt.HotspotID]hunt.HotspotView {
	t.Helper()
	c, cancel := ctx()
	defer cancel()
	out := map[hunt.HotspotID]hunt.HotspotView{}
	err := e.Hotspots(c, id, func(v hunt.HotspotView) error {
		if _, dup := out[v.ID]; dup {
			return fmt.Errorf("hotspot %s listed twice", v.ID)
		}
		out[v.ID] = v
		return nil
	})
	if err != nil {
		t.Fatalf("Hotspots(%s) = %v", id, err)
	}
	return out
}

func wantLeft(t tb, e engine.Engine, id hunt.HuntID, s string, tickets, left int64) {
	t.Helper()
	v, ok := views(t, e, id)[hunt.HotspotID(s)]
	if !ok || v.Tickets != tickets || v.TicketsLeft != left {
		t.Fatalf("Hotspots(%s)[%s] = tickets %d, left %d (found %v); want tickets %d, left %d",
			id, s, v.Tickets, v.TicketsLeft, ok, tickets, left)
	}
}

// allEvents reads the whole log.
func allEvents(t tb, e engine.Engine) []hunt.Event {
	t.Helper()
	c, cancel := ctx()
	defer cancel()
	var out []hunt.Event
	if err := e.Events(c, nil, func(ev *hunt.Event) error { out = append(out, *ev); return nil }); err != nil {
		t.Fatalf("Events(nil) = %v", err)
	}
	return out
}

// sameEvent compares two events, times by instant.
func sameEvent(a, b hunt.Event) bool {
	if !a.At.Equal(b.At) {
		return false
	}
	a.At, b.At = time.Time{}, time.Time{}
	return a == b
}

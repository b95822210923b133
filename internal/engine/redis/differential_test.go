package redis

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/hunt"
)

// TestDifferentialAgainstEmbedded sends the same random sequences of claims
// (near and far, in and out of windows, fast movements), spends, retries and
// key reuses to the embedded engine and to two Redis nodes (one queueing
// through the stream pipeline, one calling the Function directly; calls
// alternate between them), all deciding on one shared fake clock, and wants
// identical answers: same error, outcome, replay flag, epoch, amounts and
// tickets left; then the same wallets and hotspots.
func TestDifferentialAgainstEmbedded(t *testing.T) {
	differential(t, func(clock func() time.Time) []*Engine {
		srv := redistest.Start(t)
		queued := start(t, testConfig(srv, func(c *Config) { c.Clock = clock; c.Consumer = "queued" }))
		direct := start(t, testConfig(srv, func(c *Config) { c.Clock = clock; c.Consumer = "direct"; c.Direct = true }))
		return []*Engine{queued.Engine, direct.Engine}
	})
}

// TestDifferentialCluster is the same comparison with two nodes of a 3+3
// Redis Cluster (claims split over two slots and claims in one slot alike).
func TestDifferentialCluster(t *testing.T) {
	differential(t, func(clock func() time.Time) []*Engine {
		c := redistest.StartCluster(t, 3, clusterNodeTimeout)
		a := start(t, clusterConfig(c, func(c *Config) { c.Clock = clock; c.Consumer = "cluster-a" }))
		b := start(t, clusterConfig(c, func(c *Config) { c.Clock = clock; c.Consumer = "cluster-b" }))
		return []*Engine{a.Engine, b.Engine}
	})
}

// differential runs the comparison against the two Redis nodes nodes returns.
func differential(t *testing.T, nodes func(clock func() time.Time) []*Engine) {
	var nowNS atomic.Int64
	nowNS.Store(time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, nowNS.Load()).UTC() }

	emb, err := embedded.Open(embedded.Config{Dir: t.TempDir(), Partitions: 8, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ectx, ecancel := context.WithCancel(context.Background())
	edone := make(chan error, 1)
	go func() { edone <- emb.Run(ectx) }()
	t.Cleanup(func() { ecancel(); <-edone; emb.Close() })
	// Calls before Run starts the writers answer ErrClosed: wait for them.
	waitFor(t, 10*time.Second, "the embedded engine to be ready", func() bool { return emb.Ready() == nil })

	reds := nodes(clock)
	ctx := context.Background()

	seen := map[string]int{}
	note := func(ev hunt.Event, replayed bool, err error) {
		switch {
		case err != nil:
			seen[err.Error()]++
		case replayed:
			seen["replay"]++
		default:
			seen[ev.Outcome.String()]++
		}
	}
	iter := 0
	rapid.Check(t, func(rt *rapid.T) {
		iter++
		pre := fmt.Sprintf("d%d-", iter)
		now := clock()
		h := hunt.Hunt{ID: hunt.HuntID(pre + "hunt"), ClaimRadiusM: 40,
			MaxSpeedMps: rapid.SampledFrom([]float64{0, 3, 3, 30}).Draw(rt, "max_speed")}
		switch rapid.IntRange(0, 7).Draw(rt, "hunt_window") {
		case 0:
			h.StartsAt = now.Add(time.Hour)
		case 1:
			h.EndsAt = now.Add(20 * time.Second) // closes during the sequence
		}
		var spots []hunt.Hotspot
		for i := range rapid.IntRange(1, 4).Draw(rt, "spots") {
			c := []struct{ lat, lon float64 }{{48.8566, 2.3522}, {51.5074, -0.1278}}[i%2]
			s := hunt.Hotspot{ID: hunt.HotspotID(fmt.Sprintf("s%d", i)),
				Lat: c.lat + float64(i)*0.0004, Lon: c.lon, // ~45 m apart: movements between them are fast
				Tickets: int64(rapid.IntRange(0, 3).Draw(rt, "tickets")), Reward: int64(rapid.IntRange(0, 20).Draw(rt, "reward")),
				Points: 5}
			if rapid.IntRange(0, 7).Draw(rt, "spot_window") == 0 {
				s.OpensAt = now.Add(10 * time.Second)
			}
			spots = append(spots, s)
		}
		for _, e := range []engine.Engine{emb, reds[0]} {
			if err := e.PutHunt(ctx, h); err != nil {
				rt.Fatalf("PutHunt = %v", err)
			}
			if err := e.ImportHotspots(ctx, h.ID, spots); err != nil {
				rt.Fatalf("ImportHotspots = %v", err)
			}
		}
		players := []hunt.PlayerID{hunt.PlayerID(pre + "a"), hunt.PlayerID(pre + "b"), hunt.PlayerID(pre + "c")}
		var keys []string
		var lastClaim *hunt.ClaimRequest
		var lastSpend *hunt.SpendRequest
		for step := range rapid.IntRange(1, 12).Draw(rt, "steps") {
			nowNS.Add(int64(rapid.IntRange(0, 4000).Draw(rt, "advance_ms")) * int64(time.Millisecond))
			red := reds[step%2]
			if (lastClaim != nil || lastSpend != nil) && rapid.IntRange(0, 4).Draw(rt, "retry") == 0 {
				// A client's retry of its previous request, possibly through the other node.
				if lastClaim != nil {
					want, werr := emb.Claim(ctx, lastClaim)
					got, gerr, again := retryRedis(rt, red, func() (hunt.ClaimResult, error) { return red.Claim(ctx, lastClaim) })
					compare(rt, fmt.Sprintf("retry of Claim(%+v) via %s", *lastClaim, red.Consumer()), want.Event, want.Replayed, werr, got.Event, got.Replayed, gerr, again)
					note(want.Event, want.Replayed, werr)
				} else {
					want, werr := emb.Spend(ctx, lastSpend)
					got, gerr, again := retryRedis(rt, red, func() (hunt.SpendResult, error) { return red.Spend(ctx, lastSpend) })
					compare(rt, fmt.Sprintf("retry of Spend(%+v) via %s", *lastSpend, red.Consumer()), want.Event, want.Replayed, werr, got.Event, got.Replayed, gerr, again)
					note(want.Event, want.Replayed, werr)
				}
				continue
			}
			pl := rapid.SampledFrom(players).Draw(rt, "player")
			key := fmt.Sprintf("k%d", step)
			if len(keys) > 0 && rapid.IntRange(0, 3).Draw(rt, "reuse") == 0 {
				key = rapid.SampledFrom(keys).Draw(rt, "old_key")
			}
			keys = append(keys, key)
			if rapid.IntRange(0, 3).Draw(rt, "kind") == 0 {
				req := &hunt.SpendRequest{Player: pl, Key: key, Amount: int64(rapid.IntRange(1, 12).Draw(rt, "amount")), Reason: "diff test"}
				lastClaim, lastSpend = nil, req
				want, werr := emb.Spend(ctx, req)
				got, gerr, again := retryRedis(rt, red, func() (hunt.SpendResult, error) { return red.Spend(ctx, req) })
				compare(rt, fmt.Sprintf("Spend(%+v) via %s", *req, red.Consumer()), want.Event, want.Replayed, werr, got.Event, got.Replayed, gerr, again)
				note(want.Event, want.Replayed, werr)
				continue
			}
			s := rapid.SampledFrom(spots).Draw(rt, "spot")
			req := &hunt.ClaimRequest{Player: pl, Key: key, Hunt: h.ID, Hotspot: s.ID, Lat: s.Lat, Lon: s.Lon}
			if rapid.IntRange(0, 4).Draw(rt, "far") == 0 {
				req.Lat += 0.001 // ~111 m: beyond the 40 m radius
			}
			lastClaim, lastSpend = req, nil
			want, werr := emb.Claim(ctx, req)
			got, gerr, again := retryRedis(rt, red, func() (hunt.ClaimResult, error) { return red.Claim(ctx, req) })
			compare(rt, fmt.Sprintf("Claim(%+v) via %s", *req, red.Consumer()), want.Event, want.Replayed, werr, got.Event, got.Replayed, gerr, again)
			note(want.Event, want.Replayed, werr)
		}
		for _, pl := range players {
			want, _ := emb.Wallet(ctx, pl)
			got, err := reds[0].Wallet(ctx, pl)
			if err != nil || got != want {
				rt.Fatalf("Wallet(%s) = %+v, %v; embedded says %+v", pl, got, err, want)
			}
		}
		left := map[hunt.HotspotID]int64{}
		_ = emb.Hotspots(ctx, h.ID, func(v hunt.HotspotView) error { left[v.ID] = v.TicketsLeft; return nil })
		_ = reds[1].Hotspots(ctx, h.ID, func(v hunt.HotspotView) error {
			if left[v.ID] != v.TicketsLeft {
				rt.Fatalf("hotspot %s: %d tickets left; embedded says %d", v.ID, v.TicketsLeft, left[v.ID])
			}
			return nil
		})
	})
	// The sequences must have reached the common kinds of answer, or the
	// comparison proves little. (implausible_movement and spent come up a few
	// times per run, too rarely to require without making the test flaky.)
	t.Logf("answers compared: %v", seen)
	for _, o := range []string{"granted", "already_claimed", "sold_out", "too_far", "not_open",
		"insufficient_funds", "replay", hunt.ErrKeyReused.Error()} {
		if seen[o] == 0 {
			t.Errorf("no %s answer among the random sequences; want every kind compared", o)
		}
	}
}

// retryRedis makes a Redis engine call, and again with the same request
// while the engine sheds load or reports Redis unavailable (a slow probe on a
// loaded test machine), as a client retries a 429 or 503. retried reports
// whether it did: the decision must still be the same, but the answer may
// then be the replay of the first attempt's decision.
func retryRedis[R any](rt *rapid.T, e *Engine, call func() (R, error)) (res R, err error, retried bool) {
	for range 50 {
		res, err = call()
		if !errors.Is(err, engine.ErrUnavailable) && !errors.Is(err, engine.ErrOverloaded) {
			return res, err, retried
		}
		retried = true
		deadline := time.Now().Add(10 * time.Second)
		for e.Ready() != nil && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // polling Ready, with a deadline
		}
	}
	rt.Fatalf("still %v after 50 attempts", err)
	return res, err, retried
}

// compare wants the Redis answer to equal the embedded one.
func compare(rt *rapid.T, call string, want hunt.Event, wantRe bool, werr error, got hunt.Event, gotRe bool, gerr error, retried bool) {
	rt.Helper()
	for _, sentinel := range []error{hunt.ErrKeyReused, hunt.ErrUnknownHunt, hunt.ErrUnknownHotspot} {
		if errors.Is(werr, sentinel) != errors.Is(gerr, sentinel) {
			rt.Fatalf("%s = %v; embedded says %v", call, gerr, werr)
		}
	}
	if (werr == nil) != (gerr == nil) {
		rt.Fatalf("%s = %v; embedded says %v", call, gerr, werr)
	}
	if werr != nil {
		return
	}
	// The log keeps milliseconds; the embedded engine answers a fresh
	// decision with the full clock reading.
	if want.At.UnixMilli() != got.At.UnixMilli() {
		rt.Fatalf("%s at %v; embedded says %v", call, got.At, want.At)
	}
	want.At, got.At = time.Time{}, time.Time{}
	if want != got || (wantRe != gotRe && !retried) {
		rt.Fatalf("%s = %+v (replayed %v); embedded says %+v (replayed %v)", call, got, gotRe, want, wantRe)
	}
}

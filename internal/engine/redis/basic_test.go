package redis

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

func TestClaimBothModes(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run("direct="+strconv.FormatBool(direct), func(t *testing.T) {
			srv := redistest.Start(t)
			n := start(t, testConfig(srv, func(c *Config) { c.Direct = direct }))
			hs := putFixture(t, n.Engine, 3, 1)
			ctx := context.Background()
			pfx := strconv.FormatBool(direct)
			got, err := n.Claim(ctx, claimAt("alice"+pfx, "k1", hs[0]))
			if err != nil || got.Event.Outcome != hunt.Granted || got.Replayed {
				t.Fatalf("Claim = %+v, %v; want granted, not replayed", got, err)
			}
			if ev := got.Event; ev.Reward != hs[0].Reward || ev.Points != hs[0].Points || ev.TicketsLeft != 0 || ev.Epoch.Seq == 0 {
				t.Errorf("Claim event = %+v; want reward %d points %d tickets_left 0", ev, hs[0].Reward, hs[0].Points)
			}
			again, err := n.Claim(ctx, claimAt("alice"+pfx, "k1", hs[0]))
			if err != nil || !again.Replayed || again.Event != got.Event {
				t.Errorf("retry = %+v, %v; want the same event replayed", again, err)
			}
			sold, err := n.Claim(ctx, claimAt("bob"+pfx, "k1", hs[0]))
			if err != nil || sold.Event.Outcome != hunt.SoldOut {
				t.Errorf("second player = %+v, %v; want sold_out", sold, err)
			}
			if _, err := n.Claim(ctx, claimAt("alice"+pfx, "k1", hs[1])); !errors.Is(err, hunt.ErrKeyReused) {
				t.Errorf("key reused for another hotspot = %v; want ErrKeyReused", err)
			}
			far := claimAt("carol"+pfx, "k1", hs[1])
			far.Lat += 0.01
			if r, err := n.Claim(ctx, far); err != nil || r.Event.Outcome != hunt.TooFar {
				t.Errorf("far claim = %+v, %v; want too_far", r, err)
			}
			unknown := claimAt("alice"+pfx, "k9", hunt.Hotspot{ID: "nope"})
			if _, err := n.Claim(ctx, unknown); !errors.Is(err, hunt.ErrUnknownHotspot) {
				t.Errorf("unknown hotspot = %v; want ErrUnknownHotspot", err)
			}
			unknown.Hunt = "nohunt"
			if _, err := n.Claim(ctx, unknown); !errors.Is(err, hunt.ErrUnknownHunt) {
				t.Errorf("unknown hunt = %v; want ErrUnknownHunt", err)
			}
			w, err := n.Wallet(ctx, hunt.PlayerID("alice"+pfx))
			if err != nil || w.Balance != hs[0].Reward || w.Epoch != got.Event.Epoch {
				t.Errorf("Wallet = %+v, %v; want balance %d at %v", w, err, hs[0].Reward, got.Event.Epoch)
			}
			sp, err := n.Spend(ctx, &hunt.SpendRequest{Player: hunt.PlayerID("alice" + pfx), Key: "s1", Amount: 4, Reason: "a hat, blue"})
			if err != nil || sp.Event.Outcome != hunt.Spent || sp.Event.Balance != hs[0].Reward-4 || sp.Event.Reason != "a hat, blue" {
				t.Errorf("Spend = %+v, %v; want spent, balance %d", sp, err, hs[0].Reward-4)
			}
			no, err := n.Spend(ctx, &hunt.SpendRequest{Player: hunt.PlayerID("alice" + pfx), Key: "s2", Amount: 1000})
			if err != nil || no.Event.Outcome != hunt.InsufficientFunds || no.Event.Balance != hs[0].Reward-4 {
				t.Errorf("Spend = %+v, %v; want insufficient_funds", no, err)
			}
			led, err := n.Ledger(ctx, hunt.PlayerID("alice"+pfx), 10)
			if err != nil || len(led) != 2 || led[0].Kind != "spend" || led[0].Amount != -4 || led[1].Kind != "claim" || led[1].Amount != hs[0].Reward {
				t.Errorf("Ledger = %+v, %v; want spend -4 then claim +%d", led, err, hs[0].Reward)
			}
			n.Stop(t)
		})
	}
}

func TestDistanceMatchesGo(t *testing.T) {
	srv := redistest.Start(t)
	n := start(t, testConfig(srv))
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	mismatch := 0
	const samples = 2000
	for i := 0; i < samples; i++ {
		lat1, lon1 := rng.Float64()*180-90, rng.Float64()*360-180
		lat2, lon2 := lat1+rng.NormFloat64()*0.01, lon1+rng.NormFloat64()*0.01
		if i%2 == 0 {
			lat2, lon2 = rng.Float64()*180-90, rng.Float64()*360-180
		}
		lat2 = max(min(lat2, 90), -90)
		s, err := n.rdb.FCallRO(ctx, "cairn_distance", nil, formatFloat(lat1), formatFloat(lon1), formatFloat(lat2), formatFloat(lon2)).Text()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := strconv.ParseFloat(s, 64)
		want := geo.DistanceM(lat1, lon1, lat2, lon2)
		if got != want {
			mismatch++
			// cairn.lua ports Go's pure-Go sin/cos/asin: on amd64 the bits are
			// equal. Elsewhere Go may fuse multiply-adds, and only the last
			// bits may differ.
			if d := math.Abs(got - want); runtime.GOARCH == "amd64" || d > 1e-6*math.Max(1, want) {
				t.Fatalf("lua distance(%v,%v,%v,%v) = %v; want %v (bit-identical)", lat1, lon1, lat2, lon2, got, want)
			}
		}
	}
	t.Logf("%d of %d distances differ from geo.DistanceM in the last bits", mismatch, samples)
}

func TestLibraryVersion(t *testing.T) {
	if LibraryVersion < 1 {
		t.Fatalf("LibraryVersion = %d; want >= 1", LibraryVersion)
	}
	srv := redistest.Start(t)
	n := start(t, testConfig(srv))
	n.Stop(t)
	raw := rawClient(t, srv)
	ctx := context.Background()
	newer := versionLine.ReplaceAllString(librarySource, "-- cairn-version: "+strconv.Itoa(LibraryVersion+1))
	if err := raw.FunctionLoadReplace(ctx, newer).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, testConfig(srv)); !errors.Is(err, ErrLibraryNewer) {
		t.Fatalf("Open with a newer library in Redis = %v; want ErrLibraryNewer", err)
	}
	older := versionLine.ReplaceAllString(librarySource, "-- cairn-version: 0")
	if err := raw.FunctionLoadReplace(ctx, older).Err(); err != nil {
		t.Fatal(err)
	}
	e, err := Open(ctx, testConfig(srv))
	if err != nil {
		t.Fatalf("Open with an older library = %v; want an upgrade", err)
	}
	e.Close()
	libs, err := raw.FunctionList(ctx, goredisQuery()).Result()
	if err != nil || len(libs) != 1 {
		t.Fatalf("FUNCTION LIST = %v, %v", libs, err)
	}
	if v, _ := libraryVersion(libs[0].Code); v != LibraryVersion {
		t.Errorf("library version after Open = %d; want %d", v, LibraryVersion)
	}
}

func TestRefusesVolatileRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Volatile())
	ctx := context.Background()
	if _, err := Open(ctx, testConfig(srv)); !errors.Is(err, ErrVolatile) {
		t.Fatalf("Open on appendonly no = %v; want ErrVolatile", err)
	}
	raw := rawClient(t, srv)
	raw.ConfigSet(ctx, "appendonly", "yes")
	raw.ConfigSet(ctx, "appendfsync", "everysec")
	if _, err := Open(ctx, testConfig(srv)); !errors.Is(err, ErrVolatile) {
		t.Fatalf("Open on appendfsync everysec = %v; want ErrVolatile", err)
	}
	n := start(t, testConfig(srv, func(c *Config) { c.AllowVolatile = true }))
	if err := n.Ready(); err != nil {
		t.Fatalf("Ready with AllowVolatile = %v; want nil", err)
	}
}

func TestRefusesOtherPartitioning(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	e, err := Open(ctx, testConfig(srv))
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	if _, err := Open(ctx, testConfig(srv, func(c *Config) { c.Partitions = 16 })); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Open with another partition count = %v; want ErrMismatch", err)
	}
}

func TestUnavailableAtOpen(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	start := time.Now()
	_, err := Open(context.Background(), testConfig(srv))
	if !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("Open on a dead Redis = %v; want ErrUnavailable", err)
	}
	t.Logf("Open failed after %v", time.Since(start))
}

// TestRecheckAnswersLostWaits: a queued call whose published answer was lost
// (Pub/Sub is at-most-once) is answered from the idempotency record and the log.
func TestRecheckAnswersLostWaits(t *testing.T) {
	srv := redistest.Start(t)
	n := start(t, testConfig(srv, func(c *Config) { c.Consumer = "waiting" }))
	other := start(t, testConfig(srv, func(c *Config) { c.Consumer = "other"; c.Direct = true }))
	hs := putFixture(t, n.Engine, 1, 5)
	ctx := context.Background()
	req := claimAt("p1", "k1", hs[0])
	first, err := other.Claim(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// A wait as decideQueued registers it, whose answer never comes.
	w := &waiter{rid: "lost.1", player: req.Player, key: req.Key, fp: strconv.FormatUint(req.Fingerprint(), 10),
		since: time.Now(), done: make(chan waitResult, 1)}
	n.waiters.add(w)
	reused := &waiter{rid: "lost.2", player: req.Player, key: req.Key, fp: "12345", since: time.Now(), done: make(chan waitResult, 1)}
	n.waiters.add(reused)
	n.recheck(ctx, 0)
	select {
	case res := <-w.done:
		a, err := parseAnswer(res.msg)
		var ev hunt.Event
		if err != nil || res.err != nil || decodeEvent(a.event, &ev) != nil || ev != first.Event || a.rid == w.rid {
			t.Fatalf("recheck answered %q, %v; want the decision %v made by another request", res.msg, res.err, first.Event.Epoch)
		}
	default:
		t.Fatal("recheck did not answer a wait whose decision is recorded")
	}
	select {
	case res := <-reused.done:
		if res.msg != "err key_reused" {
			t.Fatalf("recheck answered %q for another fingerprint; want err key_reused", res.msg)
		}
	default:
		t.Fatal("recheck did not answer a wait whose key was used for another request")
	}
	if n.waiters.len() != 0 {
		t.Errorf("waiters after recheck = %d; want 0", n.waiters.len())
	}
}

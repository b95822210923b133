package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/hunt"
)

// startPair starts a durable primary and a durable replica of it and waits
// until the replica's link is up.
func startPair(t *testing.T) (primary, replica *redistest.Server) {
	t.Helper()
	primary = redistest.Start(t)
	replica = redistest.Start(t, redistest.ReplicaOf(primary))
	waitLinked(t, primary)
	return primary, replica
}

// waitLinked waits until primary has a replica online that acknowledges
// writes: a replica that has just synced can be "online" a while before its
// first acknowledgement comes back, which a short ReplicaTimeout would take
// for a missing replica.
func waitLinked(t *testing.T, primary *redistest.Server) {
	t.Helper()
	c := rawClient(t, primary)
	ctx := context.Background()
	waitFor(t, 20*time.Second, "a replica online at "+primary.Addr(), func() bool {
		info, err := c.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online")
	})
	waitFor(t, 20*time.Second, "the replica of "+primary.Addr()+" to acknowledge a write", func() bool {
		if c.Set(ctx, "cairn-test:link-probe", time.Now().UnixNano(), 0).Err() != nil {
			return false
		}
		n, err := c.Do(ctx, "WAIT", 1, 200).Int()
		return err == nil && n >= 1
	})
}

// acked is a call answered with a decision, to replay after the failover.
type acked struct {
	claim *hunt.ClaimRequest
	spend *hunt.SpendRequest
	ev    hunt.Event
}

// TestFailoverKeepsAcknowledged: claims and spends run with MinReplicas 1
// against a primary with one replica; the primary is killed (SIGKILL) mid-load
// and the replica promoted, as a failover would. Every call answered with a
// decision before the kill replays with the same decision from the promoted
// replica, the load goes on there, and the log and the state agree: grants <=
// tickets (I1), one grant per player and hotspot (I2), every key decided once
// (I3), wallets = Σ rewards − Σ spends (I4).
func TestFailoverKeepsAcknowledged(t *testing.T) {
	const hotspots, tickets = 8, 40
	primary, replica := startPair(t)
	cfg := func(srv *redistest.Server, minReplicas int) Config {
		return testConfig(srv, func(c *Config) {
			c.Direct, c.MinReplicas, c.Consumer = true, minReplicas, "node-"+srv.Addr()
		})
	}
	a := start(t, cfg(primary, 1))
	hs := putFixture(t, a.Engine, hotspots, tickets)

	var (
		mu   sync.Mutex
		done []acked
		seq  atomic.Int64
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := seq.Add(1)
				pl := fmt.Sprintf("p%d", i%50) // players come back: already_claimed, spends with funds
				if i%5 == 0 {
					req := &hunt.SpendRequest{Player: hunt.PlayerID(pl), Key: fmt.Sprintf("s%d", i), Amount: 3}
					if res, err := a.Spend(ctx, req); err == nil {
						mu.Lock()
						done = append(done, acked{spend: req, ev: res.Event})
						mu.Unlock()
					}
					continue
				}
				req := claimAt(pl, fmt.Sprintf("c%d-%d", w, i), hs[int(i)%hotspots])
				if res, err := a.Claim(ctx, req); err == nil {
					mu.Lock()
					done = append(done, acked{claim: req, ev: res.Event})
					mu.Unlock()
				}
			}
		})
	}
	waitFor(t, 60*time.Second, "200 acknowledged calls", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(done) >= 200
	})
	primary.Kill() // mid-load: calls in flight fail, none is answered with a decision afterwards
	cancel()
	wg.Wait()
	a.Stop(t)

	rc := rawClient(t, replica)
	if err := rc.Do(context.Background(), "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatalf("promote the replica: %v", err)
	}
	b := start(t, cfg(replica, 0))
	bg := context.Background()
	for _, d := range done {
		if d.claim != nil {
			res, err := b.Claim(bg, d.claim)
			if err != nil || !res.Replayed || res.Event != d.ev {
				t.Fatalf("claim %s/%s after the failover = %+v, %v; want %v replayed", d.claim.Player, d.claim.Key, res, err, d.ev)
			}
			continue
		}
		res, err := b.Spend(bg, d.spend)
		if err != nil || !res.Replayed || res.Event != d.ev {
			t.Fatalf("spend %s/%s after the failover = %+v, %v; want %v replayed", d.spend.Player, d.spend.Key, res, err, d.ev)
		}
	}
	// The load goes on on the promoted replica.
	if res, err := b.Claim(bg, claimAt("after", "k1", hs[0])); err != nil || res.Replayed {
		t.Fatalf("claim on the promoted replica = %+v, %v; want a fresh decision", res, err)
	}
	checkLogAgainstState(t, b.Engine, hotspots)
	t.Logf("%d acknowledged calls before the kill, all replayed", len(done))
}

// TestReplicaDownRefusesClaims: with MinReplicas 1 and the only replica
// killed, no claim is acknowledged (each answers ErrUnavailable wrapping
// ErrNotReplicated); once the replica is back, the same requests replay the
// decisions they had been refused with, and new claims are acknowledged.
func TestReplicaDownRefusesClaims(t *testing.T) {
	primary, replica := startPair(t)
	n := start(t, testConfig(primary, func(c *Config) {
		c.Direct, c.MinReplicas, c.ReplicaTimeout = true, 1, 500*time.Millisecond
	}))
	hs := putFixture(t, n.Engine, 2, 100)
	ctx := context.Background()
	if res, err := n.Claim(ctx, claimAt("first", "k", hs[0])); err != nil || res.Event.Outcome != hunt.Granted {
		t.Fatalf("claim with the replica up = %+v, %v; want granted", res, err)
	}
	replica.Kill()
	c := rawClient(t, primary)
	waitFor(t, 20*time.Second, "the primary to see its replica gone", func() bool {
		info, err := c.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "connected_slaves:0")
	})
	refused := make([]*hunt.ClaimRequest, 5)
	for i := range refused {
		refused[i] = claimAt(fmt.Sprintf("down%d", i), "k", hs[i%2])
		res, err := n.Claim(ctx, refused[i])
		if !errors.Is(err, engine.ErrUnavailable) || !errors.Is(err, ErrNotReplicated) {
			t.Fatalf("claim with the replica down = %+v, %v; want ErrUnavailable and ErrNotReplicated", res, err)
		}
	}
	replica.Restart()
	waitLinked(t, primary)
	for _, req := range refused {
		// A replica that has just resynced may take longer than the
		// ReplicaTimeout to acknowledge its first offsets: a
		// client retries a 503, and so does this test, until a deadline.
		var res hunt.ClaimResult
		var err error
		waitFor(t, 20*time.Second, "the retry of "+string(req.Player)+" to be acknowledged", func() bool {
			res, err = n.Claim(ctx, req)
			return !errors.Is(err, ErrNotReplicated)
		})
		if err != nil || !res.Replayed || res.Event.Outcome != hunt.Granted {
			t.Fatalf("retry of %s after the replica came back = %+v, %v; want the granted decision replayed", req.Player, res, err)
		}
	}
	later := claimAt("later", "k", hs[1])
	var res hunt.ClaimResult
	var err error
	waitFor(t, 20*time.Second, "a new claim to be acknowledged", func() bool {
		res, err = n.Claim(ctx, later)
		return !errors.Is(err, ErrNotReplicated)
	})
	if err != nil || res.Event.Outcome != hunt.Granted {
		t.Fatalf("new claim with the replica back = %+v, %v; want acknowledged", res, err)
	}
	checkLogAgainstState(t, n.Engine, 2)
}

// TestFrozenPrimaryAcknowledgesNothingAfterFailover: the primary is frozen
// (SIGSTOP) mid-load past the point where its replica is promoted, then
// resumed, while its node keeps calling it (split brain). With MinReplicas 1
// the old primary cannot acknowledge anything after the promotion: its only
// replica no longer follows it, so WAIT sees no replica and every call is
// refused. Every call acknowledged at any time replays with its decision on
// the promoted replica, and the log there agrees with the state.
func TestFrozenPrimaryAcknowledgesNothingAfterFailover(t *testing.T) {
	const hotspots = 4
	primary, replica := startPair(t)
	a := start(t, testConfig(primary, func(c *Config) {
		c.Direct, c.MinReplicas, c.ReplicaTimeout, c.Consumer = true, 1, 200*time.Millisecond, "node-a"
	}))
	hs := putFixture(t, a.Engine, hotspots, 1000)

	var (
		mu          sync.Mutex
		done        []acked
		seq         atomic.Int64
		resumed     atomic.Bool
		afterResume atomic.Int64 // calls answered (either way) after the resume
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := seq.Add(1)
				req := claimAt(fmt.Sprintf("p%d", i%30), fmt.Sprintf("k%d", i), hs[int(i)%hotspots])
				res, err := a.Claim(ctx, req)
				if resumed.Load() && ctx.Err() == nil {
					afterResume.Add(1)
				}
				if err == nil {
					mu.Lock()
					done = append(done, acked{claim: req, ev: res.Event})
					mu.Unlock()
				}
			}
		})
	}
	waitFor(t, 60*time.Second, "100 acknowledged claims", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(done) >= 100
	})
	primary.Pause()
	rc := rawClient(t, replica)
	if err := rc.Do(context.Background(), "REPLICAOF", "NO", "ONE").Err(); err != nil {
		primary.Resume()
		t.Fatalf("promote the replica: %v", err)
	}
	b := start(t, testConfig(replica, func(c *Config) { c.Direct, c.Consumer = true, "node-b" }))
	bg := context.Background()
	if res, err := b.Claim(bg, claimAt("on-b", "k", hs[0])); err != nil || res.Replayed {
		t.Fatalf("claim on the promoted replica = %+v, %v; want a fresh decision", res, err)
	}
	primary.Resume()
	resumed.Store(true)
	waitFor(t, 60*time.Second, "50 calls answered by the old primary's node after the resume", func() bool {
		return afterResume.Load() >= 50
	})
	cancel()
	wg.Wait()
	a.Stop(t)

	for _, d := range done {
		res, err := b.Claim(bg, d.claim)
		if err != nil || !res.Replayed || res.Event != d.ev {
			t.Fatalf("claim %s/%s acknowledged by the old primary = %v; on the promoted replica = %+v, %v; want it replayed",
				d.claim.Player, d.claim.Key, d.ev, res, err)
		}
	}
	checkLogAgainstState(t, b.Engine, hotspots)
	t.Logf("%d acknowledged claims, all replayed; %d calls after the resume", len(done), afterResume.Load())
}

package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/enginetest"
	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/hunt"
)

// clusterNodeTimeout is cluster-node-timeout of the test clusters: long
// enough that a starved CI machine does not fail over on its own.
const clusterNodeTimeout = 1500 * time.Millisecond

// clusterConfig is testConfig for a cluster: direct calls, MinReplicas at
// its cluster default (1).
func clusterConfig(c *redistest.Cluster, mods ...func(*Config)) Config {
	cfg := testConfig(nil, mods...)
	cfg.URL = c.URL()
	cfg.Direct = true
	for _, m := range mods {
		m(&cfg)
	}
	return cfg
}

// TestClusterBasics: claims whose player and hotspot share a slot and claims
// split over two slots, spends, replays and key reuse on a 3+3 cluster;
// wallets equal the fold of the log.
func TestClusterBasics(t *testing.T) {
	c := redistest.StartCluster(t, 3, clusterNodeTimeout)
	n := start(t, clusterConfig(c))
	if n.cfg.MinReplicas != 1 {
		t.Fatalf("MinReplicas = %d in cluster mode; want the default 1", n.cfg.MinReplicas)
	}
	hs := putFixture(t, n.Engine, 8, 3)
	ctx := context.Background()
	split, same := 0, 0
	for i := range 20 {
		pl := fmt.Sprintf("p%d", i)
		for j, s := range hs {
			if uint32(spendPartition(hunt.PlayerID(pl), n.cfg.Partitions)) == mustPartition(t, n.Engine, s) {
				same++
			} else {
				split++
			}
			req := claimAt(pl, fmt.Sprintf("k%d", j), s)
			res, err := n.Claim(ctx, req)
			if err != nil {
				t.Fatalf("claim %s/%s = %v", pl, req.Key, err)
			}
			again, err := n.Claim(ctx, req)
			if err != nil || !again.Replayed || again.Event != res.Event {
				t.Fatalf("replay of %s/%s = %+v, %v; want %v replayed", pl, req.Key, again, err, res.Event)
			}
		}
		if _, err := n.Spend(ctx, &hunt.SpendRequest{Player: hunt.PlayerID(pl), Key: "spend", Amount: 5}); err != nil {
			t.Fatalf("spend of %s = %v", pl, err)
		}
	}
	if split == 0 || same == 0 {
		t.Fatalf("%d split and %d single-slot claims; want both kinds", split, same)
	}
	if _, err := n.Claim(ctx, claimAt("p0", "k0", hs[1])); err == nil {
		t.Fatalf("a key reused for another hotspot was accepted")
	}
	checkLogAgainstState(t, n.Engine, len(hs))
}

func partitionOf(t *testing.T, e *Engine, r *hunt.ClaimRequest) uint32 {
	t.Helper()
	p, err := e.hotspotPartition(context.Background(), r.Hunt, r.Hotspot)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(p)
}

func mustPartition(t *testing.T, e *Engine, s hunt.Hotspot) uint32 {
	t.Helper()
	p, err := e.hotspotPartition(context.Background(), testHunt, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(p)
}

// clusterPool lends test clusters to parallel subtests, each to one subtest
// at a time and flushed first: the conformance suite runs its subtests in
// parallel, and a cluster per subtest would start dozens of servers.
type clusterPool struct{ ch chan *redistest.Cluster }

func newClusterPool(t *testing.T, n int) *clusterPool {
	t.Helper()
	p := &clusterPool{ch: make(chan *redistest.Cluster, n)}
	for range n {
		p.ch <- redistest.StartCluster(t, 3, clusterNodeTimeout)
	}
	return p
}

func (p *clusterPool) take(t *testing.T) *redistest.Cluster {
	t.Helper()
	c := <-p.ch
	t.Cleanup(func() { p.ch <- c })
	if err := c.FlushAll(); err != nil {
		t.Fatal(err)
	}
	return c
}

// clusterHarness: every Open is a new node on the same cluster.
type clusterHarness struct {
	c    *redistest.Cluster
	mods []func(*Config)
}

func (h *clusterHarness) Open(t *testing.T) engine.Engine {
	t.Helper()
	e, err := Open(context.Background(), clusterConfig(h.c, h.mods...))
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	return e
}

// TestConformanceCluster runs the conformance suite on 3+3 clusters.
func TestConformanceCluster(t *testing.T) {
	pool := newClusterPool(t, 2)
	enginetest.Run(t, func(t *testing.T) enginetest.Harness { return &clusterHarness{c: pool.take(t)} })
}

// TestLinearizableCluster records concurrent histories on a cluster and
// checks them with porcupine.
func TestLinearizableCluster(t *testing.T) {
	pool := newClusterPool(t, 1)
	enginetest.Linearizable(t, func(t *testing.T) enginetest.Harness { return &clusterHarness{c: pool.take(t)} })
}

// splitPairs returns claims of distinct players on hotspots of hs whose
// partition is not the player's spend partition (split claims).
func splitPairs(t *testing.T, e *Engine, hs []hunt.Hotspot, n int, prefix string) []*hunt.ClaimRequest {
	t.Helper()
	var out []*hunt.ClaimRequest
	for i := 0; len(out) < n; i++ {
		pl := fmt.Sprintf("%s%d", prefix, i)
		s := hs[i%len(hs)]
		if uint32(spendPartition(hunt.PlayerID(pl), e.cfg.Partitions)) != mustPartition(t, e, s) {
			out = append(out, claimAt(pl, "k", s))
		}
	}
	return out
}

// TestClusterCreditPendingAfterCrash: a node that dies between the decide
// and the credit of a split claim leaves the player's record pending. The
// next retry of the same key replays the decision and credits it once; a
// claim nobody retries is credited by the sweeper, once however often it
// runs, and a retry afterwards replays without crediting again. A node that
// dies after the reserve, before the decide, leaves nothing decided: the
// retry decides.
func TestClusterCreditPendingAfterCrash(t *testing.T) {
	c := redistest.StartCluster(t, 3, clusterNodeTimeout)
	var die atomic.Bool
	n := start(t, clusterConfig(c, func(c *Config) { c.MaintenanceInterval = time.Hour }), func(e *Engine) {
		e.testHookBeforeCredit = die.Load
	})
	hs := putFixture(t, n.Engine, 8, 10)
	ctx := context.Background()
	reqs := splitPairs(t, n.Engine, hs, 6, "crash")

	die.Store(true)
	for _, r := range reqs {
		if _, err := n.Claim(ctx, r); !errors.Is(err, engine.ErrUnavailable) {
			t.Fatalf("claim %s with the node dying before the credit = %v; want ErrUnavailable", r.Player, err)
		}
		if w, err := n.Wallet(ctx, r.Player); err != nil || w.Balance != 0 {
			t.Fatalf("wallet of %s before any credit = %+v, %v; want 0", r.Player, w, err)
		}
	}
	die.Store(false)

	// The first half retries: replayed (another request decided), credited once.
	for _, r := range reqs[:3] {
		res, err := n.Claim(ctx, r)
		if err != nil || !res.Replayed || res.Event.Outcome != hunt.Granted {
			t.Fatalf("retry of %s = %+v, %v; want the granted decision replayed", r.Player, res, err)
		}
		if w, _ := n.Wallet(ctx, r.Player); w.Balance != res.Event.Reward {
			t.Fatalf("wallet of %s after the retry = %d; want %d", r.Player, w.Balance, res.Event.Reward)
		}
	}
	// The second half is left to the sweeper: it credits exactly those.
	before := n.swept.Load()
	for range 2 {
		if err := n.sweep(ctx); err != nil {
			t.Fatalf("sweep = %v", err)
		}
	}
	if got := n.swept.Load() - before; got != 3 {
		t.Fatalf("the sweeper credited %d claims; want the 3 left pending", got)
	}
	for _, r := range reqs[3:] {
		w, _ := n.Wallet(ctx, r.Player)
		res, err := n.Claim(ctx, r)
		if err != nil || !res.Replayed || w.Balance != res.Event.Reward {
			t.Fatalf("%s after the sweep: wallet %d, retry %+v, %v; want the reward once and a replay", r.Player, w.Balance, res, err)
		}
		if w2, _ := n.Wallet(ctx, r.Player); w2.Balance != w.Balance {
			t.Fatalf("wallet of %s changed on a retry after the sweep: %d -> %d", r.Player, w.Balance, w2.Balance)
		}
	}

	// Dying after the reserve, before the decide: a failed decide call.
	r := splitPairs(t, n.Engine, hs, 1, "reserved")[0]
	if _, err := n.callText(ctx, "cairn_reserve", []string{n.ks.idem(r.Player), n.ks.pos(r.Player)},
		r.Key, strconv.FormatUint(r.Fingerprint(), 10), partitionOf(t, n.Engine, r), string(r.Hunt)); err != nil {
		t.Fatal(err)
	}
	if res, err := n.Claim(ctx, r); err != nil || res.Replayed || res.Event.Outcome != hunt.Granted {
		t.Fatalf("claim after a reserve only = %+v, %v; want a fresh grant", res, err)
	}
	checkLogAgainstState(t, n.Engine, len(hs))
}

package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/hunt"
)

// clusterLoad runs claims and spends on n from workers goroutines, each
// retrying a call refused as unavailable or overloaded with the same
// request (as a client retries a 503 or 429) for up to giveUpAfter, then
// giving up on it (as a client does; what the request left pending is the
// sweeper's). It keeps every call answered with a decision.
type clusterLoad struct {
	mu        sync.Mutex
	done      []acked
	n         atomic.Int64 // calls answered with a decision
	retry     atomic.Int64 // attempts refused and retried
	given     atomic.Int64 // requests given up after giveUpAfter of refusals
	last      atomic.Value // the last refusal, for a failure's message
	other     atomic.Int64 // calls answered with an error that is neither a decision nor a refusal
	lastOther atomic.Value
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// giveUpAfter: a client gives a request up when it has been refused this long.
const giveUpAfter = time.Second

func startClusterLoad(n *node, hs []hunt.Hotspot, workers int) *clusterLoad {
	l := &clusterLoad{}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	var seq atomic.Int64
	for w := range workers {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				i := seq.Add(1)
				pl := hunt.PlayerID(fmt.Sprintf("p%d", i%60)) // players come back: already_claimed, spends with funds
				var a acked
				if i%5 == 0 {
					a.spend = &hunt.SpendRequest{Player: pl, Key: fmt.Sprintf("s%d-%d", w, i), Amount: 3}
				} else {
					a.claim = claimAt(string(pl), fmt.Sprintf("c%d-%d", w, i), hs[int(i)%len(hs)])
				}
				deadline := time.Now().Add(giveUpAfter)
				for ctx.Err() == nil {
					if time.Now().After(deadline) {
						l.given.Add(1)
						break
					}
					var err error
					if a.spend != nil {
						var res hunt.SpendResult
						res, err = n.Spend(ctx, a.spend)
						a.ev = res.Event
					} else {
						var res hunt.ClaimResult
						res, err = n.Claim(ctx, a.claim)
						a.ev = res.Event
					}
					if errors.Is(err, engine.ErrUnavailable) || errors.Is(err, engine.ErrOverloaded) {
						l.retry.Add(1)
						l.last.Store(err.Error())
						time.Sleep(20 * time.Millisecond) // a client's back-off before its retry
						continue
					}
					if err != nil && ctx.Err() == nil {
						l.other.Add(1)
						l.lastOther.Store(err.Error())
					}
					if err == nil {
						l.mu.Lock()
						l.done = append(l.done, a)
						l.mu.Unlock()
						l.n.Add(1)
					}
					break
				}
			}
		})
	}
	return l
}

// waitMore waits until k more calls than now are answered with a decision.
func (l *clusterLoad) waitMore(t *testing.T, k int64, what string) {
	t.Helper()
	target := l.n.Load() + k
	deadline := time.Now().Add(40 * time.Second)
	for l.n.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 40s waiting for %d more decisions %s (last refusal: %v)", k, what, l.last.Load())
		}
		time.Sleep(5 * time.Millisecond) // polling the count, not a wait for an event
	}
}

func (l *clusterLoad) stop() []acked {
	l.cancel()
	l.wg.Wait()
	return l.done
}

// checkClusterAfter: every acknowledged call replays its decision, the
// sweeper leaves no credit pending, and the log agrees with the state (I1:
// no hotspot over its tickets; I2, I3, I4: wallets = Σ rewards − Σ spends);
// the audit passes.
func checkClusterAfter(t *testing.T, n *node, done []acked, hs []hunt.Hotspot, tickets int64) {
	t.Helper()
	ctx := context.Background()
	for _, d := range done {
		var ev hunt.Event
		var err error
		waitFor(t, 30*time.Second, "an answer to the replay", func() bool {
			if d.claim != nil {
				var res hunt.ClaimResult
				res, err = n.Claim(ctx, d.claim)
				ev = res.Event
			} else {
				var res hunt.SpendResult
				res, err = n.Spend(ctx, d.spend)
				ev = res.Event
			}
			return !errors.Is(err, engine.ErrUnavailable)
		})
		if err != nil || ev != d.ev {
			t.Fatalf("replay of acknowledged %+v = %v, %v; want %v", d, ev, err, d.ev)
		}
	}
	// Calls abandoned when the load stopped may have left credits pending.
	var err error
	waitFor(t, 30*time.Second, "a complete sweep", func() bool { err = n.sweep(ctx); return err == nil })
	byKey := checkLogAgainstState(t, n.Engine, len(hs))
	grants := map[hunt.HotspotID]int64{}
	for _, ev := range byKey {
		if ev.Kind == hunt.KindClaimCompleted && ev.Outcome == hunt.Granted {
			grants[ev.Hotspot]++
		}
	}
	for _, s := range hs {
		if grants[s.ID] > tickets {
			t.Fatalf("I1: hotspot %s granted %d times; it has %d tickets", s.ID, grants[s.ID], tickets)
		}
	}
	rep, err := audit.Check(ctx, n.Engine, nil)
	if err != nil || !rep.OK {
		t.Fatalf("audit = %s, %v", rep.Verdict(), err)
	}
}

// TestClusterPrimaryKilled: a primary of a 3+3 cluster is SIGKILLed under
// claim and spend load with MinReplicas 1 (the cluster default); its
// replica is promoted by the cluster and the load goes on: on the other
// shards at once, and on the promoted one once the killed server is back as
// its replica (until then it has no replica to acknowledge a write, so its
// slots answer 503 and clients retry with their keys). Afterwards every
// acknowledged call replays its decision and the log agrees with the state.
func TestClusterPrimaryKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster and fails a server of it under load")
	}
	const tickets = 40
	c := redistest.StartCluster(t, 3, clusterNodeTimeout)
	n := start(t, clusterConfig(c))
	hs := putFixture(t, n.Engine, 8, tickets)
	l := startClusterLoad(n, hs, 8)
	l.waitMore(t, 150, "before the kill")
	victim := c.Primaries()[0]
	heir := c.Replica(victim)
	if heir == nil {
		l.stop()
		t.Fatalf("no replica of %s", victim.Addr())
	}
	victim.Kill()
	c.WaitRole(heir, "master")
	l.waitMore(t, 30, "after the promotion, on the other shards")
	victim.Restart()
	c.WaitRole(victim, "slave")
	c.WaitLinked()
	l.waitMore(t, 150, "with the killed server back as a replica")
	done := l.stop()
	checkClusterAfter(t, n, done, hs, tickets)
	t.Logf("%d acknowledged calls, %d attempts refused and retried, %d requests given up, all acknowledged replayed",
		len(done), l.retry.Load(), l.given.Load())
}

// TestClusterReplicaKilled: a replica is SIGKILLed under load: its primary
// can acknowledge nothing (WAIT sees no replica), so the calls on its slots
// are refused and retried while the other shards keep answering; once the
// replica is back the retries are acknowledged.
func TestClusterReplicaKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster and fails a server of it under load")
	}
	const tickets = 40
	c := redistest.StartCluster(t, 3, clusterNodeTimeout)
	n := start(t, clusterConfig(c))
	hs := putFixture(t, n.Engine, 8, tickets)
	l := startClusterLoad(n, hs, 8)
	l.waitMore(t, 150, "before the kill")
	primary := c.Primaries()[0]
	replica := c.Replica(primary)
	if replica == nil {
		l.stop()
		t.Fatalf("no replica of %s", primary.Addr())
	}
	replica.Kill()
	refused := l.retry.Load()
	l.waitMore(t, 100, "with the replica down")
	waitFor(t, 20*time.Second, "calls refused with the replica down", func() bool { return l.retry.Load() > refused })
	replica.Restart()
	c.WaitLinked()
	l.waitMore(t, 100, "with the replica back")
	done := l.stop()
	checkClusterAfter(t, n, done, hs, tickets)
	t.Logf("%d acknowledged calls, %d attempts refused and retried, %d requests given up", len(done), l.retry.Load(), l.given.Load())
}

// TestClusterPrimaryFrozen: a primary is frozen (SIGSTOP) under load past
// cluster-node-timeout, its replica is promoted, and the old primary is
// resumed (SIGCONT) and rejoins as a replica. Calls to it while frozen time
// out and are retried; anything it took after the promotion is never
// acknowledged (its WAIT sees no replica); every acknowledged call replays.
func TestClusterPrimaryFrozen(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster and fails a server of it under load")
	}
	const tickets = 40
	c := redistest.StartCluster(t, 3, clusterNodeTimeout)
	n := start(t, clusterConfig(c))
	hs := putFixture(t, n.Engine, 8, tickets)
	l := startClusterLoad(n, hs, 8)
	l.waitMore(t, 150, "before the freeze")
	frozen := c.Primaries()[0]
	heir := c.Replica(frozen)
	if heir == nil {
		l.stop()
		t.Fatalf("no replica of %s", frozen.Addr())
	}
	frozen.Pause()
	c.WaitRole(heir, "master")
	frozen.Resume()
	c.WaitRole(frozen, "slave")
	c.WaitLinked()
	l.waitMore(t, 150, "after the resume")
	done := l.stop()
	checkClusterAfter(t, n, done, hs, tickets)
	t.Logf("%d acknowledged calls, %d attempts refused and retried, %d requests given up, all acknowledged replayed",
		len(done), l.retry.Load(), l.given.Load())
}

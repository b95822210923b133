package redis

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/geo"
)

// TestClusterReshard: under claim and spend load on a 3+3 cluster, the
// slots of the partitions one primary owns move to another primary (the
// slot migration procedure, keys and all), then a fourth primary and its
// replica join (redis-cli --cluster add-node) and half of the partitions'
// slots move onto it. The node loads the function library on the new
// primary before it owns a slot; calls caught by a migration are refused
// (-ASK, -TRYAGAIN, -MOVED: 503) and retried with their keys, never answered
// wrongly; every acknowledged call replays its decision, the log agrees
// with the state and the audit passes.
func TestClusterReshard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster and reshards it under load")
	}
	const tickets = 40
	c := redistest.StartCluster(t, 3, clusterNodeTimeout)
	n := start(t, clusterConfig(c))
	hs := putFixture(t, n.Engine, 8, tickets)

	// The slots that hold Cairn's keys: one per partition (the player keys
	// live in their spend partition's slot), and the hunt's.
	slots := make([]int, n.Partitions())
	owned := map[*redistest.Server][]int{}
	for p := range slots {
		s, err := c.KeySlot(keySeq(geo.Partition(p)))
		if err != nil {
			t.Fatal(err)
		}
		slots[p] = s
		o, err := c.SlotOwner(s)
		if err != nil || o == nil {
			t.Fatalf("owner of slot %d: %v, %v", s, o, err)
		}
		owned[o] = append(owned[o], s)
	}
	// From the primary that owns the most of them to another one.
	primaries := c.Primaries()
	from := slices.MaxFunc(primaries, func(a, b *redistest.Server) int { return cmp.Compare(len(owned[a]), len(owned[b])) })
	to := primaries[0]
	if to == from {
		to = primaries[1]
	}

	l := startClusterLoad(n, hs, 8)
	l.waitMore(t, 150, "before the reshard")
	for _, s := range owned[from] {
		if err := c.MoveSlot(s, to); err != nil {
			l.stop()
			t.Fatal(err)
		}
	}
	l.waitMore(t, 100, fmt.Sprintf("after moving %d partitions' slots from %s to %s", len(owned[from]), from.Addr(), to.Addr()))

	added, _ := c.AddShard()
	waitFor(t, 20*time.Second, "the function library on the new primary", func() bool { return hasLibrary(added.Addr()) })
	moved := 0
	for p, s := range slots {
		if p%2 == 0 {
			if err := c.MoveSlot(s, added); err != nil {
				l.stop()
				t.Fatal(err)
			}
			moved++
		}
	}
	l.waitMore(t, 150, fmt.Sprintf("after moving %d partitions' slots to the new primary %s", moved, added.Addr()))
	done := l.stop()
	if k := l.other.Load(); k > 0 {
		t.Fatalf("%d calls answered with an error that is neither a decision nor a refusal; last: %v", k, l.lastOther.Load())
	}
	checkClusterAfter(t, n, done, hs, tickets)
	t.Logf("%d acknowledged calls, %d attempts refused and retried, %d requests given up, all acknowledged replayed",
		len(done), l.retry.Load(), l.given.Load())
}

// hasLibrary reports whether the server at addr has the cairn function library.
func hasLibrary(addr string) bool {
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	libs, err := c.FunctionList(context.Background(), goredis.FunctionListQuery{LibraryNamePattern: "cairn"}).Result()
	return err == nil && len(libs) == 1
}

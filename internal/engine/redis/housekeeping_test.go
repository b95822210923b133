package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// blockLog makes the next log append of partition p fail: the log's last
// entry id is set far above the seq counter, as when the counter and the log
// disagree (a partial restore). XADD <seq>-0 is then refused by Redis.
func blockLog(t *testing.T, c *goredis.Client, p geo.Partition) {
	t.Helper()
	if err := c.XAdd(context.Background(), &goredis.XAddArgs{Stream: keyLog(p), ID: "999999999-0", Values: []any{"e", "x"}}).Err(); err != nil {
		t.Fatal(err)
	}
}

// keyState reads every key a claim or spend writes, to compare before and after.
func keyState(t *testing.T, c *goredis.Client, keys ...string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		v, err := c.Dump(ctx, k).Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			t.Fatal(err)
		}
		out[k] = v
	}
	return out
}

// A grant whose log append fails changes nothing: no ticket taken, no
// claimer, no position, no credit, no ledger record, no idempotency record,
// no seq consumed. (Redis does not roll a Function back, so the append must
// come before every other write.)
func TestClaimAppendFailureWritesNothing(t *testing.T) {
	srv := redistest.Start(t)
	n := start(t, testConfig(srv, func(c *Config) { c.Direct = true }))
	hs := putFixture(t, n.Engine, 1, 5)
	c := rawClient(t, srv)
	p := geo.PartitionOf(hs[0].Geohash, geo.PrefixLenDefault, 8)
	blockLog(t, c, p)
	pl := hunt.PlayerID("alice")
	keys := []string{keyHotspot(p, testHunt, hs[0].ID), keyClaimers(p, testHunt, hs[0].ID), keySeq(p),
		keyIdem(pl), keyWallet(pl), keyLedger(pl), keyPos(pl)}
	before := keyState(t, c, keys...)
	if r, err := n.Claim(context.Background(), claimAt(string(pl), "k1", hs[0])); err == nil {
		t.Fatalf("Claim with a failing log append = %+v, nil; want an error", r)
	}
	after := keyState(t, c, keys...)
	for _, k := range keys {
		if before[k] != after[k] {
			t.Errorf("key %s changed by a claim whose log append failed", k)
		}
	}
}

// A spend whose log append fails leaves the balance, the ledger and the
// idempotency record as they were.
func TestSpendAppendFailureWritesNothing(t *testing.T) {
	srv := redistest.Start(t)
	n := start(t, testConfig(srv, func(c *Config) { c.Direct = true }))
	hs := putFixture(t, n.Engine, 1, 5)
	ctx := context.Background()
	pl := hunt.PlayerID("bob")
	if r, err := n.Claim(ctx, claimAt(string(pl), "k1", hs[0])); err != nil || r.Event.Outcome != hunt.Granted {
		t.Fatalf("Claim = %+v, %v; want granted", r, err)
	}
	c := rawClient(t, srv)
	sp := spendPartition(pl, 8)
	blockLog(t, c, sp)
	keys := []string{keySeq(sp), keyIdem(pl), keyWallet(pl), keyLedger(pl)}
	before := keyState(t, c, keys...)
	if r, err := n.Spend(ctx, &hunt.SpendRequest{Player: pl, Key: "s1", Amount: 1}); err == nil {
		t.Fatalf("Spend with a failing log append = %+v, nil; want an error", r)
	}
	after := keyState(t, c, keys...)
	for _, k := range keys {
		if before[k] != after[k] {
			t.Errorf("key %s changed by a spend whose log append failed", k)
		}
	}
	if w, err := n.Wallet(ctx, pl); err != nil || w.Balance != hs[0].Reward {
		t.Errorf("Wallet = %+v, %v; want the balance %d untouched", w, err, hs[0].Reward)
	}
}

// A consumer that has stopped reading is removed from the group once it has
// been idle ConsumerIdleMax and holds no pending entry; one that holds an
// entry stays until the entry is reclaimed (and decided) by a living node.
// The living node is never removed, and the request stream is trimmed only
// below what was acknowledged.
func TestIdleConsumersRemoved(t *testing.T) {
	srv := redistest.Start(t)
	c := rawClient(t, srv)
	ctx := context.Background()
	// Before any node runs: "ghost" joined and read nothing; "holder" took a
	// request entry and died with it pending.
	stream := keyReq(3)
	if err := c.XGroupCreateMkStream(ctx, stream, Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.XGroupCreateConsumer(ctx, stream, Group, "ghost").Err(); err != nil {
		t.Fatal(err)
	}
	r := request{kind: 'c', p: 3, rid: "dead.1", ch: keyDone("holder"), player: "carol", key: "k1", fp: "1",
		hunt: testHunt, hotspot: "s0", lat: "1", lon: "2"}
	if err := c.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: r.values()}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: Group, Consumer: "holder", Streams: []string{stream, ">"}, Count: 1, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	consumers := func() map[string]int64 {
		cs, err := c.XInfoConsumers(ctx, stream, Group).Result()
		if err != nil {
			t.Fatal(err)
		}
		out := make(map[string]int64, len(cs))
		for _, x := range cs {
			out[x.Name] = x.Pending
		}
		return out
	}
	if got := consumers(); len(got) != 2 || got["holder"] != 1 {
		t.Fatalf("consumers = %v; want ghost with 0 and holder with 1 pending", got)
	}
	n := start(t, testConfig(srv, func(c *Config) { c.ConsumerIdleMax = 2 * readBlock }))
	waitFor(t, 30*time.Second, "ghost and holder removed from the group", func() bool {
		got := consumers()
		_, ghost := got["ghost"]
		_, holder := got["holder"]
		return !ghost && !holder
	})
	if _, ok := consumers()[n.Consumer()]; !ok {
		t.Errorf("the living node %s was removed from the group", n.Consumer())
	}
	// The holder's entry was reclaimed and decided (acknowledged), not dropped.
	if pend, err := c.XPending(ctx, stream, Group).Result(); err != nil || pend.Count != 0 {
		t.Errorf("XPENDING = %+v, %v; want nothing pending", pend, err)
	}
}

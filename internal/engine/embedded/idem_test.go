package embedded

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairnhq/cairn/internal/engine/enginetest"
	"github.com/cairnhq/cairn/internal/hunt"
)

// forgetRecent empties every shard's recent cache, so the next lookup of a
// decided key must go to the Bloom filter and the store.
func (x *idemIndex) forgetRecent() {
	for i := range x.shards {
		sh := &x.shards[i]
		sh.mu.Lock()
		clear(sh.recent)
		sh.order, sh.next = sh.order[:0], 0
		sh.mu.Unlock()
	}
}

// fakeClock is a settable clock for Config.Clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestIdempotencyFromDisk: a retry whose record left the memory cache is
// answered from the store with the very same decision (every field), a
// key reused for another request is still refused, and both hold after a
// restart, when nothing is cached.
func TestIdempotencyFromDisk(t *testing.T) {
	h := newHarness(t)
	e := enginetest.Start(t, h)
	setup(t, e, 5)
	c, cancel := bg()
	defer cancel()
	first, err := e.Claim(c, claimAt("p0", "k", "gold"))
	if err != nil || first.Event.Outcome != hunt.Granted {
		t.Fatalf("Claim = %+v, %v; want granted", first.Event, err)
	}
	spent, err := e.Spend(c, &hunt.SpendRequest{Player: "p0", Key: "s", Amount: 4, Reason: "shop"})
	if err != nil || spent.Event.Outcome != hunt.Spent {
		t.Fatalf("Spend = %+v, %v; want spent", spent.Event, err)
	}
	check := func(when string) {
		t.Helper()
		unwrap(e).idem.forgetRecent()
		again, err := e.Claim(c, claimAt("p0", "k", "gold"))
		if err != nil || !again.Replayed || !reflect.DeepEqual(again.Event, first.Event) {
			t.Fatalf("%s: retry from disk = %+v (replayed %v), %v; want %+v replayed", when, again.Event, again.Replayed, err, first.Event)
		}
		sagain, err := e.Spend(c, &hunt.SpendRequest{Player: "p0", Key: "s", Amount: 4, Reason: "shop"})
		if err != nil || !sagain.Replayed || !reflect.DeepEqual(sagain.Event, spent.Event) {
			t.Fatalf("%s: spend retry from disk = %+v (replayed %v), %v; want %+v replayed", when, sagain.Event, sagain.Replayed, err, spent.Event)
		}
		unwrap(e).idem.forgetRecent()
		if _, err := e.Claim(c, claimAt("p0", "k", "block")); !errors.Is(err, hunt.ErrKeyReused) {
			t.Fatalf("%s: key reused for another hotspot (record on disk) = %v; want %v", when, err, hunt.ErrKeyReused)
		}
	}
	check("live")
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	e = enginetest.Start(t, h)
	check("after restart")
}

// TestIdempotencyWindow: within the window a key replays its decision; past
// it the same key is a new request (a spend is spent again; a claim is
// decided again and I2 makes it already_claimed); records of buckets past
// the window are dropped from the store.
func TestIdempotencyWindow(t *testing.T) {
	const window = time.Hour
	clock := &fakeClock{now: time.Date(2026, 12, 1, 0, 30, 0, 0, time.UTC)}
	h := newHarness(t, func(c *Config) { c.Clock = clock.Now; c.IdempotencyWindow = window })
	e := enginetest.Start(t, h)
	setup(t, e, 5)
	c, cancel := bg()
	defer cancel()
	first, err := e.Claim(c, claimAt("p0", "k", "gold"))
	if err != nil || first.Event.Outcome != hunt.Granted {
		t.Fatalf("Claim = %+v, %v; want granted", first.Event, err)
	}
	spend := &hunt.SpendRequest{Player: "p0", Key: "s", Amount: 3, Reason: "shop"}
	if res, err := e.Spend(c, spend); err != nil || res.Event.Outcome != hunt.Spent {
		t.Fatalf("Spend = %+v, %v; want spent", res.Event, err)
	}
	clock.Add(window - time.Millisecond)
	unwrap(e).idem.forgetRecent()
	if res, err := e.Claim(c, claimAt("p0", "k", "gold")); err != nil || !res.Replayed || res.Event != first.Event {
		t.Fatalf("retry just inside the window = %+v (replayed %v), %v; want the first decision", res.Event, res.Replayed, err)
	}
	if res, err := e.Spend(c, spend); err != nil || !res.Replayed {
		t.Fatalf("spend retry inside the window = replayed %v, %v; want a replay", res.Replayed, err)
	}
	clock.Add(2 * time.Millisecond) // past the window (cache and store alike)
	res, err := e.Claim(c, claimAt("p0", "k", "gold"))
	if err != nil || res.Replayed || res.Event.Outcome != hunt.AlreadyClaimed {
		t.Fatalf("same key past the window = %+v (replayed %v), %v; want a new decision: already_claimed", res.Event, res.Replayed, err)
	}
	sres, err := e.Spend(c, spend)
	if err != nil || sres.Replayed || sres.Event.Outcome != hunt.Spent {
		t.Fatalf("same spend key past the window = %+v (replayed %v), %v; want a new spend", sres.Event, sres.Replayed, err)
	}
	if w, _ := e.Wallet(c, "p0"); w.Balance != 10-3-3 {
		t.Fatalf("wallet after two spends of 3 = %d; want 4", w.Balance)
	}
	// Two windows on, the first records' bucket is dropped by the expiry.
	clock.Add(2 * window)
	en := unwrap(e)
	en.expireIdem()
	old := idemRecordKey(nil, en.idem.bucketOf(first.Event.At), idemKey{"p0", "k"})
	if _, closer, err := en.db.Get(old); !errors.Is(err, pebble.ErrNotFound) {
		if err == nil {
			closer.Close()
		}
		t.Fatalf("record %x two windows after its decision: %v; want it dropped", old, err)
	}
}

// TestIdempotencyInFlight: concurrent duplicates of one request share one
// decision: exactly one is fresh, every other one replays it.
func TestIdempotencyInFlight(t *testing.T) {
	e := enginetest.Start(t, newHarness(t))
	setup(t, e, 100)
	const n = 50
	var wg sync.WaitGroup
	events := make([]hunt.ClaimResult, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			c, cancel := bg()
			defer cancel()
			events[i], errs[i] = e.Claim(c, claimAt("dup", "k", "gold"))
		})
	}
	wg.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil || events[i].Event != events[0].Event {
			t.Fatalf("duplicate %d = %+v, %v; want %+v", i, events[i].Event, errs[i], events[0].Event)
		}
		if !events[i].Replayed {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("%d of %d duplicates were fresh decisions; want exactly 1", fresh, n)
	}
	if got := countEvents(t, e); got != 1 {
		t.Fatalf("events after %d duplicates = %d; want 1", n, got)
	}
}

// BenchmarkIdemBloom measures the Bloom filters' false-positive rate with
// 1M keys decided in a window whose first filters were sized for 1/16 of
// that (so each chain grew to five filters): the share of never-decided keys
// that would cost a store read, and the filters' bytes per key.
func BenchmarkIdemBloom(b *testing.B) {
	const keys = 1_000_000
	var x idemIndex
	x.init(nil, time.Hour, 1, keys/16)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range keys {
		k := idemKey{hunt.PlayerID(fmt.Sprintf("p%d", i%20000)), fmt.Sprintf("key-%d", i)}
		x.decided(k, &entry{event: hunt.Event{At: now}})
	}
	b.ResetTimer()
	positives := 0
	for i := range b.N {
		k := idemKey{hunt.PlayerID(fmt.Sprintf("p%d", i%20000)), fmt.Sprintf("other-%d", i)}
		sh := x.shard(k)
		sh.scratch = bloomKey(sh.scratch[:0], k)
		if sh.filters[0].test(sh.scratch) || sh.filters[1].test(sh.scratch) {
			positives++
		}
	}
	b.ReportMetric(float64(positives)/float64(b.N), "false-positive-rate")
	var bytes uint
	for i := range x.shards {
		for _, c := range x.shards[i].filters {
			for _, f := range c.filters {
				bytes += f.Cap() / 8
			}
		}
	}
	b.ReportMetric(float64(bytes)/keys, "filter-bytes/key")
}

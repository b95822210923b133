package limit

import (
	"context"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for the buckets.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestBuckets(t *testing.T, rate float64, burst, keysMax int) (*Buckets, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	b, err := NewBuckets(BucketsConfig{Rate: rate, Burst: burst, KeysMax: keysMax, Clock: clk.now})
	if err != nil {
		t.Fatalf("NewBuckets: %v", err)
	}
	return b, clk
}

func mustAllow(t *testing.T, b *Buckets, key string, want bool, wantWait time.Duration) {
	t.Helper()
	ok, wait, err := b.Allow(context.Background(), key)
	if err != nil || ok != want || wait != wantWait {
		t.Fatalf("Allow(%q) = %v, %v, %v; want %v, %v, nil", key, ok, wait, err, want, wantWait)
	}
}

// TestBuckets: a burst, then one token per 1/rate, with the exact wait.
func TestBuckets(t *testing.T) {
	b, clk := newTestBuckets(t, 5, 10, 0)
	for i := 0; i < 10; i++ {
		mustAllow(t, b, "alice", true, 0)
	}
	mustAllow(t, b, "alice", false, 200*time.Millisecond)
	mustAllow(t, b, "bob", true, 0) // buckets are per key
	clk.add(150 * time.Millisecond)
	mustAllow(t, b, "alice", false, 50*time.Millisecond) // a refused request takes nothing
	clk.add(50 * time.Millisecond)
	mustAllow(t, b, "alice", true, 0)
	mustAllow(t, b, "alice", false, 200*time.Millisecond)
	clk.add(time.Hour) // refills to the burst, never beyond
	for i := 0; i < 10; i++ {
		mustAllow(t, b, "alice", true, 0)
	}
	mustAllow(t, b, "alice", false, 200*time.Millisecond)
	if n := b.Len(); n != 2 {
		t.Fatalf("Len() = %d; want 2", n)
	}
}

// TestBucketsAllowNoAlloc: a known key's check allocates nothing (it runs
// on every claim).
func TestBucketsAllowNoAlloc(t *testing.T) {
	b, _ := newTestBuckets(t, 1e6, 1<<30, 0)
	key := "player-123"
	b.Allow(context.Background(), key)
	if n := testing.AllocsPerRun(100, func() { b.Allow(context.Background(), key) }); n != 0 {
		t.Fatalf("Allow(known key) allocates %v times; want 0", n)
	}
}

// sameShardKeys returns n keys that hash to key's shard.
func sameShardKeys(b *Buckets, key string, n int) []string {
	want := maphash.String(b.seed, key) % shardCount
	var out []string
	for i := 0; len(out) < n; i++ {
		k := "k" + strconv.Itoa(i)
		if maphash.String(b.seed, k)%shardCount == want {
			out = append(out, k)
		}
	}
	return out
}

// TestBucketsBounded: a full shard forgets refilled buckets first (an
// in-use bucket keeps its state), forgets arbitrary ones only when all are
// in use, and the whole never tracks more than KeysMax keys.
func TestBucketsBounded(t *testing.T) {
	b, clk := newTestBuckets(t, 5, 10, 10*shardCount) // 10 keys per shard
	others := sameShardKeys(b, "hot", 40)
	for _, k := range others[:9] {
		mustAllow(t, b, k, true, 0)
	}
	clk.add(3 * time.Second) // the 9 refill: idle
	for i := 0; i < 10; i++ {
		mustAllow(t, b, "hot", true, 0)
	}
	mustAllow(t, b, others[9], true, 0) // shard full: the sweep forgets the 9 idle ones
	mustAllow(t, b, "hot", false, 200*time.Millisecond)
	if n := b.Len(); n != 2 {
		t.Fatalf("Len() after sweeping idle buckets = %d; want 2 (hot and the newcomer)", n)
	}
	// Every bucket in use at once: the shard still stays within its share.
	for _, k := range others[10:] {
		mustAllow(t, b, k, true, 0)
		if n := b.Len(); n > 10 {
			t.Fatalf("Len() = %d after inserting %s; want at most 10 (one shard's share)", n, k)
		}
	}
	// Many keys over every shard: never more than KeysMax.
	for i := 0; i < 20_000; i++ {
		b.Allow(context.Background(), "many-"+strconv.Itoa(i))
	}
	if n := b.Len(); n > 10*shardCount {
		t.Fatalf("Len() after 20,000 keys = %d; want at most %d", n, 10*shardCount)
	}
}

func TestNewBucketsRefuses(t *testing.T) {
	for _, c := range []BucketsConfig{
		{Rate: 0, Burst: 1}, {Rate: -1, Burst: 1}, {Rate: math.NaN(), Burst: 1}, {Rate: math.Inf(1), Burst: 1},
		{Rate: 1, Burst: 0}, {Rate: 1, Burst: 1, KeysMax: -1},
	} {
		if _, err := NewBuckets(c); err == nil {
			t.Errorf("NewBuckets(%+v) = nil error; want one", c)
		}
	}
}

// BenchmarkBucketsAllow: the per-player check every claim pays, over 10,000
// players from all CPUs (figures are taken by the lead, docs/BENCHMARKS.md).
func BenchmarkBucketsAllow(b *testing.B) {
	bk, err := NewBuckets(BucketsConfig{Rate: 1e6, Burst: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "player-" + strconv.Itoa(i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if ok, _, _ := bk.Allow(ctx, keys[i%len(keys)]); !ok {
				b.Fatal("refused under a limit it cannot reach")
			}
			i++
		}
	})
}

package redis

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// The client benchmarks call cairn_claim itself (a grant with wallet credit,
// ledger and log append, fsynced by appendfsync always) from 16 goroutines
// per core, so they compare what each way of calling does with many
// concurrent callers: one pooled connection per call, or go-redis's
// AutoPipeliner batching concurrent calls on few connections. (The rueidis
// figures in docs/REDIS.md and docs/BENCHMARKS.md came from a benchmark
// removed with that module.)
//
//	go test -run '^$' -bench 'FCall|Claim' -benchtime 5s ./internal/engine/redis/
//
// With CAIRN_BENCH_VOLATILE=1 Redis runs without AOF: the CPU ceiling of
// the Function and the clients, without the fsync.

const benchParallelism = 16

// benchFixture starts a durable Redis with the library and one hunt whose
// 16 hotspots (in different partitions) have more tickets than any benchmark claims.
func benchFixture(b *testing.B) (*redistest.Server, []hunt.Hotspot) {
	b.Helper()
	var opts []redistest.Option
	volatile := os.Getenv("CAIRN_BENCH_VOLATILE") == "1"
	if volatile {
		opts = append(opts, redistest.Volatile())
	}
	srv := redistest.Start(b, opts...)
	e, err := Open(context.Background(), Config{URL: srv.URL(), Partitions: 64, AllowVolatile: volatile})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	return srv, putFixture(b, e, 16, hunt.TicketsMax)
}

var benchPlayer atomic.Int64

// benchCall is the Function call of a fresh player's claim at one of hs.
func benchCall(hs []hunt.Hotspot) (string, []string, []string) {
	i := benchPlayer.Add(1)
	s := hs[i%int64(len(hs))]
	req := claimAt("b"+strconv.FormatInt(i, 10), "k", s)
	r := request{kind: 'c', p: 0, rid: "bench.1", player: req.Player, key: req.Key,
		fp: strconv.FormatUint(req.Fingerprint(), 10), hunt: req.Hunt, hotspot: req.Hotspot, lat: formatFloat(req.Lat), lon: formatFloat(req.Lon)}
	r.p = geo.PartitionOf(s.Geohash, geo.PrefixLenDefault, 64)
	fn, keys, args := r.fcall(keyspace{}, time.Now(), "")
	sargs := make([]string, len(args))
	for i, a := range args {
		sargs[i] = fmt.Sprint(a)
	}
	return fn, keys, sargs
}

func reportRate(b *testing.B, start time.Time) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "claims/s")
}

func BenchmarkFCallGoRedis(b *testing.B) {
	srv, s := benchFixture(b)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx := context.Background()
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			fn, keys, args := benchCall(s)
			a := make([]any, len(args))
			for i := range args {
				a[i] = args[i]
			}
			if err := c.FCall(ctx, fn, keys, a...).Err(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start)
}

func BenchmarkFCallGoRedisAuto(b *testing.B) {
	srv, s := benchFixture(b)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	ap, err := c.AutoPipeline()
	if err != nil {
		b.Fatal(err)
	}
	defer ap.Close()
	ctx := context.Background()
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			fn, keys, args := benchCall(s)
			a := make([]any, len(args))
			for i := range args {
				a[i] = args[i]
			}
			if err := ap.FCall(ctx, fn, keys, a...).Err(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start)
}

// benchClaims drives claims through one engine node from 16 goroutines per core.
func benchClaims(b *testing.B, direct bool) {
	srv, s := benchFixture(b)
	n := start(b, Config{URL: srv.URL(), Partitions: 64, Direct: direct, AllowVolatile: srv.Volatile})
	ctx := context.Background()
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := benchPlayer.Add(1)
			req := claimAt("c"+strconv.FormatInt(i, 10), "k", s[i%int64(len(s))])
			if _, err := claimRetry(ctx, n.Engine, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start)
	b.StopTimer()
	n.Stop(b)
}

func BenchmarkClaimDirect(b *testing.B)   { benchClaims(b, true) }
func BenchmarkClaimPipeline(b *testing.B) { benchClaims(b, false) }

// BenchmarkClaimDirectReplicated is BenchmarkClaimDirect against a primary
// with one replica and MinReplicas 1: every claim is a Function call and a
// WAIT in one pipeline on one connection (no auto-pipelining across calls).
// Compare it with BenchmarkClaimDirect of the same run:
//
//	go test -run '^$' -bench 'ClaimDirect' -benchtime 5s ./internal/engine/redis/
func BenchmarkClaimDirectReplicated(b *testing.B) {
	srv, s := benchFixture(b)
	redistest.Start(b, redistest.ReplicaOf(srv)) // stopped by its own Cleanup
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx := context.Background()
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "state=online") {
			break
		}
		if err := ctx.Err(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // polling the replica's link, not a wait for an event
	}
	n := start(b, Config{URL: srv.URL(), Partitions: 64, Direct: true, MinReplicas: 1, AllowVolatile: srv.Volatile})
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	begin := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := benchPlayer.Add(1)
			req := claimAt("r"+strconv.FormatInt(i, 10), "k", s[i%int64(len(s))])
			if _, err := claimRetry(ctx, n.Engine, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, begin)
	b.StopTimer()
	n.Stop(b)
}

package embedded

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
)

// BenchmarkOpen measures Open of a store of CAIRN_BENCH_HOTSPOTS hotspots
// (default 200,000) and CAIRN_BENCH_CLAIMS claims in its log (default 0;
// random players of claims/10, random hotspots, each key new), from its
// snapshot (written as the engine stops) and from the log alone:
//
//	CAIRN_BENCH_HOTSPOTS=1000000 go test -run '^$' -bench BenchmarkOpen -benchtime 3x ./internal/engine/embedded
//	CAIRN_BENCH_HOTSPOTS=12000000 CAIRN_BENCH_CLAIMS=10000000 go test -run '^$' -bench 'BenchmarkOpen/snapshot' \
//	    -benchtime 1x -timeout 60m ./internal/engine/embedded
func BenchmarkOpen(b *testing.B) {
	n, claims := 200_000, 0
	if v, err := strconv.Atoi(os.Getenv("CAIRN_BENCH_HOTSPOTS")); err == nil && v > 0 {
		n = v
	}
	if v, err := strconv.Atoi(os.Getenv("CAIRN_BENCH_CLAIMS")); err == nil && v > 0 {
		claims = v
	}
	dir := b.TempDir()
	e, err := Open(Config{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	poll(b, "engine ready", func() bool { return e.Ready() == nil })
	c := context.Background()
	if err := e.PutHunt(c, hunt.Hunt{ID: "big"}); err != nil {
		b.Fatal(err)
	}
	batch := make([]hunt.Hotspot, 0, 4096)
	for i := range n {
		batch = append(batch, hunt.Hotspot{ID: hunt.HotspotID(fmt.Sprintf("s%07d", i)),
			Lat: -60 + float64(i%100_000)*0.0012, Lon: -170 + float64(i/100_000)*0.7, Tickets: 3, Reward: 5, Points: 1})
		if len(batch) == cap(batch) || i == n-1 {
			if err := e.ImportHotspots(c, "big", batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if claims > 0 {
		players := max(claims/10, 1000)
		var next atomic.Int64
		var wg sync.WaitGroup
		for g := range 64 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 1))
				for {
					i := next.Add(1) - 1
					if i >= int64(claims) {
						return
					}
					s := rng.IntN(n)
					req := &hunt.ClaimRequest{Player: hunt.PlayerID(fmt.Sprintf("p%07d", rng.IntN(players))), Key: fmt.Sprintf("k%09d", i),
						Hunt: "big", Hotspot: hunt.HotspotID(fmt.Sprintf("s%07d", s)),
						Lat: -60 + float64(s%100_000)*0.0012, Lon: -170 + float64(s/100_000)*0.7}
					for {
						_, err := e.Claim(c, req)
						if err == nil {
							break
						}
						if !errors.Is(err, engine.ErrOverloaded) {
							b.Error(err)
							return
						}
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
		wg.Wait()
	}
	cancel()
	if err := <-done; err != nil { // writes the snapshot
		b.Fatal(err)
	}
	e.Close()
	e = nil
	for _, from := range []string{"snapshot", "log"} {
		b.Run(from, func(b *testing.B) {
			if from == "log" {
				os.RemoveAll(snapDir(dir))
			}
			for b.Loop() {
				e, err := Open(Config{Dir: dir})
				if err != nil {
					b.Fatal(err)
				}
				if got := e.Loaded() != ""; got != (from == "snapshot") {
					b.Fatalf("loaded %q from the %s", e.Loaded(), from)
				}
				e.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/hotspot")
		})
	}
}

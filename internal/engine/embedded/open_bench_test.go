package embedded

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/cairnhq/cairn/internal/hunt"
)

// BenchmarkOpen measures Open of a store of CAIRN_BENCH_HOTSPOTS hotspots
// (default 200,000), from its snapshot and from the log alone:
//
//	CAIRN_BENCH_HOTSPOTS=1000000 go test -run '^$' -bench BenchmarkOpen -benchtime 3x ./internal/engine/embedded
func BenchmarkOpen(b *testing.B) {
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("CAIRN_BENCH_HOTSPOTS")); err == nil && v > 0 {
		n = v
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
	cancel()
	if err := <-done; err != nil { // writes the snapshot
		b.Fatal(err)
	}
	e.Close()
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

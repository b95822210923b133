package leaderboard

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// spreadStream is the grant stream of `scripts/bench.sh ceiling`, as the
// engine hands it to Committed: 10,000 hotspots over lat [36, 60] x lon
// [-10, 30] in one hunt, each in the partition of its geohash's first 4
// characters (64 partitions), 20,000 players, batches of 1..16 granted
// claims of one partition, points 1..20.
type spreadStream struct {
	parts   int
	batches []spreadBatch
	grants  int
}

type spreadBatch struct {
	part   geo.Partition
	events []hunt.Event
}

func newSpreadStream(grants int, seed uint64) *spreadStream {
	const (
		parts    = geo.PartitionsDefault
		nSpots   = 10_000
		nPlayers = 20_000
	)
	r := rand.New(rand.NewPCG(seed, 1))
	type spot struct {
		id      hunt.HotspotID
		geohash string
		points  int64
	}
	byPart := make([][]spot, parts)
	for i := range nSpots {
		lat, lon := 36+24*r.Float64(), -10+40*r.Float64()
		gh := geo.Encode(lat, lon, geo.GeohashLen)
		p := geo.PartitionOf(gh, geo.PrefixLenDefault, parts)
		byPart[p] = append(byPart[p], spot{hunt.HotspotID(fmt.Sprintf("c%d", i)), gh, 1 + r.Int64N(20)})
	}
	players := make([]hunt.PlayerID, nPlayers)
	for i := range players {
		players[i] = hunt.PlayerID(fmt.Sprintf("p%05d", i))
	}
	s := &spreadStream{parts: parts}
	for s.grants < grants {
		p := geo.Partition(r.IntN(parts))
		if len(byPart[p]) == 0 {
			continue
		}
		n := min(1+r.IntN(16), grants-s.grants)
		evs := make([]hunt.Event, n)
		for j := range evs {
			sp := byPart[p][r.IntN(len(byPart[p]))]
			evs[j] = hunt.Event{
				Kind: hunt.KindClaimCompleted, Epoch: hunt.Epoch{Partition: p}, At: t0,
				Player: players[r.IntN(nPlayers)], Outcome: hunt.Granted, Hunt: "ceiling",
				Hotspot: sp.id, Geohash: sp.geohash, Reward: 1, Points: sp.points,
			}
		}
		s.batches = append(s.batches, spreadBatch{p, evs})
		s.grants += n
	}
	return s
}

// deliver hands every batch to p.Committed with the next seqs of its
// partition (seq[part] is the last one used) and waits until all are applied.
func (s *spreadStream) deliver(ctx context.Context, p *Projection, seq []hunt.Seq) error {
	for i := range s.batches {
		b := &s.batches[i]
		for j := range b.events {
			seq[b.part]++
			b.events[j].Epoch.Seq = seq[b.part]
		}
		p.Committed(b.part, b.events)
	}
	for part, last := range seq {
		if err := p.Wait(ctx, hunt.Epoch{Partition: geo.Partition(part), Seq: last}); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkApplySpread: the leaderboard's cost per applied grant under the
// ceiling scenario's stream, through Committed, the inbox and the applier
// (one producer goroutine standing in for the engine; the applier drains
// what queued meanwhile). One op is 100,000 grants (about one 10 s ceiling
// run); ns/grant is wall time, cpu-ns/grant the process's CPU time (both
// sides and the collector; steadier than wall time on a shared machine),
// allocs/grant and B/grant count both sides.
//
//   - fresh: into an empty projection, as a server that just started: most
//     grants put a player on some region board for the first time.
//   - warm: the same 100,000 (player, hotspot) pairs again and again, so
//     every (player, board) exists and each grant only moves scores. No
//     region is read (as under the ceiling scenario), so only the global
//     boards are kept and the cells summed (region.go).
//   - warm-regions: warm with every region board built first, as if clients
//     had read every region: each grant moves its player on ~5 boards.
func BenchmarkApplySpread(b *testing.B) {
	const grantsPerOp = 100_000
	stream := newSpreadStream(grantsPerOp, 2026)
	run := func(b *testing.B, warm, regions bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		var p *Projection
		var seq []hunt.Seq
		var stop func()
		fresh := func() {
			if stop != nil {
				stop()
			}
			var err error
			if p, err = New(Options{Partitions: stream.parts}); err != nil {
				b.Fatal(err)
			}
			seq = make([]hunt.Seq, stream.parts)
			runCtx, cancelRun := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- p.Run(runCtx) }()
			stop = func() { cancelRun(); <-done }
		}
		fresh()
		defer func() { stop() }()
		if warm {
			if err := stream.deliver(ctx, p, seq); err != nil {
				b.Fatal(err)
			}
		}
		if regions {
			// Every region board built, as if clients had read them all.
			p.mu.Lock()
			for k := range p.mu.cells {
				for n := 1; n <= len(k.region); n++ {
					p.materialiseLocked(k.hunt, k.region[:n])
				}
			}
			p.mu.Unlock()
		}
		var ms0, ms1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		cpu0 := cpuTime()
		ops := 0
		for b.Loop() {
			if !warm && ops > 0 {
				b.StopTimer()
				fresh()
				b.StartTimer()
			}
			if err := stream.deliver(ctx, p, seq); err != nil {
				b.Fatal(err)
			}
			ops++
		}
		cpu := cpuTime() - cpu0
		runtime.ReadMemStats(&ms1)
		grants := float64(ops * stream.grants)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/grants, "ns/grant")
		b.ReportMetric(float64(cpu.Nanoseconds())/grants, "cpu-ns/grant")
		b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/grants, "allocs/grant")
		b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/grants, "B/grant")
	}
	b.Run("fresh", func(b *testing.B) { run(b, false, false) })
	b.Run("warm", func(b *testing.B) { run(b, true, false) })
	b.Run("warm-regions", func(b *testing.B) { run(b, true, true) })
}

package embedded

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/hunt"
)

// BenchmarkCommitter measures the committer alone: 64 partition goroutines
// each submit pendings of eventsPerBatch claim events as fast as their
// pipelines allow, and the committer makes them durable in synced groups and
// settles them. One op is one event made durable; allocs are per event.
func BenchmarkCommitter(b *testing.B) {
	for _, perBatch := range []int{1, 8} {
		b.Run(fmt.Sprintf("batch=%d", perBatch), func(b *testing.B) { benchCommitter(b, perBatch) })
	}
}

func benchCommitter(b *testing.B, perBatch int) {
	const parts = 64
	e, err := Open(Config{Dir: b.TempDir(), Partitions: parts})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	depth := PipelineDepthDefault
	e.commit = newCommitter(e, parts*depth)
	for _, p := range e.parts {
		p.free = make(chan *pending, depth)
		for range depth {
			p.free <- newPending(p)
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); e.commit.run() }()
	now := time.Now().UTC().Truncate(time.Millisecond)
	ev := hunt.Event{Kind: hunt.KindClaimCompleted, At: now, Player: "player-00001", Key: "0123456789abcdef",
		Outcome: hunt.Granted, Hunt: "bench", Hotspot: "hotspot-000001", Lat: 48.8566, Lon: 2.3522,
		Geohash: "u09tvw0f6szy", Reward: 5, Points: 3, TicketsLeft: 10}
	per := (b.N + parts*perBatch - 1) / (parts * perBatch) // batches per partition
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for _, p := range e.parts {
		wg.Go(func() {
			ev := ev
			ev.Epoch.Partition = p.id
			for range per {
				pd := <-p.free
				for range perBatch {
					p.seq++
					ev.Epoch.Seq = p.seq
					pd.write(&ev)
				}
				pd.seq, pd.now = p.seq, now
				e.commit.submit(pd)
			}
		})
	}
	wg.Wait()
	close(e.commit.in)
	<-done
	b.StopTimer()
	total := per * parts * perBatch
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
	if err := e.failure(); err != nil {
		b.Fatal(err)
	}
	for _, p := range e.parts {
		if got := hunt.Seq(p.lastSeq.Load()); got != p.seq {
			b.Fatalf("partition %d published seq %d; want %d", p.id, got, p.seq)
		}
	}
}

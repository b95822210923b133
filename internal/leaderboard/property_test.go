package leaderboard

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"pgregory.net/rapid"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// TestI5RandomStreamsWithRedelivery checks I5 (a score is the sum of the
// points of the player's grants, on the global and every region board) and
// exact watermarks after random logs are delivered the ways engines deliver
// them: batches split at random, old batches delivered again, partitions
// concurrently, through a tiny inbox (back-pressure), and with a Rebuild
// either before the live deliveries start (start-up) or racing them.
func TestI5RandomStreamsWithRedelivery(t *testing.T) {
	hunts := []hunt.HuntID{"h0", "h1"}
	geohashes := []string{"u33dc0cpp", "u33db2m3x", "u281zbc4e", "9q8yyk8yt", "9q8yykzzz"}
	rapid.Check(t, func(t *rapid.T) {
		parts := rapid.IntRange(1, 4).Draw(t, "partitions")
		regionLen := rapid.IntRange(1, 6).Draw(t, "regionLenMax")
		nPlayers := rapid.IntRange(1, 6).Draw(t, "players")
		mode := rapid.SampledFrom([]string{"live", "rebuild-first", "rebuild-racing"}).Draw(t, "mode")
		p, err := New(Options{Partitions: parts, RegionLenMax: regionLen, InboxLenMax: rapid.IntRange(1, 6).Draw(t, "inboxLenMax")})
		if err != nil {
			t.Fatalf("New() = %v", err)
		}

		var src fakeLog
		deliveries := make([][][]hunt.Event, parts) // per partition, in delivery order
		last := make([]hunt.Seq, parts)
		var grants []hunt.Event
		for part := range parts {
			n := rapid.IntRange(0, 25).Draw(t, "events")
			var evs []hunt.Event
			for s := 1; s <= n; s++ {
				seq := hunt.Seq(s)
				h := hunts[rapid.IntRange(0, len(hunts)-1).Draw(t, "hunt")]
				pl := hunt.PlayerID(fmt.Sprintf("p%d", rapid.IntRange(0, nPlayers-1).Draw(t, "player")))
				gh := geohashes[rapid.IntRange(0, len(geohashes)-1).Draw(t, "geohash")]
				var ev hunt.Event
				switch k := rapid.IntRange(0, 9).Draw(t, "kind"); {
				case k < 6:
					ev = grantEv(geo.Partition(part), seq, h, pl, gh, rapid.Int64Range(0, 20).Draw(t, "points"))
					grants = append(grants, ev)
				case k < 8:
					ev = rejectEv(geo.Partition(part), seq, h, pl, gh, hunt.SoldOut)
				default:
					ev = spendEv(geo.Partition(part), seq, pl)
				}
				evs = append(evs, ev)
			}
			last[part] = hunt.Seq(n)
			var batches [][]hunt.Event
			for i := 0; i < len(evs); {
				k := rapid.IntRange(1, 4).Draw(t, "batchLen")
				batches = append(batches, evs[i:min(i+k, len(evs))])
				i += k
			}
			// The log Rebuild sees: everything ("live": unused), or a prefix of
			// whole batches; live deliveries start at most 2 batches before its end.
			cut := len(batches)
			if mode != "live" {
				cut = rapid.IntRange(0, len(batches)).Draw(t, "cut")
			}
			for _, b := range batches[:cut] {
				src.events = append(src.events, b...)
			}
			from := 0
			if mode == "rebuild-first" {
				from = rapid.IntRange(max(0, cut-2), cut).Draw(t, "from")
			}
			for i := from; i < len(batches); i++ {
				deliveries[part] = append(deliveries[part], batches[i])
				if rapid.Bool().Draw(t, "redeliver") {
					deliveries[part] = append(deliveries[part], batches[rapid.IntRange(0, i).Draw(t, "old")])
				}
			}
		}

		ctx, cancel := context.WithTimeout(context.Background(), waitMax)
		defer cancel()
		runCtx, stopRun := context.WithCancel(ctx)
		runDone := make(chan error, 1)
		run := func() { go func() { runDone <- p.Run(runCtx) }() }
		var writers sync.WaitGroup
		// Region reads while the deliveries run, so region boards are built
		// (region.go) racing the applier and Rebuild; their answers are not
		// checked here (the final check below is).
		regions := rapid.SliceOfN(rapid.SampledFrom([]string{"u", "u3", "u33d", "9q8", "u28"}), 0, 3).Draw(t, "regionReads")
		deliver := func() {
			for part := range parts {
				writers.Go(func() {
					for _, b := range deliveries[part] {
						p.Committed(geo.Partition(part), b)
					}
				})
			}
			writers.Go(func() {
				for _, r := range regions {
					p.Top(hunts[0], r, 0, 10)
					p.Score(hunts[1], r, "p0")
				}
			})
		}
		switch mode {
		case "live":
			run()
			deliver()
		case "rebuild-first":
			// Engine writers already delivering (and blocking on the tiny
			// inbox); the applier starts only once the replay is under way.
			deliver()
			src.start = run
			if err := p.Rebuild(ctx, &src); err != nil {
				t.Fatalf("Rebuild() = %v", err)
			}
		case "rebuild-racing":
			run()
			deliver()
			if err := p.Rebuild(ctx, &src); err != nil {
				t.Fatalf("Rebuild() = %v", err)
			}
		}
		for part, s := range last {
			if err := p.Wait(ctx, hunt.Epoch{Partition: geo.Partition(part), Seq: s}); err != nil {
				t.Fatalf("Wait(%d.%d) = %v; watermarks %v", part, s, err, p.Watermarks())
			}
		}
		writers.Wait()
		if got := p.Watermarks(); !slices.Equal(got, last) {
			t.Fatalf("Watermarks() = %v; want %v", got, last)
		}

		// The model: Σ points per (hunt, region, player).
		model := map[boardKey]map[hunt.PlayerID]int64{}
		credit := func(k boardKey, pl hunt.PlayerID, pts int64) {
			if model[k] == nil {
				model[k] = map[hunt.PlayerID]int64{}
			}
			model[k][pl] += pts
		}
		for _, g := range grants {
			credit(boardKey{g.Hunt, ""}, g.Player, g.Points)
			for n := 1; n <= regionLen; n++ {
				credit(boardKey{g.Hunt, g.Geohash[:n]}, g.Player, g.Points)
			}
		}
		for k, scores := range model {
			want := sortedModel(scores)
			if got := p.Top(k.hunt, k.region, 0, PageLenMax).Entries; !slices.Equal(got, want) {
				t.Fatalf("Top(%s, %q) = %v; want %v", k.hunt, k.region, got, want)
			}
			for _, e := range want {
				if r, s, ok := p.Score(k.hunt, k.region, e.Player); !ok || r != e.Rank || s != e.Score {
					t.Fatalf("Score(%s, %q, %s) = (%d, %d, %v); want (%d, %d, true)", k.hunt, k.region, e.Player, r, s, ok, e.Rank, e.Score)
				}
			}
		}
		// No board and no ranked player the model does not have.
		p.mu.RLock()
		for k, b := range p.mu.boards {
			if b.len() != len(model[k]) {
				t.Errorf("board %v has %d players; model %d", k, b.len(), len(model[k]))
			}
		}
		nBoards := len(p.mu.boards)
		p.mu.RUnlock()
		if nBoards != len(model) {
			t.Fatalf("%d boards; model has %d", nBoards, len(model))
		}

		stopRun()
		if err := <-runDone; err != nil {
			t.Fatalf("Run() = %v; want nil", err)
		}
	})
}

// TestAggregatedApplyMatchesModel drives the applier's set path directly (no
// Run goroutine, so the sets are chosen by the test, not by timing): random
// logs of several partitions are delivered in a random interleaving with old
// batches delivered again, and drained in sets of random sizes, so one set
// often holds many grants of one player on one board, a player's first grant
// together with later ones, zero-point grants and redeliveries. Sometimes a
// Rebuild from a prefix of the log runs first (its chunks are sets too).
// After every set each board must equal a simple model (Σ points of the
// grants at or below the watermarks), every tree must be well formed and
// nothing may stay staged; the checks read random region boards, so boards
// are materialised at random points of the stream (region.go).
func TestAggregatedApplyMatchesModel(t *testing.T) {
	hunts := []hunt.HuntID{"h0", "h1"}
	geohashes := []string{"u33dc0cpp", "u33db2m3x", "u33dc0zzz", "u281zbc4e", "9q8yyk8yt", "9q8yykzzz", "u"}
	rapid.Check(t, func(t *rapid.T) {
		parts := rapid.IntRange(1, 4).Draw(t, "partitions")
		regionLen := rapid.IntRange(1, 6).Draw(t, "regionLenMax")
		nPlayers := rapid.IntRange(1, 80).Draw(t, "players")
		p, err := New(Options{Partitions: parts, RegionLenMax: regionLen, InboxLenMax: InboxLenMax})
		if err != nil {
			t.Fatalf("New() = %v", err)
		}

		// The logs, cut in batches.
		type batch struct {
			part geo.Partition
			evs  []hunt.Event
		}
		var src fakeLog
		var all []hunt.Event
		perPart := make([][]batch, parts)
		last := make([]hunt.Seq, parts)
		for part := range parts {
			n := rapid.IntRange(0, 120).Draw(t, "events")
			var evs []hunt.Event
			for s := 1; s <= n; s++ {
				seq := hunt.Seq(s)
				h := hunts[rapid.IntRange(0, len(hunts)-1).Draw(t, "hunt")]
				pl := hunt.PlayerID(fmt.Sprintf("player-%03d", rapid.IntRange(0, nPlayers-1).Draw(t, "player")))
				gh := geohashes[rapid.IntRange(0, len(geohashes)-1).Draw(t, "geohash")]
				switch k := rapid.IntRange(0, 9).Draw(t, "kind"); {
				case k < 7:
					evs = append(evs, grantEv(geo.Partition(part), seq, h, pl, gh, rapid.Int64Range(0, 20).Draw(t, "points")))
				case k < 9:
					evs = append(evs, rejectEv(geo.Partition(part), seq, h, pl, gh, hunt.AlreadyClaimed))
				default:
					evs = append(evs, spendEv(geo.Partition(part), seq, pl))
				}
			}
			all = append(all, evs...)
			last[part] = hunt.Seq(n)
			for i := 0; i < len(evs); {
				k := rapid.IntRange(1, 8).Draw(t, "batchLen")
				perPart[part] = append(perPart[part], batch{geo.Partition(part), evs[i:min(i+k, len(evs))]})
				i += k
			}
		}

		// Optionally a Rebuild from a prefix of whole batches of every partition.
		if rapid.Bool().Draw(t, "rebuild") {
			for part := range parts {
				cut := rapid.IntRange(0, len(perPart[part])).Draw(t, "cut")
				for _, b := range perPart[part][:cut] {
					src.events = append(src.events, b.evs...)
				}
			}
			if err := p.Rebuild(context.Background(), &src); err != nil {
				t.Fatalf("Rebuild() = %v", err)
			}
			checkAgainstModel(t, p, all, regionLen, false)
		}

		// A random interleaving of the partitions' batches (each partition
		// in order), with old batches delivered again.
		var order []batch
		next := make([]int, parts)
		for remaining := len(all); remaining > 0; {
			part := rapid.IntRange(0, parts-1).Draw(t, "part")
			if next[part] == len(perPart[part]) {
				continue
			}
			b := perPart[part][next[part]]
			next[part]++
			remaining -= len(b.evs)
			order = append(order, b)
			if rapid.IntRange(0, 3).Draw(t, "redeliver") == 0 {
				order = append(order, perPart[part][rapid.IntRange(0, next[part]-1).Draw(t, "old")])
			}
		}
		for _, b := range order {
			p.Committed(b.part, b.evs)
		}
		// Drain in sets of random sizes, checking after each.
		for p.in.mu.n > 0 {
			k := rapid.IntRange(1, 24).Draw(t, "setLen")
			items := p.in.peek(make([]item, 0, k), 1<<30)
			if !p.apply(items) {
				t.Fatalf("apply() refused a set with no Rebuild running")
			}
			checkAgainstModel(t, p, all, regionLen, false)
		}
		if got := p.Watermarks(); !slices.Equal(got, last) {
			t.Fatalf("Watermarks() = %v; want %v", got, last)
		}
		checkAgainstModel(t, p, all, regionLen, true)
	})
}

// checkAgainstModel compares the boards of p with the sum of the points of
// the grants of evs at or below p's watermarks: through the reads for a
// random subset of the model's boards (reading a region board materialises
// it, so across the checks of a test some region boards are built early and
// then kept by the apply path, others late or only by the final check with
// all set), and directly for every board already built. It also checks every
// tree's structure, the cells' sums, and that nothing stays staged.
func checkAgainstModel(t *rapid.T, p *Projection, evs []hunt.Event, regionLen int, all bool) {
	wm := p.Watermarks()
	model := map[boardKey]map[hunt.PlayerID]int64{}
	cells := map[boardKey]map[hunt.PlayerID]int64{}
	credit := func(m map[boardKey]map[hunt.PlayerID]int64, k boardKey, pl hunt.PlayerID, pts int64) {
		if m[k] == nil {
			m[k] = map[hunt.PlayerID]int64{}
		}
		m[k][pl] += pts
	}
	for _, ev := range evs {
		if !isGrant(&ev) || ev.Epoch.Seq > wm[ev.Epoch.Partition] {
			continue
		}
		credit(model, boardKey{ev.Hunt, ""}, ev.Player, ev.Points)
		for n := 1; n <= regionLen && n <= len(ev.Geohash); n++ {
			credit(model, boardKey{ev.Hunt, ev.Geohash[:n]}, ev.Player, ev.Points)
		}
		credit(cells, boardKey{ev.Hunt, ev.Geohash[:min(regionLen, len(ev.Geohash))]}, ev.Player, ev.Points)
	}
	keys := slices.SortedFunc(maps.Keys(model), func(a, b boardKey) int {
		return cmp.Or(cmp.Compare(a.hunt, b.hunt), cmp.Compare(a.region, b.region))
	})
	for _, k := range keys {
		if !all && !rapid.Bool().Draw(t, fmt.Sprintf("read %s/%q", k.hunt, k.region)) {
			continue
		}
		want := sortedModel(model[k])
		if got := p.Top(k.hunt, k.region, 0, PageLenMax).Entries; !slices.Equal(got, want) {
			t.Fatalf("watermarks %v: Top(%s, %q) = %v; want %v", wm, k.hunt, k.region, got, want)
		}
		for _, e := range want {
			if r, s, ok := p.Score(k.hunt, k.region, e.Player); !ok || r != e.Rank || s != e.Score {
				t.Fatalf("Score(%s, %q, %s) = (%d, %d, %v); want (%d, %d, true)", k.hunt, k.region, e.Player, r, s, ok, e.Rank, e.Score)
			}
		}
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if n := len(p.mu.stage.moves); n != 0 {
		t.Fatalf("%d moves still staged after a set", n)
	}
	for k := range model {
		if _, ok := p.mu.boards[k]; !ok && (k.region == "" || all) {
			t.Fatalf("board %v (in the model) not built", k)
		}
	}
	for k, b := range p.mu.boards {
		if _, ok := model[k]; !ok {
			t.Fatalf("board %v built; not in the model", k)
		}
		if got, want := b.appendRange(nil, 1, b.len()), sortedModel(model[k]); !slices.Equal(got, want) {
			t.Fatalf("watermarks %v: board %v = %v; want %v", wm, k, got, want)
		}
		if len(b.byPlayer) != b.len() {
			t.Fatalf("board %v: %d ranked, %d in its map", k, b.len(), len(b.byPlayer))
		}
		checkTree(t, &b.tree)
		for pl, x := range b.byPlayer {
			if _, staged := stagedAt(x); staged {
				t.Fatalf("board %v: player %s still marked staged (score %d)", k, pl, x.score)
			}
		}
	}
	if len(p.mu.cells) != len(cells) {
		t.Fatalf("%d cells; model has %d", len(p.mu.cells), len(cells))
	}
	for k, c := range p.mu.cells {
		if !maps.Equal(c.scores, cells[k]) {
			t.Fatalf("cell %v = %v; want %v", k, c.scores, cells[k])
		}
		for n, b := range c.chain {
			region := k.region[:max(0, n)]
			if want := p.mu.boards[boardKey{k.hunt, region}]; b != want {
				t.Fatalf("cell %v: chain[%d] = %p; board %q is %p", k, n, b, region, want)
			}
		}
	}
}

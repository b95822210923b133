package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"pgregory.net/rapid"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/enginetest"
	"github.com/cairnhq/cairn/internal/hunt"
)

// TestFoldLiveEqualsReplay drives one engine through random histories of
// claims (single and concurrent, over hotspots of several partitions),
// retries, spends, re-imports, clean restarts and crashes between the
// commit and the publish (the after-commit fault: the group is durable,
// nothing of it was published or answered). At every clean restart the
// state the live engine held (writer state, published state, wallets,
// positions, idempotency records) must equal what Open rebuilds, field by
// field: from the newest snapshot and the log after it (snapshots are taken
// at random points, and Run takes one as it stops), from the whole log (the
// snapshots removed), or from the previous snapshot (the newest corrupted).
// A snapshot's digest must equal the live fold's when it was taken. After a
// crash every request of the lost group must turn out durable (its retry is
// a replay, found through the idempotency filters the snapshot and the tail
// rebuild).
func TestFoldLiveEqualsReplay(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		f := newFoldRig(t, rt)
		defer f.stop()
		n := rapid.IntRange(5, 40).Draw(rt, "steps")
		for range n {
			switch rapid.IntRange(0, 10).Draw(rt, "op") {
			case 0, 1, 2:
				f.claim(f.drawClaim())
			case 3, 4:
				f.burst(rapid.IntRange(2, 12).Draw(rt, "burst"))
			case 5:
				f.spend(rapid.SampledFrom(f.players).Draw(rt, "spender"), rapid.Int64Range(1, 30).Draw(rt, "amount"))
			case 6:
				f.reimport(rapid.IntRange(0, len(f.spots)-1).Draw(rt, "spot"), rapid.Int64Range(0, 4).Draw(rt, "tickets"))
			case 7:
				f.restart()
			case 8:
				f.crash()
			case 9:
				f.retry()
			case 10:
				f.snapshot()
			}
		}
		f.restart()
	})
}

type foldRig struct {
	t       *testing.T
	rt      *rapid.T
	dir     string
	e       *Engine
	cancel  context.CancelFunc
	done    chan error
	crashAt atomic.Bool // the next group fails at after-commit
	players []hunt.PlayerID
	spots   []hunt.Hotspot
	keys    int
	sent    []*hunt.ClaimRequest // every claim sent, for retries
}

// foldCities are far apart, so their hotspots fall in different partitions.
var foldCities = [][2]float64{{48.8566, 2.3522}, {40.4168, -3.7038}, {52.52, 13.405}, {59.3293, 18.0686}}

func newFoldRig(t *testing.T, rt *rapid.T) *foldRig {
	f := &foldRig{t: t, rt: rt, dir: t.TempDir()}
	for i := range 4 {
		f.players = append(f.players, hunt.PlayerID(fmt.Sprintf("p%d", i)))
	}
	f.start()
	c := context.Background()
	if err := f.e.PutHunt(c, hunt.Hunt{ID: "h", MaxSpeedMps: 1000}); err != nil {
		rt.Fatalf("PutHunt = %v", err)
	}
	for i, city := range foldCities {
		for j := range 2 {
			f.spots = append(f.spots, hunt.Hotspot{ID: hunt.HotspotID(fmt.Sprintf("c%ds%d", i, j)),
				Lat: city[0] + float64(j)*0.001, Lon: city[1], Tickets: rapid.Int64Range(0, 3).Draw(rt, "tickets"),
				Reward: int64(5 + i), Points: int64(1 + j)})
		}
	}
	if err := f.e.ImportHotspots(c, "h", f.spots); err != nil {
		rt.Fatalf("ImportHotspots = %v", err)
	}
	return f
}

func (f *foldRig) start() {
	e, err := Open(Config{Dir: f.dir, Partitions: 4, FaultHook: func(point string) error {
		if point == FaultAfterCommit && f.crashAt.CompareAndSwap(true, false) {
			return errors.New("crash between commit and publish")
		}
		return nil
	}})
	if err != nil {
		f.rt.Fatalf("Open = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.e, f.cancel, f.done = e, cancel, make(chan error, 1)
	go func() { f.done <- e.Run(ctx) }()
	poll(f.t, "engine ready", func() bool { return e.Ready() == nil })
}

// stop stops Run and closes the store; it returns Run's error.
func (f *foldRig) stop() error {
	if f.e == nil {
		return nil
	}
	f.cancel()
	err := <-f.done
	if cerr := f.e.Close(); cerr != nil {
		f.rt.Fatalf("Close = %v", cerr)
	}
	f.e = nil
	return err
}

func (f *foldRig) drawClaim() *hunt.ClaimRequest {
	s := f.spots[rapid.IntRange(0, len(f.spots)-1).Draw(f.rt, "spot")]
	lat := s.Lat
	if rapid.IntRange(0, 5).Draw(f.rt, "far") == 0 {
		lat += 0.01 // ~1 km: too far
	}
	f.keys++
	return &hunt.ClaimRequest{Player: rapid.SampledFrom(f.players).Draw(f.rt, "player"), Key: fmt.Sprintf("k%d", f.keys),
		Hunt: "h", Hotspot: s.ID, Lat: lat, Lon: s.Lon}
}

func (f *foldRig) claim(req *hunt.ClaimRequest) {
	f.sent = append(f.sent, req)
	if _, err := f.e.Claim(context.Background(), req); err != nil {
		f.rt.Fatalf("Claim(%+v) = %v", req, err)
	}
}

// burst sends n claims at once, so that groups hold several partitions' batches.
func (f *foldRig) burst(n int) {
	reqs := make([]*hunt.ClaimRequest, n)
	for i := range reqs {
		reqs[i] = f.drawClaim()
	}
	f.sent = append(f.sent, reqs...)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Go(func() { _, errs[i] = f.e.Claim(context.Background(), req) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.rt.Fatalf("burst of %d claims: %v", n, err)
	}
}

func (f *foldRig) retry() {
	if len(f.sent) == 0 {
		return
	}
	req := f.sent[rapid.IntRange(0, len(f.sent)-1).Draw(f.rt, "retry")]
	res, err := f.e.Claim(context.Background(), req)
	if err != nil || !res.Replayed {
		f.rt.Fatalf("retry of %+v = replayed %v, %v; want a replay", req, res.Replayed, err)
	}
}

func (f *foldRig) spend(p hunt.PlayerID, amount int64) {
	f.keys++
	if _, err := f.e.Spend(context.Background(), &hunt.SpendRequest{Player: p, Key: fmt.Sprintf("k%d", f.keys), Amount: amount, Reason: "shop"}); err != nil {
		f.rt.Fatalf("Spend = %v", err)
	}
}

func (f *foldRig) reimport(i int, tickets int64) {
	s := f.spots[i]
	s.Tickets = tickets
	if err := f.e.ImportHotspots(context.Background(), "h", []hunt.Hotspot{s}); err != nil {
		f.rt.Fatalf("ImportHotspots = %v", err)
	}
}

// snapshot writes a snapshot of the idle engine, whose digest must be the live fold's.
func (f *foldRig) snapshot() {
	info, err := f.e.Snapshot(context.Background())
	if err != nil {
		f.rt.Fatalf("Snapshot = %v", err)
	}
	if live := strconv.FormatUint(f.e.foldDigest(), 16); info.Digest != live {
		f.rt.Fatalf("snapshot digest %s, live fold %s", info.Digest, live)
	}
}

// restart stops the engine cleanly and checks that the reopened engine's
// state equals the live one's, however it was rebuilt.
func (f *foldRig) restart() {
	live := dumpState(f.e)
	if err := f.stop(); err != nil {
		f.rt.Fatalf("Run = %v; want a clean stop", err)
	}
	from := rapid.SampledFrom([]string{"snapshot", "log", "previous snapshot"}).Draw(f.rt, "restart from")
	dir := snapDir(f.dir)
	snaps, _ := listSnapshots(dir)
	if len(snaps) == 0 {
		f.rt.Fatalf("no snapshot after a clean stop")
	}
	switch from {
	case "log":
		if err := os.RemoveAll(dir); err != nil {
			f.rt.Fatal(err)
		}
		snaps = nil
	case "previous snapshot":
		corrupt(f.rt, snaps[0].path)
	}
	want := "" // the newest snapshot whose checksum holds
	for i := range snaps {
		if snaps[i].check() == nil {
			want = snaps[i].name()
			break
		}
	}
	if from == "previous snapshot" && want == snaps[0].name() {
		f.rt.Fatalf("a corrupted snapshot passes its check")
	}
	f.start()
	if f.e.snap.loaded != want {
		f.rt.Fatalf("restart from the %s loaded snapshot %q; want %q", from, f.e.snap.loaded, want)
	}
	if replayed := dumpState(f.e); replayed != live {
		f.rt.Fatalf("state after a restart from the %s differs from live state:\n%s", from, diffLines(live, replayed))
	}
}

// corrupt flips one byte in the middle of a file.
func corrupt(t interface{ Fatal(...any) }, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2]++ // not an involution: corrupting twice still corrupts
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// crash fails the next group after its commit, restarts, and checks that
// the lost requests were durable.
func (f *foldRig) crash() {
	f.crashAt.Store(true)
	req := f.drawClaim()
	f.sent = append(f.sent, req)
	if _, err := f.e.Claim(context.Background(), req); !errors.Is(err, engine.ErrUnavailable) {
		f.rt.Fatalf("Claim in a group that crashed after its commit = %v; want %v", err, engine.ErrUnavailable)
	}
	if err := f.stop(); !errors.Is(err, engine.ErrUnavailable) {
		f.rt.Fatalf("Run after the crash = %v; want %v", err, engine.ErrUnavailable)
	}
	f.start()
	res, err := f.e.Claim(context.Background(), req)
	if err != nil || !res.Replayed {
		f.rt.Fatalf("retry of the crashed group's claim = replayed %v, %v; want a replay (it was durable)", res.Replayed, err)
	}
}

// dumpState renders every piece of an idle engine's memory that the fold
// builds, in a canonical order, one fact per line.
func dumpState(e *Engine) string {
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	for _, p := range e.parts {
		add("partition %d seq %d published %d at %d", p.id, p.seq, p.lastSeq.Load(), p.lastAt.Load())
	}
	t := &e.spots
	for i := range t.len() {
		he := e.hunts.ord(t.huntOf(i))
		p := e.parts[t.partOf(i)]
		add("hotspot %s/%s part %d def %+v writer's def %+v decided %d granted %d",
			he.id, t.id(i), p.id, t.hotspot(i, he.id, t.def(i)), t.hotspot(i, he.id, p.def(i)), t.decided(i), t.granted(i))
	}
	for _, p := range e.parts {
		p.grants.each(func(spot, player uint32) {
			add("granted %s/%s to %s", e.hunts.ord(t.huntOf(spot)).id, t.id(spot), p.players.idOf(player))
		})
	}
	e.wallets.each(func(id hunt.PlayerID, w *wallet) {
		// Reserved and settled count spends since Open (a snapshot starts
		// both at 0); an idle engine has none waiting to be durable.
		add("wallet %s balance %d epoch %v at %d spends not durable %d", id, w.balance.Load(), w.epoch, w.at.UnixNano(), w.reserved.Load()-w.settled)
	})
	for i := range e.pos.shards {
		sh := &e.pos.shards[i]
		for k, p := range sh.m {
			add("position %s/%s %v,%v at %d epoch %v", k.player, k.hunt, p.lat, p.lon, p.at.UnixNano(), p.epoch)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// diffLines lists the lines only in a (-) and only in b (+).
func diffLines(a, b string) string {
	as, bs := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range as {
		if !slices.Contains(bs, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bs {
		if !slices.Contains(as, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPipeline: a writer decides its next batch while the previous one is
// still with the committer, against that batch's effects; and when the
// earlier group fails, the later batch is not answered either, and nothing
// of either is on disk after a restart.
func TestPipeline(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", fail), func(t *testing.T) {
			var armed, failing atomic.Bool
			entered, release := make(chan struct{}, 1), make(chan struct{})
			hook := func(point string) error {
				if point == FaultBeforeCommit && armed.CompareAndSwap(true, false) {
					entered <- struct{}{}
					<-release
					if failing.Load() {
						return errors.New("injected commit failure")
					}
				}
				return nil
			}
			h := newHarness(t, func(c *Config) { c.FaultHook = hook })
			e := enginetest.Start(t, h)
			setup(t, e, 5)
			failing.Store(fail)
			armed.Store(true)
			first := claimAsync(e, claimAt("p0", "k", "block"))
			<-entered // the committer holds the first group
			second := claimAsync(e, claimAt("p1", "k", "block"))
			en := unwrap(e)
			part := en.parts[partOf(en, "block")]
			poll(t, "the second batch decided while the first is held", func() bool {
				// One pending held by the committer, one queued behind it, one
				// taken by the writer for whatever comes next.
				return len(part.free) == en.cfg.PipelineDepth-3 && len(en.commit.in) == 1
			})
			close(release)
			a1, a2 := <-first, <-second
			if fail {
				if !errors.Is(a1.err, engine.ErrUnavailable) || !errors.Is(a2.err, engine.ErrUnavailable) {
					t.Fatalf("claims over a failed group = %v, %v; want %v for both", a1.err, a2.err, engine.ErrUnavailable)
				}
				if err := e.Stop(); !errors.Is(err, engine.ErrUnavailable) {
					t.Fatalf("Run after a failed group = %v; want %v", err, engine.ErrUnavailable)
				}
				e = enginetest.Start(t, h)
				if n := countEvents(t, e); n != 0 {
					t.Fatalf("events after restart = %d; want 0 (neither batch was written)", n)
				}
				c, cancel := bg()
				defer cancel()
				res, err := e.Claim(c, claimAt("p1", "k", "block"))
				if err != nil || res.Replayed || res.Event.Outcome != hunt.Granted {
					t.Fatalf("retry after restart = %+v (replayed %v), %v; want a fresh grant", res.Event, res.Replayed, err)
				}
				return
			}
			if a1.err != nil || a2.err != nil || a1.res.Event.Outcome != hunt.Granted || a2.res.Event.Outcome != hunt.SoldOut {
				t.Fatalf("pipelined claims of one ticket = %v %v, %v %v; want granted, sold_out", a1.res.Event.Outcome, a1.err, a2.res.Event.Outcome, a2.err)
			}
			if a2.res.Event.Epoch.Seq != a1.res.Event.Epoch.Seq+1 {
				t.Fatalf("seqs %d then %d; want consecutive", a1.res.Event.Epoch.Seq, a2.res.Event.Epoch.Seq)
			}
		})
	}
}

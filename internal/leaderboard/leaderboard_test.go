package leaderboard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// waitMax bounds every wait in these tests; reaching it is a failure, not a timing assertion.
const waitMax = 10 * time.Second

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Event builders. Seq doubles as milliseconds after t0 for At.

func grantEv(part geo.Partition, seq hunt.Seq, h hunt.HuntID, player hunt.PlayerID, geohash string, points int64) hunt.Event {
	return hunt.Event{
		Kind: hunt.KindClaimCompleted, Epoch: hunt.Epoch{Partition: part, Seq: seq},
		At: t0.Add(time.Duration(seq) * time.Millisecond), Player: player, Key: fmt.Sprintf("k%d.%d", part, seq),
		Outcome: hunt.Granted, Hunt: h, Hotspot: "spot", Geohash: geohash, Reward: 5, Points: points,
	}
}

func rejectEv(part geo.Partition, seq hunt.Seq, h hunt.HuntID, player hunt.PlayerID, geohash string, o hunt.Outcome) hunt.Event {
	ev := grantEv(part, seq, h, player, geohash, 0)
	ev.Outcome, ev.Reward = o, 0
	return ev
}

func spendEv(part geo.Partition, seq hunt.Seq, player hunt.PlayerID) hunt.Event {
	return hunt.Event{
		Kind: hunt.KindSpendCompleted, Epoch: hunt.Epoch{Partition: part, Seq: seq},
		At: t0.Add(time.Duration(seq) * time.Millisecond), Player: player, Key: fmt.Sprintf("s%d.%d", part, seq),
		Outcome: hunt.Spent, Amount: 3, Reason: "shop", Balance: 2,
	}
}

func newProjection(t *testing.T, opts Options) *Projection {
	t.Helper()
	if opts.Partitions == 0 {
		opts.Partitions = 4
	}
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New(%+v) = %v", opts, err)
	}
	return p
}

// start runs p.Run until the test ends and checks it returns nil.
func start(t *testing.T, p *Projection) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run() = %v; want nil after cancel", err)
				}
			case <-time.After(waitMax):
				t.Errorf("Run did not return within %v of cancel", waitMax)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, p *Projection, epochs ...hunt.Epoch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	for _, e := range epochs {
		if err := p.Wait(ctx, e); err != nil {
			t.Fatalf("Wait(%v) = %v; watermarks %v", e, err, p.Watermarks())
		}
	}
}

func wantScore(t *testing.T, p *Projection, h hunt.HuntID, region string, player hunt.PlayerID, wantRank int, want int64) {
	t.Helper()
	r, s, ok := p.Score(h, region, player)
	if !ok || r != wantRank || s != want {
		t.Fatalf("Score(%s, %q, %s) = (%d, %d, %v); want (%d, %d, true)", h, region, player, r, s, ok, wantRank, want)
	}
}

func wantUnranked(t *testing.T, p *Projection, h hunt.HuntID, region string, player hunt.PlayerID) {
	t.Helper()
	if r, s, ok := p.Score(h, region, player); ok {
		t.Fatalf("Score(%s, %q, %s) = (%d, %d, true); want unranked", h, region, player, r, s)
	}
}

// fakeLog is a Source over an in-memory log, partitions in order.
type fakeLog struct {
	events      []hunt.Event // per partition in seq order; partitions may interleave
	ignoreAfter bool         // replay everything, as a sloppy source might
	before      func(i int)  // called before event i is passed on
	start       func()       // called when Events starts
	failAt      int          // > 0: return errLog before event failAt
	calls       [][]hunt.Seq // the after argument of each call
}

var errLog = errors.New("log read failed")

func (l *fakeLog) Events(ctx context.Context, after []hunt.Seq, fn func(*hunt.Event) error) error {
	l.calls = append(l.calls, slices.Clone(after))
	if l.start != nil {
		l.start()
	}
	for i := range l.events {
		ev := l.events[i] // fn must not keep the pointer; give it a copy it may not keep either
		if !l.ignoreAfter && int(ev.Epoch.Partition) < len(after) && ev.Epoch.Seq <= after[ev.Epoch.Partition] {
			continue
		}
		if l.failAt > 0 && i == l.failAt {
			return errLog
		}
		if l.before != nil {
			l.before(i)
		}
		if err := fn(&ev); err != nil {
			return err
		}
	}
	return nil
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want []string // substrings of the error; none: valid
	}{
		{Options{Partitions: 64}, nil},
		{Options{Partitions: 1, RegionLenMax: geo.GeohashLen, InboxLenMax: 1}, nil},
		{Options{}, []string{"Partitions 0"}},
		{Options{Partitions: geo.PartitionsMax + 1}, []string{"Partitions 4097"}},
		{Options{Partitions: 4, RegionLenMax: geo.GeohashLen + 1}, []string{"RegionLenMax 10"}},
		{Options{Partitions: 4, RegionLenMax: -1}, []string{"RegionLenMax -1"}},
		{Options{Partitions: 4, InboxLenMax: -1}, []string{"InboxLenMax -1"}},
		{Options{Partitions: -1, RegionLenMax: 99, InboxLenMax: InboxLenMax + 1}, []string{"Partitions -1", "RegionLenMax 99", "InboxLenMax 1048577"}},
	} {
		err := tc.opts.Validate()
		if (err == nil) != (tc.want == nil) {
			t.Fatalf("Validate(%+v) = %v; want error %v", tc.opts, err, tc.want != nil)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%+v) = %q; want it to mention %q", tc.opts, err, w)
			}
		}
		if _, nerr := New(tc.opts); (nerr == nil) != (err == nil) {
			t.Errorf("New(%+v) = %v; Validate = %v", tc.opts, nerr, err)
		}
	}
	p := newProjection(t, Options{Partitions: 3})
	if p.regionLenMax != RegionLenDefault || len(p.in.mu.buf) != InboxLenDefault || len(p.Watermarks()) != 3 {
		t.Fatalf("defaults: regionLenMax %d, inbox %d, watermarks %d; want %d, %d, 3",
			p.regionLenMax, len(p.in.mu.buf), len(p.Watermarks()), RegionLenDefault, InboxLenDefault)
	}
}

func TestDedupeSameBatchDeliveredTwice(t *testing.T) {
	p := newProjection(t, Options{})
	start(t, p)
	b1 := []hunt.Event{
		grantEv(0, 1, "h", "ann", "u33dc0cpp", 10),
		grantEv(0, 2, "h", "bob", "u33dc0cpp", 7),
		grantEv(0, 3, "h", "ann", "u33dc0cpp", 1),
	}
	p.Committed(0, b1)
	p.Committed(0, b1) // redelivery of the whole batch
	// An overlapping batch: 2..3 again plus a new 4.
	p.Committed(0, []hunt.Event{b1[1], b1[2], grantEv(0, 4, "h", "bob", "u33dc0cpp", 100)})
	p.Committed(0, b1[:1]) // an old single event, after the watermark passed it
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 4})
	wantScore(t, p, "h", "", "bob", 1, 107)
	wantScore(t, p, "h", "", "ann", 2, 11)
	if wm := p.Watermarks(); !slices.Equal(wm, []hunt.Seq{4, 0, 0, 0}) {
		t.Fatalf("Watermarks() = %v; want [4 0 0 0]", wm)
	}
}

func TestOnlyGrantsScoreButEveryEventAdvances(t *testing.T) {
	p := newProjection(t, Options{})
	start(t, p)
	p.Committed(1, []hunt.Event{
		grantEv(1, 1, "h", "ann", "u33dc0cpp", 10),
		rejectEv(1, 2, "h", "bob", "u33dc0cpp", hunt.SoldOut),
		rejectEv(1, 3, "h", "ann", "u33dc0cpp", hunt.AlreadyClaimed),
		rejectEv(1, 4, "h", "cid", "u33dc0cpp", hunt.TooFar),
	})
	p.Committed(1, []hunt.Event{spendEv(1, 5, "ann")})
	// The consistency token of a spend (a non-grant event) is waitable.
	waitFor(t, p, hunt.Epoch{Partition: 1, Seq: 5})
	wantScore(t, p, "h", "", "ann", 1, 10)
	wantUnranked(t, p, "h", "", "bob")
	wantUnranked(t, p, "h", "", "cid")
	if got := p.Top("h", "", 0, 10).Entries; len(got) != 1 {
		t.Fatalf("Top(h) = %v; want only ann", got)
	}
	st := p.Status()[1]
	if st.Epoch != (hunt.Epoch{Partition: 1, Seq: 5}) || !st.At.Equal(t0.Add(5*time.Millisecond)) {
		t.Fatalf("Status()[1] = %+v; want epoch 1.5 at %v", st, t0.Add(5*time.Millisecond))
	}
}

func TestZeroPointGrantIsRanked(t *testing.T) {
	p := newProjection(t, Options{})
	start(t, p)
	p.Committed(0, []hunt.Event{grantEv(0, 1, "h", "ann", "u33dc0cpp", 0), grantEv(0, 2, "h", "bob", "u33dc0cpp", 1)})
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 2})
	wantScore(t, p, "h", "", "ann", 2, 0)
	wantScore(t, p, "h", "", "bob", 1, 1)
}

// TestRebuildThenQueuedCommittedOverlap is the start-up order: batches
// delivered by the engine wait in the inbox while Rebuild replays the log
// (which already holds some of them); Run then applies only what is new.
func TestRebuildThenQueuedCommittedOverlap(t *testing.T) {
	p := newProjection(t, Options{Partitions: 2})
	var log fakeLog
	for s := hunt.Seq(1); s <= 10; s++ {
		log.events = append(log.events, grantEv(0, s, "h", hunt.PlayerID(fmt.Sprintf("p%d", s%3)), "u33dc0cpp", int64(s)))
	}
	for s := hunt.Seq(1); s <= 5; s++ {
		log.events = append(log.events, grantEv(1, s, "h", "p0", "9q8yyk8yt", 100))
	}
	live0 := []hunt.Event{log.events[7], log.events[8], log.events[9], grantEv(0, 11, "h", "p1", "u33dc0cpp", 1000), grantEv(0, 12, "h", "p2", "u33dc0cpp", 2000)}
	p.Committed(0, live0)
	p.Committed(1, log.events[10:13]) // 1..3: all in the log already
	if err := p.Rebuild(context.Background(), &log); err != nil {
		t.Fatalf("Rebuild() = %v", err)
	}
	if wm := p.Watermarks(); !slices.Equal(wm, []hunt.Seq{10, 5}) {
		t.Fatalf("Watermarks() after Rebuild = %v; want [10 5]", wm)
	}
	if !slices.Equal(log.calls[0], []hunt.Seq{0, 0}) {
		t.Fatalf("Events(after=%v); want after=[0 0]", log.calls[0])
	}
	start(t, p)
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 12})
	// p0: seqs 3,6,9 = 18, + 5*100 = 518; p1: 1,4,7,10 = 22 + 1000; p2: 2,5,8 = 15 + 2000.
	wantScore(t, p, "h", "", "p2", 1, 2015)
	wantScore(t, p, "h", "", "p1", 2, 1022)
	wantScore(t, p, "h", "", "p0", 3, 518)
	wantScore(t, p, "h", "u33d", "p0", 3, 18)
	wantScore(t, p, "h", "9q8y", "p0", 1, 500)
}

// TestRebuildSourceReplaysMoreThanAsked: events at or below the watermark
// are skipped even when the source ignores after.
func TestRebuildSourceReplaysMoreThanAsked(t *testing.T) {
	p := newProjection(t, Options{Partitions: 1})
	start(t, p)
	var log fakeLog
	log.ignoreAfter = true
	for s := hunt.Seq(1); s <= 8; s++ {
		log.events = append(log.events, grantEv(0, s, "h", "ann", "u33dc0cpp", 1))
	}
	p.Committed(0, log.events[:5])
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 5})
	if err := p.Rebuild(context.Background(), &log); err != nil {
		t.Fatalf("Rebuild() = %v", err)
	}
	if !slices.Equal(log.calls[0], []hunt.Seq{5}) {
		t.Fatalf("Events(after=%v); want after=[5]", log.calls[0])
	}
	wantScore(t, p, "h", "", "ann", 1, 8)
	// And a second Rebuild is a no-op.
	if err := p.Rebuild(context.Background(), &log); err != nil {
		t.Fatalf("second Rebuild() = %v", err)
	}
	wantScore(t, p, "h", "", "ann", 1, 8)
}

// TestCommittedDuringRebuild: live batches arriving while Rebuild replays
// must not be applied before it ends, or the watermark would jump over log
// events Rebuild has not replayed yet.
func TestCommittedDuringRebuild(t *testing.T) {
	p := newProjection(t, Options{Partitions: 1})
	var log fakeLog
	for s := hunt.Seq(1); s <= 50; s++ {
		log.events = append(log.events, grantEv(0, s, "h", "ann", "u33dc0cpp", 1))
	}
	held := make(chan struct{}, 1)
	p.onHeld = func() { notify(held) }
	log.start = func() { start(t, p) } // the applier runs during the replay
	live := []hunt.Event{log.events[48], log.events[49], grantEv(0, 51, "h", "ann", "u33dc0cpp", 100), grantEv(0, 52, "h", "bob", "u33dc0cpp", 1)}
	log.before = func(i int) {
		if i == 25 {
			p.Committed(0, live)
			// Continue the replay only once the applier has either been held
			// back (right) or applied the live batch (wrong).
			ctx, cancel := context.WithTimeout(context.Background(), waitMax)
			defer cancel()
			applied := make(chan error, 1)
			go func() { applied <- p.Wait(ctx, hunt.Epoch{Partition: 0, Seq: 51}) }()
			select {
			case <-held:
			case err := <-applied:
				t.Errorf("live batch applied during Rebuild (Wait(0.51) = %v); want it held back", err)
			}
		}
		if wm := p.Watermarks()[0]; wm > hunt.Seq(i) {
			t.Fatalf("watermark before replaying seq %d = %d; want <= %d (a live batch was applied during Rebuild)", i+1, wm, i)
		}
	}
	if err := p.Rebuild(context.Background(), &log); err != nil {
		t.Fatalf("Rebuild() = %v", err)
	}
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 52})
	wantScore(t, p, "h", "", "ann", 1, 150)
	wantScore(t, p, "h", "", "bob", 2, 1)
}

func TestRebuildErrors(t *testing.T) {
	p := newProjection(t, Options{Partitions: 2})
	start(t, p)
	var log fakeLog
	for s := hunt.Seq(1); s <= 5; s++ {
		log.events = append(log.events, grantEv(0, s, "h", "ann", "u33dc0cpp", 1))
	}
	log.failAt = 3
	if err := p.Rebuild(context.Background(), &log); !errors.Is(err, errLog) {
		t.Fatalf("Rebuild() = %v; want %v", err, errLog)
	}
	// What was replayed stays applied, consistent with the watermark.
	if wm := p.Watermarks()[0]; wm != 3 {
		t.Fatalf("watermark after a failed Rebuild = %d; want 3", wm)
	}
	wantScore(t, p, "h", "", "ann", 1, 3)
	// The applier is not held back after a failed Rebuild.
	p.Committed(0, []hunt.Event{log.events[3], log.events[4], grantEv(0, 6, "h", "ann", "u33dc0cpp", 1)})
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 6})
	wantScore(t, p, "h", "", "ann", 1, 6)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	canceled := fakeLog{events: []hunt.Event{grantEv(1, 1, "h", "bob", "u33dc0cpp", 1)}}
	if err := p.Rebuild(ctx, ctxLog{&canceled}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Rebuild(canceled ctx) = %v; want context.Canceled", err)
	}

	bad := fakeLog{events: []hunt.Event{grantEv(7, 1, "h", "bob", "u33dc0cpp", 1)}}
	if err := p.Rebuild(context.Background(), &bad); !errors.Is(err, ErrUnknownPartition) {
		t.Fatalf("Rebuild(partition 7 of 2) = %v; want ErrUnknownPartition", err)
	}
	wantUnranked(t, p, "h", "", "bob")
}

// ctxLog is a source that honours ctx like a real store does.
type ctxLog struct{ *fakeLog }

func (l ctxLog) Events(ctx context.Context, after []hunt.Seq, fn func(*hunt.Event) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.fakeLog.Events(ctx, after, fn)
}

// TestGapIsLogged: a batch that skips seqs above the watermark (Rebuild was
// not called before the engine delivered) is applied and reported loudly.
func TestGapIsLogged(t *testing.T) {
	var buf bytes.Buffer
	p := newProjection(t, Options{Partitions: 2, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	start(t, p)
	p.Committed(1, []hunt.Event{grantEv(1, 1, "h", "ann", "u33dc0cpp", 1)})
	p.Committed(1, []hunt.Event{grantEv(1, 2, "h", "ann", "u33dc0cpp", 1)})
	waitFor(t, p, hunt.Epoch{Partition: 1, Seq: 2})
	if strings.Contains(buf.String(), "gap") {
		t.Fatalf("contiguous deliveries logged a gap: %s", buf.String())
	}
	p.Committed(1, []hunt.Event{grantEv(1, 7, "h", "ann", "u33dc0cpp", 1)})
	waitFor(t, p, hunt.Epoch{Partition: 1, Seq: 7})
	if out := buf.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "gap") ||
		!strings.Contains(out, "partition=1 watermark=2 next_seq=7") {
		t.Fatalf("log after a gap = %q; want an ERROR naming partition 1, watermark 2, next seq 7", out)
	}
	wantScore(t, p, "h", "", "ann", 1, 3)
}

func TestRegions(t *testing.T) {
	p := newProjection(t, Options{})
	start(t, p)
	// Berlin (u33d...), Munich (u281...), San Francisco (9q8y...).
	p.Committed(0, []hunt.Event{
		grantEv(0, 1, "h", "ann", "u33dc0cpp", 10),
		grantEv(0, 2, "h", "bob", "u33db2m3x", 4),
		grantEv(0, 3, "h", "ann", "u281zbc4e", 1),
		grantEv(0, 4, "h", "cid", "9q8yyk8yt", 50),
		grantEv(0, 5, "other", "ann", "u33dc0cpp", 1000),
	})
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 5})
	wantScore(t, p, "h", "", "cid", 1, 50)
	wantScore(t, p, "h", "", "ann", 2, 11)
	wantScore(t, p, "h", "", "bob", 3, 4)
	for _, region := range []string{"u3", "u33", "u33d"} {
		wantScore(t, p, "h", region, "ann", 1, 10)
		wantScore(t, p, "h", region, "bob", 2, 4)
		wantUnranked(t, p, "h", region, "cid")
	}
	wantScore(t, p, "h", "u2", "ann", 1, 1)
	wantScore(t, p, "h", "9q8y", "cid", 1, 50)
	// "u" holds Berlin and Munich: ann 10+1.
	if got, want := p.Top("h", "u", 0, 10).Entries, []Entry{{1, "ann", 11}, {2, "bob", 4}}; !slices.Equal(got, want) {
		t.Fatalf(`Top(h, "u") = %v; want %v`, got, want)
	}
	// Longer than RegionLenMax, unknown, or another hunt's: no board.
	for _, region := range []string{"u33dc", "x", "u33e"} {
		if pg := p.Top("h", region, 0, 10); pg.Entries == nil || len(pg.Entries) != 0 {
			t.Fatalf("Top(h, %q).Entries = %#v; want empty, non-nil", region, pg.Entries)
		}
	}
	wantScore(t, p, "other", "u33d", "ann", 1, 1000)
	wantUnranked(t, p, "other", "", "bob")

	short := newProjection(t, Options{RegionLenMax: 2})
	start(t, short)
	short.Committed(0, []hunt.Event{grantEv(0, 1, "h", "ann", "u33dc0cpp", 10)})
	waitFor(t, short, hunt.Epoch{Partition: 0, Seq: 1})
	wantScore(t, short, "h", "u3", "ann", 1, 10)
	wantUnranked(t, short, "h", "u33", "ann")
}

// TestRegionBoardsBuiltOnFirstRead: a region board exists once read after a
// grant landed in it (region.go), answers as if kept from the start, and is
// then kept up to date; a read of a region without grants builds nothing.
func TestRegionBoardsBuiltOnFirstRead(t *testing.T) {
	p := newProjection(t, Options{})
	start(t, p)
	built := func(region string) bool {
		p.mu.RLock()
		defer p.mu.RUnlock()
		_, ok := p.mu.boards[boardKey{"h", region}]
		return ok
	}
	wantUnranked(t, p, "h", "u33", "ann")
	if pg := p.Top("h", "u3", 0, 10); len(pg.Entries) != 0 || built("u3") || built("u33") {
		t.Fatalf("a read before any grant: %v, boards built u3 %v, u33 %v", pg.Entries, built("u3"), built("u33"))
	}
	p.Committed(0, []hunt.Event{
		grantEv(0, 1, "h", "ann", "u33dc0cpp", 10),
		grantEv(0, 2, "h", "bob", "u33db2m3x", 4),
		grantEv(0, 3, "h", "ann", "u281zbc4e", 1),
		grantEv(0, 4, "h", "cid", "u33dc0zzz", 0),
	})
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 4})
	for _, region := range []string{"u", "u3", "u33", "u33d", "u2"} {
		if built(region) {
			t.Fatalf("region %q built before any read", region)
		}
	}
	if got, want := p.Top("h", "u", 0, 10).Entries, []Entry{{1, "ann", 11}, {2, "bob", 4}, {3, "cid", 0}}; !slices.Equal(got, want) {
		t.Fatalf(`Top(h, "u") = %v; want %v`, got, want)
	}
	wantScore(t, p, "h", "u33d", "bob", 2, 4)
	if !built("u") || !built("u33d") || built("u3") || built("u2") {
		t.Fatalf("built u %v, u33d %v, u3 %v, u2 %v; want true, true, false, false", built("u"), built("u33d"), built("u3"), built("u2"))
	}
	// Kept up to date from now on, in a built board and in one built later.
	p.Committed(0, []hunt.Event{
		grantEv(0, 5, "h", "bob", "u33db2m3x", 20),
		grantEv(0, 6, "h", "dan", "u2810000", 3),
	})
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 6})
	if got, want := p.Top("h", "u", 0, 10).Entries, []Entry{{1, "bob", 24}, {2, "ann", 11}, {3, "dan", 3}, {4, "cid", 0}}; !slices.Equal(got, want) {
		t.Fatalf(`Top(h, "u") = %v; want %v`, got, want)
	}
	if got, want := p.Top("h", "u33d", 0, 10).Entries, []Entry{{1, "bob", 24}, {2, "ann", 10}, {3, "cid", 0}}; !slices.Equal(got, want) {
		t.Fatalf(`Top(h, "u33d") = %v; want %v`, got, want)
	}
	if got, want := p.Top("h", "u2", 0, 10).Entries, []Entry{{1, "dan", 3}, {2, "ann", 1}}; !slices.Equal(got, want) {
		t.Fatalf(`Top(h, "u2") = %v; want %v`, got, want)
	}
	// Around builds a board too.
	if pg, ok := p.Around("h", "u28", "dan", 1); !ok || !slices.Equal(pg.Entries, []Entry{{1, "dan", 3}}) {
		t.Fatalf(`Around(h, "u28", dan) = %v, %v`, pg.Entries, ok)
	}
}

func TestTopPaging(t *testing.T) {
	p := newProjection(t, Options{})
	start(t, p)
	var batch []hunt.Event
	for i := range 10 {
		batch = append(batch, grantEv(0, hunt.Seq(i+1), "h", hunt.PlayerID(fmt.Sprintf("p%d", i)), "u33dc0cpp", int64(i)))
	}
	p.Committed(0, batch)
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 10})
	rank := func(entries []Entry) (out []int) {
		for _, e := range entries {
			out = append(out, e.Rank)
		}
		return out
	}
	for _, tc := range []struct {
		offset, limit int
		want          []int
	}{
		{0, 3, []int{1, 2, 3}},
		{8, 5, []int{9, 10}},
		{10, 5, nil},
		{-4, 2, []int{1, 2}},
		{0, 0, nil},
		{3, -1, nil},
	} {
		pg := p.Top("h", "", tc.offset, tc.limit)
		if got := rank(pg.Entries); !slices.Equal(got, tc.want) {
			t.Errorf("Top(offset %d, limit %d) ranks = %v; want %v", tc.offset, tc.limit, got, tc.want)
		}
		if pg.Entries == nil {
			t.Errorf("Top(offset %d, limit %d).Entries = nil; want non-nil", tc.offset, tc.limit)
		}
	}
	if got := p.Top("h", "", 0, 1).Entries; got[0] != (Entry{1, "p9", 9}) {
		t.Fatalf("Top(0, 1) = %v; want [{1 p9 9}]", got)
	}

	// A limit above PageLenMax is clamped.
	batch = batch[:0]
	for i := range PageLenMax + 5 {
		batch = append(batch, grantEv(1, hunt.Seq(i+1), "big", hunt.PlayerID(fmt.Sprintf("p%04d", i)), "u33dc0cpp", 1))
	}
	p.Committed(1, batch)
	waitFor(t, p, hunt.Epoch{Partition: 1, Seq: hunt.Seq(len(batch))})
	if got := len(p.Top("big", "", 0, PageLenMax*10).Entries); got != PageLenMax {
		t.Fatalf("len(Top(limit %d)) = %d; want %d", PageLenMax*10, got, PageLenMax)
	}
}

func TestAroundEdges(t *testing.T) {
	p := newProjection(t, Options{})
	start(t, p)
	var batch []hunt.Event
	for i := range 10 { // p1 has rank 1 (score 100) ... p10 rank 10 (score 10)
		batch = append(batch, grantEv(0, hunt.Seq(i+1), "h", hunt.PlayerID(fmt.Sprintf("p%02d", i+1)), "u33dc0cpp", int64(100-10*i)))
	}
	p.Committed(0, batch)
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 10})
	for _, tc := range []struct {
		player hunt.PlayerID
		limit  int
		from   int // first rank of the window
		n      int
	}{
		{"p01", 5, 1, 5},   // first: window shifted down
		{"p10", 5, 6, 5},   // last: window shifted up
		{"p05", 5, 3, 5},   // middle: centred
		{"p05", 4, 4, 4},   // even limit: one more below
		{"p02", 5, 1, 5},   // near the top
		{"p09", 5, 6, 5},   // near the bottom
		{"p05", 1, 5, 1},   // just the player
		{"p05", 20, 1, 10}, // more than the board
		{"p05", 0, 0, 0},   // ranked, but no entries asked for
	} {
		pg, ok := p.Around("h", "", tc.player, tc.limit)
		if !ok {
			t.Fatalf("Around(%s, %d) ok = false; want true", tc.player, tc.limit)
		}
		var want []Entry
		for r := tc.from; r < tc.from+tc.n; r++ {
			want = append(want, Entry{r, hunt.PlayerID(fmt.Sprintf("p%02d", r)), int64(110 - 10*r)})
		}
		if !slices.Equal(pg.Entries, want) {
			t.Errorf("Around(%s, %d) = %v; want %v", tc.player, tc.limit, pg.Entries, want)
		}
		if tc.n > 0 && !slices.ContainsFunc(pg.Entries, func(e Entry) bool { return e.Player == tc.player }) {
			t.Errorf("Around(%s, %d) = %v; does not contain the player", tc.player, tc.limit, pg.Entries)
		}
	}
	for _, tc := range []struct {
		h      hunt.HuntID
		region string
		player hunt.PlayerID
	}{{"h", "", "nobody"}, {"h", "9q", "p01"}, {"nohunt", "", "p01"}} {
		if pg, ok := p.Around(tc.h, tc.region, tc.player, 5); ok || len(pg.Entries) != 0 || pg.Entries == nil {
			t.Errorf("Around(%s, %q, %s) = (%#v, %v); want (empty, false)", tc.h, tc.region, tc.player, pg.Entries, ok)
		}
	}
}

func TestTiesOrderByPlayerID(t *testing.T) {
	p := newProjection(t, Options{})
	start(t, p)
	p.Committed(0, []hunt.Event{
		grantEv(0, 1, "h", "carol", "u33dc0cpp", 5),
		grantEv(0, 2, "h", "alice", "u33dc0cpp", 5),
		grantEv(0, 3, "h", "bob", "u33dc0cpp", 5),
	})
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 3})
	if got, want := p.Top("h", "", 0, 10).Entries, []Entry{{1, "alice", 5}, {2, "bob", 5}, {3, "carol", 5}}; !slices.Equal(got, want) {
		t.Fatalf("Top = %v; want %v", got, want)
	}
	p.Committed(0, []hunt.Event{grantEv(0, 4, "h", "carol", "u33dc0cpp", 1)})
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 4})
	if got, want := p.Top("h", "", 0, 10).Entries, []Entry{{1, "carol", 6}, {2, "alice", 5}, {3, "bob", 5}}; !slices.Equal(got, want) {
		t.Fatalf("Top after carol +1 = %v; want %v", got, want)
	}
	if pg, _ := p.Around("h", "", "bob", 2); !slices.Equal(pg.Entries, []Entry{{2, "alice", 5}, {3, "bob", 5}}) {
		t.Fatalf("Around(bob, 2) = %v; want alice, bob", pg.Entries)
	}
}

func TestWait(t *testing.T) {
	p := newProjection(t, Options{Partitions: 3})
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()

	// Waiting before Run started: unblocked once Run applies the batch.
	early := make(chan error, 1)
	go func() { early <- p.Wait(ctx, hunt.Epoch{Partition: 2, Seq: 1}) }()

	waiter := make(chan error, 1)
	go func() { waiter <- p.Wait(ctx, hunt.Epoch{Partition: 1, Seq: 2}) }()

	p.Committed(2, []hunt.Event{spendEv(2, 1, "ann")})
	start(t, p)
	if err := <-early; err != nil {
		t.Fatalf("Wait(2.1) = %v; want nil", err)
	}
	// Other partitions advancing past 2 must not release a waiter on partition 1.
	p.Committed(0, []hunt.Event{spendEv(0, 1, "a"), spendEv(0, 2, "a"), spendEv(0, 3, "a")})
	p.Committed(1, []hunt.Event{spendEv(1, 1, "a")})
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 3}, hunt.Epoch{Partition: 1, Seq: 1})
	select {
	case err := <-waiter:
		t.Fatalf("Wait(1.2) returned %v with watermark 1.1; want it blocked", err)
	default:
	}
	p.Committed(1, []hunt.Event{spendEv(1, 2, "a")})
	select {
	case err := <-waiter:
		if err != nil {
			t.Fatalf("Wait(1.2) = %v; want nil", err)
		}
	case <-time.After(waitMax):
		t.Fatalf("Wait(1.2) still blocked %v after watermark 1.2", waitMax)
	}

	// Already satisfied: nil at once, even with a done ctx.
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if err := p.Wait(done, hunt.Epoch{Partition: 0, Seq: 2}); err != nil {
		t.Fatalf("Wait(satisfied, canceled ctx) = %v; want nil", err)
	}
	// Not satisfied: the ctx decides.
	if err := p.Wait(done, hunt.Epoch{Partition: 0, Seq: 99}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait(0.99, canceled) = %v; want context.Canceled", err)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelShort()
	if err := p.Wait(short, hunt.Epoch{Partition: 0, Seq: 99}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait(0.99, deadline) = %v; want context.DeadlineExceeded", err)
	}
	if err := p.Wait(ctx, hunt.Epoch{Partition: 3, Seq: 1}); !errors.Is(err, ErrUnknownPartition) {
		t.Fatalf("Wait(3.1) with 3 partitions = %v; want ErrUnknownPartition", err)
	}
	// A canceled waiter leaves no trouble behind: later waiters still wake.
	later := make(chan error, 1)
	go func() { later <- p.Wait(ctx, hunt.Epoch{Partition: 0, Seq: 4}) }()
	p.Committed(0, []hunt.Event{spendEv(0, 4, "a")})
	if err := <-later; err != nil {
		t.Fatalf("Wait(0.4) = %v; want nil", err)
	}
}

// histogram returns the sample count and sum of the leaderboard staleness histogram.
func histogram(t *testing.T, reg *prometheus.Registry) (uint64, float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() = %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "cairn_projection_staleness_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "projection" && l.GetValue() == "leaderboard" {
					return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	return 0, 0
}

func TestStalenessFields(t *testing.T) {
	clock := newFakeClock(t0.Add(10 * time.Second))
	reg := prometheus.NewRegistry()
	p := newProjection(t, Options{Partitions: 2, Clock: clock.Now, Metrics: telemetry.New(reg)})

	pg := p.Top("h", "", 0, 10)
	if pg.Staleness != 0 || !pg.LastUpdated.IsZero() {
		t.Fatalf("empty projection: Staleness %v, LastUpdated %v; want 0, zero", pg.Staleness, pg.LastUpdated)
	}
	// Queued, not applied (Run not started): stale by the oldest queued event.
	p.Committed(0, []hunt.Event{grantEv(0, 1000, "h", "ann", "u33dc0cpp", 1), grantEv(0, 1001, "h", "ann", "u33dc0cpp", 1)})
	p.Committed(1, []hunt.Event{grantEv(1, 8000, "h", "bob", "u33dc0cpp", 1)})
	pg = p.Top("h", "", 0, 10)
	if want := 9 * time.Second; pg.Staleness != want || !pg.LastUpdated.IsZero() || len(pg.Entries) != 0 {
		t.Fatalf("queued: Top = %+v; want Staleness %v, zero LastUpdated, no entries", pg, want)
	}
	if d := []int{p.Status()[0].Depth, p.Status()[1].Depth}; !slices.Equal(d, []int{2, 1}) {
		t.Fatalf("Status depths = %v; want [2 1]", d)
	}
	start(t, p)
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 1001}, hunt.Epoch{Partition: 1, Seq: 8000})
	pg = p.Top("h", "", 0, 10)
	if want := t0.Add(8 * time.Second); pg.Staleness != 0 || !pg.LastUpdated.Equal(want) {
		t.Fatalf("caught up: Staleness %v, LastUpdated %v; want 0, %v", pg.Staleness, pg.LastUpdated, want)
	}
	if pg, ok := p.Around("h", "", "ann", 3); !ok || pg.Staleness != 0 || !pg.LastUpdated.Equal(t0.Add(8*time.Second)) {
		t.Fatalf("Around caught up: %+v, %v; want staleness 0 and LastUpdated %v", pg, ok, t0.Add(8*time.Second))
	}
	if d := []int{p.Status()[0].Depth, p.Status()[1].Depth}; !slices.Equal(d, []int{0, 0}) {
		t.Fatalf("Status depths = %v; want [0 0]", d)
	}
	// One sample per applied batch: now - newest event of it (10s-1.001s, 10s-8s).
	n, sum := histogram(t, reg)
	if want := 8.999 + 2.0; n != 2 || sum < want-1e-9 || sum > want+1e-9 {
		t.Fatalf("staleness histogram count %d sum %v; want 2, %v", n, sum, want)
	}
	// A redelivered batch is not a new sample.
	p.Committed(1, []hunt.Event{grantEv(1, 8000, "h", "bob", "u33dc0cpp", 1)})
	p.Committed(1, []hunt.Event{grantEv(1, 8001, "h", "bob", "u33dc0cpp", 1)})
	waitFor(t, p, hunt.Epoch{Partition: 1, Seq: 8001})
	if n, _ := histogram(t, reg); n != 3 {
		t.Fatalf("staleness samples after a redelivery and a new batch = %d; want 3", n)
	}
}

func TestStalenessDuringRebuild(t *testing.T) {
	clock := newFakeClock(t0.Add(time.Minute))
	p := newProjection(t, Options{Partitions: 1, Clock: clock.Now})
	log := fakeLog{events: []hunt.Event{grantEv(0, 1, "h", "ann", "u33dc0cpp", 1), grantEv(0, 2, "h", "ann", "u33dc0cpp", 1)}}
	var during []time.Duration
	log.before = func(i int) {
		clock.Add(3 * time.Second)
		during = append(during, p.Top("h", "", 0, 1).Staleness)
	}
	if err := p.Rebuild(context.Background(), &log); err != nil {
		t.Fatalf("Rebuild() = %v", err)
	}
	// Nothing applied yet at event 0 (both land in one chunk): time since the
	// Rebuild began, 3s then 6s.
	if want := []time.Duration{3 * time.Second, 6 * time.Second}; !slices.Equal(during, want) {
		t.Fatalf("Staleness during Rebuild = %v; want %v", during, want)
	}
	if pg := p.Top("h", "", 0, 1); pg.Staleness != 0 || !pg.LastUpdated.Equal(t0.Add(2*time.Millisecond)) {
		t.Fatalf("after Rebuild: Staleness %v LastUpdated %v; want 0, %v", pg.Staleness, pg.LastUpdated, t0.Add(2*time.Millisecond))
	}
}

func TestStatus(t *testing.T) {
	p := newProjection(t, Options{Partitions: 3})
	start(t, p)
	p.Committed(2, []hunt.Event{grantEv(2, 7, "h", "ann", "u33dc0cpp", 1), spendEv(2, 9, "ann")})
	waitFor(t, p, hunt.Epoch{Partition: 2, Seq: 9})
	want := []engine.Status{
		{Component: "leaderboard/0", Epoch: hunt.Epoch{Partition: 0}},
		{Component: "leaderboard/1", Epoch: hunt.Epoch{Partition: 1}},
		{Component: "leaderboard/2", Epoch: hunt.Epoch{Partition: 2, Seq: 9}, At: t0.Add(9 * time.Millisecond)},
	}
	if got := p.Status(); !slices.Equal(got, want) {
		t.Fatalf("Status() = %+v; want %+v", got, want)
	}
}

func TestBackPressureAndStop(t *testing.T) {
	p := newProjection(t, Options{Partitions: 1, InboxLenMax: 1})
	p.Committed(0, []hunt.Event{grantEv(0, 1, "h", "ann", "u33dc0cpp", 1)})
	second := make(chan struct{})
	go func() {
		p.Committed(0, []hunt.Event{grantEv(0, 2, "h", "ann", "u33dc0cpp", 1)}) // inbox full: blocks
		close(second)
	}()
	select {
	case <-second:
		t.Fatalf("Committed returned with the inbox full and no applier; want it blocked")
	default:
	}
	stop := start(t, p)
	waitFor(t, p, hunt.Epoch{Partition: 0, Seq: 2})
	<-second
	wantScore(t, p, "h", "", "ann", 1, 2)
	stop()

	// After Run returned, Committed must not block the engine.
	for range 3 {
		p.Committed(0, []hunt.Event{grantEv(0, 3, "h", "ann", "u33dc0cpp", 1)})
	}
	if err := p.Run(context.Background()); !errors.Is(err, ErrAlreadyRun) {
		t.Fatalf("second Run() = %v; want ErrAlreadyRun", err)
	}
}

func TestStopReleasesBlockedProducers(t *testing.T) {
	p := newProjection(t, Options{Partitions: 1, InboxLenMax: 1})
	p.Committed(0, []hunt.Event{grantEv(0, 1, "h", "ann", "u33dc0cpp", 1)})
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { p.Committed(0, []hunt.Event{grantEv(0, hunt.Seq(2+i), "h", "ann", "u33dc0cpp", 1)}) })
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatalf("Run(canceled) = %v; want nil", err)
	}
	released := make(chan struct{})
	go func() { wg.Wait(); close(released) }()
	select {
	case <-released:
	case <-time.After(waitMax):
		t.Fatalf("producers blocked on a full inbox still blocked %v after Run returned", waitMax)
	}
}

func TestCommittedPanicsOnBadBatch(t *testing.T) {
	p := newProjection(t, Options{Partitions: 2})
	for _, tc := range []struct {
		name  string
		part  geo.Partition
		batch []hunt.Event
		want  string
	}{
		{"partition out of range", 2, []hunt.Event{spendEv(2, 1, "a")}, "out of range"},
		{"seq not increasing", 0, []hunt.Event{spendEv(0, 2, "a"), spendEv(0, 2, "a")}, "strictly increasing"},
		{"seq decreasing", 0, []hunt.Event{spendEv(0, 3, "a"), spendEv(0, 1, "a")}, "strictly increasing"},
		{"event of another partition", 0, []hunt.Event{spendEv(1, 1, "a")}, "strictly increasing"},
		{"seq zero", 0, []hunt.Event{spendEv(0, 0, "a")}, "strictly increasing"},
	} {
		got := func() (msg string) {
			defer func() { msg = fmt.Sprint(recover()) }()
			p.Committed(tc.part, tc.batch)
			return "no panic"
		}()
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s: Committed panicked with %q; want it to mention %q", tc.name, got, tc.want)
		}
	}
	p.Committed(0, nil) // an empty batch is fine
	if d := p.Status()[0].Depth; d != 0 {
		t.Fatalf("depth after rejected batches = %d; want 0", d)
	}
}

// BenchmarkApply: applying one engine batch of 64 grants (5 boards each)
// through Committed and the applier, players drawn from 10k.
func BenchmarkApply(b *testing.B) {
	p, err := New(Options{Partitions: 1, InboxLenMax: 64})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	geohashes := []string{"u33dc0cpp", "u33db2m3x", "u281zbc4e", "9q8yyk8yt"}
	players := make([]hunt.PlayerID, 10_000)
	for i := range players {
		players[i] = hunt.PlayerID(fmt.Sprintf("player-%05d", i))
	}
	batch := make([]hunt.Event, 64)
	for j := range batch {
		batch[j] = grantEv(0, 0, "h", "", geohashes[j%len(geohashes)], 10)
	}
	seq := hunt.Seq(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range batch {
			seq++
			batch[j].Epoch.Seq = seq
			batch[j].Player = players[(i*64+j)*7919%len(players)]
		}
		p.Committed(0, batch)
	}
	if err := p.Wait(ctx, hunt.Epoch{Partition: 0, Seq: seq}); err != nil {
		b.Fatal(err)
	}
}

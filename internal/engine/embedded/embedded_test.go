package embedded

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/enginetest"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// harness opens embedded engines on one directory.
type harness struct {
	cfg Config
}

func (h *harness) Open(t *testing.T) engine.Engine {
	t.Helper()
	e, err := Open(h.cfg)
	if err != nil {
		t.Fatalf("Open(%+v) = %v", h.cfg, err)
	}
	return e
}

func newHarness(t *testing.T, mod ...func(*Config)) *harness {
	cfg := Config{Dir: t.TempDir(), Partitions: 16}
	for _, m := range mod {
		m(&cfg)
	}
	return &harness{cfg: cfg}
}

func TestConformance(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) enginetest.Harness { return newHarness(t) })
}

func bg() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// blocker is a FaultHook that, once armed, parks the next batch at
// before-commit until released, so a test can fill an inbox deterministically.
type blocker struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func newBlocker() *blocker {
	return &blocker{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (b *blocker) hook(point string) error {
	if point == FaultBeforeCommit && b.armed.CompareAndSwap(true, false) {
		b.entered <- struct{}{}
		<-b.release
	}
	return nil
}

func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval, bounded by the deadline above
	}
}

var paris = struct{ lat, lon float64 }{48.8566, 2.3522}

// setup puts hunt "h" with hotspot "block" (1 ticket) and "gold" (tickets)
// 100 m apart: one geohash prefix, so one partition.
func setup(t *testing.T, e engine.Engine, tickets int64) {
	t.Helper()
	c, cancel := bg()
	defer cancel()
	if err := e.PutHunt(c, hunt.Hunt{ID: "h"}); err != nil {
		t.Fatalf("PutHunt = %v", err)
	}
	err := e.ImportHotspots(c, "h", []hunt.Hotspot{
		{ID: "block", Lat: paris.lat, Lon: paris.lon, Tickets: 1, Reward: 1},
		{ID: "gold", Lat: paris.lat + 0.0009, Lon: paris.lon, Tickets: tickets, Reward: 10},
	})
	if err != nil {
		t.Fatalf("ImportHotspots = %v", err)
	}
	en := unwrap(e)
	if a, b := partOf(en, "block"), partOf(en, "gold"); a != b {
		t.Fatalf("fixture hotspots in partitions %d and %d; want one", a, b)
	}
}

// partOf returns the partition of hotspot spot of hunt "h" (which must exist).
func partOf(e *Engine, spot string) geo.Partition {
	i, ok := e.spots.find(e.hunts.get("h").ord, spot)
	if !ok {
		panic("no hotspot " + spot)
	}
	return e.spots.partOf(i)
}

// unwrap returns the embedded engine inside what enginetest.Start returns.
func unwrap(e engine.Engine) *Engine {
	if r, ok := e.(*enginetest.Running); ok {
		return r.Engine.(*Engine)
	}
	return e.(*Engine)
}

func claimAt(player, key, spot string) *hunt.ClaimRequest {
	lat := paris.lat
	if spot == "gold" {
		lat += 0.0009
	}
	return &hunt.ClaimRequest{Player: hunt.PlayerID(player), Key: key, Hunt: "h", Hotspot: hunt.HotspotID(spot), Lat: lat, Lon: paris.lon}
}

type answer struct {
	res hunt.ClaimResult
	err error
}

func claimAsync(e engine.Engine, req *hunt.ClaimRequest) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		c, cancel := bg()
		defer cancel()
		res, err := e.Claim(c, req)
		ch <- answer{res, err}
	}()
	return ch
}

func depth(e engine.Engine, spot string) int {
	en := unwrap(e)
	return len(en.parts[partOf(en, spot)].inbox)
}

func countEvents(t *testing.T, e engine.Engine) int {
	t.Helper()
	c, cancel := bg()
	defer cancel()
	n := 0
	if err := e.Events(c, nil, func(*hunt.Event) error { n++; return nil }); err != nil {
		t.Fatalf("Events = %v", err)
	}
	return n
}

// TestOverload: a full inbox answers ErrOverloaded at once, records nothing,
// and leaves the key free for a retry.
func TestOverload(t *testing.T) {
	b := newBlocker()
	metrics := telemetry.New(prometheus.NewRegistry())
	h := newHarness(t, func(c *Config) { c.InboxLenMax = 1; c.PipelineDepth = 1; c.FaultHook = b.hook; c.Metrics = metrics })
	e := enginetest.Start(t, h)
	setup(t, e, 5)

	b.armed.Store(true)
	first := claimAsync(e, claimAt("p0", "k", "block"))
	<-b.entered
	second := claimAsync(e, claimAt("p1", "k", "gold"))
	poll(t, "inbox depth 1", func() bool { return depth(e, "gold") == 1 })
	c, cancel := bg()
	defer cancel()
	if res, err := e.Claim(c, claimAt("p2", "k", "gold")); !errors.Is(err, engine.ErrOverloaded) {
		t.Fatalf("Claim into a full inbox = %+v, %v; want %v", res, err, engine.ErrOverloaded)
	}
	var m dto.Metric
	if err := metrics.Shed.WithLabelValues("overloaded").Write(&m); err != nil || m.GetCounter().GetValue() != 1 {
		got := m.GetCounter().GetValue()
		t.Fatalf("shed{overloaded} = %v; want 1", got)
	}
	close(b.release)
	for i, ch := range []<-chan answer{first, second} {
		if a := <-ch; a.err != nil || a.res.Event.Outcome != hunt.Granted {
			t.Fatalf("queued claim %d = %+v, %v; want granted", i, a.res.Event, a.err)
		}
	}
	if n := countEvents(t, e); n != 2 {
		t.Fatalf("Events after overload = %d; want 2 (the refused claim recorded nothing)", n)
	}
	res, err := e.Claim(c, claimAt("p2", "k", "gold"))
	if err != nil || res.Replayed || res.Event.Outcome != hunt.Granted {
		t.Fatalf("retry after overload = %+v (replayed %v), %v; want a fresh grant", res.Event, res.Replayed, err)
	}
}

// TestInBatchEffects: requests decided in one batch see each other's effects.
func TestInBatchEffects(t *testing.T) {
	b := newBlocker()
	e := enginetest.Start(t, newHarness(t, func(c *Config) { c.PipelineDepth = 1; c.FaultHook = b.hook }))
	setup(t, e, 1)
	b.armed.Store(true)
	first := claimAsync(e, claimAt("p0", "k", "block"))
	<-b.entered
	x := claimAsync(e, claimAt("p1", "k", "gold"))
	y := claimAsync(e, claimAt("p2", "k", "gold"))
	poll(t, "inbox depth 2", func() bool { return depth(e, "gold") == 2 })
	close(b.release)
	<-first
	ax, ay := <-x, <-y
	if ax.err != nil || ay.err != nil {
		t.Fatalf("claims = %v, %v; want no error", ax.err, ay.err)
	}
	got := map[hunt.Outcome]int{ax.res.Event.Outcome: 1}
	got[ay.res.Event.Outcome]++
	if got[hunt.Granted] != 1 || got[hunt.SoldOut] != 1 {
		t.Fatalf("two claims of one ticket in one batch = %v, %v; want one granted, one sold_out", ax.res.Event.Outcome, ay.res.Event.Outcome)
	}
	if d := int(ax.res.Event.Epoch.Seq) - int(ay.res.Event.Epoch.Seq); d != 1 && d != -1 {
		t.Fatalf("seqs %d and %d; want adjacent (one batch)", ax.res.Event.Epoch.Seq, ay.res.Event.Epoch.Seq)
	}
}

// TestCommitFailure: a failed commit answers ErrUnavailable to the waiting
// caller and to everyone after; Run returns the failure; after a restart the
// store holds exactly what committed.
func TestCommitFailure(t *testing.T) {
	for _, tc := range []struct {
		point   string
		durable bool
	}{
		{FaultMidBatch, false},
		{FaultBeforeCommit, false},
		{FaultAfterCommit, true},
		{FaultBeforeAnswer, true},
	} {
		t.Run(tc.point, func(t *testing.T) {
			var armed atomic.Bool
			hook := func(point string) error {
				if point == tc.point && armed.Load() {
					return errors.New("injected fault at " + point)
				}
				return nil
			}
			h := newHarness(t, func(c *Config) { c.FaultHook = hook })
			e := enginetest.Start(t, h)
			setup(t, e, 5)
			c, cancel := bg()
			defer cancel()
			if _, err := e.Claim(c, claimAt("p0", "k0", "gold")); err != nil {
				t.Fatalf("Claim before the fault = %v", err)
			}
			armed.Store(true)
			if res, err := e.Claim(c, claimAt("p1", "k1", "gold")); !errors.Is(err, engine.ErrUnavailable) {
				t.Fatalf("Claim during a failed commit = %+v, %v; want %v", res.Event, err, engine.ErrUnavailable)
			}
			armed.Store(false)
			if err := e.Ready(); !errors.Is(err, engine.ErrUnavailable) {
				t.Fatalf("Ready() after a failed commit = %v; want %v", err, engine.ErrUnavailable)
			}
			for _, req := range []*hunt.ClaimRequest{claimAt("p1", "k1", "gold"), claimAt("p2", "k2", "gold"), claimAt("p0", "k0", "gold")} {
				if _, err := e.Claim(c, req); !errors.Is(err, engine.ErrUnavailable) {
					t.Fatalf("Claim(%s) after a failed commit = %v; want %v", req.Player, err, engine.ErrUnavailable)
				}
			}
			if _, err := e.Spend(c, &hunt.SpendRequest{Player: "p0", Key: "s", Amount: 1}); !errors.Is(err, engine.ErrUnavailable) {
				t.Fatalf("Spend after a failed commit = %v; want %v", err, engine.ErrUnavailable)
			}
			if err := e.ImportHotspots(c, "h", []hunt.Hotspot{{ID: "x", Lat: 1, Lon: 1, Tickets: 1}}); !errors.Is(err, engine.ErrUnavailable) {
				t.Fatalf("ImportHotspots after a failed commit = %v; want %v", err, engine.ErrUnavailable)
			}
			if err := e.Stop(); !errors.Is(err, engine.ErrUnavailable) {
				t.Fatalf("Run() after a failed commit = %v; want an error wrapping %v", err, engine.ErrUnavailable)
			}

			e = enginetest.Start(t, h)
			want := 1
			if tc.durable {
				want = 2
			}
			if n := countEvents(t, e); n != want {
				t.Fatalf("Events after restart = %d; want %d (durable batch: %v)", n, want, tc.durable)
			}
			res, err := e.Claim(c, claimAt("p1", "k1", "gold"))
			if err != nil || res.Event.Outcome != hunt.Granted || res.Replayed != tc.durable {
				t.Fatalf("retry after restart = %+v (replayed %v), %v; want granted, replayed %v", res.Event, res.Replayed, err, tc.durable)
			}
			if w, _ := e.Wallet(c, "p1"); w.Balance != 10 {
				t.Fatalf("Wallet(p1) after restart = %d; want 10", w.Balance)
			}
		})
	}
}

// TestShutdownDrains: after cancel, new calls get ErrClosed and every request
// already queued is committed and answered before Run returns.
func TestShutdownDrains(t *testing.T) {
	b := newBlocker()
	h := newHarness(t, func(c *Config) { c.PipelineDepth = 1; c.FaultHook = b.hook })
	e := enginetest.Start(t, h)
	setup(t, e, 5)
	b.armed.Store(true)
	first := claimAsync(e, claimAt("p0", "k", "block"))
	<-b.entered
	const n = 20
	queued := make([]<-chan answer, n)
	for i := range queued {
		queued[i] = claimAsync(e, claimAt(fmt.Sprintf("q%d", i), "k", "gold"))
	}
	poll(t, "20 queued claims", func() bool { return depth(e, "gold") == n })
	stopped := make(chan error, 1)
	go func() { stopped <- e.Stop() }()
	poll(t, "Ready() = ErrClosed", func() bool { return errors.Is(e.Ready(), engine.ErrClosed) })
	c, cancel := bg()
	defer cancel()
	if _, err := e.Claim(c, claimAt("late", "k", "gold")); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Claim during shutdown = %v; want %v", err, engine.ErrClosed)
	}
	close(b.release)
	if a := <-first; a.err != nil {
		t.Fatalf("in-flight claim = %v; want answered", a.err)
	}
	count := map[hunt.Outcome]int{}
	for i, ch := range queued {
		a := <-ch
		if a.err != nil {
			t.Fatalf("queued claim %d = %v; want answered", i, a.err)
		}
		count[a.res.Event.Outcome]++
	}
	if count[hunt.Granted] != 5 || count[hunt.SoldOut] != n-5 {
		t.Fatalf("queued outcomes = %v; want 5 granted, %d sold_out", count, n-5)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run() = %v; want nil", err)
	}
	e = enginetest.Start(t, h)
	if got := countEvents(t, e); got != n+1 {
		t.Fatalf("Events after restart = %d; want %d", got, n+1)
	}
}

// TestLayout: a store keeps its partition count and prefix length.
func TestLayout(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(Config{Dir: dir, Partitions: 8, PrefixLen: 3})
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	e.Close()
	for _, cfg := range []Config{{Dir: dir, Partitions: 16}, {Dir: dir, PrefixLen: 5}, {Dir: dir, Partitions: 8, PrefixLen: 4}} {
		if e, err := Open(cfg); !errors.Is(err, ErrLayout) {
			if e != nil {
				e.Close()
			}
			t.Fatalf("Open(%+v) on an 8/3 store = %v; want %v", cfg, err, ErrLayout)
		}
	}
	e, err = Open(Config{Dir: dir})
	if err != nil || e.Partitions() != 8 || e.PrefixLen() != 3 {
		t.Fatalf("Open(no layout) = %v, %d partitions; want the stored 8/3", err, e.Partitions())
	}
	e.Close()
}

func TestConfigValidate(t *testing.T) {
	err := Config{Partitions: -1, PrefixLen: 99, InboxLenMax: -1, BatchLenMax: InboxLenLimit * 2}.Validate()
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("Validate() = %v; want %v", err, ErrConfig)
	}
	if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != 5 {
		t.Fatalf("Validate() reported %d problems (%v); want 5", n, err)
	}
	if err := (Config{Dir: "x"}).Validate(); err != nil {
		t.Fatalf("Validate(defaults) = %v; want nil", err)
	}
}

// TestOffline: Open without Run serves reads (the verifier's path) and
// refuses writes with ErrClosed.
func TestOffline(t *testing.T) {
	h := newHarness(t)
	e := enginetest.Start(t, h)
	setup(t, e, 5)
	c, cancel := bg()
	defer cancel()
	if _, err := e.Claim(c, claimAt("p", "k", "gold")); err != nil {
		t.Fatal(err)
	}
	e.Stop()
	off, err := Open(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	if _, err := off.Claim(c, claimAt("q", "k", "gold")); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Claim before Run = %v; want %v", err, engine.ErrClosed)
	}
	if err := off.Ready(); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Ready before Run = %v; want %v", err, engine.ErrClosed)
	}
	if w, err := off.Wallet(c, "p"); err != nil || w.Balance != 10 {
		t.Fatalf("Wallet offline = %+v, %v; want 10", w, err)
	}
	if n := countEvents(t, off); n != 1 {
		t.Fatalf("Events offline = %d; want 1", n)
	}
	if st := off.Status(); len(st) != 16 || st[0].Component != "partition/0" {
		t.Fatalf("Status offline = %+v; want 16 partitions", st)
	}
}

// TestCorruptOnOpen: a record that does not decode stops Open with an error naming its key.
func TestCorruptOnOpen(t *testing.T) {
	h := newHarness(t)
	e := enginetest.Start(t, h)
	setup(t, e, 5)
	e.Stop()
	db, err := pebble.Open(h.cfg.Dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(eventKey(nil, 3, 1), []byte("garbage"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if e, err := Open(h.cfg); !errors.Is(err, ErrCorrupt) || !strings.Contains(fmt.Sprint(err), fmt.Sprintf("%x", eventKey(nil, 3, 1))) {
		if e != nil {
			e.Close()
		}
		t.Fatalf("Open(corrupt event) = %v; want %v naming key %x", err, ErrCorrupt, eventKey(nil, 3, 1))
	}
}

func TestDefCodec(t *testing.T) {
	in := hunt.Hotspot{ID: "s", Lat: -33.5, Lon: 151.25, Tickets: 7, Reward: hunt.RewardMax, Points: 3,
		OpensAt: time.Date(1900, 1, 2, 3, 4, 5, 6, time.UTC), ClosesAt: time.Date(2300, 1, 1, 0, 0, 0, 999, time.UTC)}
	if err := in.Normalize(); err != nil {
		t.Fatal(err)
	}
	b := appendDef(nil, 42, &in)
	var out hunt.Hotspot
	out.ID = in.ID
	p, err := decodeDef(b, &out)
	if err != nil || p != 42 || out != in {
		t.Fatalf("decodeDef(appendDef(%+v)) = %+v, %d, %v", in, out, p, err)
	}
	for i := range b {
		if _, err := decodeDef(b[:i], &out); err == nil {
			t.Fatalf("decodeDef(truncated to %d bytes) = nil error", i)
		}
	}
}

func FuzzDecodeDef(f *testing.F) {
	s := hunt.Hotspot{ID: "s", Lat: 1, Lon: 2, Tickets: 3, OpensAt: time.Unix(5, 6)}
	s.Normalize()
	f.Add(appendDef(nil, 1, &s))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var a, c hunt.Hotspot
		p, err := decodeDef(b, &a)
		if err != nil {
			return
		}
		q, err := decodeDef(appendDef(nil, p, &a), &c)
		if err != nil || p != q || !a.OpensAt.Equal(c.OpensAt) || !a.ClosesAt.Equal(c.ClosesAt) || a.Geohash != c.Geohash || a.Tickets != c.Tickets {
			t.Fatalf("re-encoding %+v gives %+v, %v", a, c, err)
		}
	})
}

// TestNearbyPole: near a pole, where no level fits, Nearby scans the hunt and stays exact.
func TestNearbyPole(t *testing.T) {
	e := enginetest.Start(t, newHarness(t))
	c, cancel := bg()
	defer cancel()
	if err := e.PutHunt(c, hunt.Hunt{ID: "h"}); err != nil {
		t.Fatal(err)
	}
	if err := e.ImportHotspots(c, "h", []hunt.Hotspot{{ID: "a", Lat: 89.9999, Lon: 10, Tickets: 1}, {ID: "b", Lat: 89.9999, Lon: -170, Tickets: 1}, {ID: "c", Lat: 80, Lon: 0, Tickets: 1}}); err != nil {
		t.Fatal(err)
	}
	got, err := e.Nearby(c, "h", 89.9999, 10, 100, 10)
	if err != nil || len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" {
		t.Fatalf("Nearby(pole) = %+v, %v; want a, b", got, err)
	}
}

// TestDecideAllocs: the partition decide step (lookups + hunt.DecideClaim)
// allocates nothing (the decide step's budget: 0 allocations).
func TestDecideAllocs(t *testing.T) {
	p, reqs, now := decideFixture(t)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		p.decideClaim(reqs[i%len(reqs)], now)
		i++
	})
	if allocs != 0 {
		t.Fatalf("decideClaim allocates %v times per call; want 0", allocs)
	}
}

// decideFixture builds a partition whose hotspots are in every state, and
// claims that exercise every outcome, then stops the writers so the test
// owns the partition's state.
func decideFixture(tb testing.TB) (*partition, []*request, time.Time) {
	dir := tb.TempDir()
	e, err := Open(Config{Dir: dir, Partitions: 1})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	poll(tb, "engine ready", func() bool { return e.Ready() == nil })
	c := context.Background()
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(e.PutHunt(c, hunt.Hunt{ID: "h", MaxSpeedMps: 5}))
	must(e.ImportHotspots(c, "h", []hunt.Hotspot{
		{ID: "sold", Lat: paris.lat, Lon: paris.lon, Tickets: 1, Reward: 1},
		{ID: "open", Lat: paris.lat + 0.001, Lon: paris.lon, Tickets: hunt.TicketsMax, Reward: 1},
	}))
	_, err = e.Claim(c, &hunt.ClaimRequest{Player: "winner", Key: "k", Hunt: "h", Hotspot: "sold", Lat: paris.lat, Lon: paris.lon})
	must(err)
	cancel()
	must(<-done)
	tb.Cleanup(func() { e.Close() })
	mk := func(player, spot string, dLat float64) *request {
		i, _ := e.spots.find(e.hunts.get("h").ord, spot)
		def := e.spots.hotspot(i, "h", e.spots.def(i))
		return &request{kind: reqClaim, spot: i, entry: &entry{},
			claim: hunt.ClaimRequest{Player: hunt.PlayerID(player), Key: "k", Hunt: "h", Hotspot: def.ID, Lat: def.Lat + dLat, Lon: def.Lon}}
	}
	var reqs []*request
	for i := range 64 {
		p := fmt.Sprintf("player-%d", i)
		reqs = append(reqs, mk(p, "sold", 0), mk(p, "open", 0), mk(p, "open", 0.01), mk("winner", "sold", 0), mk("winner", "open", 0))
	}
	return e.parts[0], reqs, time.Now().UTC()
}

// BenchmarkDecide measures the partition decide step: slot state, claimer
// set and last position lookups plus hunt.DecideClaim. Want 0 allocs/op.
func BenchmarkDecide(b *testing.B) {
	p, reqs, now := decideFixture(b)
	b.ReportAllocs()
	var n [16]int
	i := 0
	for b.Loop() {
		n[p.decideClaim(reqs[i%len(reqs)], now)]++
		i++
	}
	if n[hunt.Granted] == 0 || n[hunt.SoldOut] == 0 || n[hunt.TooFar] == 0 || n[hunt.AlreadyClaimed] == 0 || n[hunt.ImplausibleMovement] == 0 {
		b.Fatalf("outcome mix = %v; want every outcome exercised", n)
	}
}

// BenchmarkClaimCommit measures claims through the engine, each answered
// after its synced batch commit, from 128 callers per CPU over 256 hotspots
// spread over many partitions (many callers: each one waits for an fsync,
// and batching needs company).
func BenchmarkClaimCommit(b *testing.B) {
	e, err := Open(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		e.Close()
	}()
	poll(b, "engine ready", func() bool { return e.Ready() == nil })
	c := context.Background()
	if err := e.PutHunt(c, hunt.Hunt{ID: "h"}); err != nil {
		b.Fatal(err)
	}
	var spots []hunt.Hotspot
	for i := range 256 {
		spots = append(spots, hunt.Hotspot{ID: hunt.HotspotID(fmt.Sprintf("s%d", i)),
			Lat: -60 + float64(i%16)*8, Lon: -170 + float64(i/16)*21, Tickets: hunt.TicketsMax, Reward: 1})
	}
	if err := e.ImportHotspots(c, "h", spots); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var errs atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(128)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			s := &spots[n%int64(len(spots))]
			req := hunt.ClaimRequest{Player: hunt.PlayerID(fmt.Sprintf("p%d", n)), Key: "k", Hunt: "h", Hotspot: s.ID, Lat: s.Lat, Lon: s.Lon}
			for {
				_, err := e.Claim(c, &req)
				if errors.Is(err, engine.ErrOverloaded) {
					time.Sleep(100 * time.Microsecond) // back off: shedding is not a failure here
					continue
				}
				if err != nil {
					errs.Add(1)
				}
				break
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
	if errs.Load() != 0 {
		b.Fatalf("%d claims failed", errs.Load())
	}
}

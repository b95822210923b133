package redis

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// node is a running engine in a test: Stop cancels Run and waits, then Close.
type node struct {
	*Engine
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func (n *node) Stop(t testing.TB) {
	t.Helper()
	n.once.Do(func() {
		n.cancel()
		select {
		case err := <-n.done:
			if err != nil {
				t.Errorf("Run() = %v; want nil", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return within 30s of cancel")
		}
		if err := n.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
}

// testConfig is a config for srv with short intervals, so tests do not wait.
func testConfig(srv *redistest.Server, mods ...func(*Config)) Config {
	cfg := Config{
		Partitions:          8,
		MinIdle:             300 * time.Millisecond,
		HealthInterval:      50 * time.Millisecond,
		MaintenanceInterval: 200 * time.Millisecond,
		Metrics:             telemetry.Discard(),
	}
	if srv != nil {
		cfg.URL = srv.URL()
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	for _, m := range mods {
		m(&cfg)
	}
	return cfg
}

// start opens and runs an engine, stopped when the test ends.
func start(t testing.TB, cfg Config, hook ...func(*Engine)) *node {
	t.Helper()
	ctx := context.Background()
	e, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open(%s) = %v", cfg.URL, err)
	}
	for _, h := range hook {
		h(e)
	}
	rctx, cancel := context.WithCancel(ctx)
	n := &node{Engine: e, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- e.Run(rctx) }()
	t.Cleanup(func() { n.Stop(t) })
	waitFor(t, 10*time.Second, "engine ready", func() bool { return e.Ready() == nil })
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an event
	}
}

// rawClient is a plain client on srv for inspecting and tampering with state.
func rawClient(t testing.TB, srv *redistest.Server) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

// fixture: one hunt with hotspots spread over several partitions.
const testHunt = hunt.HuntID("h1")

func putFixture(t testing.TB, e *Engine, hotspots int, tickets int64) []hunt.Hotspot {
	t.Helper()
	ctx := context.Background()
	h := hunt.Hunt{ID: testHunt, Name: "test", ClaimRadiusM: 50}
	if err := h.Normalize(); err != nil {
		t.Fatal(err)
	}
	if err := e.PutHunt(ctx, h); err != nil {
		t.Fatalf("PutHunt = %v", err)
	}
	hs := make([]hunt.Hotspot, hotspots)
	for i := range hs {
		hs[i] = hunt.Hotspot{ID: hunt.HotspotID(fmt.Sprintf("s%d", i)), Lat: 48.0 + float64(i)*0.5, Lon: 2.0 + float64(i)*0.7,
			Tickets: tickets, Reward: int64(10 + i), Points: int64(100 + i)}
		if err := hs[i].Normalize(); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.ImportHotspots(ctx, testHunt, hs); err != nil {
		t.Fatalf("ImportHotspots = %v", err)
	}
	return hs
}

func claimAt(player string, key string, s hunt.Hotspot) *hunt.ClaimRequest {
	return &hunt.ClaimRequest{Player: hunt.PlayerID(player), Key: key, Hunt: testHunt, Hotspot: s.ID, Lat: s.Lat, Lon: s.Lon}
}

func goredisQuery() goredis.FunctionListQuery {
	return goredis.FunctionListQuery{LibraryNamePattern: "cairn", WithCode: true}
}

// quietLogger silences go-redis's process-wide logger in tests (it reports
// every refused dial while a test keeps Redis down on purpose).
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Verbose() {
		goredis.SetLogger(quietLogger{})
	}
	os.Exit(m.Run())
}

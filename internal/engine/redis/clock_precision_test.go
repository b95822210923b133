package redis

import (
	"context"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/hunt"
)

// TestSubMillisecondClockMatchesEmbedded: the log keeps decision times
// at millisecond precision and the embedded engine decides at that precision
// (so replay reads back what was decided). A Redis node deciding with the
// clock's full nanoseconds answers differently at a window's edge, and
// records a grant whose At is before the hotspot opened.
func TestSubMillisecondClockMatchesEmbedded(t *testing.T) {
	base := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	opens := base.Add(500 * time.Microsecond)
	now := base.Add(700 * time.Microsecond) // after opens, but in the same millisecond as base
	clock := func() time.Time { return now }

	emb, err := embedded.Open(embedded.Config{Dir: t.TempDir(), Partitions: 8, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ectx, ecancel := context.WithCancel(context.Background())
	edone := make(chan error, 1)
	go func() { edone <- emb.Run(ectx) }()
	t.Cleanup(func() { ecancel(); <-edone; emb.Close() })
	// Calls before Run starts the writers answer ErrClosed: wait for them.
	waitFor(t, 10*time.Second, "the embedded engine to be ready", func() bool { return emb.Ready() == nil })

	srv := redistest.Start(t)
	for _, direct := range []bool{false, true} {
		n := start(t, testConfig(srv, func(c *Config) { c.Clock = clock; c.Direct = direct }))
		ctx := context.Background()
		h := hunt.Hunt{ID: hunt.HuntID("subms"), ClaimRadiusM: 50}
		s := hunt.Hotspot{ID: "s1", Lat: 48.8566, Lon: 2.3522, Tickets: 5, Reward: 1, Points: 1, OpensAt: opens}
		for _, e := range []interface {
			PutHunt(context.Context, hunt.Hunt) error
			ImportHotspots(context.Context, hunt.HuntID, []hunt.Hotspot) error
		}{emb, n.Engine} {
			if err := e.PutHunt(ctx, h); err != nil {
				t.Fatalf("PutHunt = %v", err)
			}
			if err := e.ImportHotspots(ctx, h.ID, []hunt.Hotspot{s}); err != nil {
				t.Fatalf("ImportHotspots = %v", err)
			}
		}
		player := hunt.PlayerID("p-direct")
		if !direct {
			player = "p-queued"
		}
		req := &hunt.ClaimRequest{Player: player, Key: "k1", Hunt: h.ID, Hotspot: s.ID, Lat: s.Lat, Lon: s.Lon}
		want, werr := emb.Claim(ctx, req)
		got, gerr := n.Claim(ctx, req)
		if werr != nil || gerr != nil {
			t.Fatalf("Claim: embedded %v, redis %v", werr, gerr)
		}
		if got.Event.Outcome != want.Event.Outcome {
			t.Errorf("direct=%v: Claim at %v (opens %v) = %v; embedded says %v", direct, now, opens, got.Event.Outcome, want.Event.Outcome)
		}
		if got.Event.Outcome == hunt.Granted && got.Event.At.Before(opens) {
			t.Errorf("direct=%v: granted event recorded at %v, before the hotspot opened at %v", direct, got.Event.At, opens)
		}
		n.Stop(t)
	}
}

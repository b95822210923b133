package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/hunt"
)

// The demo hunt: a few hundred hotspots scattered around central Paris, plus
// one well-stocked hotspot on the parvis of Notre-Dame that the printed curl
// commands claim.
const (
	demoHunt        = hunt.HuntID("demo")
	demoHotspots    = 300
	demoCenterLat   = 48.8566
	demoCenterLon   = 2.3522
	demoSpreadM     = 3000
	demoFeatured    = hunt.HotspotID("notre-dame")
	demoFeaturedLat = 48.85296
	demoFeaturedLon = 2.34990
)

// setupDemo creates (or refreshes) the demo hunt. It is idempotent: the
// hotspots are the same every time (a fixed seed), and re-importing never
// lowers tickets below what was already granted.
func setupDemo(ctx context.Context, eng engine.Engine) error {
	h := hunt.Hunt{ID: demoHunt, Name: "Cairn demo: Paris", ClaimRadiusM: 50, MaxSpeedMps: hunt.MaxSpeedMpsDefault}
	if err := h.Normalize(); err != nil {
		return err
	}
	if err := eng.PutHunt(ctx, h); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(2026, 11))
	spots := make([]hunt.Hotspot, 0, demoHotspots+1)
	spots = append(spots, hunt.Hotspot{ID: demoFeatured, Lat: demoFeaturedLat, Lon: demoFeaturedLon,
		Tickets: 1000, Reward: 25, Points: 10})
	for i := 0; i < demoHotspots; i++ {
		// Uniform in a disc: r = R*sqrt(u).
		r := demoSpreadM * math.Sqrt(rng.Float64())
		a := rng.Float64() * 2 * math.Pi
		lat := demoCenterLat + r*math.Cos(a)/111_320
		lon := demoCenterLon + r*math.Sin(a)/(111_320*math.Cos(demoCenterLat*math.Pi/180))
		spots = append(spots, hunt.Hotspot{
			ID: hunt.HotspotID(fmt.Sprintf("paris-%03d", i)), Lat: round6(lat), Lon: round6(lon),
			Tickets: 1 + rng.Int64N(5), Reward: 5 + 5*rng.Int64N(10), Points: 1 + rng.Int64N(20),
		})
	}
	for i := range spots {
		if err := spots[i].Normalize(); err != nil {
			return err
		}
	}
	// The import goes through the partition writers: wait until Run has
	// started them (it runs on its own goroutine, started just before this).
	deadline := time.Now().Add(demoReadyTimeout)
	for eng.Ready() != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("engine not ready after %v: %w", demoReadyTimeout, eng.Ready())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond): // poll interval
		}
	}
	return eng.ImportHotspots(ctx, demoHunt, spots)
}

// demoReadyTimeout bounds how long the demo set-up waits for the engine to run.
const demoReadyTimeout = 30 * time.Second

func round6(f float64) float64 { return math.Round(f*1e6) / 1e6 }

// printBanner tells a newcomer how to reach the server and its ops console;
// with --demo it prints the admin token to sign in to the console with, a
// ready player token and curl commands that claim a ticket.
func printBanner(w io.Writer, f serveFlags, addr, consoleURL string, secret []byte, adminToken string) {
	base := "http://" + addr
	fmt.Fprintf(w, "Cairn is serving on %s (store: %s, data: %s)\n", base, f.store, f.data)
	if !f.demo {
		fmt.Fprintf(w, "Ops console: %s (sign in with CAIRN_ADMIN_TOKEN; a generated one is in %s)\n",
			consoleURL, filepath.Join(f.data, secretsFile))
		fmt.Fprintf(w, "Mint a player token with: go run ./cmd/cairn token --player alice --data %s\n", f.data)
		return
	}
	fmt.Fprintf(w, "\nOps console: open %s and sign in with the admin token\n\n  %s\n", consoleURL, adminToken)
	tok, err := httpapi.MintToken(secret, "alice", 24*time.Hour, time.Now())
	if err != nil {
		fmt.Fprintf(w, "cannot mint a demo token: %v\n", err)
		return
	}
	fmt.Fprintf(w, `
Demo hunt %q: %d hotspots around Paris. A token for player "alice" (24 h):

  export TOKEN=%s

Hotspots near Notre-Dame:
  curl -s -H "Authorization: Bearer $TOKEN" '%s/v1/hunts/demo/hotspots?lat=%.5f&lon=%.5f&radius_m=300&limit=5'

Claim a ticket there (send it twice: the second answer is replayed, not a second ticket):
  curl -s -X POST -H "Authorization: Bearer $TOKEN" -H 'Idempotency-Key: first-claim' \
       -d '{"lat":%.5f,"lon":%.5f}' %s/v1/hunts/demo/hotspots/%s/claim

Your wallet, the leaderboard and the live feed:
  curl -s -H "Authorization: Bearer $TOKEN" %s/v1/wallet
  curl -s '%s/v1/hunts/demo/leaderboard?limit=10'
  curl -sN -H "Authorization: Bearer $TOKEN" %s/v1/hunts/demo/events

`, demoHunt, demoHotspots+1, tok, base, demoFeaturedLat, demoFeaturedLon,
		demoFeaturedLat, demoFeaturedLon, base, demoFeatured, base, base, base)
}

package enginetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
)

// testImportClamp: re-importing never lowers tickets below what is granted (I1).
func testImportClamp(t *testing.T, h Harness) {
	e := Start(t, h)
	at := cities[10]
	mustPutHunt(t, e, hunt.Hunt{ID: "h"})
	mustImport(t, e, "h", spot("s", at, 3, 1, 1))
	wantClaim(t, e, claimReq("p1", "k", "h", "s", at), hunt.Granted)
	wantClaim(t, e, claimReq("p2", "k", "h", "s", at), hunt.Granted)
	mustImport(t, e, "h", spot("s", at, 1, 1, 1))
	wantLeft(t, e, "h", "s", 2, 0)
	wantClaim(t, e, claimReq("p3", "k", "h", "s", at), hunt.SoldOut)
	mustImport(t, e, "h", spot("s", at, 0, 1, 1))
	wantLeft(t, e, "h", "s", 2, 0)
	mustImport(t, e, "h", spot("s", at, 5, 1, 1))
	wantLeft(t, e, "h", "s", 5, 3)
	if ev := wantClaim(t, e, claimReq("p3", "k2", "h", "s", at), hunt.Granted); ev.TicketsLeft != 2 {
		t.Fatalf("claim after raising tickets: tickets_left %d; want 2", ev.TicketsLeft)
	}
	// Duplicate ids in one import: the last one wins.
	mustImport(t, e, "h", spot("s", at, 7, 1, 1), spot("s", at, 9, 1, 1))
	wantLeft(t, e, "h", "s", 9, 6)
	c, cancel := ctx()
	defer cancel()
	bad := spot("bad", place{91, 0}, 1, 1, 1)
	if err := e.ImportHotspots(c, "h", []hunt.Hotspot{spot("fine", at, 1, 1, 1), bad}); !errors.Is(err, hunt.ErrInvalid) {
		t.Fatalf("ImportHotspots(lat 91) = %v; want %v", err, hunt.ErrInvalid)
	}
	if _, ok := views(t, e, "h")["fine"]; ok {
		t.Fatalf("a rejected import stored part of its hotspots")
	}
}

// testImportUpsert: an upsert changes reward, points and place for later
// claims; earlier decisions keep what they recorded.
func testImportUpsert(t *testing.T, h Harness) {
	e := Start(t, h)
	at := cities[11]
	moved := at.north(2000)
	mustPutHunt(t, e, hunt.Hunt{ID: "h"})
	mustImport(t, e, "h", spot("s", at, 10, 10, 1))
	first := mustClaim(t, e, claimReq("p1", "k", "h", "s", at))
	mustImport(t, e, "h", spot("s", moved, 10, 99, 7))
	ev := wantClaim(t, e, claimReq("p2", "k", "h", "s", moved), hunt.Granted)
	if ev.Reward != 99 || ev.Points != 7 {
		t.Fatalf("claim after upsert: reward/points %d/%d; want 99/7", ev.Reward, ev.Points)
	}
	wantClaim(t, e, claimReq("p3", "k", "h", "s", at), hunt.TooFar)
	if res := mustClaim(t, e, claimReq("p1", "k", "h", "s", at)); !res.Replayed || res.Event.Reward != 10 || !sameEvent(res.Event, first.Event) {
		t.Fatalf("replay of the first claim = %+v; want its recorded reward 10", res.Event)
	}
	c, cancel := ctx()
	defer cancel()
	if got, err := e.Nearby(c, "h", at.lat, at.lon, 500, 10); err != nil || len(got) != 0 {
		t.Fatalf("Nearby(old place) = %+v, %v; want nothing", got, err)
	}
	got, err := e.Nearby(c, "h", moved.lat, moved.lon, 500, 10)
	if err != nil || len(got) != 1 || got[0].Reward != 99 || got[0].TicketsLeft != 8 {
		t.Fatalf("Nearby(new place) = %+v, %v; want s with reward 99, tickets_left 8", got, err)
	}
	wantBalance(t, e, "p2", 99)
}

// testHuntsAndNearby: hunts are listed by id with defaults filled; Nearby is
// nearest first, within the radius, capped by limit.
func testHuntsAndNearby(t *testing.T, h Harness) {
	e := Start(t, h)
	at := cities[0]
	mustPutHunt(t, e, hunt.Hunt{ID: "zeta", Name: "last"})
	mustPutHunt(t, e, hunt.Hunt{ID: "alpha", Name: "first", ClaimRadiusM: 20})
	mustPutHunt(t, e, hunt.Hunt{ID: "zeta", Name: "renamed"})
	c, cancel := ctx()
	defer cancel()
	hs, err := e.Hunts(c)
	if err != nil || len(hs) != 2 || hs[0].ID != "alpha" || hs[1].ID != "zeta" || hs[1].Name != "renamed" ||
		hs[0].ClaimRadiusM != 20 || hs[1].ClaimRadiusM != hunt.ClaimRadiusMDefault {
		t.Fatalf("Hunts() = %+v, %v; want alpha (radius 20), zeta renamed (default radius)", hs, err)
	}
	if got, err := e.Hunt(c, "alpha"); err != nil || got.Name != "first" || got.FeedShowsPlayerIDs {
		t.Fatalf("Hunt(alpha) = %+v, %v; want name first, a pseudonymous feed", got, err)
	}
	for i, d := range []float64{300, 0, 200, 100, 5000} {
		mustImport(t, e, "alpha", spot(fmt.Sprintf("s%d", i), at.north(d), 2, 1, 1))
	}
	wantClaim(t, e, claimReq("p", "k", "alpha", "s3", at.north(100)), hunt.Granted)
	got, err := e.Nearby(c, "alpha", at.lat, at.lon, 250, 10)
	if err != nil || len(got) != 3 || got[0].ID != "s1" || got[1].ID != "s3" || got[2].ID != "s2" {
		t.Fatalf("Nearby(250 m) = %+v, %v; want s1, s3, s2", got, err)
	}
	if got[1].TicketsLeft != 1 || got[0].TicketsLeft != 2 || got[1].DistanceM < 90 || got[1].DistanceM > 110 {
		t.Fatalf("Nearby(250 m) = %+v; want s3 at ~100 m with 1 ticket left, s1 with 2", got)
	}
	if got, err := e.Nearby(c, "alpha", at.lat, at.lon, 250, 2); err != nil || len(got) != 2 || got[1].ID != "s3" {
		t.Fatalf("Nearby(250 m, limit 2) = %+v, %v; want s1, s3", got, err)
	}
	if got, err := e.Nearby(c, "alpha", at.lat, at.lon, 10_000, 10); err != nil || len(got) != 5 || got[4].ID != "s4" {
		t.Fatalf("Nearby(10 km) = %+v, %v; want all 5, s4 last", got, err)
	}
	if got, err := e.Nearby(c, "alpha", at.lat, at.lon, engine.NearbyRadiusMMax, engine.NearbyLimitMax); err != nil || len(got) != 5 {
		t.Fatalf("Nearby(max radius) = %d hotspots, %v; want 5", len(got), err)
	}
	if n := len(views(t, e, "alpha")); n != 5 {
		t.Fatalf("Hotspots(alpha) = %d; want 5", n)
	}
	if n := len(views(t, e, "zeta")); n != 0 {
		t.Fatalf("Hotspots(zeta) = %d; want 0", n)
	}
}

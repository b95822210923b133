package enginetest

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
)

// testClaimOutcomes: granted with every answer field, already_claimed,
// sold_out, too_far; rejected claims carry no reward; wallets and tickets follow.
func testClaimOutcomes(t *testing.T, h Harness) {
	e := Start(t, h)
	paris := cities[0]
	mustPutHunt(t, e, hunt.Hunt{ID: "h", Name: "outcomes"})
	mustImport(t, e, "h", spot("a", paris, 2, 10, 3), spot("one", paris.north(200), 1, 5, 1))

	before := time.Now().Add(-time.Second)
	req := claimReq("p1", "k1", "h", "a", paris.north(10))
	res := mustClaim(t, e, req)
	after := time.Now().Add(time.Second)
	ev := res.Event
	if res.Replayed || ev.Kind != hunt.KindClaimCompleted || ev.Outcome != hunt.Granted ||
		ev.Reward != 10 || ev.Points != 3 || ev.TicketsLeft != 1 {
		t.Fatalf("Claim(a) = %+v (replayed %v); want granted, reward 10, points 3, tickets_left 1, not replayed", ev, res.Replayed)
	}
	if ev.Player != "p1" || ev.Key != "k1" || ev.Hunt != "h" || ev.Hotspot != "a" ||
		ev.Lat != req.Lat || ev.Lon != req.Lon || ev.Fingerprint != req.Fingerprint() || ev.Geohash == "" {
		t.Fatalf("Claim(a) event = %+v; want it to echo the request (player p1, key k1, hunt h, hotspot a, lat/lon, fingerprint %d) and a geohash", ev, req.Fingerprint())
	}
	if ev.Epoch.Seq < 1 || int(ev.Epoch.Partition) >= e.Partitions() {
		t.Fatalf("Claim(a).Epoch = %v; want seq >= 1 and partition < %d", ev.Epoch, e.Partitions())
	}
	if ev.At.Before(before) || ev.At.After(after) {
		t.Fatalf("Claim(a).At = %v; want between %v and %v", ev.At, before, after)
	}
	if ev.ClaimID() != ev.Epoch.String() {
		t.Fatalf("ClaimID() = %q; want %q", ev.ClaimID(), ev.Epoch.String())
	}

	again := wantClaim(t, e, claimReq("p1", "k2", "h", "a", paris), hunt.AlreadyClaimed)
	if again.Reward != 0 || again.Points != 0 {
		t.Fatalf("already_claimed event reward/points = %d/%d; want 0/0", again.Reward, again.Points)
	}
	if again.Epoch.Partition == ev.Epoch.Partition && again.Epoch.Seq <= ev.Epoch.Seq {
		t.Fatalf("second event of partition %d has seq %d after %d; want strictly increasing", ev.Epoch.Partition, again.Epoch.Seq, ev.Epoch.Seq)
	}
	wantClaim(t, e, claimReq("p2", "k1", "h", "one", paris.north(200)), hunt.Granted)
	sold := wantClaim(t, e, claimReq("p3", "k1", "h", "one", paris.north(200)), hunt.SoldOut)
	if sold.TicketsLeft != 0 || sold.Reward != 0 {
		t.Fatalf("sold_out event tickets_left/reward = %d/%d; want 0/0", sold.TicketsLeft, sold.Reward)
	}
	far := wantClaim(t, e, claimReq("p4", "k1", "h", "a", paris.north(1000)), hunt.TooFar)
	if far.Reward != 0 || far.TicketsLeft != 1 {
		t.Fatalf("too_far event reward/tickets_left = %d/%d; want 0/1", far.Reward, far.TicketsLeft)
	}
	// The edge of the radius (default 50 m) is inside it; just beyond is not.
	wantClaim(t, e, claimReq("p5", "k1", "h", "a", paris.north(49)), hunt.Granted)
	wantClaim(t, e, claimReq("p6", "k1", "h", "one", paris.north(200+60)), hunt.SoldOut)

	wantBalance(t, e, "p1", 10)
	wantBalance(t, e, "p2", 5)
	wantBalance(t, e, "p3", 0)
	wantBalance(t, e, "p4", 0)
	wantLeft(t, e, "h", "a", 2, 0)
	wantLeft(t, e, "h", "one", 1, 0)

	found := false
	for _, st := range e.Status() {
		if st.Epoch.Partition == ev.Epoch.Partition && st.Epoch.Seq >= ev.Epoch.Seq {
			found = true
		}
	}
	if !found {
		t.Fatalf("Status() = %+v; want partition %d at seq >= %d", e.Status(), ev.Epoch.Partition, ev.Epoch.Seq)
	}
}

// testNotOpen: the hunt's window and the hotspot's window both gate claims.
func testNotOpen(t *testing.T, h Harness) {
	e := Start(t, h)
	now := time.Now().UTC()
	at := cities[1]
	mustPutHunt(t, e, hunt.Hunt{ID: "future", StartsAt: now.Add(time.Hour)})
	mustPutHunt(t, e, hunt.Hunt{ID: "past", StartsAt: now.Add(-2 * time.Hour), EndsAt: now.Add(-time.Hour)})
	mustPutHunt(t, e, hunt.Hunt{ID: "open", StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour)})
	mustImport(t, e, "future", spot("s", at, 5, 10, 1))
	mustImport(t, e, "past", spot("s", at, 5, 10, 1))
	later, closed := spot("later", at, 5, 10, 1), spot("closed", at.north(300), 5, 10, 1)
	later.OpensAt = now.Add(time.Hour)
	closed.OpensAt, closed.ClosesAt = now.Add(-2*time.Hour), now.Add(-time.Hour)
	mustImport(t, e, "open", later, closed, spot("s", at.north(600), 5, 10, 1))

	wantClaim(t, e, claimReq("p", "k1", "future", "s", at), hunt.NotOpen)
	wantClaim(t, e, claimReq("p", "k2", "past", "s", at), hunt.NotOpen)
	wantClaim(t, e, claimReq("p", "k3", "open", "later", at), hunt.NotOpen)
	wantClaim(t, e, claimReq("p", "k4", "open", "closed", at.north(300)), hunt.NotOpen)
	wantBalance(t, e, "p", 0)
	wantLeft(t, e, "open", "later", 5, 5)
	wantClaim(t, e, claimReq("p", "k5", "open", "s", at.north(600)), hunt.Granted)
	wantBalance(t, e, "p", 10)

	// Hotspot windows come back from Hotspots as imported.
	v := views(t, e, "open")["later"]
	if !v.OpensAt.Equal(later.OpensAt) || !v.ClosesAt.IsZero() {
		t.Fatalf("Hotspots(open)[later] window = %v..%v; want %v..zero", v.OpensAt, v.ClosesAt, later.OpensAt)
	}
}

// testImplausibleMovement: with max_speed_mps 5, a grant 5 km away from the
// last grant, seconds later, is refused (5000 m / (seconds < 1000) > 5 m/s);
// the last position is per player and per hunt.
func testImplausibleMovement(t *testing.T, h Harness) {
	e := Start(t, h)
	a := cities[2]
	b := a.north(5000)
	mustPutHunt(t, e, hunt.Hunt{ID: "slow", MaxSpeedMps: 5})
	mustPutHunt(t, e, hunt.Hunt{ID: "free"})
	mustImport(t, e, "slow", spot("a", a, 10, 1, 1), spot("b", b, 10, 1, 1), spot("a2", a.north(100), 10, 1, 1))
	mustImport(t, e, "free", spot("a", a, 10, 1, 1), spot("b", b, 10, 1, 1))

	wantClaim(t, e, claimReq("p", "k1", "slow", "a", a), hunt.Granted)
	imp := wantClaim(t, e, claimReq("p", "k2", "slow", "b", b), hunt.ImplausibleMovement)
	if imp.Reward != 0 {
		t.Fatalf("implausible_movement event reward = %d; want 0", imp.Reward)
	}
	// 100 m in at least the 1 s grace: 100 m/s > 5 m/s, also refused; the
	// refused claims did not move the player's last position.
	wantClaim(t, e, claimReq("p", "k3", "slow", "a2", a.north(100)), hunt.ImplausibleMovement)
	// too_far is checked before movement.
	wantClaim(t, e, claimReq("p", "k4", "slow", "b", a), hunt.TooFar)
	// Another player has no last position; another hunt has no speed limit.
	wantClaim(t, e, claimReq("q", "k1", "slow", "b", b), hunt.Granted)
	wantClaim(t, e, claimReq("p", "k5", "free", "a", a), hunt.Granted)
	wantClaim(t, e, claimReq("p", "k6", "free", "b", b), hunt.Granted)
	wantBalance(t, e, "p", 3)
}

// testUnknown: unknown hunts and hotspots are errors and record nothing; the
// key stays free.
func testUnknown(t *testing.T, h Harness) {
	e := Start(t, h)
	at := cities[3]
	mustPutHunt(t, e, hunt.Hunt{ID: "h"})
	mustImport(t, e, "h", spot("s", at, 1, 1, 1))
	c, cancel := ctx()
	defer cancel()
	if _, err := e.Claim(c, claimReq("p", "k", "nope", "s", at)); !errors.Is(err, hunt.ErrUnknownHunt) {
		t.Fatalf("Claim(unknown hunt) = %v; want %v", err, hunt.ErrUnknownHunt)
	}
	if _, err := e.Claim(c, claimReq("p", "k", "h", "nope", at)); !errors.Is(err, hunt.ErrUnknownHotspot) {
		t.Fatalf("Claim(unknown hotspot) = %v; want %v", err, hunt.ErrUnknownHotspot)
	}
	// Engines validate every request themselves (the HTTP layer relies on it).
	badKey := claimReq("p", "", "h", "s", at)
	nan := claimReq("p", "k-nan", "h", "s", at)
	nan.Lat = math.NaN()
	for _, tc := range []struct {
		req  *hunt.ClaimRequest
		want error
	}{{badKey, hunt.ErrBadKey}, {nan, hunt.ErrInvalid}} {
		if _, err := e.Claim(c, tc.req); !errors.Is(err, tc.want) {
			t.Fatalf("Claim(%+v) = %v; want %v", *tc.req, err, tc.want)
		}
	}
	if _, err := e.Spend(c, spendReq("p", "k-neg", -3, "")); !errors.Is(err, hunt.ErrInvalid) {
		t.Fatalf("Spend(amount -3) = %v; want %v", err, hunt.ErrInvalid)
	}
	if n := len(allEvents(t, e)); n != 0 {
		t.Fatalf("Events after unknown and invalid requests = %d events; want 0", n)
	}
	if err := e.ImportHotspots(c, "nope", []hunt.Hotspot{spot("s", at, 1, 1, 1)}); !errors.Is(err, hunt.ErrUnknownHunt) {
		t.Fatalf("ImportHotspots(unknown hunt) = %v; want %v", err, hunt.ErrUnknownHunt)
	}
	if _, err := e.Hunt(c, "nope"); !errors.Is(err, hunt.ErrUnknownHunt) {
		t.Fatalf("Hunt(nope) = %v; want %v", err, hunt.ErrUnknownHunt)
	}
	if err := e.Hotspots(c, "nope", func(hunt.HotspotView) error { return nil }); !errors.Is(err, hunt.ErrUnknownHunt) {
		t.Fatalf("Hotspots(nope) = %v; want %v", err, hunt.ErrUnknownHunt)
	}
	if _, err := e.Nearby(c, "nope", at.lat, at.lon, 100, 10); !errors.Is(err, hunt.ErrUnknownHunt) {
		t.Fatalf("Nearby(nope) = %v; want %v", err, hunt.ErrUnknownHunt)
	}
	wantClaim(t, e, claimReq("p", "k", "h", "s", at), hunt.Granted)
	if w := mustWallet(t, e, "nobody"); w.Balance != 0 || w.Player != "nobody" {
		t.Fatalf("Wallet(nobody) = %+v; want balance 0", w)
	}
}

// stormN is the number of concurrent players in testStorm.
const stormN = 2000

// testStorm: 2,000 concurrent claims on one single-ticket hotspot give one grant.
func testStorm(t *testing.T, h Harness) {
	e := Start(t, h)
	at := cities[7]
	mustPutHunt(t, e, hunt.Hunt{ID: "h"})
	mustImport(t, e, "h", spot("gold", at, 1, 100, 10))
	outcomes := make([]hunt.Outcome, stormN)
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range stormN {
		wg.Go(func() {
			<-start
			c, cancel := ctx()
			defer cancel()
			req := claimReq(fmt.Sprintf("p%d", i), "storm", "h", "gold", at)
			res, err := Claim(c, e, req)
			for errors.Is(err, engine.ErrUnavailable) && c.Err() == nil {
				// An unknown outcome (a store call that timed out on a
				// starved machine): learn it the way a client does, by
				// retrying the same key. A second effect would show below.
				select {
				case <-c.Done():
				case <-time.After(10 * time.Millisecond): // back off before asking again
				}
				res, err = Claim(c, e, req)
			}
			if err != nil {
				mu.Lock()
				firstErr = cmpErr(firstErr, err)
				mu.Unlock()
				return
			}
			outcomes[i] = res.Event.Outcome
		})
	}
	close(start)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("storm claim error %v; want none", firstErr)
	}
	winner, count := -1, map[hunt.Outcome]int{}
	for i, o := range outcomes {
		count[o]++
		if o == hunt.Granted {
			winner = i
		}
	}
	if count[hunt.Granted] != 1 || count[hunt.SoldOut] != stormN-1 {
		t.Fatalf("storm outcomes = %v; want 1 granted and %d sold_out", count, stormN-1)
	}
	wantBalance(t, e, fmt.Sprintf("p%d", winner), 100)
	wantBalance(t, e, fmt.Sprintf("p%d", (winner+1)%stormN), 0)
	wantLeft(t, e, "h", "gold", 1, 0)
	granted := 0
	for _, ev := range allEvents(t, e) {
		if ev.Outcome == hunt.Granted {
			granted++
		}
	}
	if granted != 1 {
		t.Fatalf("log holds %d grants; want 1", granted)
	}
}

func cmpErr(old, err error) error {
	if old != nil {
		return old
	}
	return err
}

package enginetest

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
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

// testIdempotentReplays: 10 sequential retries of a claim and of a spend get
// the first decision, flagged Replayed, with one effect.
func testIdempotentReplays(t *testing.T, h Harness) {
	e := Start(t, h)
	at := cities[4]
	mustPutHunt(t, e, hunt.Hunt{ID: "h"})
	mustImport(t, e, "h", spot("s", at, 5, 7, 2))
	req := claimReq("p", "key-1", "h", "s", at)
	first := mustClaim(t, e, req)
	for i := range 10 {
		res := mustClaim(t, e, req)
		if !res.Replayed || !sameEvent(res.Event, first.Event) {
			t.Fatalf("retry %d: Claim = %+v (replayed %v); want %+v replayed", i, res.Event, res.Replayed, first.Event)
		}
	}
	wantLeft(t, e, "h", "s", 5, 4)
	wantBalance(t, e, "p", 7)

	sreq := spendReq("p", "key-2", 3, "coffee")
	sfirst := mustSpend(t, e, sreq)
	if sfirst.Replayed || sfirst.Event.Outcome != hunt.Spent || sfirst.Event.Balance != 4 {
		t.Fatalf("Spend = %+v (replayed %v); want spent, balance 4", sfirst.Event, sfirst.Replayed)
	}
	for i := range 10 {
		res := mustSpend(t, e, sreq)
		if !res.Replayed || !sameEvent(res.Event, sfirst.Event) {
			t.Fatalf("retry %d: Spend = %+v (replayed %v); want %+v replayed", i, res.Event, res.Replayed, sfirst.Event)
		}
	}
	wantBalance(t, e, "p", 4)
	if n := len(allEvents(t, e)); n != 2 {
		t.Fatalf("Events = %d; want 2 (one claim, one spend)", n)
	}
}

// testConcurrentDuplicates: 100 copies of one request in flight at once make
// one effect; all get the same event and exactly one is not a replay.
func testConcurrentDuplicates(t *testing.T, h Harness) {
	e := Start(t, h)
	at := cities[5]
	mustPutHunt(t, e, hunt.Hunt{ID: "h"})
	mustImport(t, e, "h", spot("s", at, 10, 4, 1))
	const n = 100
	for _, kind := range []string{"claim", "spend"} {
		results := make([]hunt.Event, n)
		replayed := make([]bool, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				c, cancel := ctx()
				defer cancel()
				if kind == "claim" {
					res, err := Claim(c, e, claimReq("p", "dup", "h", "s", at))
					results[i], replayed[i], errs[i] = res.Event, res.Replayed, err
				} else {
					res, err := Spend(c, e, spendReq("p", "dup-spend", 1, "x"))
					results[i], replayed[i], errs[i] = res.Event, res.Replayed, err
				}
			})
		}
		close(start)
		wg.Wait()
		fresh := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("%s duplicate %d: error %v; want nil", kind, i, errs[i])
			}
			if !sameEvent(results[i], results[0]) {
				t.Fatalf("%s duplicate %d: event %+v; want %+v like the others", kind, i, results[i], results[0])
			}
			if !replayed[i] {
				fresh++
			}
		}
		if fresh != 1 {
			t.Fatalf("%s: %d answers not marked replayed; want exactly 1", kind, fresh)
		}
	}
	wantLeft(t, e, "h", "s", 10, 9)
	wantBalance(t, e, "p", 3)
	if n := len(allEvents(t, e)); n != 2 {
		t.Fatalf("Events = %d; want 2", n)
	}
}

// testKeyReuse: a key names one request of one player; another request under
// it is refused, another player's same key is independent.
func testKeyReuse(t *testing.T, h Harness) {
	e := Start(t, h)
	at := cities[6]
	mustPutHunt(t, e, hunt.Hunt{ID: "h"})
	mustImport(t, e, "h", spot("a", at, 5, 1, 1), spot("b", at.north(300), 5, 1, 1))
	first := wantClaim(t, e, claimReq("p", "k", "h", "a", at), hunt.Granted)
	c, cancel := ctx()
	defer cancel()
	for name, req := range map[string]*hunt.ClaimRequest{
		"other hotspot": claimReq("p", "k", "h", "b", at.north(300)),
		"other body":    claimReq("p", "k", "h", "a", at.north(5)),
	} {
		if res, err := e.Claim(c, req); !errors.Is(err, hunt.ErrKeyReused) {
			t.Fatalf("Claim(%s, same key) = %+v, %v; want %v", name, res.Event, err, hunt.ErrKeyReused)
		}
	}
	if _, err := e.Spend(c, spendReq("p", "k", 1, "")); !errors.Is(err, hunt.ErrKeyReused) {
		t.Fatalf("Spend(claim's key) = %v; want %v", err, hunt.ErrKeyReused)
	}
	mustSpend(t, e, spendReq("p", "s", 1, "one"))
	if _, err := e.Spend(c, spendReq("p", "s", 1, "another reason")); !errors.Is(err, hunt.ErrKeyReused) {
		t.Fatalf("Spend(same key, other reason) = %v; want %v", err, hunt.ErrKeyReused)
	}
	if _, err := e.Claim(c, claimReq("p", "s", "h", "b", at.north(300))); !errors.Is(err, hunt.ErrKeyReused) {
		t.Fatalf("Claim(spend's key) = %v; want %v", err, hunt.ErrKeyReused)
	}
	other := wantClaim(t, e, claimReq("q", "k", "h", "a", at), hunt.Granted)
	if other.Epoch == first.Epoch {
		t.Fatalf("another player's claim under the same key got epoch %v, the first one's", other.Epoch)
	}
	wantLeft(t, e, "h", "a", 5, 3)
	if n := len(allEvents(t, e)); n != 3 {
		t.Fatalf("Events = %d; want 3 (two claims, one spend)", n)
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
			res, err := Claim(c, e, claimReq(fmt.Sprintf("p%d", i), "storm", "h", "gold", at))
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

// testSpends: insufficient funds, spending the exact balance, the spend
// event's fields, the wallet's epoch, and the ledger.
func testSpends(t *testing.T, h Harness) {
	e := Start(t, h)
	mustPutHunt(t, e, hunt.Hunt{ID: "h"})
	mustImport(t, e, "h", spot("a", cities[8], 1, 30, 1), spot("b", cities[9], 1, 12, 1))

	poor := mustSpend(t, e, spendReq("p", "s1", 1, "too early")).Event
	if poor.Kind != hunt.KindSpendCompleted || poor.Outcome != hunt.InsufficientFunds || poor.Amount != 1 ||
		poor.Balance != 0 || poor.Reason != "too early" || poor.Player != "p" || poor.Key != "s1" {
		t.Fatalf("Spend(1) on empty wallet = %+v; want insufficient_funds, amount 1, balance 0, reason echoed", poor)
	}
	wantClaim(t, e, claimReq("p", "c1", "h", "a", cities[8]), hunt.Granted)
	exact := mustSpend(t, e, spendReq("p", "s2", 30, "all of it")).Event
	if exact.Outcome != hunt.Spent || exact.Balance != 0 || exact.Amount != 30 {
		t.Fatalf("Spend(30) of 30 = %+v; want spent, balance 0", exact)
	}
	if ev := mustSpend(t, e, spendReq("p", "s3", 1, "")).Event; ev.Outcome != hunt.InsufficientFunds {
		t.Fatalf("Spend(1) of 0 = %v; want insufficient_funds", ev.Outcome)
	}
	wantClaim(t, e, claimReq("p", "c2", "h", "b", cities[9]), hunt.Granted)
	last := mustSpend(t, e, spendReq("p", "s4", 5, "tea")).Event
	if last.Outcome != hunt.Spent || last.Balance != 7 {
		t.Fatalf("Spend(5) of 12 = %+v; want spent, balance 7", last)
	}
	w := mustWallet(t, e, "p")
	if w.Balance != 7 || w.Epoch != last.Epoch {
		t.Fatalf("Wallet(p) = %+v; want balance 7 at epoch %v", w, last.Epoch)
	}

	c, cancel := ctx()
	defer cancel()
	led, err := e.Ledger(c, "p", 100)
	if err != nil {
		t.Fatalf("Ledger(p) = %v", err)
	}
	want := map[int64]string{30: "claim", -30: "spend", 12: "claim", -5: "spend"}
	if len(led) != len(want) {
		t.Fatalf("Ledger(p) = %+v; want %d entries", led, len(want))
	}
	var sum int64
	for i, le := range led {
		if want[le.Amount] != le.Kind {
			t.Fatalf("Ledger(p)[%d] = %+v; want one of %v", i, le, want)
		}
		delete(want, le.Amount)
		sum += le.Amount
		if i > 0 && le.At.After(led[i-1].At) {
			t.Fatalf("Ledger(p) not newest first: %v after %v", le.At, led[i-1].At)
		}
		if le.Kind == "claim" && (le.Hunt != "h" || le.Hotspot == "") || le.Kind == "spend" && le.Reason == "" {
			t.Fatalf("Ledger(p)[%d] = %+v; want hunt/hotspot for claims, reason for spends", i, le)
		}
	}
	if sum != 7 {
		t.Fatalf("Σ Ledger(p) = %d; want the balance 7", sum)
	}
	if led[0].Epoch != last.Epoch && !led[0].At.Equal(last.At) {
		t.Fatalf("Ledger(p)[0] = %+v; want the newest change %v", led[0], last.Epoch)
	}
	top, err := e.Ledger(c, "p", 2)
	if err != nil || len(top) != 2 || top[0] != led[0] || top[1] != led[1] {
		t.Fatalf("Ledger(p, 2) = %+v, %v; want %+v", top, err, led[:2])
	}
	if none, err := e.Ledger(c, "nobody", 10); err != nil || len(none) != 0 {
		t.Fatalf("Ledger(nobody) = %+v, %v; want empty", none, err)
	}
}

// testSpendsRaceCredits: one player's spends race credits arriving from
// several partitions; the balance never goes below zero and equals
// Σ rewards − Σ accepted spends (I4).
func testSpendsRaceCredits(t *testing.T, h Harness) {
	e := Start(t, h)
	mustPutHunt(t, e, hunt.Hunt{ID: "h"})
	var spots []hunt.Hotspot
	for ci, city := range cities[:8] {
		for j := range 3 {
			spots = append(spots, spot(fmt.Sprintf("c%d-%d", ci, j), city.north(float64(j)*300), 1, 10, 1))
		}
	}
	mustImport(t, e, "h", spots...)

	const spendsN = 60
	var wg sync.WaitGroup
	start := make(chan struct{})
	var mu sync.Mutex
	var credited, spent int64
	var fail error
	partitions := map[uint32]bool{}
	for _, s := range spots {
		wg.Go(func() {
			<-start
			c, cancel := ctx()
			defer cancel()
			res, err := Claim(c, e, claimReq("rich", "c-"+string(s.ID), "h", string(s.ID), place{s.Lat, s.Lon}))
			mu.Lock()
			defer mu.Unlock()
			if err != nil || res.Event.Outcome != hunt.Granted {
				fail = cmpErr(fail, fmt.Errorf("claim %s = %v, %v; want granted", s.ID, res.Event.Outcome, err))
				return
			}
			credited += res.Event.Reward
			partitions[uint32(res.Event.Epoch.Partition)] = true
		})
	}
	for i := range spendsN {
		wg.Go(func() {
			<-start
			c, cancel := ctx()
			defer cancel()
			amount := int64(1 + i%13)
			res, err := Spend(c, e, spendReq("rich", fmt.Sprintf("s-%d", i), amount, "race"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				fail = cmpErr(fail, err)
			case res.Event.Balance < 0:
				fail = cmpErr(fail, fmt.Errorf("spend %d left balance %d < 0", i, res.Event.Balance))
			case res.Event.Outcome == hunt.Spent:
				spent += amount
			case res.Event.Outcome == hunt.InsufficientFunds && res.Event.Balance >= amount:
				fail = cmpErr(fail, fmt.Errorf("spend %d of %d refused with balance %d", i, amount, res.Event.Balance))
			}
		})
	}
	close(start)
	wg.Wait()
	if fail != nil {
		t.Fatal(fail)
	}
	if len(partitions) < 2 {
		t.Logf("credits came from only %d partition(s); the race is weaker than intended", len(partitions))
	}
	if credited != int64(len(spots))*10 {
		t.Fatalf("credited %d; want %d", credited, len(spots)*10)
	}
	wantBalance(t, e, "rich", credited-spent)
	var logged int64
	for _, ev := range allEvents(t, e) {
		logged += ev.Credit()
	}
	if logged != credited-spent {
		t.Fatalf("Σ Credit() over the log = %d; want %d", logged, credited-spent)
	}
}

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
		hs[0].ClaimRadiusM != 20 || hs[1].ClaimRadiusM != hunt.ClaimRadiusMDef {
		t.Fatalf("Hunts() = %+v, %v; want alpha (radius 20), zeta renamed (default radius)", hs, err)
	}
	if got, err := e.Hunt(c, "alpha"); err != nil || got.Name != "first" {
		t.Fatalf("Hunt(alpha) = %+v, %v; want name first", got, err)
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

// testRestart: everything survives a stop and a reopen: grants, replays,
// wallets, ledger, tickets, hunts, and seqs continue.
func testRestart(t *testing.T, h Harness) {
	e := Start(t, h)
	mustPutHunt(t, e, hunt.Hunt{ID: "h", Name: "restart", MaxSpeedMps: 0})
	var spots []hunt.Hotspot
	for i, city := range cities[:6] {
		spots = append(spots, spot(fmt.Sprintf("s%d", i), city, 2, int64(5+i), 1))
	}
	mustImport(t, e, "h", spots...)
	type done struct {
		claim *hunt.ClaimRequest
		spend *hunt.SpendRequest
		ev    hunt.Event
	}
	var log []done
	for i, s := range spots {
		for _, p := range []string{"a", "b", "c"} {
			req := claimReq(p, "c"+string(s.ID), "h", string(s.ID), place{s.Lat, s.Lon})
			log = append(log, done{claim: req, ev: mustClaim(t, e, req).Event})
		}
		req := spendReq("a", fmt.Sprintf("s%d", i), 3, "restart")
		log = append(log, done{spend: req, ev: mustSpend(t, e, req).Event})
	}
	wallets := map[string]hunt.Wallet{}
	for _, p := range []string{"a", "b", "c"} {
		wallets[p] = mustWallet(t, e, p)
	}
	c, cancel := ctx()
	defer cancel()
	ledger, err := e.Ledger(c, "a", 100)
	if err != nil {
		t.Fatalf("Ledger(a) = %v", err)
	}
	before := views(t, e, "h")
	maxSeq := map[uint32]hunt.Seq{}
	for _, d := range log {
		maxSeq[uint32(d.ev.Epoch.Partition)] = max(maxSeq[uint32(d.ev.Epoch.Partition)], d.ev.Epoch.Seq)
	}
	if err := e.Stop(); err != nil {
		t.Fatalf("Run() = %v; want nil after cancel", err)
	}

	for round := range 2 {
		e = Start(t, h)
		for _, d := range log {
			var ev hunt.Event
			var replayed bool
			if d.claim != nil {
				res := mustClaim(t, e, d.claim)
				ev, replayed = res.Event, res.Replayed
			} else {
				res := mustSpend(t, e, d.spend)
				ev, replayed = res.Event, res.Replayed
			}
			if !replayed || !sameEvent(ev, d.ev) {
				t.Fatalf("round %d: replay after restart = %+v (replayed %v); want %+v", round, ev, replayed, d.ev)
			}
		}
		for p, w := range wallets {
			if got := mustWallet(t, e, p); got != w {
				t.Fatalf("round %d: Wallet(%s) after restart = %+v; want %+v", round, p, got, w)
			}
		}
		got, err := e.Ledger(c, "a", 100)
		if err != nil || len(got) != len(ledger) {
			t.Fatalf("round %d: Ledger(a) after restart = %d entries, %v; want %d", round, len(got), err, len(ledger))
		}
		for i := range got {
			if got[i].Epoch != ledger[i].Epoch || got[i].Amount != ledger[i].Amount || !got[i].At.Equal(ledger[i].At) {
				t.Fatalf("round %d: Ledger(a)[%d] = %+v; want %+v", round, i, got[i], ledger[i])
			}
		}
		for id, v := range views(t, e, "h") {
			if b := before[id]; v.Tickets != b.Tickets || v.TicketsLeft != b.TicketsLeft || v.Reward != b.Reward {
				t.Fatalf("round %d: Hotspots[%s] after restart = %+v; want %+v", round, id, v, b)
			}
		}
		if hs, err := e.Hunts(c); err != nil || len(hs) != 1 || hs[0].Name != "restart" {
			t.Fatalf("round %d: Hunts() after restart = %+v, %v", round, hs, err)
		}
		wantClaim(t, e, claimReq("a", fmt.Sprintf("again-%d", round), "h", "s0", cities[0]), hunt.AlreadyClaimed)
		ev := wantClaim(t, e, claimReq(fmt.Sprintf("new-%d", round), "k", "h", "s1", cities[1]), hunt.SoldOut)
		p := uint32(ev.Epoch.Partition)
		if ev.Epoch.Seq <= maxSeq[p] {
			t.Fatalf("round %d: first seq after restart in partition %d = %d; want > %d", round, p, ev.Epoch.Seq, maxSeq[p])
		}
		maxSeq[p] = ev.Epoch.Seq
		if err := e.Stop(); err != nil {
			t.Fatalf("round %d: Run() = %v; want nil after cancel", round, err)
		}
	}
}

// fold is the state a log folds into (I7), computed without engine code.
type fold struct {
	wallets  map[hunt.PlayerID]int64
	granted  map[hunt.HotspotID]int64
	claimers map[hunt.HotspotID]map[hunt.PlayerID]bool
	lastSeq  map[uint32]hunt.Seq
}

// foldEvents folds the events of the log that keep selects (all when keep
// is nil), checking per-partition seq order of the whole log and I2 on the way.
func foldEvents(t tb, e engine.Engine, keep func(*hunt.Event) bool) fold {
	t.Helper()
	f := fold{wallets: map[hunt.PlayerID]int64{}, granted: map[hunt.HotspotID]int64{},
		claimers: map[hunt.HotspotID]map[hunt.PlayerID]bool{}, lastSeq: map[uint32]hunt.Seq{}}
	for _, ev := range allEvents(t, e) {
		p := uint32(ev.Epoch.Partition)
		if int(p) >= e.Partitions() || ev.Epoch.Seq <= f.lastSeq[p] {
			t.Fatalf("Events: %v after seq %d of partition %d; want seqs strictly increasing per partition", ev.Epoch, f.lastSeq[p], p)
		}
		f.lastSeq[p] = ev.Epoch.Seq
		if keep != nil && !keep(&ev) {
			continue
		}
		f.wallets[ev.Player] += ev.Credit()
		if ev.Kind == hunt.KindSpendCompleted && ev.Balance < 0 {
			t.Fatalf("Events: spend %v left balance %d", ev.Epoch, ev.Balance)
		}
		if ev.Kind == hunt.KindClaimCompleted && ev.Outcome == hunt.Granted {
			if f.claimers[ev.Hotspot] == nil {
				f.claimers[ev.Hotspot] = map[hunt.PlayerID]bool{}
			}
			if f.claimers[ev.Hotspot][ev.Player] {
				t.Fatalf("I2: player %s granted twice at %s", ev.Player, ev.Hotspot)
			}
			f.claimers[ev.Hotspot][ev.Player] = true
			f.granted[ev.Hotspot]++
		}
	}
	return f
}

// checkFold compares a fold with the engine's state: wallets (I4, I7),
// tickets (I1, I7) and claimer sets (I2, I7).
func checkFold(t tb, e engine.Engine, f fold, id hunt.HuntID, players []string) {
	t.Helper()
	for _, p := range players {
		want := f.wallets[hunt.PlayerID(p)]
		if want < 0 {
			t.Fatalf("I4: fold of the log gives %s a balance of %d", p, want)
		}
		wantBalance(t, e, p, want)
	}
	for sid, v := range views(t, e, id) {
		if g := f.granted[sid]; v.Tickets-v.TicketsLeft != g || g > v.Tickets {
			t.Fatalf("hotspot %s: tickets %d, left %d; the log folds to %d granted", sid, v.Tickets, v.TicketsLeft, g)
		}
		for p := range f.claimers[sid] {
			res := mustClaim(t, e, &hunt.ClaimRequest{Player: p, Key: "fold-check-" + string(sid), Hunt: id, Hotspot: sid, Lat: v.Lat, Lon: v.Lon})
			if res.Event.Outcome != hunt.AlreadyClaimed {
				t.Fatalf("claimer %s of %s (from the log) claims again: %v; want already_claimed", p, sid, res.Event.Outcome)
			}
		}
	}
}

// testFoldEvents (I7): folding Events from the start reproduces wallets,
// granted counts and claimer sets, before and after a restart; Events
// honours its after argument.
func testFoldEvents(t *testing.T, h Harness) {
	e := Start(t, h)
	mustPutHunt(t, e, hunt.Hunt{ID: "h"})
	var spots []hunt.Hotspot
	for i, city := range cities[:10] {
		spots = append(spots, spot(fmt.Sprintf("s%d", i), city, 3, int64(1+i), 1))
	}
	mustImport(t, e, "h", spots...)
	var players []string
	for i := range 12 {
		players = append(players, fmt.Sprintf("p%d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(players))
	for pi, p := range players {
		wg.Go(func() {
			c, cancel := ctx()
			defer cancel()
			for i, s := range spots {
				if (pi+i)%3 == 0 {
					continue
				}
				if _, err := Claim(c, e, claimReq(p, "c"+string(s.ID), "h", string(s.ID), place{s.Lat, s.Lon})); err != nil {
					errs <- err
					return
				}
				if i%4 == 0 {
					if _, err := Spend(c, e, spendReq(p, fmt.Sprintf("s%d", i), int64(1+pi%5), "fold")); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("workload: %v", err)
	}
	f := foldEvents(t, e, nil)

	// after: nothing past each partition's last seq; only the tail past last-1.
	after := make([]hunt.Seq, e.Partitions())
	tail := 0
	for p, s := range f.lastSeq {
		after[p] = s
	}
	c, cancel := ctx()
	defer cancel()
	if err := e.Events(c, after, func(*hunt.Event) error { tail++; return nil }); err != nil || tail != 0 {
		t.Fatalf("Events(after last) = %d events, %v; want 0", tail, err)
	}
	for p, s := range f.lastSeq {
		after[p] = s - 1
	}
	var seen []hunt.Epoch
	if err := e.Events(c, after, func(ev *hunt.Event) error { seen = append(seen, ev.Epoch); return nil }); err != nil || len(seen) != len(f.lastSeq) {
		t.Fatalf("Events(after last-1) = %v, %v; want one event per partition (%d)", seen, err, len(f.lastSeq))
	}
	for _, ep := range seen {
		if ep.Seq != f.lastSeq[uint32(ep.Partition)] {
			t.Fatalf("Events(after last-1) gave %v; want the last of partition %d (%d)", ep, ep.Partition, f.lastSeq[uint32(ep.Partition)])
		}
	}
	checkFold(t, e, f, "h", players)
	e.Stop()
	e = Start(t, h)
	f2 := foldEvents(t, e, nil)
	checkFold(t, e, f2, "h", players)
}

// recorder is a Sink that keeps copies of everything it is given.
type recorder struct {
	mu     sync.Mutex
	events map[hunt.Epoch]hunt.Event
	last   map[uint32]hunt.Seq
	err    error
}

func (r *recorder) Committed(p geo.Partition, batch []hunt.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range batch {
		if uint32(ev.Epoch.Partition) != uint32(p) {
			r.err = cmpErr(r.err, fmt.Errorf("batch of partition %d holds %v", p, ev.Epoch))
		}
		if ev.Epoch.Seq <= r.last[uint32(p)] {
			r.err = cmpErr(r.err, fmt.Errorf("partition %d: seq %d delivered after %d", p, ev.Epoch.Seq, r.last[uint32(p)]))
		}
		r.last[uint32(p)] = ev.Epoch.Seq
		r.events[ev.Epoch] = ev
	}
}

func (r *recorder) has(ep hunt.Epoch) (hunt.Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev, ok := r.events[ep]
	return ev, ok
}

// testSinks: every committed event reaches a subscribed sink, in seq order per partition.
func testSinks(t *testing.T, h Harness) {
	rec := &recorder{events: map[hunt.Epoch]hunt.Event{}, last: map[uint32]hunt.Seq{}}
	e := Start(t, h, rec)
	mustPutHunt(t, e, hunt.Hunt{ID: "h"})
	var spots []hunt.Hotspot
	for i, city := range cities[:4] {
		spots = append(spots, spot(fmt.Sprintf("s%d", i), city, 1, 2, 1))
	}
	mustImport(t, e, "h", spots...)
	var evs []hunt.Event
	for i, s := range spots {
		for _, p := range []string{"a", "b"} {
			evs = append(evs, mustClaim(t, e, claimReq(p, "k"+string(s.ID), "h", string(s.ID), place{s.Lat, s.Lon})).Event)
		}
		evs = append(evs, mustSpend(t, e, spendReq("a", fmt.Sprintf("s%d", i), 1, "sink")).Event)
	}
	for _, want := range evs {
		waitFor(t, 10*time.Second, "sink to receive "+want.Epoch.String(), func() bool { _, ok := rec.has(want.Epoch); return ok })
		if got, _ := rec.has(want.Epoch); !sameEvent(got, want) {
			t.Fatalf("sink got %+v; want %+v", got, want)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.err != nil {
		t.Fatal(rec.err)
	}
}

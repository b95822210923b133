package enginetest

import (
	"errors"
	"sync"
	"testing"

	"github.com/cairnhq/cairn/internal/hunt"
)

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

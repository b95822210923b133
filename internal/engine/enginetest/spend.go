package enginetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/cairnhq/cairn/internal/hunt"
)

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

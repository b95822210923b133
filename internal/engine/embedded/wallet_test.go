package embedded

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/enginetest"
	"github.com/cairnhq/cairn/internal/hunt"
)

// TestWalletReadWaitsForSpend: a spend subtracts its amount from the balance
// when it is decided, before its batch is durable (later spends of the player
// must see it). A wallet read made in between must not answer that balance
// before the spend is durable: if the commit is then lost (a crash, here a
// failed commit), the store never had the spend, the restarted node shows
// the old balance, and the answer already given contradicts it. So the read
// waits for the spend: it answers the lowered balance once the spend is
// durable, and engine.ErrUnavailable if its commit fails. (This is how
// TestLinearizableKill9 found it: a read of a reservation, then kill -9
// before the sync, then reads of the old balance.)
func TestWalletReadWaitsForSpend(t *testing.T) {
	for _, lost := range []bool{true, false} {
		name := "committed"
		if lost {
			name = "lost"
		}
		t.Run(name, func(t *testing.T) {
			var armed atomic.Bool
			entered, release := make(chan struct{}, 1), make(chan struct{})
			hook := func(point string) error {
				if point == FaultBeforeCommit && armed.CompareAndSwap(true, false) {
					entered <- struct{}{}
					<-release
					if lost {
						return errors.New("injected commit failure: the spend's group is lost")
					}
				}
				return nil
			}
			h := newHarness(t, func(c *Config) { c.FaultHook = hook })
			e := enginetest.Start(t, h)
			t.Cleanup(func() { // before Stop (cleanups run last first): a failed check must not leave a group held
				select {
				case release <- struct{}{}:
				default:
				}
			})
			setup(t, e, 5)
			c, cancel := bg()
			defer cancel()
			if res, err := e.Claim(c, claimAt("p0", "k0", "gold")); err != nil || res.Event.Outcome != hunt.Granted {
				t.Fatalf("Claim = %+v, %v; want granted (reward 10)", res.Event, err)
			}

			armed.Store(true)
			type spendAnswer struct {
				res hunt.SpendResult
				err error
			}
			spent := make(chan spendAnswer, 1)
			go func() {
				res, err := e.Spend(c, &hunt.SpendRequest{Player: "p0", Key: "s", Amount: 3})
				spent <- spendAnswer{res, err}
			}()
			<-entered // the spend is decided and reserved; its group is held before the commit
			w := unwrap(e).wallets.get("p0")
			if b := w.balance.Load(); b != 7 {
				t.Fatalf("balance with the spend reserved = %d; want 7 (the fixture is wrong)", b)
			}
			type walletAnswer struct {
				w   hunt.Wallet
				err error
			}
			read := make(chan walletAnswer, 1)
			go func() {
				wal, err := e.Wallet(c, "p0")
				read <- walletAnswer{wal, err}
			}()
			if lost {
				release <- struct{}{}
				if a := <-spent; !errors.Is(a.err, engine.ErrUnavailable) {
					t.Fatalf("Spend over a failed commit = %+v, %v; want %v", a.res.Event, a.err, engine.ErrUnavailable)
				}
				if a := <-read; !errors.Is(a.err, engine.ErrUnavailable) {
					t.Fatalf("Wallet read while the spend was not durable, then lost = %+v, %v; want %v (after a restart the balance is 10)",
						a.w, a.err, engine.ErrUnavailable)
				}
				if err := e.Stop(); !errors.Is(err, engine.ErrUnavailable) {
					t.Fatalf("Run after a failed commit = %v; want %v", err, engine.ErrUnavailable)
				}
				e = enginetest.Start(t, h)
				if wal, err := e.Wallet(c, "p0"); err != nil || wal.Balance != 10 {
					t.Fatalf("Wallet after restart = %+v, %v; want balance 10 (the spend was never durable)", wal, err)
				}
				res, err := e.Spend(c, &hunt.SpendRequest{Player: "p0", Key: "s", Amount: 3})
				if err != nil || res.Replayed || res.Event.Outcome != hunt.Spent || res.Event.Balance != 7 {
					t.Fatalf("retry after restart = %+v (replayed %v), %v; want a fresh spend, balance 7", res.Event, res.Replayed, err)
				}
				return
			}
			// The read is parked until the spend is durable: it registered
			// its wait and cannot have answered.
			poll(t, "the read waiting for the spend", func() bool {
				w.mu.Lock()
				defer w.mu.Unlock()
				return w.settledCh != nil
			})
			select {
			case a := <-read:
				t.Fatalf("Wallet read answered %+v, %v while the spend was not durable; want it to wait", a.w, a.err)
			default:
			}
			release <- struct{}{}
			s := <-spent
			if s.err != nil || s.res.Event.Outcome != hunt.Spent || s.res.Event.Balance != 7 {
				t.Fatalf("Spend = %+v, %v; want spent, balance 7", s.res.Event, s.err)
			}
			if a := <-read; a.err != nil || a.w.Balance != 7 {
				t.Fatalf("Wallet read once the spend is durable = %+v, %v; want balance 7", a.w, a.err)
			}
			// A read whose context ends while it waits answers the context's error.
			armed.Store(true)
			go func() { _, _ = e.Spend(c, &hunt.SpendRequest{Player: "p0", Key: "s2", Amount: 1}) }()
			<-entered
			short, stop := context.WithCancel(c)
			stop()
			if wal, err := e.Wallet(short, "p0"); !errors.Is(err, context.Canceled) {
				t.Fatalf("Wallet with a cancelled context while a spend is held = %+v, %v; want %v", wal, err, context.Canceled)
			}
			release <- struct{}{} // unarmed from here: the held group commits
		})
	}
}

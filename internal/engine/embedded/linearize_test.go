package embedded

import (
	"context"
	"sync"
	"testing"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/enginetest"
	"github.com/cairnhq/cairn/internal/hunt"
)

// TestLinearizable: porcupine finds every history of concurrent claims,
// spends and reads linearizable, with timeouts and with a restart.
func TestLinearizable(t *testing.T) {
	enginetest.Linearizable(t, func(t *testing.T) enginetest.Harness { return newHarness(t) })
}

// laggingWallets plants a bug a cache in front of the store could have:
// each wallet read answers what the player's previous read saw.
type laggingWallets struct {
	engine.Engine
	mu   sync.Mutex
	last map[hunt.PlayerID]int64
}

func (e *laggingWallets) Wallet(ctx context.Context, p hunt.PlayerID) (hunt.Wallet, error) {
	w, err := e.Engine.Wallet(ctx, p)
	if err != nil {
		return w, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	w.Balance, e.last[p] = e.last[p], w.Balance
	return w, nil
}

type laggingHarness struct{ *harness }

func (h laggingHarness) Open(t *testing.T) engine.Engine {
	return &laggingWallets{Engine: h.harness.Open(t), last: map[hunt.PlayerID]int64{}}
}

// TestLinearizableCatchesStaleReads: the same workload on an engine whose
// wallet reads lag one read behind is found not linearizable, so the
// passing test above is not vacuous.
func TestLinearizableCatchesStaleReads(t *testing.T) {
	run := enginetest.RecordLinearizable(t, laggingHarness{newHarness(t)}, false)
	ok, _, err := audit.CheckLinearizable(run.History, run.Tickets, run.Rewards, 0)
	if ok || err != nil {
		t.Fatalf("CheckLinearizable(%v with wallet reads one behind) = %v, %v; want false, nil", run, ok, err)
	}
}

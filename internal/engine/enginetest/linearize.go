package enginetest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/lintest"
)

// The linearizability test runs lintest's workload (concurrent claims, spends
// and wallet reads, recorded and checked with porcupine) on engines in
// process, in two variants: with timeouts only, and with a restart when half
// the operations are done. The restart abandons every call in flight first
// (its context cancelled, as a dropped connection would), so it ends unknown
// although the engine may still commit it, then Stop and Start on the same
// state. Sizes keep the test within a few seconds with -race on two cores.

// Limits of the in-process linearizability test.
const (
	linShortMax       = 300 * time.Microsecond
	linRestartTimeout = 30 * time.Second // how long a client waits for the restarted engine
)

// Linearizable runs the linearizability test on engines from newHarness, in
// two variants: with timeouts only, and with a restart in the middle.
func Linearizable(t *testing.T, newHarness func(t *testing.T) Harness) {
	for _, restart := range []bool{false, true} {
		name := "Timeouts"
		if restart {
			name = "Restart"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			lintest.Check(t, RecordLinearizable(t, newHarness(t), restart))
		})
	}
}

// LinearizableRun is what RecordLinearizable recorded.
type LinearizableRun = lintest.Run

// RecordLinearizable runs the linearizability test's workload on an engine
// of h (restarted in the middle if restart) and returns the history,
// unchecked. It fails t if an engine call answers an error other than a
// timeout, a shutdown or an overload, or if the workload did not contend (see
// lintest.Record). Tests of the checker itself use it on engines with planted
// bugs.
func RecordLinearizable(t *testing.T, h Harness, restart bool) *LinearizableRun {
	tg := &engineTarget{}
	tg.cur.Store(newEngineLife(Start(t, h)))
	r := tg.cur.Load().r
	mustPutHunt(t, r, hunt.Hunt{ID: lintest.Hunt, Name: "linearizability"})
	mustImport(t, r, lintest.Hunt, lintest.Spots()...)
	cfg := lintest.Config{CallTimeout: callTimeout, ShortMax: linShortMax, RestartTimeout: linRestartTimeout}
	if restart {
		cfg.RestartAt = []int64{lintest.Ops / 2}
		cfg.Restart = func(int) {
			old := tg.cur.Load()
			old.stopping.Store(true)
			old.cancel() // abandon every call in flight: the clients see the connection drop
			if err := old.r.Stop(); err != nil {
				t.Errorf("Run() = %v; want nil after cancel", err)
			}
			tg.cur.Store(newEngineLife(Start(t, h)))
		}
	}
	return lintest.Record(t, tg, cfg)
}

// engineTarget calls the engine of its current life.
type engineTarget struct {
	cur atomic.Pointer[engineLife]
}

// engineLife is one engine process of the test: a restart makes a new one.
type engineLife struct {
	r        *Running
	ctx      context.Context // every call's parent; cancelled when the restart begins
	cancel   context.CancelFunc
	stopping atomic.Bool
}

func newEngineLife(r *Running) *engineLife {
	l := &engineLife{r: r}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// Do implements lintest.Target.
func (tg *engineTarget) Do(ctx context.Context, c lintest.Call) (lintest.Answer, error) {
	l := tg.cur.Load()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(l.ctx, cancel)()
	a, err := call(ctx, l.r, c)
	if err != nil && unknown(err, l) {
		err = fmt.Errorf("%w: %w", lintest.ErrUnknown, err)
	}
	return a, err
}

func call(ctx context.Context, e engine.Engine, c lintest.Call) (lintest.Answer, error) {
	switch c.Kind {
	case audit.OpClaim:
		s := c.Spot
		res, err := Claim(ctx, e, claimReq(string(c.Player), c.Key, lintest.Hunt, string(s.ID), place{s.Lat, s.Lon}))
		return lintest.Answer{Outcome: res.Event.Outcome, TicketsLeft: res.Event.TicketsLeft}, err
	case audit.OpSpend:
		res, err := Spend(ctx, e, spendReq(string(c.Player), c.Key, c.Amount, c.Reason))
		return lintest.Answer{Outcome: res.Event.Outcome, Balance: res.Event.Balance}, err
	case audit.OpWallet:
		w, err := e.Wallet(ctx, c.Player)
		if err == nil && w.Player != c.Player {
			return lintest.Answer{}, fmt.Errorf("Wallet(%s) answered for %q", c.Player, w.Player)
		}
		return lintest.Answer{Balance: w.Balance}, err
	}
	return lintest.Answer{}, fmt.Errorf("call of kind %v", c.Kind)
}

// unknown reports whether err is an answer the test allows: one that leaves
// the outcome unknown. Anything else (a domain error, a reused key) is a bug.
func unknown(err error, l *engineLife) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, engine.ErrClosed) || errors.Is(err, engine.ErrUnavailable) ||
		errors.Is(err, engine.ErrOverloaded) || l.stopping.Load()
}

package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/engine"
)

// availability is whether Redis answers, as the health probe last saw it.
type availability struct {
	mu     sync.Mutex
	up     bool
	err    error
	ch     chan struct{}      // closed and replaced on every change
	ctx    context.Context    // cancelled when Redis goes down; calls in flight end with it
	cancel context.CancelFunc // of ctx
}

// callContext is ctx, cancelled as well when Redis goes down: a call waiting
// for a connection or an answer then fails at once with the outage.
func (a *availability) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	a.mu.Lock()
	down := a.ctx
	a.mu.Unlock()
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(down, cancel)
	return cctx, func() { stop(); cancel() }
}

func (a *availability) get() (bool, <-chan struct{}, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.up, a.ch, a.err
}

// set records the state and reports whether it changed.
func (a *availability) set(up bool, err error) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.err = err
	if a.up == up {
		return false
	}
	a.up = up
	close(a.ch)
	a.ch = make(chan struct{})
	if up {
		a.ctx, a.cancel = context.WithCancel(context.Background())
	} else {
		a.cancel()
	}
	return true
}

// healthLoop probes Redis every HealthInterval (or at once when kicked by a
// failing component). Down: Ready fails and waiting calls get
// engine.ErrUnavailable. Back up: setup runs again, then calls are taken.
func (e *Engine) healthLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.HealthInterval)
	defer t.Stop()
	slow := 0 // consecutive probes that timed out
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.kick:
		}
		pctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
		pinged := time.Now()
		err := e.ping(pctx)
		if err == nil {
			e.pingSeconds.Observe(time.Since(pinged).Seconds())
		}
		if up, _, _ := e.avail.get(); err == nil && !up {
			err = e.setup(pctx)
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// A refused or broken connection is an outage at once; one slow
			// answer on a loaded machine is not (calls time out on their own).
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
				if slow++; slow < 2 {
					continue
				}
			}
			e.markDown(err)
			continue
		}
		slow = 0
		if e.avail.set(true, nil) {
			e.upGauge.Set(1)
			e.met.Retries.WithLabelValues("reconnect").Inc()
			e.log.Warn("redis engine: redis is back; taking claims again")
		}
	}
}

// ping probes Redis. A cluster is up while any primary answers: a shard
// that is failing over refuses the calls to its slots (503) on its own,
// and the others keep serving.
func (e *Engine) ping(ctx context.Context) error {
	hc, ok := e.hc.(*goredis.ClusterClient)
	if !ok {
		return e.hc.Ping(ctx).Err()
	}
	var mu sync.Mutex
	answered, lastErr := 0, error(nil)
	_ = hc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
		err := c.Ping(ctx).Err()
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			lastErr = err
		} else {
			answered++
		}
		return nil
	})
	if lastErr != nil {
		hc.ReloadState(ctx)
		e.cc.ReloadState(ctx)
	}
	if answered == 0 {
		if lastErr == nil {
			lastErr = errors.New("no primary known")
		}
		return lastErr
	}
	return nil
}

// markDown records an outage and fails every waiting call: their requests
// may still be decided later, and a retry with the same key replays that.
func (e *Engine) markDown(err error) {
	if e.avail.set(false, err) {
		e.upGauge.Set(0)
		e.log.Warn("redis engine: redis unavailable; answering 503 until it is back", "err", err)
	}
	e.waiters.failAll(unavailable("redis", err))
}

// kickHealth asks the health loop to probe now (a component saw an error).
func (e *Engine) kickHealth() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// waitUp blocks until Redis is up; false when ctx ends first.
func (e *Engine) waitUp(ctx context.Context) bool {
	for {
		up, ch, _ := e.avail.get()
		if up {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// pause waits d or until ctx ends; false when ctx ended.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// unavailable wraps a Redis failure as engine.ErrUnavailable.
func unavailable(what string, err error) error {
	if err == nil {
		return fmt.Errorf("%w: %s", engine.ErrUnavailable, what)
	}
	return fmt.Errorf("%w: %s: %v", engine.ErrUnavailable, what, err)
}

// isUnavailable tells a Redis that cannot serve (network, timeout, loading,
// read-only replica, closed client) from an error in the request itself.
func isUnavailable(err error) bool {
	if err == nil || errors.Is(err, goredis.Nil) {
		return false
	}
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "READONLY", "MOVED", "ASK", "MASTERDOWN", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MISCONF", "OOM", "NOGROUP"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return strings.Contains(msg, "Function not found") || strings.Contains(msg, "Library not found")
	}
	return true
}

// needsSetup reports whether err is Redis answering that our Function
// library or a consumer group is missing: it came back without them.
func needsSetup(err error) bool {
	return goredis.HasErrorPrefix(err, "NOGROUP") ||
		goredis.HasErrorPrefix(err, "Function not found") || goredis.HasErrorPrefix(err, "Library not found")
}

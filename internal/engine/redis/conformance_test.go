package redis

import (
	"context"
	"testing"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/enginetest"
	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
)

// harness runs the conformance suite on one redis-server per state; every
// Open is a new node (a new consumer name) on the same Redis, as a restarted
// Cairn process would be.
type harness struct {
	srv  *redistest.Server
	mods []func(*Config)
}

func (h *harness) Open(t *testing.T) engine.Engine {
	t.Helper()
	e, err := Open(context.Background(), testConfig(h.srv, h.mods...))
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	return e
}

func TestConformancePipeline(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) enginetest.Harness {
		return &harness{srv: redistest.Start(t)}
	})
}

func TestConformanceDirect(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) enginetest.Harness {
		return &harness{srv: redistest.Start(t), mods: []func(*Config){func(c *Config) { c.Direct = true }}}
	})
}

// TestLinearizablePipeline and TestLinearizableDirect record concurrent
// histories (with timeouts and a restart as unknown outcomes) and check them
// with porcupine.
func TestLinearizablePipeline(t *testing.T) {
	enginetest.Linearizable(t, func(t *testing.T) enginetest.Harness { return &harness{srv: redistest.Start(t)} })
}

func TestLinearizableDirect(t *testing.T) {
	enginetest.Linearizable(t, func(t *testing.T) enginetest.Harness {
		return &harness{srv: redistest.Start(t), mods: []func(*Config){func(c *Config) { c.Direct = true }}}
	})
}
